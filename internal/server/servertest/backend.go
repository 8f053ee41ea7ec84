// Package servertest holds an in-memory server.Backend for the tests of the HTTP layer and of
// its clients (server, client, cli). It keeps tasks, events, approvals and schedules in maps and
// follows the contract the server relies on: ids, per-task seq order, Subscribe wake-ups and the
// queue's error types. It runs nothing: a task moves only when a test calls Emit, SetStatus,
// Ask or Finish. It must never be used outside tests; the real Backend is *queue.Queue.
package servertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// Backend is an in-memory server.Backend. The zero value is not usable; call New.
type Backend struct {
	// GrantRoot, when set, is the only folder grants may be under (as a daemon's configuration
	// would limit them); a grant elsewhere is an *queue.InputError naming grants[i].
	GrantRoot string
	// OnSubmit, when set, is called with each submitted task's id, after the task is stored.
	OnSubmit func(id string)

	mu        sync.Mutex
	n         int
	tasks     map[string]*queue.TaskView
	order     []string
	events    map[string][]event.Event
	subs      map[string]map[chan struct{}]bool
	approvals map[string]*store.Approval
	apOrder   []string
	schedules map[string]*queue.Schedule
	schOrder  []string
	steers    map[string][]queue.Steer
	fail      map[string]error
}

// New returns an empty Backend.
func New() *Backend {
	return &Backend{
		tasks:     map[string]*queue.TaskView{},
		events:    map[string][]event.Event{},
		subs:      map[string]map[chan struct{}]bool{},
		approvals: map[string]*store.Approval{},
		schedules: map[string]*queue.Schedule{},
		steers:    map[string][]queue.Steer{},
		fail:      map[string]error{},
	}
}

// Fail makes every later call of method (e.g. "Tasks") return err; nil clears it.
func (b *Backend) Fail(method string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail[method] = err
}

func (b *Backend) failing(method string) error { return b.fail[method] }

func notFound(what, id string) error { return fmt.Errorf("%s %s: %w", what, id, queue.ErrNotFound) }

func (b *Backend) validate(req queue.TaskRequest) error {
	if strings.TrimSpace(req.Prompt) == "" {
		return &queue.InputError{Field: "prompt", Msg: "empty; say what the task should do"}
	}
	if len(req.Prompt) > queue.MaxPromptBytes {
		return &queue.InputError{Field: "prompt", Msg: fmt.Sprintf("%d bytes, at most %d", len(req.Prompt), queue.MaxPromptBytes)}
	}
	switch req.Approvals {
	case "", "ask", "deny", "auto":
	default:
		return &queue.InputError{Field: "approvals", Msg: fmt.Sprintf("%q is not ask, deny or auto", req.Approvals)}
	}
	if req.Priority < 0 || req.Priority > 4 {
		return &queue.InputError{Field: "priority", Msg: fmt.Sprintf("%d is not 1 to 4", req.Priority)}
	}
	for i, g := range req.Grants {
		_, path, _ := strings.Cut(g, "=")
		if !strings.Contains(g, "=") {
			path = g
		}
		path = strings.TrimSuffix(strings.TrimSuffix(path, ":ro"), ":rw")
		if !filepath.IsAbs(path) {
			return &queue.InputError{Field: fmt.Sprintf("grants[%d]", i), Msg: fmt.Sprintf("%q is not an absolute path", path)}
		}
		if b.GrantRoot != "" && path != b.GrantRoot && !strings.HasPrefix(path, b.GrantRoot+"/") {
			return &queue.InputError{Field: fmt.Sprintf("grants[%d]", i), Msg: fmt.Sprintf("%s is outside what this daemon may grant (%s)", path, b.GrantRoot)}
		}
	}
	for i, u := range req.Uploads {
		if !filepath.IsAbs(u) {
			return &queue.InputError{Field: fmt.Sprintf("uploads[%d]", i), Msg: fmt.Sprintf("%q is not an absolute path", u)}
		}
	}
	return nil
}

// Submit stores a queued task and emits task.created.
func (b *Backend) Submit(ctx context.Context, req queue.TaskRequest) (*queue.TaskView, error) {
	b.mu.Lock()
	if err := b.failing("Submit"); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	if err := b.validate(req); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	if req.Schedule != nil {
		b.mu.Unlock()
		return nil, &queue.InputError{Field: "schedule", Msg: "set: use AddSchedule"}
	}
	b.n++
	now := time.Now().UTC()
	tv := &queue.TaskView{
		Task: task.Task{
			ID: fmt.Sprintf("t-%04d", b.n), Session: fmt.Sprintf("s-%04d", b.n), Prompt: req.Prompt,
			Status: task.Queued, Model: req.Model, Approvals: req.Approvals, Outputs: "/outputs",
			CreatedAt: now, UpdatedAt: now, Options: task.Options{Priority: req.Priority},
		},
	}
	if tv.Priority == 0 {
		tv.Priority = queue.DefaultPriority
	}
	if tv.Model == "" {
		tv.Model = "script:default"
	}
	if tv.Approvals == "" {
		tv.Approvals = "ask"
	}
	for _, g := range req.Grants {
		tv.Grants = append(tv.Grants, task.Grant{Name: "g", Path: g, Mode: "rw"})
	}
	b.tasks[tv.ID] = tv
	b.order = append(b.order, tv.ID)
	b.emitLocked(tv.ID, event.TaskCreated, map[string]any{"model": tv.Model, "prompt": tv.Prompt})
	out := *tv
	onSubmit := b.OnSubmit
	b.mu.Unlock()
	if onSubmit != nil {
		onSubmit(out.ID)
	}
	return &out, nil
}

// AddSchedule stores a schedule. Cron must have five fields of digits, *, /, - and , or be one
// of the @ descriptors; anything else is an *queue.InputError naming schedule.cron.
func (b *Backend) AddSchedule(ctx context.Context, req queue.TaskRequest) (*queue.Schedule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failing("AddSchedule"); err != nil {
		return nil, err
	}
	if req.Schedule == nil {
		return nil, &queue.InputError{Field: "schedule", Msg: "missing"}
	}
	spec := *req.Schedule
	req.Schedule = nil
	if err := b.validate(req); err != nil {
		return nil, err
	}
	if !validCron(spec.Cron) {
		return nil, &queue.InputError{Field: "schedule.cron", Msg: fmt.Sprintf("%q is not a cron expression (five fields: minute hour day-of-month month day-of-week)", spec.Cron)}
	}
	switch spec.Missed {
	case "":
		spec.Missed = "skip"
	case "skip", "run_once":
	default:
		return nil, &queue.InputError{Field: "schedule.missed", Msg: fmt.Sprintf("%q is not skip or run_once", spec.Missed)}
	}
	b.n++
	now := time.Now().UTC()
	sc := &queue.Schedule{ID: fmt.Sprintf("sch-%04d", b.n), Request: req, Cron: spec.Cron, Missed: spec.Missed,
		Next: now.Truncate(time.Hour).Add(time.Hour), CreatedAt: now}
	b.schedules[sc.ID] = sc
	b.schOrder = append(b.schOrder, sc.ID)
	out := *sc
	return &out, nil
}

func validCron(s string) bool {
	switch s {
	case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly":
		return true
	}
	f := strings.Fields(s)
	if len(f) != 5 {
		return false
	}
	for _, x := range f {
		if strings.Trim(x, "0123456789*/-,") != "" {
			return false
		}
	}
	return true
}

// Schedules lists the schedules in the order they were added.
func (b *Backend) Schedules(ctx context.Context) ([]queue.Schedule, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failing("Schedules"); err != nil {
		return nil, err
	}
	var out []queue.Schedule
	for _, id := range b.schOrder {
		out = append(out, *b.schedules[id])
	}
	return out, nil
}

// DeleteSchedule removes a schedule.
func (b *Backend) DeleteSchedule(ctx context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.schedules[id]; !ok {
		return notFound("schedule", id)
	}
	delete(b.schedules, id)
	b.schOrder = slices.DeleteFunc(b.schOrder, func(s string) bool { return s == id })
	return nil
}

// Task returns one task.
func (b *Backend) Task(ctx context.Context, id string) (*queue.TaskView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failing("Task"); err != nil {
		return nil, err
	}
	tv, ok := b.tasks[id]
	if !ok {
		return nil, notFound("task", id)
	}
	out := *tv
	return &out, nil
}

// Tasks lists tasks newest first.
func (b *Backend) Tasks(ctx context.Context, f store.TaskFilter) ([]queue.TaskView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failing("Tasks"); err != nil {
		return nil, err
	}
	var out []queue.TaskView
	for i := len(b.order) - 1; i >= 0; i-- {
		tv := b.tasks[b.order[i]]
		if len(f.Status) > 0 && !slices.Contains(f.Status, tv.Status) {
			continue
		}
		if f.Parent != nil && tv.Parent != *f.Parent {
			continue
		}
		out = append(out, *tv)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// Events returns a task's events with Seq > after.
func (b *Backend) Events(ctx context.Context, id string, after int64, limit int) ([]event.Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failing("Events"); err != nil {
		return nil, err
	}
	var out []event.Event
	for _, e := range b.events[id] {
		if e.Seq > after {
			out = append(out, e)
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// Subscribe returns a channel woken (coalesced) after each event of task id.
func (b *Backend) Subscribe(id string) (<-chan struct{}, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan struct{}, 1)
	if b.subs[id] == nil {
		b.subs[id] = map[chan struct{}]bool{}
	}
	b.subs[id][ch] = true
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			delete(b.subs[id], ch)
		})
	}
}

// Subscribers returns how many subscriptions of task id are open.
func (b *Backend) Subscribers(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs[id])
}

// Steer stores a steering message.
func (b *Backend) Steer(ctx context.Context, id, message string) (*queue.Steer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tv, ok := b.tasks[id]
	if !ok {
		return nil, notFound("task", id)
	}
	if tv.Status.Terminal() {
		return nil, &queue.ConflictError{Msg: fmt.Sprintf("task %s is %s: it takes no more messages", id, tv.Status)}
	}
	b.n++
	st := queue.Steer{ID: int64(b.n), Task: id, Message: message, CreatedAt: time.Now().UTC()}
	b.steers[id] = append(b.steers[id], st)
	return &st, nil
}

// Steers returns the messages stored for task id.
func (b *Backend) Steers(id string) []queue.Steer {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.steers[id])
}

// Pause pauses a task that has not ended.
func (b *Backend) Pause(ctx context.Context, id string) (*queue.TaskView, error) {
	return b.control(id, func(tv *queue.TaskView) error {
		if tv.Status.Terminal() || tv.Status == task.Paused {
			return &queue.ConflictError{Msg: fmt.Sprintf("task %s is %s: it cannot be paused", id, tv.Status)}
		}
		b.setStatusLocked(tv, task.Paused)
		return nil
	})
}

// Resume resumes a paused task.
func (b *Backend) Resume(ctx context.Context, id string) (*queue.TaskView, error) {
	return b.control(id, func(tv *queue.TaskView) error {
		if tv.Status != task.Paused {
			return &queue.ConflictError{Msg: fmt.Sprintf("task %s is %s, not paused", id, tv.Status)}
		}
		b.setStatusLocked(tv, task.Running)
		return nil
	})
}

// Cancel ends a task as cancelled, with its task.finished event.
func (b *Backend) Cancel(ctx context.Context, id string) (*queue.TaskView, error) {
	return b.control(id, func(tv *queue.TaskView) error {
		if tv.Status.Terminal() {
			return &queue.ConflictError{Msg: fmt.Sprintf("task %s is %s already", id, tv.Status)}
		}
		b.finishLocked(tv, task.Cancelled, "cancelled by the user")
		return nil
	})
}

func (b *Backend) control(id string, f func(*queue.TaskView) error) (*queue.TaskView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tv, ok := b.tasks[id]
	if !ok {
		return nil, notFound("task", id)
	}
	if err := f(tv); err != nil {
		return nil, err
	}
	out := *tv
	return &out, nil
}

// Approvals lists approvals of a task ("" for all), oldest first.
func (b *Backend) Approvals(ctx context.Context, taskID string, pendingOnly bool) ([]store.Approval, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []store.Approval
	for _, id := range b.apOrder {
		a := b.approvals[id]
		if taskID != "" && a.Task != taskID || pendingOnly && a.Status != store.ApprovalPending {
			continue
		}
		out = append(out, *a)
	}
	return out, nil
}

// Resolve answers a pending approval, emits approval.resolved and puts the task back to running.
func (b *Backend) Resolve(ctx context.Context, approvalID string, d queue.Decision) (*store.Approval, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.approvals[approvalID]
	if !ok {
		return nil, notFound("approval", approvalID)
	}
	if a.Status != store.ApprovalPending {
		return nil, &queue.ConflictError{Msg: fmt.Sprintf("approval %s is %s already", approvalID, a.Status)}
	}
	a.Status, a.Scope, a.By, a.ResolvedAt = store.ApprovalDenied, d.Scope, d.By, time.Now().UTC()
	answer := "no"
	if d.Approve {
		a.Status, answer = store.ApprovalApproved, "yes"
	}
	b.emitLocked(a.Task, event.ApprovalResolved, map[string]any{"approval_id": a.ID, "tool_call_id": a.CallID, "answer": answer, "scope": a.Scope, "by": a.By})
	if tv := b.tasks[a.Task]; tv != nil && tv.Status == task.AwaitingApproval {
		b.setStatusLocked(tv, task.Running)
	}
	out := *a
	return &out, nil
}

// AuditExport writes one JSON line per event of the task ("" for all tasks).
func (b *Backend) AuditExport(ctx context.Context, taskID string, w io.Writer) error {
	b.mu.Lock()
	if err := b.failing("AuditExport"); err != nil {
		b.mu.Unlock()
		return err
	}
	if _, ok := b.tasks[taskID]; taskID != "" && !ok {
		b.mu.Unlock()
		return notFound("task", taskID)
	}
	var lines [][]byte
	for _, id := range b.order {
		if taskID != "" && id != taskID {
			continue
		}
		for _, e := range b.events[id] {
			l, _ := json.Marshal(map[string]any{"task": e.Task, "seq": e.Seq, "kind": e.Type})
			lines = append(lines, l)
		}
	}
	b.mu.Unlock()
	for _, l := range lines {
		if _, err := w.Write(append(l, '\n')); err != nil {
			return err
		}
	}
	return nil
}

// Emit appends an event to task id's journal and wakes its subscribers.
func (b *Backend) Emit(id, typ string, data any) event.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.emitLocked(id, typ, data)
}

func (b *Backend) emitLocked(id, typ string, data any) event.Event {
	raw, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	evs := b.events[id]
	e := event.Event{Seq: int64(len(evs) + 1), Time: time.Now().UTC(), Task: id, Type: typ, Data: raw}
	if tv := b.tasks[id]; tv != nil {
		e.Session = tv.Session
	}
	b.events[id] = append(evs, e)
	for ch := range b.subs[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return e
}

// SetStatus moves a task to st (no transition checks) and emits task.status.
func (b *Backend) SetStatus(id string, st task.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.setStatusLocked(b.tasks[id], st)
}

func (b *Backend) setStatusLocked(tv *queue.TaskView, st task.State) {
	from := tv.Status
	tv.Status, tv.UpdatedAt = st, time.Now().UTC()
	b.emitLocked(tv.ID, event.TaskStatus, map[string]any{"from": from, "to": st})
}

// Finish ends a task with status st and emits task.status and task.finished.
func (b *Backend) Finish(id string, st task.State, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finishLocked(b.tasks[id], st, reason)
}

func (b *Backend) finishLocked(tv *queue.TaskView, st task.State, reason string) {
	b.setStatusLocked(tv, st)
	if st == task.Completed {
		tv.Summary = "Done."
	} else {
		tv.Error = reason
	}
	data := map[string]any{"status": st, "turns": tv.Turns, "usage": tv.Usage, "outputs": tv.Outputs}
	if reason != "" {
		data["error"] = reason
	}
	b.emitLocked(tv.ID, event.TaskFinished, data)
}

// Ask opens a pending approval on task id, moves the task to awaiting_approval and emits
// approval.requested.
func (b *Backend) Ask(id, tool, summary string) store.Approval {
	b.mu.Lock()
	defer b.mu.Unlock()
	tv := b.tasks[id]
	b.n++
	a := &store.Approval{ID: fmt.Sprintf("%s-a%d", id, b.n), Task: id, CallID: fmt.Sprintf("call-%d", b.n), Tool: tool,
		Effect: "write", Summary: summary, Provenance: "user", Status: store.ApprovalPending, CreatedAt: time.Now().UTC()}
	b.approvals[a.ID] = a
	b.apOrder = append(b.apOrder, a.ID)
	b.setStatusLocked(tv, task.AwaitingApproval)
	b.emitLocked(id, event.ApprovalRequested, map[string]any{"approval_id": a.ID, "tool_call_id": a.CallID, "tool": tool,
		"effect": a.Effect, "summary": summary, "rule": "mode:ask"})
	return *a
}

// Approval returns an approval as stored.
func (b *Backend) Approval(id string) (store.Approval, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.approvals[id]
	if !ok {
		return store.Approval{}, false
	}
	return *a, true
}
