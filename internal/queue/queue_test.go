package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/agent"
	"github.com/keepup/keepup/internal/audit"
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

// testRuntime builds tasks as the daemon does, with real sessions and the script model, and no
// sandbox (the daemon's runtime with bubblewrap is tested end to end in e2e/).
type testRuntime struct {
	home string
}

func (rt *testRuntime) Check(ctx context.Context, req TaskRequest) error {
	for i, g := range req.Grants {
		gr, err := scope.ParseGrant(g)
		if err != nil {
			return inputErr(fmt.Sprintf("grants[%d]", i), "%v", err)
		}
		if fi, err := os.Stat(gr.Path); err != nil || !fi.IsDir() {
			return inputErr(fmt.Sprintf("grants[%d]", i), "%s is not a folder", gr.Path)
		}
	}
	path, ok := strings.CutPrefix(req.Model, "script:")
	if !ok {
		return inputErr("model", "%q: only script: models here", req.Model)
	}
	if _, err := script.Load(path); err != nil {
		return inputErr("model", "%v", err)
	}
	if req.Approvals != "" {
		if _, err := policy.ParseMode(req.Approvals); err != nil {
			return inputErr("approvals", "%v", err)
		}
	}
	return nil
}

func (rt *testRuntime) Prepare(ctx context.Context, req TaskRequest, id string) (*task.Task, error) {
	if err := rt.Check(ctx, req); err != nil {
		return nil, err
	}
	var grants []scope.Grant
	for _, g := range req.Grants {
		gr, _ := scope.ParseGrant(g)
		grants = append(grants, gr)
	}
	sid := scope.NewID()
	sess, err := scope.Open(scope.Config{ID: sid, Grants: grants, Outputs: filepath.Join(rt.home, "outputs", sid),
		Uploads: req.Uploads, UploadsDir: filepath.Join(rt.home, "uploads", sid)})
	if err != nil {
		return nil, inputErr("grants", "%v", err)
	}
	defer sess.Close()
	mode := req.Approvals
	if mode == "" {
		mode = "auto"
	}
	t := &task.Task{Session: sid, Prompt: req.Prompt, Model: req.Model, Approvals: mode, Outputs: sess.Mount(scope.OutputsName).Path}
	for _, m := range sess.Mounts {
		t.Grants = append(t.Grants, task.Grant{Name: m.Name, Path: m.Path, Mode: string(m.Mode)})
	}
	return t, nil
}

func (rt *testRuntime) Open(ctx context.Context, t *task.Task) (agent.Config, func(), error) {
	sess, err := scope.Open(t.SessionConfig())
	if err != nil {
		return agent.Config{}, nil, err
	}
	s, err := script.Load(strings.TrimPrefix(t.Model, "script:"))
	if err != nil {
		sess.Close()
		return agent.Config{}, nil, err
	}
	reg, err := tool.NewRegistry(tool.Builtins()...)
	if err != nil {
		sess.Close()
		return agent.Config{}, nil, err
	}
	pol := policy.New(nil, nil)
	mode, _ := policy.ParseMode(t.Approvals)
	return agent.Config{
		Provider: script.New(filepath.Base(t.Model), s),
		Tools:    reg,
		Decide:   func(a policy.Action) policy.Decision { return pol.Decide(a, mode) },
		Session:  sess,
		Retry:    model.RetryConfig{Sleep: func(context.Context, time.Duration) error { return nil }},
	}, func() { sess.Close() }, nil
}

type testBundle struct {
	dir  string // a granted folder
	home string
	db   *sqlite.DB
	q    *Queue
	cfg  Config
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func setup(t *testing.T, mod func(*Config)) *testBundle {
	t.Helper()
	t.Parallel()
	root := t.TempDir()
	b := &testBundle{dir: filepath.Join(root, "work"), home: filepath.Join(root, "home")}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(b.home, "keepup.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	b.db = db
	b.cfg = Config{DB: db, Runtime: &testRuntime{home: b.home}, MaxRunning: 4, SliceTurns: 3, PollInterval: 20 * time.Millisecond, ScheduleEvery: time.Hour}
	if mod != nil {
		mod(&b.cfg)
	}
	b.q = b.start(t)
	return b
}

// start makes and starts a queue on the bundle's database (a daemon (re)starting).
func (b *testBundle) start(t *testing.T) *Queue {
	t.Helper()
	q, err := New(t.Context(), b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Stop(context.Background()) })
	return q
}

func (b *testBundle) stop(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// writeScript writes a script file and returns its model spec.
func (b *testBundle) writeScript(t *testing.T, name, turns string) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(b.dir), name+".json")
	if err := os.WriteFile(p, []byte(turns), 0o644); err != nil {
		t.Fatal(err)
	}
	return "script:" + p
}

func (b *testBundle) submit(t *testing.T, req TaskRequest) string {
	t.Helper()
	if req.Grants == nil {
		req.Grants = []string{b.dir}
	}
	v, err := b.q.Submit(t.Context(), req)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return v.ID
}

// waitFor polls until cond holds or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *testBundle) status(t *testing.T, id string) task.State {
	t.Helper()
	tk, err := b.db.Task(context.Background(), id)
	if err != nil {
		t.Fatalf("task %s: %v", id, err)
	}
	return tk.Status
}

func (b *testBundle) waitStatus(t *testing.T, id string, want task.State) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for b.status(t, id) != want {
		if time.Now().After(deadline) {
			all, _ := b.db.Tasks(context.Background(), store.TaskFilter{})
			for _, tk := range all {
				t.Logf("%s parent=%s status=%s held=%v error=%s", tk.ID, tk.Parent, tk.Status, tk.Held, tk.Error)
			}
			t.Fatalf("timed out waiting for task %s to be %s", id, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *testBundle) events(t *testing.T, id string) []event.Event {
	t.Helper()
	evs, err := b.db.Events(context.Background(), id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("task %s: events[%d].Seq = %d; want consecutive seqs", id, i, e.Seq)
		}
	}
	return evs
}

func ofType(evs []event.Event, typ string) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e.Type == typ {
			var m map[string]any
			_ = json.Unmarshal(e.Data, &m)
			out = append(out, m)
		}
	}
	return out
}

// writes is a script: a plan, then n turns each writing file-<i>.txt, then a summary.
func writes(n int, delayMS int) string {
	turns := []string{`{"tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "write", "status": "in_progress"}]}}]}`}
	for i := range n {
		turns = append(turns, fmt.Sprintf(`{"delay_ms": %d, "tool_calls": [{"name": "write_file", "input": {"path": "${task}-%d.txt", "content": "%d"}}]}`, delayMS, i, i))
	}
	turns = append(turns, `{"text": "Wrote the files."}`)
	return `{"turns": [` + strings.Join(turns, ",\n") + `]}`
}

func TestTasksRunInParallelToCompletion(t *testing.T) {
	b := setup(t, func(c *Config) { c.MaxRunning = 3; c.SliceTurns = 2 })
	spec := b.writeScript(t, "w", writes(5, 0))
	var ids []string
	for range 6 {
		ids = append(ids, b.submit(t, TaskRequest{Prompt: "write five files", Model: spec}))
	}
	for _, id := range ids {
		b.waitStatus(t, id, task.Completed)
	}
	for _, id := range ids {
		evs := b.events(t, id)
		if n := len(ofType(evs, event.TaskCreated)); n != 1 {
			t.Errorf("%s: %d task.created events, want 1", id, n)
		}
		if n := len(ofType(evs, event.TaskFinished)); n != 1 {
			t.Errorf("%s: %d task.finished events, want 1", id, n)
		}
		calls, err := b.db.ToolCalls(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		writesSeen := 0
		for _, c := range calls {
			if c.Tool == "write_file" {
				writesSeen++
				if c.Status != store.CallOK {
					t.Errorf("%s: call %s status %s", id, c.ID, c.Status)
				}
			}
		}
		if writesSeen != 5 {
			t.Errorf("%s: %d write_file calls journalled, want 5 (each once)", id, writesSeen)
		}
		for i := range 5 {
			data, err := os.ReadFile(filepath.Join(b.dir, fmt.Sprintf("%s-%d.txt", id, i)))
			if err != nil || string(data) != fmt.Sprint(i) {
				t.Errorf("%s: file %d = %q, %v", id, i, data, err)
			}
		}
	}
	// Slices of two turns: a seven-turn task took several jobs, and the audit chain holds.
	anchor, err := b.db.AuditAnchor(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.Verify(t.Context(), b.db.ScanAudit, anchor); err != nil {
		t.Fatalf("audit verify: %+v, %v", rep, err)
	}
}

func TestApprovalWaitsInTheInboxHoldingNoWorker(t *testing.T) {
	b := setup(t, func(c *Config) { c.MaxRunning = 1 })
	if err := os.WriteFile(filepath.Join(b.dir, "report.txt"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	overwrite := b.writeScript(t, "ow", `{"turns": [
		{"tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "rewrite", "status": "in_progress"}]}}]},
		{"tool_calls": [{"name": "write_file", "input": {"path": "report.txt", "content": "new"}}]},
		{"text": "Rewrote the report."}]}`)
	asker := b.submit(t, TaskRequest{Prompt: "rewrite the report", Model: overwrite, Approvals: "ask"})
	b.waitStatus(t, asker, task.AwaitingApproval)

	// With one worker, another task still runs to the end: the waiting task holds no slot.
	other := b.submit(t, TaskRequest{Prompt: "write", Model: b.writeScript(t, "w", writes(2, 0))})
	b.waitStatus(t, other, task.Completed)

	pending, err := b.q.Approvals(t.Context(), asker, true)
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending approvals = %+v, %v; want one", pending, err)
	}
	if pending[0].ID != agent.ApprovalID(asker, pending[0].CallID) {
		t.Fatalf("approval id %s is not derived from the call", pending[0].ID)
	}
	// The daemon restarts while the approval is pending: it is still pending after.
	b.stop(t, b.q)
	b.q = b.start(t)
	pending, err = b.q.Approvals(t.Context(), "", true)
	if err != nil || len(pending) != 1 || b.status(t, asker) != task.AwaitingApproval {
		t.Fatalf("after a restart: pending = %+v, %v, status %s", pending, err, b.status(t, asker))
	}
	if _, err := b.q.Resolve(t.Context(), pending[0].ID, Decision{Approve: true, Scope: "always"}); !IsInput(err) {
		t.Fatalf("Resolve with a bad scope: %v, want an input error", err)
	}
	a, err := b.q.Resolve(t.Context(), pending[0].ID, Decision{Approve: true, By: "ana"})
	if err != nil || a.Status != store.ApprovalApproved || a.By != "ana" {
		t.Fatalf("Resolve = %+v, %v", a, err)
	}
	b.waitStatus(t, asker, task.Completed)
	if data, _ := os.ReadFile(filepath.Join(b.dir, "report.txt")); string(data) != "new" {
		t.Fatalf("report.txt = %q after approval, want new", data)
	}
	var ce *ConflictError
	if _, err := b.q.Resolve(t.Context(), pending[0].ID, Decision{Approve: false}); !errors.As(err, &ce) {
		t.Fatalf("second answer: %v, want a conflict", err)
	}
	if _, err := b.q.Resolve(t.Context(), "a-nope", Decision{Approve: true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown approval: %v, want ErrNotFound", err)
	}
	evs := b.events(t, asker)
	if n := len(ofType(evs, event.ApprovalRequested)); n != 1 {
		t.Fatalf("%d approval.requested events; the call must be asked about once", n)
	}
}

func TestDeniedApprovalRefusesTheCall(t *testing.T) {
	b := setup(t, nil)
	os.WriteFile(filepath.Join(b.dir, "keep.txt"), []byte("keep"), 0o644)
	spec := b.writeScript(t, "del", `{"turns": [
		{"tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "clean", "status": "in_progress"}]}}]},
		{"tool_calls": [{"name": "delete_path", "input": {"path": "keep.txt"}}]},
		{"text": "Tried."}]}`)
	id := b.submit(t, TaskRequest{Prompt: "clean up", Model: spec, Approvals: "ask"})
	b.waitStatus(t, id, task.AwaitingApproval)
	pending, _ := b.q.Approvals(t.Context(), id, true)
	if len(pending) != 1 {
		t.Fatalf("pending = %+v", pending)
	}
	if _, err := b.q.Resolve(t.Context(), pending[0].ID, Decision{Approve: false}); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, id, task.Completed)
	if _, err := os.Stat(filepath.Join(b.dir, "keep.txt")); err != nil {
		t.Fatalf("keep.txt was deleted although the person said no: %v", err)
	}
	calls, _ := b.db.ToolCalls(t.Context(), id)
	for _, c := range calls {
		if c.Tool == "delete_path" && c.Status != store.CallRefused {
			t.Fatalf("delete_path status %s, want refused", c.Status)
		}
	}
}

func TestSteeringInOrderOnceAcrossARestart(t *testing.T) {
	b := setup(t, func(c *Config) { c.SliceTurns = 100 })
	spec := b.writeScript(t, "slow", writes(8, 150))
	id := b.submit(t, TaskRequest{Prompt: "write slowly", Model: spec})
	b.waitStatus(t, id, task.Running)
	for _, m := range []string{"one", "two"} {
		if _, err := b.q.Steer(t.Context(), id, m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the first steering messages to be delivered", func() bool {
		return len(ofType(b.events(t, id), event.SteerReceived)) >= 2
	})
	// Stop the daemon mid-task; a message sent while it is down is delivered after.
	b.stop(t, b.q)
	if st := b.status(t, id); st.Terminal() {
		t.Fatalf("stopping the daemon ended the task (%s); it must continue at the next start", st)
	}
	if _, err := b.q.Steer(t.Context(), id, "three"); err != nil {
		t.Fatal(err)
	}
	b.q = b.start(t)
	b.waitStatus(t, id, task.Completed)
	var got []string
	for _, d := range ofType(b.events(t, id), event.SteerReceived) {
		got = append(got, d["message"].(string))
	}
	if !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Fatalf("steering delivered %q; want one, two, three, each once, in order", got)
	}
	if _, err := b.q.Steer(t.Context(), id, "late"); err == nil {
		t.Fatal("a finished task accepted a steering message")
	}
	if _, err := b.q.Steer(t.Context(), id, " "); !IsInput(err) {
		t.Fatalf("empty message: %v, want an input error", err)
	}
	if _, err := b.q.Steer(t.Context(), "t-nope", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown task: %v, want ErrNotFound", err)
	}
	// Every write ran once although the daemon stopped mid-task.
	calls, _ := b.db.ToolCalls(t.Context(), id)
	seen := map[string]int{}
	for _, c := range calls {
		if c.Tool == "write_file" {
			seen[c.Input]++
		}
	}
	for in, n := range seen {
		if n != 1 {
			t.Errorf("write %s journalled %d times", in, n)
		}
	}
}

func TestPauseResumeCancel(t *testing.T) {
	b := setup(t, func(c *Config) { c.SliceTurns = 100 })
	spec := b.writeScript(t, "slow", writes(6, 100))
	id := b.submit(t, TaskRequest{Prompt: "write slowly", Model: spec})
	b.waitStatus(t, id, task.Running)
	if _, err := b.q.Pause(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, id, task.Paused)
	time.Sleep(300 * time.Millisecond)
	if st := b.status(t, id); st != task.Paused {
		t.Fatalf("a paused task moved on to %s", st)
	}
	var ce *ConflictError
	if _, err := b.q.Pause(t.Context(), id); !errors.As(err, &ce) {
		t.Fatalf("pausing a paused task: %v, want a conflict", err)
	}
	if _, err := b.q.Resume(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, id, task.Completed)

	// Cancel stops a running task promptly.
	id2 := b.submit(t, TaskRequest{Prompt: "write slowly", Model: b.writeScript(t, "slower", writes(50, 200))})
	b.waitStatus(t, id2, task.Running)
	start := time.Now()
	if _, err := b.q.Cancel(t.Context(), id2); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, id2, task.Cancelled)
	t.Logf("cancelled in %s", time.Since(start))
	if _, err := b.q.Cancel(t.Context(), id2); !errors.As(err, &ce) {
		t.Fatalf("cancelling a cancelled task: %v, want a conflict", err)
	}
	for _, f := range []func(context.Context, string) (*TaskView, error){b.q.Pause, b.q.Resume, b.q.Cancel} {
		if _, err := f(t.Context(), "t-nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown task: %v, want ErrNotFound", err)
		}
	}
}

// spawner is a script whose every task first tries to start 100 subagents (refused: at most
// 32 per task), then starts 8, then writes a file named after itself. Subagents play the same
// script, so the tree would grow without end if the runtime did not hold it to depth 2.
const spawner = `{"turns": [
	{"tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "split", "status": "in_progress"}]}}]},
	{"tool_calls": [{"name": "spawn_subagents", "input": {"tasks": [%s]}}]},
	{"tool_calls": [{"name": "spawn_subagents", "input": {"tasks": [%s]}}]},
	{"tool_calls": [{"name": "write_file", "input": {"path": "out/${task}.txt", "content": "done"}}]},
	{"text": "Done."}]}`

func briefs(n int) string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf(`{"title": "part %d", "instructions": "Do part %d."}`, i, i))
	}
	return strings.Join(out, ",")
}

func TestSubagentsAreHeldToTheLimits(t *testing.T) {
	b := setup(t, func(c *Config) { c.MaxRunning = 8 })
	os.MkdirAll(filepath.Join(b.dir, "out"), 0o755)
	spec := b.writeScript(t, "spawn", fmt.Sprintf(spawner, briefs(100), briefs(8)))
	root := b.submit(t, TaskRequest{Prompt: "split the work", Model: spec})
	b.waitStatus(t, root, task.Completed)

	all, err := b.db.Tasks(t.Context(), store.TaskFilter{})
	if err != nil {
		t.Fatal(err)
	}
	// 1 + 8 + 64: depth 2 is the end, and nobody got 100 children.
	if len(all) != 73 {
		t.Fatalf("%d tasks, want 73 (1 + 8 + 64)", len(all))
	}
	children := map[string]int{}
	for _, tk := range all {
		if tk.Status != task.Completed {
			t.Errorf("%s (depth %d) is %s: %s", tk.ID, tk.Depth, tk.Status, tk.Error)
		}
		if tk.Depth > 2 {
			t.Errorf("%s is at depth %d", tk.ID, tk.Depth)
		}
		if tk.Parent != "" {
			children[tk.Parent]++
		}
		if tk.Session != all[len(all)-1].Session {
			t.Errorf("%s runs in session %s, not its parent's", tk.ID, tk.Session)
		}
		if _, err := os.Stat(filepath.Join(b.dir, "out", tk.ID+".txt")); err != nil {
			t.Errorf("%s did not write its file: %v", tk.ID, err)
		}
		calls, _ := b.db.ToolCalls(t.Context(), tk.ID)
		for _, c := range calls {
			if c.Tool != "spawn_subagents" {
				continue
			}
			if strings.Count(c.Input, `"title"`) == 100 && !strings.Contains(c.Result, "at most 32") && !strings.Contains(c.Result, "not available") {
				t.Errorf("%s: 100 subagents were not refused: %s", tk.ID, c.Result)
			}
			if tk.Depth == 2 && !strings.Contains(c.Result, "not available") {
				t.Errorf("%s at depth 2 could spawn: %s", tk.ID, c.Result)
			}
		}
	}
	for p, n := range children {
		if n > 32 {
			t.Errorf("%s has %d children", p, n)
		}
	}
	// The parent's plan shows its children as finished subtasks, and their results came back.
	rt, _ := b.db.Task(t.Context(), root)
	done := 0
	for _, it := range rt.Plan {
		if it.Owner != "" && it.Status == task.Done {
			done++
		}
	}
	if done != 8 {
		t.Fatalf("parent plan shows %d finished subagents, want 8: %+v", done, rt.Plan)
	}
	if len(ofType(b.events(t, root), event.SubtaskSpawned)) != 8 {
		t.Fatalf("want 8 subtask.spawned events on the parent")
	}
	var kidsTokens int64
	for _, tk := range all {
		if tk.Parent == root {
			kidsTokens += tk.Usage.InputTokens
		}
	}
	if rt.Usage.InputTokens <= kidsTokens {
		t.Fatalf("parent's input tokens %d do not include its children's %d", rt.Usage.InputTokens, kidsTokens)
	}
}

func TestSubagentCannotHaveMoreThanItsParent(t *testing.T) {
	b := setup(t, nil)
	other := t.TempDir()
	spec := b.writeScript(t, "wide", fmt.Sprintf(`{"turns": [
		{"tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "split", "status": "in_progress"}]}}]},
		{"tool_calls": [{"name": "spawn_subagents", "input": {"tasks": [{"title": "x", "instructions": "y", "grants": ["secrets"]}]}}]},
		{"tool_calls": [{"name": "spawn_subagents", "input": {"tasks": [{"title": "x", "instructions": "y", "grants": ["docs:rw"]}]}}]},
		{"tool_calls": [{"name": "spawn_subagents", "input": {"tasks": [{"title": "x", "instructions": "y", "tools": ["bash", "sudo"]}]}}]},
		{"text": "Refused three times. %s"}]}`, other))
	id := b.submit(t, TaskRequest{Prompt: "try", Model: spec, Grants: []string{"docs=" + b.dir + ":ro"}})
	b.waitStatus(t, id, task.Completed)
	calls, _ := b.db.ToolCalls(t.Context(), id)
	var results []string
	for _, c := range calls {
		if c.Tool == "spawn_subagents" {
			if c.Status != store.CallError {
				t.Errorf("spawn %s: status %s, want error", c.Input, c.Status)
			}
			results = append(results, c.Result)
		}
	}
	want := []string{`"secrets" is not one of this task's grants`, `cannot have "rw" where this task has "ro"`, `"sudo" is not one of this task's tools`}
	if len(results) != 3 {
		t.Fatalf("results %q", results)
	}
	for i, w := range want {
		if !strings.Contains(results[i], w) {
			t.Errorf("spawn %d: %q does not say %q", i, results[i], w)
		}
	}
	kids, _ := b.db.Tasks(t.Context(), store.TaskFilter{Parent: &id})
	if len(kids) != 0 {
		t.Fatalf("%d children were created", len(kids))
	}
}

func TestCancellingAParentCancelsItsChildren(t *testing.T) {
	b := setup(t, nil)
	spec := b.writeScript(t, "slowkids", `{"turns": [
		{"tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "split", "status": "in_progress"}]}}]},
		{"tool_calls": [{"name": "spawn_subagents", "input": {"tasks": [{"title": "a", "instructions": "wait"}, {"title": "b", "instructions": "wait"}]}}]},
		{"delay_ms": 60000, "text": "never"}]}`)
	id := b.submit(t, TaskRequest{Prompt: "split", Model: spec})
	waitFor(t, 20*time.Second, "two running children", func() bool {
		kids, _ := b.db.Tasks(t.Context(), store.TaskFilter{Parent: &id, Status: []task.State{task.Running, task.Planning}})
		return len(kids) == 2
	})
	if _, err := b.q.Cancel(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(t, id, task.Cancelled)
	kids, _ := b.db.Tasks(t.Context(), store.TaskFilter{Parent: &id})
	for _, k := range kids {
		b.waitStatus(t, k.ID, task.Cancelled)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	b := setup(t, nil)
	spec := b.writeScript(t, "w", writes(1, 0))
	tests := []struct {
		req   TaskRequest
		field string
	}{
		{TaskRequest{Prompt: "  ", Model: spec}, "prompt"},
		{TaskRequest{Prompt: strings.Repeat("x", MaxPromptBytes+1), Model: spec}, "prompt"},
		{TaskRequest{Prompt: "x", Model: spec, Priority: 9}, "priority"},
		{TaskRequest{Prompt: "x", Model: spec, MaxTurns: -1}, "max_turns"},
		{TaskRequest{Prompt: "x", Model: spec, Grants: []string{"/nonexistent/folder"}}, "grants[0]"},
		{TaskRequest{Prompt: "x", Model: "script:/nonexistent.json"}, "model"},
		{TaskRequest{Prompt: "x", Model: spec, Uploads: []string{"/nonexistent/upload"}}, "uploads[0]"},
	}
	for _, tt := range tests {
		_, err := b.q.Submit(t.Context(), tt.req)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != tt.field {
			t.Errorf("Submit(%.40q...) = %v; want an input error on %s", tt.req.Prompt, err, tt.field)
		}
	}
	if _, err := b.q.AddSchedule(t.Context(), TaskRequest{Prompt: "x", Model: spec, Schedule: &ScheduleSpec{Cron: "61 * * * *"}}); err == nil || err.(*InputError).Field != "schedule.cron" {
		t.Errorf("bad cron: %v", err)
	}
	if _, err := b.q.AddSchedule(t.Context(), TaskRequest{Prompt: "x", Model: spec, Schedule: &ScheduleSpec{Cron: "@hourly", Missed: "twice"}}); err == nil || err.(*InputError).Field != "schedule.missed" {
		t.Errorf("bad missed policy: %v", err)
	}
	all, _ := b.db.Tasks(t.Context(), store.TaskFilter{})
	ss, _ := b.q.Schedules(t.Context())
	if len(all) != 0 || len(ss) != 0 {
		t.Fatalf("bad input left %d tasks and %d schedules", len(all), len(ss))
	}
}

func TestScheduleFiresOncePerSlotAcrossRestarts(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 26, 9, 59, 30, 0, time.UTC)}
	b := setup(t, func(c *Config) { c.Now = clock.Now; c.MissedAfter = time.Minute })
	spec := b.writeScript(t, "w", writes(1, 0))
	s, err := b.q.AddSchedule(t.Context(), TaskRequest{Prompt: "hourly report", Model: spec, Grants: []string{b.dir},
		Schedule: &ScheduleSpec{Cron: "0 * * * *", Missed: MissedSkip}})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC); !s.Next.Equal(want) {
		t.Fatalf("next slot %s, want %s", s.Next, want)
	}
	count := func() int {
		all, _ := b.db.Tasks(t.Context(), store.TaskFilter{})
		return len(all)
	}
	fire := func(q *Queue) {
		t.Helper()
		if err := q.FireDue(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	fire(b.q)
	if n := count(); n != 0 {
		t.Fatalf("%d tasks before the first slot", n)
	}
	clock.Set(time.Date(2026, 11, 26, 10, 0, 5, 0, time.UTC))
	fire(b.q)
	fire(b.q)
	// A restart in the same slot fires nothing more.
	b.stop(t, b.q)
	b.q = b.start(t)
	fire(b.q)
	if n := count(); n != 1 {
		t.Fatalf("%d tasks for one slot, want 1", n)
	}
	// Down for three hours with "skip": the missed slots do not run.
	clock.Set(time.Date(2026, 11, 26, 13, 30, 0, 0, time.UTC))
	fire(b.q)
	if n := count(); n != 1 {
		t.Fatalf("%d tasks after missed slots with skip, want 1", n)
	}
	ss, _ := b.q.Schedules(t.Context())
	if want := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC); len(ss) != 1 || !ss[0].Next.Equal(want) {
		t.Fatalf("schedule after missed slots: %+v; next should be %s", ss, want)
	}
	// "run_once": one task for all the missed slots.
	s2, err := b.q.AddSchedule(t.Context(), TaskRequest{Prompt: "catch up", Model: spec, Grants: []string{b.dir},
		Schedule: &ScheduleSpec{Cron: "*/10 * * * *", Missed: MissedRunOnce}})
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(time.Date(2026, 11, 26, 15, 0, 30, 0, time.UTC)) // hourly on time; */10 has 3 missed + 1 on time
	fire(b.q)
	clock.Set(time.Date(2026, 11, 26, 17, 30, 0, 0, time.UTC)) // both missed many
	fire(b.q)
	all, _ := b.db.Tasks(t.Context(), store.TaskFilter{})
	per := map[string][]time.Time{}
	for _, tk := range all {
		per[tk.Schedule] = append(per[tk.Schedule], tk.Slot)
	}
	if n := len(per[s.ID]); n != 2 {
		t.Errorf("hourly schedule ran %d times, want 2 (10:00, 15:00)", n)
	}
	if n := len(per[s2.ID]); n != 2 {
		t.Errorf("run_once schedule ran %d times, want 2 (15:00 on time, once for the missed ones)", n)
	}
	if err := b.q.DeleteSchedule(t.Context(), s.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.q.DeleteSchedule(t.Context(), s.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v, want ErrNotFound", err)
	}
	for _, tk := range all {
		b.waitStatus(t, tk.ID, task.Completed)
	}
}

func TestSubagentsRunAtMostMaxConcurrentAtOnce(t *testing.T) {
	b := setup(t, func(c *Config) { c.MaxRunning = 8; c.Limits.MaxConcurrent = 2; c.Limits.MaxDepth = 1 })
	spec := b.writeScript(t, "fan", fmt.Sprintf(`{"turns": [
		{"tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "split", "status": "in_progress"}]}}]},
		{"tool_calls": [{"name": "spawn_subagents", "input": {"tasks": [%s]}}]},
		{"delay_ms": 100, "tool_calls": [{"name": "write_file", "input": {"path": "${task}.txt", "content": "x"}}]},
		{"text": "Done."}]}`, briefs(5)))
	root := b.submit(t, TaskRequest{Prompt: "fan out", Model: spec})
	b.waitStatus(t, root, task.Completed)
	kids, _ := b.db.Tasks(t.Context(), store.TaskFilter{Parent: &root})
	if len(kids) != 5 {
		t.Fatalf("%d children, want 5", len(kids))
	}
	type span struct{ from, to time.Time }
	var spans []span
	for _, k := range kids {
		if k.Status != task.Completed {
			t.Fatalf("child %s is %s", k.ID, k.Status)
		}
		var s span
		for _, e := range b.events(t, k.ID) {
			if e.Type == event.TaskStatus && s.from.IsZero() {
				s.from = e.Time
			}
			if e.Type == event.TaskFinished {
				s.to = e.Time
			}
		}
		spans = append(spans, s)
	}
	most := 0
	for _, s := range spans {
		n := 0
		for _, o := range spans {
			if !o.from.After(s.from) && o.to.After(s.from) {
				n++
			}
		}
		most = max(most, n)
	}
	if most > 2 {
		t.Fatalf("%d children ran at once; the limit is 2", most)
	}
	if most < 2 {
		t.Fatalf("children never overlapped (%d at most): they should run two at a time", most)
	}
	// While the parent waited, its plan showed its children's progress live: some done while
	// others were still pending or running.
	live := false
	for _, d := range ofType(b.events(t, root), event.PlanUpdated) {
		done, open := 0, 0
		for _, it := range d["items"].([]any) {
			item := it.(map[string]any)
			if item["owner"] == nil {
				continue
			}
			if item["status"] == string(task.Done) {
				done++
			} else {
				open++
			}
		}
		live = live || done > 0 && open > 0
	}
	if !live {
		t.Fatal("the parent's plan never showed a child done while others were not")
	}
}

func TestPriorityThenFIFO(t *testing.T) {
	b := setup(t, func(c *Config) { c.MaxRunning = 1; c.SliceTurns = 100 })
	spec := b.writeScript(t, "w", writes(1, 50))
	// The first task takes the only worker; the rest wait and start by priority, then in the
	// order they were queued.
	first := b.submit(t, TaskRequest{Prompt: "first", Model: spec, Priority: 4})
	b.waitStatus(t, first, task.Running)
	var order []string
	low1 := b.submit(t, TaskRequest{Prompt: "low 1", Model: spec, Priority: 3})
	low2 := b.submit(t, TaskRequest{Prompt: "low 2", Model: spec, Priority: 3})
	high := b.submit(t, TaskRequest{Prompt: "high", Model: spec, Priority: 1})
	low3 := b.submit(t, TaskRequest{Prompt: "low 3", Model: spec, Priority: 3})
	for _, id := range []string{first, low1, low2, high, low3} {
		b.waitStatus(t, id, task.Completed)
	}
	started := map[string]time.Time{}
	for _, id := range []string{low1, low2, high, low3} {
		for _, e := range b.events(t, id) {
			if e.Type == event.TaskStatus {
				started[id] = e.Time
				break
			}
		}
		order = append(order, id)
	}
	slices.SortFunc(order, func(a, b string) int { return started[a].Compare(started[b]) })
	if want := []string{high, low1, low2, low3}; !slices.Equal(order, want) {
		t.Fatalf("start order %v, want %v (priority 1 first, then FIFO)", order, want)
	}
}

// countingRuntime records how many slices of each session run at once.
type countingRuntime struct {
	testRuntime
	mu       sync.Mutex
	cur, top map[string]int
}

func (c *countingRuntime) Open(ctx context.Context, t *task.Task) (agent.Config, func(), error) {
	cfg, rel, err := c.testRuntime.Open(ctx, t)
	if err != nil {
		return cfg, rel, err
	}
	c.mu.Lock()
	c.cur[t.Session]++
	c.top[t.Session] = max(c.top[t.Session], c.cur[t.Session])
	c.mu.Unlock()
	return cfg, func() {
		c.mu.Lock()
		c.cur[t.Session]--
		c.mu.Unlock()
		rel()
	}, nil
}

func TestSessionLimit(t *testing.T) {
	var rt *countingRuntime
	b := setup(t, func(c *Config) {
		c.MaxRunning, c.MaxPerSession, c.SliceTurns = 4, 1, 100
		c.Limits.MaxDepth = 1
		rt = &countingRuntime{testRuntime: *c.Runtime.(*testRuntime), cur: map[string]int{}, top: map[string]int{}}
		c.Runtime = rt
	})
	spec := b.writeScript(t, "fan2", fmt.Sprintf(`{"turns": [
		{"tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "split", "status": "in_progress"}]}}]},
		{"tool_calls": [{"name": "spawn_subagents", "input": {"tasks": [%s]}}]},
		{"delay_ms": 200, "tool_calls": [{"name": "write_file", "input": {"path": "${task}.txt", "content": "x"}}]},
		{"text": "Done."}]}`, briefs(2)))
	root := b.submit(t, TaskRequest{Prompt: "fan out", Model: spec})
	other := b.submit(t, TaskRequest{Prompt: "another session", Model: b.writeScript(t, "w", writes(2, 100))})
	b.waitStatus(t, root, task.Completed)
	b.waitStatus(t, other, task.Completed)
	kids, _ := b.db.Tasks(t.Context(), store.TaskFilter{Parent: &root})
	if len(kids) != 2 {
		t.Fatalf("%d children", len(kids))
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.top) != 2 {
		t.Fatalf("slices ran in %d sessions, want 2", len(rt.top))
	}
	for sess, n := range rt.top {
		if n != 1 {
			t.Errorf("session %s had %d slices running at once; the limit is 1", sess, n)
		}
	}
}

// TestGroupedCommits: submissions made at the same moment share one commit, each is stored
// once, and a batch that fails the shared commit fails alone while the others are stored.
func TestGroupedCommits(t *testing.T) {
	b := setup(t, func(c *Config) { c.MaxRunning = 2 })
	spec := b.writeScript(t, "w", writes(1, 0))
	for _, withBad := range []bool{false, true} {
		// Hold the group open, as a commit in progress would, until every batch is queued.
		b.q.groupMu.Lock()
		b.q.grouping = true
		b.q.groupMu.Unlock()
		var wg sync.WaitGroup
		ids := make(chan string, 10)
		for range 10 {
			wg.Go(func() {
				v, err := b.q.Submit(t.Context(), TaskRequest{Prompt: "grouped", Grants: []string{b.dir}, Model: spec})
				if err != nil {
					t.Error(err)
					return
				}
				ids <- v.ID
			})
		}
		want := 10
		bad := make(chan error, 1)
		if withBad {
			want++
			// A batch the store refuses: an event of a task that does not exist.
			wg.Go(func() {
				bad <- b.q.commitGrouped(t.Context(), &store.Batch{Events: []event.Event{{Task: "t-missing", Type: "x", Time: time.Now()}}})
			})
		}
		waitFor(t, 10*time.Second, "the batches to queue up", func() bool {
			b.q.groupMu.Lock()
			defer b.q.groupMu.Unlock()
			return len(b.q.groupQ) == want
		})
		b.q.runGroups(t.Context())
		wg.Wait()
		close(ids)
		if withBad {
			if err := <-bad; !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the bad batch: %v, want ErrNotFound", err)
			}
		}
		n := 0
		for id := range ids {
			n++
			b.waitStatus(t, id, task.Completed)
			if c := len(ofType(b.events(t, id), event.TaskCreated)); c != 1 {
				t.Errorf("%s: %d task.created events", id, c)
			}
		}
		if n != 10 {
			t.Fatalf("bad batch %v: %d of 10 submissions succeeded", withBad, n)
		}
	}
}
