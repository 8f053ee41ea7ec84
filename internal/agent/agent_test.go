package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/model/script"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/store/sqlite"
	"github.com/keepup/keepup/internal/task"
	"github.com/keepup/keepup/internal/tool"
)

// probeTool is a test tool whose behaviour each test sets.
type probeTool struct {
	name     string
	effect   policy.Effect
	readOnly bool
	run      func(ctx context.Context, in map[string]any) (*tool.Result, error)
}

func (p *probeTool) Spec() model.ToolSpec {
	return model.ToolSpec{Name: p.name, Description: "test tool", InputSchema: json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer"}},"additionalProperties":false}`)}
}

func (p *probeTool) Prepare(ctx context.Context, env *tool.Env, input json.RawMessage) (*tool.Call, error) {
	var in map[string]any
	_ = json.Unmarshal(input, &in)
	return &tool.Call{
		Action:   policy.Action{Tool: p.name, Ops: []policy.Op{{Effect: p.effect, Subject: p.name}}, Summary: fmt.Sprintf("%s %v", p.name, in["n"])},
		ReadOnly: p.readOnly,
		Run:      func(ctx context.Context) (*tool.Result, error) { return p.run(ctx, in) },
	}, nil
}

type fakePerson struct {
	mu      sync.Mutex
	answers []Answer
	asked   []ApprovalRequest
}

func (f *fakePerson) Approve(ctx context.Context, r ApprovalRequest) (Answer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, r)
	if len(f.answers) == 0 {
		return AnswerNo, nil
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	return a, nil
}

func (f *fakePerson) Answer(ctx context.Context, q string) (string, error) { return "42", nil }

// recorder wraps a provider and keeps every request.
type recorder struct {
	model.Provider
	mu   sync.Mutex
	reqs []model.Request
}

func (r *recorder) Complete(ctx context.Context, req model.Request) (*model.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return r.Provider.Complete(ctx, req)
}

type testBundle struct {
	dir    string
	db     *sqlite.DB
	sess   *scope.Session
	person *fakePerson
	events []event.Event
	emu    sync.Mutex
	prov   *recorder
}

func setup(t testing.TB, turns string, extra ...tool.Tool) (*testBundle, Config) {
	t.Helper()
	root := t.TempDir()
	grant := filepath.Join(root, "work")
	if err := os.MkdirAll(grant, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(grant, "notes.txt"), []byte("hello\n"), 0o644)
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(root, "keepup.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	sess, err := scope.Open(scope.Config{Grants: []scope.Grant{{Name: "work", Path: grant, Mode: scope.RW}}, Outputs: filepath.Join(root, "outputs")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	s, err := script.Parse([]byte(turns))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := tool.NewRegistry(append(tool.Builtins(), extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{dir: grant, db: db, sess: sess, person: &fakePerson{}, prov: &recorder{Provider: script.New("test", s)}}
	pol := policy.New(nil, nil)
	cfg := Config{
		Store:    db,
		Provider: b.prov,
		Tools:    reg,
		Decide:   func(a policy.Action) policy.Decision { return pol.Decide(a, policy.ModeAsk) },
		Person:   b.person,
		Session:  sess,
		Task:     &task.Task{ID: "t-test", Prompt: "do it", Model: "script:test", Approvals: "ask"},
		Retry:    model.RetryConfig{Sleep: func(ctx context.Context, d time.Duration) error { return nil }},
		OnEvent: func(e event.Event) {
			b.emu.Lock()
			b.events = append(b.events, e)
			b.emu.Unlock()
		},
	}
	return b, cfg
}

func (b *testBundle) ofType(typ string) []map[string]any {
	b.emu.Lock()
	defer b.emu.Unlock()
	var out []map[string]any
	for _, e := range b.events {
		if e.Type == typ {
			var m map[string]any
			json.Unmarshal(e.Data, &m)
			out = append(out, m)
		}
	}
	return out
}

func run(t *testing.T, cfg Config) *task.Task {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	final, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return final
}

const planTurn = `{"tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "work", "status": "in_progress"}]}}]}`

func TestReadOnlyCallsRunConcurrently(t *testing.T) {
	t.Parallel()
	var inFlight, peak atomic.Int32
	barrier := make(chan struct{})
	var once sync.Once
	slow := &probeTool{name: "slow_read", effect: policy.EffectRead, readOnly: true, run: func(ctx context.Context, in map[string]any) (*tool.Result, error) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if n == 3 {
			once.Do(func() { close(barrier) })
		}
		select {
		case <-barrier:
		case <-time.After(5 * time.Second):
		}
		inFlight.Add(-1)
		return &tool.Result{Content: "ok"}, nil
	}}
	b, cfg := setup(t, `{"turns": [`+planTurn+`,
		{"tool_calls": [{"name": "slow_read", "input": {"n": 1}}, {"name": "slow_read", "input": {"n": 2}}, {"name": "slow_read", "input": {"n": 3}}]},
		{"text": "done"}]}`, slow)
	final := run(t, cfg)
	if final.Status != task.Completed {
		t.Fatalf("status %s: %s", final.Status, final.Error)
	}
	if peak.Load() != 3 {
		t.Errorf("peak concurrency %d, want 3 read-only calls at once", peak.Load())
	}
	// Results are journalled in the model's order whatever order the calls finished in.
	var ids []string
	for _, r := range b.ofType(event.ToolResult) {
		ids = append(ids, r["tool_call_id"].(string))
	}
	if got := strings.Join(ids, ","); got != "script_0_0,script_1_0,script_1_1,script_1_2" {
		t.Errorf("result order %s", got)
	}
}

func TestStateChangingCallsRunInOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []float64
	var active atomic.Int32
	w := &probeTool{name: "mutate", effect: policy.EffectCreate, run: func(ctx context.Context, in map[string]any) (*tool.Result, error) {
		if active.Add(1) != 1 {
			t.Error("two state-changing calls ran at once")
		}
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		order = append(order, in["n"].(float64))
		mu.Unlock()
		active.Add(-1)
		return &tool.Result{Content: "ok"}, nil
	}}
	_, cfg := setup(t, `{"turns": [`+planTurn+`,
		{"tool_calls": [{"name": "mutate", "input": {"n": 1}}, {"name": "mutate", "input": {"n": 2}}, {"name": "mutate", "input": {"n": 3}}]},
		{"text": "done"}]}`, w)
	run(t, cfg)
	if fmt.Sprint(order) != "[1 2 3]" {
		t.Errorf("order %v", order)
	}
}

func TestIntentJournalledBeforeExecution(t *testing.T) {
	t.Parallel()
	var b *testBundle
	var seen store.CallStatus
	probe := &probeTool{name: "mutate", effect: policy.EffectCreate, run: func(ctx context.Context, in map[string]any) (*tool.Result, error) {
		calls, err := b.db.ToolCalls(ctx, "t-test")
		if err != nil {
			return nil, err
		}
		for _, c := range calls {
			if c.Tool == "mutate" {
				seen = c.Status
			}
		}
		return &tool.Result{Content: "ok"}, nil
	}}
	b, cfg := setup(t, `{"turns": [`+planTurn+`, {"tool_calls": [{"name": "mutate", "input": {"n": 1}}]}, {"text": "done"}]}`, probe)
	run(t, cfg)
	if seen != store.CallIntent {
		t.Fatalf("while running, the journal said %q, want intent", seen)
	}
	calls, _ := b.db.ToolCalls(context.Background(), "t-test")
	if last := calls[len(calls)-1]; last.Status != store.CallOK || last.Tool != "mutate" {
		t.Errorf("after: %+v", last)
	}
}

func TestMalformedCallsGoBackAsErrorsThenFailTheTask(t *testing.T) {
	t.Parallel()
	bad := `{"tool_calls": [{"name": "no_such_tool", "input": {}}]},
		{"tool_calls": [{"name": "read_file", "input": "{\"path\": "}]},
		{"tool_calls": [{"name": "read_file", "input": {"path": 7}}]},
		{"tool_calls": [{"name": "read_file", "input": {"pth": "x"}}]}`
	t.Run("recovers", func(t *testing.T) {
		t.Parallel()
		b, cfg := setup(t, `{"turns": [`+planTurn+`,`+bad+`, {"tool_calls": [{"name": "read_file", "input": {"path": "notes.txt"}}]}, `+bad+`, {"text": "done"}]}`)
		cfg.MaxConsecutiveErrors = 5
		final := run(t, cfg)
		if final.Status != task.Completed {
			t.Fatalf("status %s (%s); 4 errors, a good call, 4 errors must not fail with a limit of 5", final.Status, final.Error)
		}
		msgs := b.prov.reqs[2].Messages
		res := msgs[len(msgs)-1].Content[0]
		if !res.IsError || !strings.Contains(res.Content, `unknown tool "no_such_tool"`) {
			t.Errorf("model was told %+v", res)
		}
		for i, want := range []string{"not valid JSON", "do not match its schema", "do not match its schema"} {
			msgs := b.prov.reqs[3+i].Messages
			if got := msgs[len(msgs)-1].Content[0]; !got.IsError || !strings.Contains(got.Content, want) {
				t.Errorf("call %d: model was told %q, want %q", i+1, got.Content, want)
			}
		}
	})
	t.Run("fails after the limit", func(t *testing.T) {
		t.Parallel()
		_, cfg := setup(t, `{"turns": [`+planTurn+`,`+bad+`, {"text": "never"}]}`)
		cfg.MaxConsecutiveErrors = 3
		final := run(t, cfg)
		if final.Status != task.Failed || !strings.Contains(final.Error, "3 malformed tool calls in a row") {
			t.Fatalf("status %s, error %q", final.Status, final.Error)
		}
	})
}

func TestPlanComesFirst(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t, `{"turns": [
		{"tool_calls": [{"name": "read_file", "input": {"path": "notes.txt"}}, {"name": "write_file", "input": {"path": "early.txt", "content": "x"}}]},
		`+planTurn+`,
		{"tool_calls": [{"name": "write_file", "input": {"path": "later.txt", "content": "x"}}]},
		{"text": "done"}]}`)
	final := run(t, cfg)
	if final.Status != task.Completed {
		t.Fatalf("status %s", final.Status)
	}
	if _, err := os.Stat(filepath.Join(b.dir, "early.txt")); err == nil {
		t.Error("a write ran before the task had a plan")
	}
	if _, err := os.Stat(filepath.Join(b.dir, "later.txt")); err != nil {
		t.Error("the write after the plan did not run")
	}
	if !strings.Contains(b.prov.reqs[0].Messages[0].Content[0].Text, "update_plan") {
		t.Error("the first turn does not ask for a plan")
	}
}

func TestBudgets(t *testing.T) {
	t.Parallel()
	loop := strings.Repeat(`{"tool_calls": [{"name": "read_file", "input": {"path": "notes.txt"}}]},`, 10)
	t.Run("max turns", func(t *testing.T) {
		t.Parallel()
		b, cfg := setup(t, `{"turns": [`+planTurn+`,`+loop+`{"text": "Summary after budget."}]}`)
		cfg.Budgets.MaxTurns = 4
		final := run(t, cfg)
		if final.Status != task.Failed || !strings.Contains(final.Error, "max turns (4) reached") {
			t.Fatalf("status %s error %q", final.Status, final.Error)
		}
		if final.Summary == "" || len(b.ofType(event.TaskSummary)) != 1 {
			t.Error("no summary after the budget ran out")
		}
		if final.Turns != 5 { // four work turns and the summary turn
			t.Errorf("turns %d", final.Turns)
		}
	})
	t.Run("max tokens", func(t *testing.T) {
		t.Parallel()
		_, cfg := setup(t, `{"turns": [`+planTurn+`,`+loop+`{"text": "x"}]}`)
		cfg.Budgets.MaxTokens = 400
		final := run(t, cfg)
		if final.Status != task.Failed || !strings.Contains(final.Error, "max tokens (400)") {
			t.Fatalf("status %s error %q", final.Status, final.Error)
		}
	})
	t.Run("wall time", func(t *testing.T) {
		t.Parallel()
		_, cfg := setup(t, `{"turns": [`+planTurn+`, {"text": "slow", "delay_ms": 10000}]}`)
		cfg.Budgets.WallTime = 50 * time.Millisecond
		final := run(t, cfg)
		if final.Status != task.Failed || !strings.Contains(final.Error, "wall time") {
			t.Fatalf("status %s error %q", final.Status, final.Error)
		}
	})
}

func TestCancellationReachesRunningTool(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	var sawCancel atomic.Bool
	block := &probeTool{name: "block", effect: policy.EffectCreate, run: func(ctx context.Context, in map[string]any) (*tool.Result, error) {
		close(started)
		select {
		case <-ctx.Done():
			sawCancel.Store(true)
			return nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return &tool.Result{Content: "not cancelled"}, nil
		}
	}}
	_, cfg := setup(t, `{"turns": [`+planTurn+`, {"tool_calls": [{"name": "block", "input": {}}]}, {"text": "x"}]}`, block)
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	final, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if final.Status != task.Cancelled || !sawCancel.Load() {
		t.Fatalf("status %s, tool saw cancel %v", final.Status, sawCancel.Load())
	}
}

func TestApprovalFlow(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t, `{"turns": [`+planTurn+`,
		{"tool_calls": [{"name": "read_file", "input": {"path": "notes.txt"}}]},
		{"tool_calls": [{"name": "delete_path", "input": {"path": "notes.txt"}}]},
		{"text": "done"}]}`)
	b.person.answers = []Answer{AnswerNo}
	final := run(t, cfg)
	if final.Status != task.Completed {
		t.Fatal(final.Status)
	}
	if _, err := os.Stat(filepath.Join(b.dir, "notes.txt")); err != nil {
		t.Fatal("deleted although the person said no")
	}
	if len(b.person.asked) != 1 {
		t.Fatalf("asked %d times", len(b.person.asked))
	}
	req := b.person.asked[0]
	if req.Effect != policy.EffectDelete || !strings.Contains(strings.Join(req.Provenance.UntrustedSources(), ","), "notes.txt") {
		t.Errorf("approval request %+v: want delete, following content from notes.txt", req)
	}
	aps, _ := b.db.Approvals(context.Background(), "t-test", false)
	if len(aps) != 1 || aps[0].Status != store.ApprovalDenied {
		t.Errorf("approvals %+v", aps)
	}
	d := b.ofType(event.PolicyDecision)
	last := d[len(d)-1]
	if last["by"] != "user" || last["decision"] != "deny" {
		t.Errorf("decision %v", last)
	}
	var statuses []string
	for _, s := range b.ofType(event.TaskStatus) {
		statuses = append(statuses, s["to"].(string))
	}
	if got := strings.Join(statuses, ","); got != "planning,running,awaiting_approval,running,summarizing,completed" {
		t.Errorf("statuses %s", got)
	}
}

func TestCompaction(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("lorem ipsum dolor sit amet ", 400) // ~10 KB, ~2,700 tokens
	var turns []string
	turns = append(turns, planTurn)
	for i := range 12 {
		turns = append(turns, fmt.Sprintf(`{"text": "note %d", "tool_calls": [{"name": "read_file", "input": {"path": "big.txt"}}]}`, i))
	}
	turns = append(turns, `{"text": "done"}`)
	b, cfg := setup(t, `{"turns": [`+strings.Join(turns, ",")+`]}`)
	os.WriteFile(filepath.Join(b.dir, "big.txt"), []byte(big), 0o644)
	cfg.ContextWindow = 16_000
	final := run(t, cfg)
	if final.Status != task.Completed {
		t.Fatalf("status %s %s", final.Status, final.Error)
	}
	comp := b.ofType(event.ContextCompacted)
	if len(comp) == 0 {
		t.Fatal("no compaction")
	}
	var maxMsgs int
	var after *model.Request
	for i := range b.prov.reqs {
		r := &b.prov.reqs[i]
		maxMsgs = max(maxMsgs, len(r.Messages))
		if strings.Contains(r.Messages[0].Content[0].Text, "earlier messages were compacted") {
			after = r
		}
	}
	if after == nil {
		t.Fatal("no request carried the compaction summary")
	}
	first := after.Messages[0].Content[0].Text
	for _, want := range []string{"do it", "Plan:", "[>] 1: work", "Files read:", "work/big.txt", "note "} {
		if !strings.Contains(first, want) {
			t.Errorf("compacted context lacks %q:\n%s", want, first)
		}
	}
	if after.Messages[1].Role != model.RoleAssistant {
		t.Error("the kept tail does not start with an assistant message")
	}
	// Twelve reads of ~2,700 tokens each would make 27 messages and ~33,000 tokens, over the
	// 16,000 window; compaction keeps it bounded.
	if len(comp) < 2 || maxMsgs >= 16 {
		t.Errorf("%d compactions, conversation grew to %d messages", len(comp), maxMsgs)
	}
}

// flaky fails its first call with a retryable error.
type flaky struct {
	model.Provider
	n atomic.Int32
}

func (f *flaky) Complete(ctx context.Context, req model.Request) (*model.Response, error) {
	if f.n.Add(1) == 1 {
		return nil, &model.Error{Provider: "test", StatusCode: 529, Retryable: true, RetryAfter: time.Second, Err: errors.New("overloaded")}
	}
	return f.Provider.Complete(ctx, req)
}

func TestRetriesAreEvents(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t, `{"turns": [{"text": "done"}]}`)
	cfg.Provider = &flaky{Provider: cfg.Provider}
	final := run(t, cfg)
	if final.Status != task.Completed {
		t.Fatal(final.Status, final.Error)
	}
	r := b.ofType(event.ModelRetry)
	if len(r) != 1 || r[0]["wait_ms"].(float64) < 1000 {
		t.Errorf("retry events %v", r)
	}
}

// BenchmarkTurnOverhead is the runtime's cost per turn with a zero-latency script model: each
// turn a read_file and an update_plan, through the whole pipeline with journal and audit on a
// real SQLite database.
func BenchmarkTurnOverhead(b *testing.B) {
	turns := make([]string, 0, b.N+1)
	for i := range b.N {
		turns = append(turns, fmt.Sprintf(`{"tool_calls": [{"name": "read_file", "input": {"path": "notes.txt"}}, {"name": "update_plan", "input": {"items": [{"id": "1", "title": "step %d", "status": "in_progress"}]}}]}`, i))
	}
	turns = append(turns, `{"text": "done"}`)
	_, cfg := setup(b, `{"turns": [`+strings.Join(turns, ",")+`]}`)
	cfg.Budgets.MaxTurns = b.N + 10
	cfg.OnEvent = nil
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	final, err := r.Run(context.Background())
	b.StopTimer()
	if err != nil || final.Status != task.Completed {
		b.Fatalf("%v %s %s", err, final.Status, final.Error)
	}
}

func TestYesForTaskNeverCoversProtectedPaths(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t, `{"turns": [`+planTurn+`,
		{"tool_calls": [{"name": "write_file", "input": {"path": "a.txt", "content": "new"}}]},
		{"tool_calls": [{"name": "write_file", "input": {"path": "b.txt", "content": "new"}}]},
		{"tool_calls": [{"name": "write_file", "input": {"path": ".bashrc", "content": "evil"}}]},
		{"text": "done"}]}`)
	for _, f := range []string{"a.txt", "b.txt", ".bashrc"} {
		os.WriteFile(filepath.Join(b.dir, f), []byte("old"), 0o644)
	}
	b.person.answers = []Answer{AnswerYesTask, AnswerNo}
	run(t, cfg)
	got := func(f string) string { d, _ := os.ReadFile(filepath.Join(b.dir, f)); return string(d) }
	if got("a.txt") != "new" || got("b.txt") != "new" {
		t.Errorf("a, b = %q, %q; want both overwritten", got("a.txt"), got("b.txt"))
	}
	if got(".bashrc") != "old" {
		t.Error(".bashrc overwritten under an earlier yes-for-this-task")
	}
	if len(b.person.asked) != 2 || b.person.asked[1].Summary == "" || !strings.Contains(b.person.asked[1].Summary, ".bashrc") {
		t.Errorf("asked %+v; want the overwrite of a.txt and then .bashrc", b.person.asked)
	}
}

// TestGuardRulesAndPresentation: once the context holds file content, self-modification is
// denied by the guard (R5) whatever policy says, and untrusted content reaches the model only
// inside the session's datamark.
func TestGuardRulesAndPresentation(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t, `{"turns": [`+planTurn+`,
		{"tool_calls": [{"name": "write_file", "input": {"path": ".bashrc", "content": "before taint"}}]},
		{"tool_calls": [{"name": "read_file", "input": {"path": "notes.txt"}}]},
		{"tool_calls": [{"name": "write_file", "input": {"path": ".bashrc", "content": "after taint"}}]},
		{"text": "done"}]}`)
	b.person.answers = []Answer{AnswerYes, AnswerYes}
	run(t, cfg)
	got, _ := os.ReadFile(filepath.Join(b.dir, ".bashrc"))
	if string(got) != "before taint" {
		t.Errorf(".bashrc = %q: the write after reading a file must be denied by R5", got)
	}
	if len(b.person.asked) != 1 {
		t.Errorf("asked %d times; want 1 (the first write; R5 denies the second without asking)", len(b.person.asked))
	}
	var r5 map[string]any
	for _, d := range b.ofType(event.PolicyDecision) {
		if d["rule"] == "R5" {
			r5 = d
		}
	}
	if r5 == nil || r5["by"] != "guard" || r5["decision"] != "deny" {
		t.Fatalf("no guard R5 denial: %v", b.ofType(event.PolicyDecision))
	}
	// The read's result was wrapped with a datamark the system prompt announces.
	var wrapped bool
	for _, req := range b.prov.reqs {
		last := req.Messages[len(req.Messages)-1]
		for _, bl := range last.Content {
			if bl.Type == model.BlockToolResult && strings.Contains(bl.Content, "hello") {
				wrapped = strings.Contains(bl.Content, "<untrusted-km") && strings.Contains(req.System, "<untrusted-km")
			}
		}
	}
	if !wrapped {
		t.Error("file content reached the model without the datamark")
	}
}
