package queue

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keepup/keepup/internal/agent"
	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// NewTaskID returns a short random task id such as "t-k3v9q2xw".
func NewTaskID() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "t-" + string(b)
}

// checkRequest validates what the queue itself owns of a request; the Runtime checks the rest.
func checkRequest(req *TaskRequest) error {
	req.Prompt = strings.TrimSpace(req.Prompt)
	switch {
	case req.Prompt == "":
		return inputErr("prompt", "empty; say what the task should do")
	case len(req.Prompt) > MaxPromptBytes:
		return inputErr("prompt", "%d bytes; at most %d", len(req.Prompt), MaxPromptBytes)
	case !utf8.ValidString(req.Prompt):
		return inputErr("prompt", "not valid UTF-8")
	case req.Priority < 0 || req.Priority > 4:
		return inputErr("priority", "%d; want 1 (highest) to 4 (lowest)", req.Priority)
	case req.MaxTurns < 0:
		return inputErr("max_turns", "%d; must not be negative", req.MaxTurns)
	case len(req.Grants) > MaxGrants:
		return inputErr("grants", "%d grants; at most %d", len(req.Grants), MaxGrants)
	case len(req.Uploads) > MaxUploads:
		return inputErr("uploads", "%d uploads; at most %d", len(req.Uploads), MaxUploads)
	}
	for i, u := range req.Uploads {
		fi, err := os.Stat(u)
		if err != nil {
			return inputErr(fmt.Sprintf("uploads[%d]", i), "%v", err)
		}
		if fi.Size() > MaxUploadBytes {
			return inputErr(fmt.Sprintf("uploads[%d]", i), "%s is %d bytes; at most %d", u, fi.Size(), MaxUploadBytes)
		}
	}
	if req.Priority == 0 {
		req.Priority = DefaultPriority
	}
	return nil
}

// Submit queues a new task. It is stored, announced (task.created) and its first job enqueued
// in one commit.
func (q *Queue) Submit(ctx context.Context, req TaskRequest) (*TaskView, error) {
	if req.Schedule != nil {
		return nil, inputErr("schedule", "use AddSchedule for a scheduled task")
	}
	if err := checkRequest(&req); err != nil {
		return nil, err
	}
	t, err := q.newTask(ctx, req, NewTaskID())
	if err != nil {
		return nil, err
	}
	b := &store.Batch{Task: t}
	agent.AddCreated(b, t, agent.GrantsView(t), q.cfg.Now())
	b.Jobs = []store.Job{sliceJob(t)}
	if err := q.commitGrouped(ctx, b); err != nil {
		return nil, err
	}
	return q.view(ctx, t)
}

// newTask builds a queued task's record through the Runtime.
func (q *Queue) newTask(ctx context.Context, req TaskRequest, id string) (*task.Task, error) {
	t, err := q.cfg.Runtime.Prepare(ctx, req, id)
	if err != nil {
		return nil, err
	}
	now := q.cfg.Now()
	t.ID, t.Status = id, task.Queued
	t.Priority, t.MaxTurns = req.Priority, req.MaxTurns
	t.CreatedAt, t.UpdatedAt = now, now
	return t, nil
}

func (q *Queue) view(ctx context.Context, t *task.Task) (*TaskView, error) {
	v := &TaskView{Task: *t}
	for _, it := range t.Plan {
		if it.Owner != "" && it.Owner == it.ID {
			v.Children = append(v.Children, it.ID)
		}
	}
	return v, nil
}

// Task returns one task.
func (q *Queue) Task(ctx context.Context, id string) (*TaskView, error) {
	t, err := q.db.Task(ctx, id)
	if err != nil {
		return nil, err
	}
	return q.view(ctx, t)
}

// Tasks lists tasks, newest first.
func (q *Queue) Tasks(ctx context.Context, f store.TaskFilter) ([]TaskView, error) {
	ts, err := q.db.Tasks(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]TaskView, 0, len(ts))
	for i := range ts {
		v, _ := q.view(ctx, &ts[i])
		out = append(out, *v)
	}
	return out, nil
}

// Events returns a task's events after seq after.
func (q *Queue) Events(ctx context.Context, id string, after int64, limit int) ([]event.Event, error) {
	if _, err := q.db.Task(ctx, id); err != nil {
		return nil, err
	}
	return q.db.Events(ctx, id, after, limit)
}

// Subscribe returns a channel that receives a value (coalesced) after new events of task id
// are committed by this process; cancel releases it.
func (q *Queue) Subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	q.mu.Lock()
	if q.subs[id] == nil {
		q.subs[id] = map[chan struct{}]struct{}{}
	}
	q.subs[id][ch] = struct{}{}
	q.mu.Unlock()
	return ch, func() {
		q.mu.Lock()
		delete(q.subs[id], ch)
		if len(q.subs[id]) == 0 {
			delete(q.subs, id)
		}
		q.mu.Unlock()
	}
}

func (q *Queue) notify(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for ch := range q.subs[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Steer stores a message for a task; it is delivered at the task's next turn boundary.
func (q *Queue) Steer(ctx context.Context, id, message string) (*Steer, error) {
	message = strings.TrimSpace(message)
	switch {
	case message == "":
		return nil, inputErr("message", "empty")
	case len(message) > MaxSteerBytes:
		return nil, inputErr("message", "%d bytes; at most %d", len(message), MaxSteerBytes)
	case !utf8.ValidString(message):
		return nil, inputErr("message", "not valid UTF-8")
	}
	t, err := q.db.Task(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Status.Terminal() {
		return nil, conflict("task %s is %s; it takes no more messages", id, t.Status)
	}
	b := &store.Batch{Steers: []store.Steer{{Task: id, Message: message, CreatedAt: q.cfg.Now()}}}
	if err := q.commit(ctx, b); err != nil {
		return nil, err
	}
	s := b.Steers[0]
	return &s, nil
}

// Pause asks a running task to stop at its next turn boundary.
func (q *Queue) Pause(ctx context.Context, id string) (*TaskView, error) {
	t, err := q.db.Task(ctx, id)
	if err != nil {
		return nil, err
	}
	switch t.Status {
	case task.Planning, task.Running, task.AwaitingApproval:
	case task.Queued:
		return nil, conflict("task %s has not started; cancel it instead, or pause it once it runs", id)
	default:
		return nil, conflict("task %s is %s and cannot be paused", id, t.Status)
	}
	if err := q.commit(ctx, &store.Batch{Controls: []store.Control{{Task: id, Want: "pause", At: q.cfg.Now()}}}); err != nil {
		return nil, err
	}
	return q.view(ctx, t)
}

// Resume continues a paused task (or withdraws a pause not yet acted on).
func (q *Queue) Resume(ctx context.Context, id string) (*TaskView, error) {
	t, err := q.db.Task(ctx, id)
	if err != nil {
		return nil, err
	}
	want, err := q.db.Control(ctx, id)
	if err != nil {
		return nil, err
	}
	b := &store.Batch{}
	switch {
	case t.Status == task.Paused:
		b.Controls = []store.Control{{Task: id, Want: "resume", At: q.cfg.Now()}}
		b.Jobs = []store.Job{sliceJob(t)}
	case want == "pause" && !t.Status.Terminal():
		b.Controls = []store.Control{{Task: id, Want: "", At: q.cfg.Now()}}
	default:
		return nil, conflict("task %s is %s, not paused", id, t.Status)
	}
	if err := q.commit(ctx, b); err != nil {
		return nil, err
	}
	return q.view(ctx, t)
}

// Cancel stops a task and its subagents: a running slice is cancelled at once (its running
// commands are killed); a waiting task is cancelled by its next job.
func (q *Queue) Cancel(ctx context.Context, id string) (*TaskView, error) {
	t, err := q.db.Task(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Status.Terminal() {
		return nil, conflict("task %s is already %s", id, t.Status)
	}
	if err := q.cancelTree(ctx, t); err != nil {
		return nil, err
	}
	return q.view(ctx, t)
}

func (q *Queue) cancelTree(ctx context.Context, t *task.Task) error {
	if err := q.cancelChildren(ctx, t); err != nil {
		return err
	}
	// The job settles the task whether or not a slice of it is running now: a slice ending
	// just as this commits would otherwise leave the cancel to nobody. (A second job of a
	// task waits for the first to end, then finds the task cancelled.)
	b := &store.Batch{Controls: []store.Control{{Task: t.ID, Want: "cancel", At: q.cfg.Now()}},
		Jobs: []store.Job{sliceJob(t)}}
	if err := q.commit(ctx, b); err != nil {
		return err
	}
	q.mu.Lock()
	cancel, running := q.running[t.ID]
	q.mu.Unlock()
	if running {
		cancel()
	}
	return nil
}

// cancelChildren cancels t's unfinished subagents and theirs.
func (q *Queue) cancelChildren(ctx context.Context, t *task.Task) error {
	parent := t.ID
	kids, err := q.db.Tasks(ctx, store.TaskFilter{Parent: &parent})
	if err != nil {
		return err
	}
	for i := range kids {
		if !kids[i].Status.Terminal() {
			if err := q.cancelTree(ctx, &kids[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// cancelIdle ends a task that is not running: pending approvals are closed, the task is
// cancelled, and its parent is told.
func (q *Queue) cancelIdle(ctx context.Context, t *task.Task, reason string) error {
	return q.endIdle(ctx, t, task.Cancelled, reason)
}

// failIdle fails a task that could not run.
func (q *Queue) failIdle(ctx context.Context, t *task.Task, reason string) error {
	return q.endIdle(ctx, t, task.Failed, reason)
}

func (q *Queue) endIdle(ctx context.Context, t *task.Task, to task.State, reason string) error {
	now := q.cfg.Now()
	b := &store.Batch{}
	pending, err := q.db.Approvals(ctx, t.ID, true)
	if err != nil {
		return err
	}
	for _, a := range pending {
		a.Status, a.By, a.ResolvedAt, a.Scope = store.ApprovalDenied, "keepup", now, "call"
		b.Approvals = append(b.Approvals, a)
		addEvent(b, t, event.ApprovalResolved, map[string]any{"approval_id": a.ID, "tool_call_id": a.CallID, "answer": agent.AnswerNo, "by": "keepup", "reason": reason}, now)
	}
	from := t.Status
	if err := task.Transition(from, to); err != nil {
		return err
	}
	t.Status, t.Error, t.UpdatedAt = to, reason, now
	b.Task = t
	status := map[string]any{"from": from, "to": to, "reason": reason}
	addEvent(b, t, event.TaskStatus, status, now)
	b.Audit = append(b.Audit, audit.Entry{Time: now, Type: "task.status", Task: t.ID, Session: t.Session, Data: status})
	fin := map[string]any{"status": to, "turns": t.Turns, "usage": t.Usage, "outputs": t.Outputs, "error": reason}
	addEvent(b, t, event.TaskFinished, fin, now)
	b.Audit = append(b.Audit, audit.Entry{Time: now, Type: "task.finished", Task: t.ID, Session: t.Session, Data: fin})
	b.Controls = append(b.Controls, store.Control{Task: t.ID, Want: "", At: now})
	if err := q.Finish(ctx, t, b); err != nil {
		return err
	}
	return q.commit(ctx, b)
}

func addEvent(b *store.Batch, t *task.Task, typ string, data any, now time.Time) {
	raw, _ := json.Marshal(data)
	b.Events = append(b.Events, event.Event{Time: now.UTC(), Task: t.ID, Session: t.Session, Type: typ, Data: raw})
}

// Approvals lists approvals, of one task or all ("").
func (q *Queue) Approvals(ctx context.Context, taskID string, pendingOnly bool) ([]store.Approval, error) {
	if taskID != "" {
		if _, err := q.db.Task(ctx, taskID); err != nil {
			return nil, err
		}
	}
	return q.db.Approvals(ctx, taskID, pendingOnly)
}

// Resolve answers a pending approval; the task continues (or learns of the refusal) in a new
// slice enqueued with the answer.
func (q *Queue) Resolve(ctx context.Context, approvalID string, d Decision) (*store.Approval, error) {
	switch d.Scope {
	case "":
		d.Scope = "call"
	case "call", "task":
	default:
		return nil, inputErr("scope", "%q; want call or task", d.Scope)
	}
	if d.By == "" {
		d.By = "api"
	}
	q.resolveMu.Lock()
	defer q.resolveMu.Unlock()
	a, err := q.db.Approval(ctx, approvalID)
	if err != nil {
		return nil, err
	}
	if a.Status != store.ApprovalPending {
		return nil, conflict("approval %s was already answered (%s)", approvalID, a.Status)
	}
	t, err := q.db.Task(ctx, a.Task)
	if err != nil {
		return nil, err
	}
	now := q.cfg.Now()
	a.Status, a.Scope, a.By, a.ResolvedAt = store.ApprovalDenied, d.Scope, d.By, now
	ans := agent.AnswerNo
	if d.Approve {
		a.Status, ans = store.ApprovalApproved, agent.AnswerYes
		if d.Scope == "task" {
			ans = agent.AnswerYesTask
		}
	}
	b := &store.Batch{Approvals: []store.Approval{*a}}
	data := map[string]any{"approval_id": a.ID, "tool_call_id": a.CallID, "answer": ans, "scope": a.Scope, "by": a.By}
	addEvent(b, t, event.ApprovalResolved, data, now)
	b.Audit = append(b.Audit, audit.Entry{Time: now, Type: "approval.resolved", Task: t.ID, Session: t.Session,
		Data: map[string]any{"approval_id": a.ID, "call_id": a.CallID, "answer": ans, "scope": a.Scope, "by": a.By}})
	if !t.Status.Terminal() {
		b.Jobs = []store.Job{sliceJob(t)}
	}
	if err := q.commit(ctx, b); err != nil {
		return nil, err
	}
	return a, nil
}

// AuditExport writes the audit records of one task ("" for all) as JSON lines.
func (q *Queue) AuditExport(ctx context.Context, taskID string, w io.Writer) error {
	if taskID == "" {
		return audit.Export(w, audit.Scan(ctx, q.db.ScanAudit, 0))
	}
	if _, err := q.db.Task(ctx, taskID); err != nil {
		return err
	}
	recs, err := q.db.AuditRecords(ctx, taskID)
	if err != nil {
		return err
	}
	return audit.Export(w, audit.Records(recs))
}

// Suspend is agent.Queue's: a task that used its slice continues in a new job, keeping its
// place among tasks of its priority.
func (q *Queue) Suspend(t *task.Task, reason agent.Suspension, b *store.Batch) {
	if reason == agent.SuspendSlice {
		b.Jobs = append(b.Jobs, sliceJob(t))
	}
}

// Finish is agent.Queue's: when a subagent ends, its parent's plan shows it, and the parent
// gets a job to collect its children (a parent whose children are not all done finds so and
// waits on).
func (q *Queue) Finish(ctx context.Context, t *task.Task, b *store.Batch) error {
	if t.Parent == "" {
		return nil
	}
	p, err := q.db.Task(ctx, t.Parent)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.Status.Terminal() {
		return nil
	}
	b.Jobs = append(b.Jobs, sliceJob(p))
	return nil
}

// childProgress shows a child's status on its parent's plan while the parent waits. It writes
// the parent's record only while holding the parent's slot, so never under a running slice of
// the parent (which shows its children's final statuses itself when it collects them).
func (q *Queue) childProgress(ctx context.Context, child *task.Task, st task.State) {
	q.planMu.Lock() // children of one parent report concurrently
	defer q.planMu.Unlock()
	if !q.tryLock(child.Parent) {
		return
	}
	defer q.unlock(child.Parent)
	p, err := q.db.Task(ctx, child.Parent)
	if err != nil || p.Status.Terminal() {
		return
	}
	i := slices.IndexFunc(p.Plan, func(it task.PlanItem) bool { return it.ID == child.ID })
	want := agent.PlanStatus(st)
	if i < 0 || p.Plan[i].Status == want {
		return
	}
	p.Plan[i].Status = want
	p.UpdatedAt = q.cfg.Now()
	b := &store.Batch{Task: p}
	addEvent(b, p, event.PlanUpdated, map[string]any{"items": p.Plan}, q.cfg.Now())
	if err := q.commit(ctx, b); err != nil {
		q.cfg.Logger.Warn("showing a subagent's status on its parent's plan", "child", child.ID, "err", err)
	}
}

// tryLock takes task id's slot if no slice of it runs; unlock gives it back.
func (q *Queue) tryLock(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, busy := q.busy[id]; busy {
		return false
	}
	q.busy[id] = make(chan struct{})
	return true
}

func (q *Queue) unlock(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if done, ok := q.busy[id]; ok {
		close(done)
		delete(q.busy, id)
	}
}
