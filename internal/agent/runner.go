package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/guard"
	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// Runner runs one task.
type Runner struct {
	cfg      Config
	provider model.Provider
	t        *task.Task

	mu     sync.Mutex // serializes commits, so that events reach OnEvent in order
	planMu sync.Mutex // held by children's progress reports while they change the plan
	dur    store.Durable

	msgs      []model.Message
	msgN      []int64        // each message's task-log number (0 for the head)
	gctx      *guard.Context // what the conversation holds, for provenance and the guard
	rules     *guard.Rules
	datamark  string // wraps untrusted content for the model
	errStreak int
	started   bool

	// durable state (see runState)
	turn       int
	pending    []model.Block
	from       int64
	lastUsage  model.Usage
	phase      string
	workErr    string
	workBudget bool // workErr was a budget
	workTokens bool // the token budget
	inDoubt    map[string]bool
	slice      int // work turns run by this Run
	suspended  Suspension

	// facts kept for compaction summaries
	filesRead    map[string]bool
	filesWritten map[string]bool
	decisions    []string
	questions    []string

	approvedForTask map[policy.Effect]bool
	recovering      bool // restored with a turn unfinished: its calls may be journalled
}

// New checks cfg and returns a Runner for cfg.Task.
func New(cfg Config) (*Runner, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Runner{
		cfg:             cfg,
		t:               cfg.Task,
		gctx:            guard.NewContext(),
		datamark:        guard.NewDatamark(),
		filesRead:       map[string]bool{},
		filesWritten:    map[string]bool{},
		approvedForTask: map[policy.Effect]bool{},
		inDoubt:         map[string]bool{},
	}
	r.dur, _ = cfg.Store.(store.Durable)
	gcfg := guard.DefaultConfig()
	if cfg.Guard != nil {
		gcfg = *cfg.Guard
	}
	if cfg.Headless {
		gcfg.Mode = guard.Headless
	}
	gcfg.ExecNetwork = gcfg.ExecNetwork || cfg.ExecNetwork
	r.rules = guard.NewRules(gcfg)
	rc := cfg.Retry
	user := rc.OnRetry
	rc.OnRetry = func(attempt int, err error, wait time.Duration) {
		b := &store.Batch{}
		r.addEvent(b, event.ModelRetry, map[string]any{"attempt": attempt, "error": err.Error(), "wait_ms": wait.Milliseconds()})
		_ = r.commit(context.Background(), b)
		if user != nil {
			user(attempt, err, wait)
		}
	}
	r.provider = model.WithRetry(cfg.Provider, rc)
	return r, nil
}

// Task returns the task record as the runner last wrote it.
func (r *Runner) Task() *task.Task { return r.t }

// Suspended says why the last Run returned with the task not finished (NotSuspended when it
// finished).
func (r *Runner) Suspended() Suspension { return r.suspended }

// ErrBudget is wrapped by the failure of a task that ran out of a budget.
var ErrBudget = errors.New("budget exhausted")

// errTokenBudget marks the token budget: no model call is made after it, not even the summary.
var errTokenBudget = fmt.Errorf("%w: tokens", ErrBudget)

// summaryTimeout bounds the summarizing call when the task's own time is up.
const summaryTimeout = 2 * time.Minute

// Run drives the task to an end state, or until it must wait (Suspended says why), and returns
// the record. A task with a checkpoint in the store continues from it: a call whose result is
// journalled is never run again. The returned error is only for failures of the runtime itself
// (the store); a failed or cancelled task is not an error.
func (r *Runner) Run(ctx context.Context) (*task.Task, error) {
	r.suspended, r.slice = NotSuspended, 0
	if r.cfg.Budgets.WallTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.cfg.Budgets.WallTime,
			fmt.Errorf("%w: wall time (%s) reached", ErrBudget, r.cfg.Budgets.WallTime))
		defer cancel()
	}
	if r.t.Status.Terminal() {
		return r.t, nil
	}
	resumed := false
	if r.dur != nil && !r.started {
		var err error
		if resumed, err = r.restore(ctx); err != nil {
			return r.t, err
		}
	}
	if !resumed && !r.started {
		if err := r.begin(ctx); err != nil {
			return r.t, err
		}
	}
	r.started = true
	if err := r.resumeStatus(ctx); err != nil {
		return r.t, err
	}
	var workErr error
	if r.phase != "summary" {
		workErr = r.work(ctx)
		if errors.Is(workErr, ErrShutdown) || errors.Is(context.Cause(ctx), ErrShutdown) {
			r.suspended = SuspendShutdown
			return r.t, nil
		}
		if isSuspend(workErr) {
			return r.t, nil
		}
		var se *storeError
		if errors.As(workErr, &se) {
			return r.t, workErr
		}
	} else if r.workErr != "" {
		workErr = restoredErr{msg: r.workErr, budget: r.workBudget, tokens: r.workTokens}
	}
	return r.t, r.finish(ctx, workErr)
}

// begin records the task's creation (unless the queue already did) and moves it to planning.
func (r *Runner) begin(ctx context.Context) error {
	now := r.cfg.Now()
	if r.t.Status == "" {
		r.t.Status = task.Queued
	}
	if r.t.CreatedAt.IsZero() {
		r.t.CreatedAt = now
	}
	r.t.UpdatedAt = now
	if r.t.Session == "" {
		r.t.Session = r.cfg.Session.ID
	}
	grants := make([]map[string]string, 0, len(r.cfg.Session.Mounts))
	for _, m := range r.cfg.Session.Mounts {
		grants = append(grants, map[string]string{"name": m.Name, "path": m.Path, "mode": string(m.Mode), "kind": string(m.Kind), "mount": r.cfg.Session.MountRoot() + "/" + m.Name})
	}
	b := &store.Batch{Task: r.t}
	if last, err := r.cfg.Store.LastSeq(ctx, r.t.ID); err != nil {
		return &storeError{err}
	} else if last == 0 {
		AddCreated(b, r.t, grants, r.cfg.Now())
	}
	if r.datamark == "" {
		r.datamark = guard.NewDatamark()
	}
	r.msgs, r.msgN = []model.Message{{Role: model.RoleUser, Content: []model.Block{{Type: model.BlockText, Text: r.firstMessage()}}}}, []int64{0}
	r.trusted(b, "user", r.t.Prompt)
	r.checkpoint(b)
	if err := r.commit(ctx, b); err != nil {
		return err
	}
	r.started = true
	return r.setStatus(ctx, task.Planning, "")
}

// GrantsView describes a task's grants as task.created shows them: name, host path, mode and
// where the agent sees it.
func GrantsView(t *task.Task) []map[string]string {
	out := make([]map[string]string, 0, len(t.Grants))
	for _, g := range t.Grants {
		out = append(out, map[string]string{"name": g.Name, "path": g.Path, "mode": g.Mode, "mount": "/sessions/" + t.Session + "/mnt/" + g.Name})
	}
	return out
}

// AddCreated adds a task's task.created event and audit entry to b.
func AddCreated(b *store.Batch, t *task.Task, grants any, now time.Time) {
	data, _ := json.Marshal(map[string]any{
		"prompt": t.Prompt, "model": t.Model, "approvals": t.Approvals,
		"grants": grants, "outputs": t.Outputs, "parent": t.Parent, "depth": t.Depth, "priority": t.Priority,
	})
	b.Events = append(b.Events, event.Event{Time: now.UTC(), Task: t.ID, Session: t.Session, Type: event.TaskCreated, Data: data})
	b.Audit = append(b.Audit, audit.Entry{Time: now, Type: "task.created", Task: t.ID, Session: t.Session, Data: map[string]any{
		"prompt_sha256": digest(t.Prompt), "prompt_bytes": len(t.Prompt),
		"model": t.Model, "approvals": t.Approvals, "grants": grants, "parent": t.Parent,
	}})
}

// work runs model <-> tool turns until the model stops calling tools, a budget runs out, the
// context is cancelled or the task fails. It returns nil when the work phase ended normally.
//
// Each turn commits twice at least: the model's answer with the checkpoint that lists its tool
// calls as pending, then (after the calls, each journalled on its own) the turn boundary: the
// results, steering messages that arrived, and the checkpoint with nothing pending. A task
// continued after a crash starts from the last of these that committed.
func (r *Runner) work(ctx context.Context) error {
	for {
		if len(r.pending) > 0 {
			if err := r.finishTurn(ctx); err != nil {
				return err
			}
			continue
		}
		if r.turn > 0 {
			// A turn boundary: what the person asked for comes first.
			want, err := r.control(ctx)
			if err != nil {
				return err
			}
			switch want {
			case "cancel":
				return context.Canceled
			case "pause":
				return r.pause(ctx, &store.Batch{})
			}
			if r.cfg.SliceTurns > 0 && r.slice >= r.cfg.SliceTurns {
				b := &store.Batch{}
				r.checkpoint(b)
				if r.cfg.Queue != nil {
					r.cfg.Queue.Suspend(r.t, SuspendSlice, b)
				}
				if err := r.commit(ctx, b); err != nil {
					return err
				}
				r.suspended = SuspendSlice
				return errSuspended
			}
		}
		turn := r.turn + 1
		if err := r.checkBudgets(ctx, turn); err != nil {
			return err
		}
		resp, err := r.call(ctx, turn, model.PurposeWork)
		if err != nil {
			return err
		}
		r.slice++
		if len(resp.Message.ToolUses()) == 0 {
			// The model is done, unless the person said something meanwhile.
			b := &store.Batch{}
			content, err := r.deliverSteers(ctx, b, nil)
			if err != nil {
				return err
			}
			if len(content) == 0 {
				return nil
			}
			r.logMsg(b, model.Message{Role: model.RoleUser, Content: content})
			r.checkpoint(b)
			if err := r.commit(ctx, b); err != nil {
				return err
			}
			if err := r.maybeCompact(ctx, resp.Usage); err != nil {
				return err
			}
		}
	}
}

// finishTurn runs the pending tool calls of the current turn (skipping those journalled as
// done) and commits the turn boundary.
func (r *Runner) finishTurn(ctx context.Context) error {
	results, err := r.runCalls(ctx, r.turn, r.pending)
	if err != nil {
		return err
	}
	b := &store.Batch{Task: r.t}
	content, err := r.deliverSteers(ctx, b, results)
	if err != nil {
		return err
	}
	r.pending = nil
	r.logMsg(b, model.Message{Role: model.RoleUser, Content: content})
	r.checkpoint(b)
	if err := r.commit(ctx, b); err != nil {
		return err
	}
	if r.errStreak >= r.cfg.MaxConsecutiveErrors {
		return fmt.Errorf("the model made %d malformed tool calls in a row; the last: %s", r.errStreak, lastError(results))
	}
	return r.maybeCompact(ctx, r.lastUsage)
}

func (r *Runner) checkBudgets(ctx context.Context, turn int) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if turn > r.cfg.Budgets.MaxTurns {
		return fmt.Errorf("%w: max turns (%d) reached", ErrBudget, r.cfg.Budgets.MaxTurns)
	}
	if max := r.cfg.Budgets.MaxTokens; max > 0 {
		if used := r.t.Usage.InputTokens + r.t.Usage.OutputTokens; used >= max {
			return fmt.Errorf("%w: max tokens (%d) reached after %d", errTokenBudget, max, used)
		}
	}
	return nil
}

// call makes one model call and records it: usage on the task, a model.turn event, the text as
// model.text and a model.call audit entry.
func (r *Runner) call(ctx context.Context, turn int, purpose model.Purpose) (*model.Response, error) {
	req := model.Request{
		System:    systemPrompt(r.cfg.Session, purpose, r.datamark),
		Messages:  r.msgs,
		Tools:     r.toolSpecs(),
		MaxTokens: r.cfg.MaxTokensPerTurn,
		Purpose:   purpose,
		Turn:      turn,
		Vars:      map[string]string{"session": r.cfg.Session.ID, "task": r.t.ID},
	}
	if purpose == model.PurposeWork {
		req.OnText = r.cfg.OnText // the summary is shown once, from its event
	}
	resp, err := r.provider.Complete(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("model call failed: %w", err)
	}
	r.t.Turns = max(r.t.Turns, turn)
	r.t.Usage.InputTokens += resp.Usage.InputTokens
	r.t.Usage.OutputTokens += resp.Usage.OutputTokens
	r.t.UpdatedAt = r.cfg.Now()
	b := &store.Batch{Task: r.t}
	r.addEvent(b, event.ModelTurn, map[string]any{
		"turn": turn, "purpose": purpose, "provider": r.provider.Name(), "model": resp.Model,
		"usage": resp.Usage, "stop_reason": resp.StopReason, "tool_calls": len(resp.Message.ToolUses()),
	})
	if text := resp.Message.Text(); text != "" {
		r.addEvent(b, event.ModelText, map[string]any{"turn": turn, "text": text})
	}
	ad := map[string]any{
		"provider": r.provider.Name(), "model": resp.Model, "turn": turn, "purpose": purpose,
		"input_tokens": resp.Usage.InputTokens, "output_tokens": resp.Usage.OutputTokens,
		"stop_reason": resp.StopReason,
	}
	if r.cfg.AuditModelContent {
		ad["content"] = resp.Message
	}
	r.addAudit(b, "model.call", ad)
	r.lastUsage = resp.Usage
	if purpose == model.PurposeWork {
		r.turn = turn
		r.logMsg(b, normalizeAssistant(resp.Message))
		r.pending = resp.Message.ToolUses()
		r.checkpoint(b)
	}
	if err := r.commit(ctx, b); err != nil {
		return nil, err
	}
	return resp, nil
}

// finish runs the summarizing turn when it can and moves the task to its end state.
func (r *Runner) finish(ctx context.Context, workErr error) error {
	cancelled := workErr != nil && errors.Is(workErr, context.Canceled) && !errors.Is(workErr, ErrBudget)
	if workErr != nil && errors.Is(workErr, context.DeadlineExceeded) {
		workErr = fmt.Errorf("%w: %v", ErrBudget, workErr)
	}
	var storeErr *storeError
	if errors.As(workErr, &storeErr) {
		return workErr
	}
	if cancelled {
		r.t.Error = "cancelled"
		return r.end(task.Cancelled, "cancelled")
	}
	// A budget or a failing model still deserves a summary of what was done when the model can
	// be asked; otherwise the runtime writes one.
	sctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), summaryTimeout)
		defer cancel()
	}
	if r.t.Status != task.Summarizing {
		r.phase, r.workErr = "summary", errText(workErr)
		r.workBudget, r.workTokens = errors.Is(workErr, ErrBudget), errors.Is(workErr, errTokenBudget)
		if err := r.setStatusWith(sctx, task.Summarizing, errText(workErr), r.checkpoint); err != nil {
			return err
		}
	}
	if r.t.Summary != "" {
		// Summarized before a restart: only the end is left to record.
		return r.endWith(workErr)
	}
	summary := ""
	if workErr == nil || errors.Is(workErr, ErrBudget) && !errors.Is(workErr, errTokenBudget) {
		r.msgs = append(r.msgs, model.Message{Role: model.RoleUser, Content: []model.Block{{Type: model.BlockText, Text: summaryRequest}}})
		resp, err := r.call(sctx, r.turn+1, model.PurposeSummary)
		var se *storeError
		if errors.As(err, &se) {
			return err
		}
		if err == nil {
			summary = strings.TrimSpace(resp.Message.Text())
		} else if workErr == nil {
			workErr = fmt.Errorf("summary: %w", err)
		}
	}
	if summary == "" {
		summary = r.runtimeSummary(workErr)
	}
	r.t.Summary = summary
	b := &store.Batch{Task: r.t}
	r.addEvent(b, event.TaskSummary, map[string]any{"summary": summary, "outputs": r.t.Outputs})
	r.addAudit(b, "task.summary", map[string]any{"summary_sha256": digest(summary)})
	if err := r.commit(sctx, b); err != nil {
		return err
	}
	return r.endWith(workErr)
}

// endWith ends the task as completed, or failed with workErr.
func (r *Runner) endWith(workErr error) error {
	if workErr != nil {
		r.t.Error = workErr.Error()
		return r.end(task.Failed, r.t.Error)
	}
	return r.end(task.Completed, "")
}

// end moves the task to its end state and records task.finished, in one commit with what the
// queue must do at the end (a parent's continuation).
func (r *Runner) end(to task.State, reason string) error {
	ctx := context.Background()
	return r.setStatusWith(ctx, to, reason, func(b *store.Batch) {
		data := map[string]any{"status": to, "turns": r.t.Turns, "usage": r.t.Usage, "outputs": r.t.Outputs}
		if r.t.Error != "" {
			data["error"] = r.t.Error
		}
		r.addEvent(b, event.TaskFinished, data)
		r.addAudit(b, "task.finished", data)
		b.Controls = append(b.Controls, store.Control{Task: r.t.ID, Want: "", At: r.cfg.Now()})
	})
}

// setStatus applies a lifecycle transition, refusing an illegal one.
func (r *Runner) setStatus(ctx context.Context, to task.State, reason string) error {
	return r.setStatusWith(ctx, to, reason, nil)
}

// setStatusWith applies a transition and commits it with what more adds to the batch.
func (r *Runner) setStatusWith(ctx context.Context, to task.State, reason string, more func(*store.Batch)) error {
	from := r.t.Status
	if err := task.Transition(from, to); err != nil {
		return err
	}
	r.t.Status = to
	r.t.UpdatedAt = r.cfg.Now()
	b := &store.Batch{Task: r.t}
	data := map[string]any{"from": from, "to": to}
	if reason != "" {
		data["reason"] = reason
	}
	r.addEvent(b, event.TaskStatus, data)
	r.addAudit(b, "task.status", data)
	if more != nil {
		more(b)
	}
	if to.Terminal() && r.cfg.Queue != nil {
		if err := r.cfg.Queue.Finish(ctx, r.t, b); err != nil {
			return &storeError{err}
		}
	}
	return r.commit(ctx, b)
}

// restoredErr is the work phase's error as a restored checkpoint knows it: its text, and
// whether it was a budget (which still gets a summary from the model) and which.
type restoredErr struct {
	msg            string
	budget, tokens bool
}

func (e restoredErr) Error() string { return e.msg }

func (e restoredErr) Is(target error) bool {
	return target == ErrBudget && e.budget || target == errTokenBudget && e.tokens
}

// storeError marks a failure to write the journal: the task cannot go on safely.
type storeError struct{ err error }

func (e *storeError) Error() string { return "store: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// addEvent appends an event to b; commit numbers it.
func (r *Runner) addEvent(b *store.Batch, typ string, data any) {
	raw, err := json.Marshal(data)
	if err != nil {
		raw, _ = json.Marshal(map[string]string{"marshal_error": err.Error()})
	}
	b.Events = append(b.Events, event.Event{
		Time: r.cfg.Now().UTC(), Task: r.t.ID, Session: r.cfg.Session.ID, Type: typ, Data: raw,
	})
}

func (r *Runner) addAudit(b *store.Batch, typ string, data any) {
	b.Audit = append(b.Audit, audit.Entry{Time: r.cfg.Now(), Type: typ, Task: r.t.ID, Session: r.cfg.Session.ID, Data: data})
}

// commit writes b in one transaction (the store numbers its events), then hands its events to
// OnEvent. Commits are serialized (running tools stream output from their own goroutines), so
// events reach OnEvent in sequence order. Journal writes are not cancelled with the task: a
// cancelled task must still be recorded.
func (r *Runner) commit(ctx context.Context, b *store.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.cfg.Store.Commit(context.WithoutCancel(ctx), b); err != nil {
		return &storeError{err}
	}
	r.resolveLogN(b)
	if r.cfg.OnEvent != nil {
		for _, e := range b.Events {
			r.cfg.OnEvent(e)
		}
	}
	return nil
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func lastError(results []model.Block) string {
	for i := len(results) - 1; i >= 0; i-- {
		if results[i].IsError {
			return results[i].Content
		}
	}
	return "(none)"
}

// normalizeAssistant drops empty text blocks, which some APIs reject when replayed.
func normalizeAssistant(m model.Message) model.Message {
	out := model.Message{Role: model.RoleAssistant}
	for _, b := range m.Content {
		if b.Type == model.BlockText && strings.TrimSpace(b.Text) == "" {
			continue
		}
		out.Content = append(out.Content, b)
	}
	if len(out.Content) == 0 {
		out.Content = []model.Block{{Type: model.BlockText, Text: "(no text)"}}
	}
	return out
}

// runtimeSummary is written by keepup when the model cannot give one.
func (r *Runner) runtimeSummary(workErr error) string {
	var sb strings.Builder
	if workErr != nil {
		fmt.Fprintf(&sb, "The task stopped: %v.\n", workErr)
	}
	done, total := r.t.Plan.Counts()
	fmt.Fprintf(&sb, "Plan: %d of %d items finished.\n", done, total)
	if w := sortedKeys(r.filesWritten); len(w) > 0 {
		fmt.Fprintf(&sb, "Files written: %s.\n", strings.Join(w, ", "))
	}
	return strings.TrimSpace(sb.String())
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
