package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/guard"
	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// ErrSuspend is returned by a Person or a Spawner that cannot answer now: the task waits
// outside any worker (in the approvals inbox, for its subagents) and continues when the answer
// is in the store. Run then returns with the task not finished and Suspended saying why.
var ErrSuspend = errors.New("suspended until an answer is stored")

// Suspension says why Run returned before the task finished.
type Suspension string

const (
	NotSuspended     Suspension = ""
	SuspendSlice     Suspension = "slice"    // Config.SliceTurns turns ran; continue with a new slice
	SuspendApproval  Suspension = "approval" // waiting for an approval in the inbox
	SuspendChildren  Suspension = "children" // waiting for subagents to finish
	SuspendPaused    Suspension = "paused"   // a person paused the task
	SuspendShutdown  Suspension = "shutdown" // the process is stopping; the task continues at the next start
	errSuspendedText            = "task suspended"
)

// ErrShutdown is the cause a queue cancels a slice's context with when its process stops: the
// task is not cancelled, it stops where it is (a call running then is left in doubt) and
// continues from its checkpoint at the next start.
var ErrShutdown = errors.New("keepup is shutting down")

// errSuspended unwinds the work loop when the task suspends.
var errSuspended = errors.New(errSuspendedText)

// Log kinds of the task log (store.LogEntry.Kind).
const (
	logMessage = "msg"   // a message of the conversation (model.Message)
	logGuard   = "guard" // content the guard must know of (guardOp)
)

// guardOp is one record of what entered the conversation, replayed into a guard.Context when
// a task continues in a new process.
type guardOp struct {
	Op     string `json:"op"` // trusted | untrusted
	Source string `json:"source"`
	Text   string `json:"text"`
	// Files are the paths whose bytes Text is (a file read), for R3's fingerprints.
	Files []string `json:"files,omitempty"`
}

// runState is a task's checkpoint: with the task log and the tool-call journal it is all a new
// Runner needs to continue the task where it stopped.
type runState struct {
	Turn     int           `json:"turn"`              // the last work turn the model was asked for
	Pending  []model.Block `json:"pending,omitempty"` // that turn's tool calls, until all have results
	Head     model.Message `json:"head"`              // the first message (it changes with compaction)
	From     int64         `json:"from"`              // log N where the rest of the conversation starts
	Usage    model.Usage   `json:"usage"`             // the last call's, for compaction
	Datamark string        `json:"datamark"`
	Phase    string        `json:"phase,omitempty"` // "summary" once the work phase ended
	WorkErr  string        `json:"work_err,omitempty"`
	// WorkBudget and WorkTokens say WorkErr was a budget (the token budget).
	WorkBudget bool `json:"work_budget,omitempty"`
	WorkTokens bool `json:"work_tokens,omitempty"`

	FilesRead    []string        `json:"files_read,omitempty"`
	FilesWritten []string        `json:"files_written,omitempty"`
	Decisions    []string        `json:"decisions,omitempty"`
	Questions    []string        `json:"questions,omitempty"`
	ApprovedFor  []policy.Effect `json:"approved_for,omitempty"`
	ErrStreak    int             `json:"err_streak,omitempty"`
	InDoubt      []string        `json:"in_doubt,omitempty"` // keys of calls whose outcome is unknown
}

// doubtKey identifies a state-changing call for the in-doubt rule: the same tool with the same
// input.
func doubtKey(tool string, input string) string {
	sum := sha256.Sum256([]byte(tool + "\x00" + input))
	return hex.EncodeToString(sum[:12])
}

// checkpoint adds the runner's state to b.
func (r *Runner) checkpoint(b *store.Batch) {
	s := runState{
		Turn: r.turn, Pending: r.pending, Head: r.msgs[0], From: r.from, Usage: r.lastUsage,
		Datamark: r.datamark, Phase: r.phase, WorkErr: r.workErr, WorkBudget: r.workBudget, WorkTokens: r.workTokens,
		FilesRead: sortedKeys(r.filesRead), FilesWritten: sortedKeys(r.filesWritten),
		Decisions: r.decisions, Questions: r.questions, ErrStreak: r.errStreak,
		InDoubt: sortedKeys(r.inDoubt),
	}
	for e, ok := range r.approvedForTask {
		if ok {
			s.ApprovedFor = append(s.ApprovedFor, e)
		}
	}
	data, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("agent: checkpoint: %v", err)) // every field is plain data
	}
	b.State = &store.TaskState{Task: r.t.ID, Data: data}
}

// logMsg appends m to the conversation and to b's log; its N is known after the commit.
func (r *Runner) logMsg(b *store.Batch, m model.Message) {
	data, _ := json.Marshal(m)
	r.msgs = append(r.msgs, m)
	r.msgN = append(r.msgN, -1-int64(len(b.Log))) // resolved by commit
	b.Log = append(b.Log, store.LogEntry{Task: r.t.ID, Kind: logMessage, Data: data})
}

// logGuardOp records what the guard was told, for a Runner continuing the task elsewhere.
func (r *Runner) logGuardOp(b *store.Batch, op guardOp) {
	data, _ := json.Marshal(op)
	b.Log = append(b.Log, store.LogEntry{Task: r.t.ID, Kind: logGuard, Data: data})
}

// trusted adds text from the person to the guard's record and to b's log.
func (r *Runner) trusted(b *store.Batch, source, text string) {
	r.gctx.AddTrusted(source, text)
	r.logGuardOp(b, guardOp{Op: "trusted", Source: source, Text: text})
}

// untrusted adds content a tool brought in; files names the files whose bytes it is.
func (r *Runner) untrusted(b *store.Batch, source, text string, files []string) {
	r.gctx.AddUntrusted(source, text)
	for _, f := range files {
		r.gctx.AddFileRead(f, []byte(text))
	}
	r.logGuardOp(b, guardOp{Op: "untrusted", Source: source, Text: text, Files: files})
}

// resolveLogN fills in the log numbers of messages logged in b, once committed.
func (r *Runner) resolveLogN(b *store.Batch) {
	for i := range r.msgN {
		if n := r.msgN[i]; n < 0 {
			idx := int(-1 - n)
			if idx < len(b.Log) {
				r.msgN[i] = b.Log[idx].N
			}
		}
	}
}

// restore loads the task's checkpoint and log. It reports false when the task has no
// checkpoint (it has not started).
func (r *Runner) restore(ctx context.Context) (bool, error) {
	st, err := r.dur.State(ctx, r.t.ID)
	if err != nil {
		return false, &storeError{err}
	}
	if st == nil {
		return false, nil
	}
	var s runState
	if err := json.Unmarshal(st.Data, &s); err != nil {
		return false, fmt.Errorf("task %s: checkpoint: %w", r.t.ID, err)
	}
	r.turn, r.pending, r.from, r.lastUsage = s.Turn, s.Pending, s.From, s.Usage
	r.recovering = len(s.Pending) > 0
	r.datamark, r.phase, r.workErr, r.errStreak = s.Datamark, s.Phase, s.WorkErr, s.ErrStreak
	r.workBudget, r.workTokens = s.WorkBudget, s.WorkTokens
	r.decisions, r.questions = s.Decisions, s.Questions
	for _, f := range s.FilesRead {
		r.filesRead[f] = true
	}
	for _, f := range s.FilesWritten {
		r.filesWritten[f] = true
	}
	for _, k := range s.InDoubt {
		r.inDoubt[k] = true
	}
	for _, e := range s.ApprovedFor {
		r.approvedForTask[e] = true
	}
	log, err := r.dur.Log(ctx, r.t.ID, 0)
	if err != nil {
		return false, &storeError{err}
	}
	r.gctx = guard.NewContext()
	r.msgs, r.msgN = []model.Message{s.Head}, []int64{0}
	for _, e := range log {
		switch e.Kind {
		case logMessage:
			if e.N < s.From {
				continue
			}
			var m model.Message
			if err := json.Unmarshal(e.Data, &m); err != nil {
				return false, fmt.Errorf("task %s: log %d: %w", r.t.ID, e.N, err)
			}
			r.msgs = append(r.msgs, m)
			r.msgN = append(r.msgN, e.N)
		case logGuard:
			var op guardOp
			if err := json.Unmarshal(e.Data, &op); err != nil {
				return false, fmt.Errorf("task %s: log %d: %w", r.t.ID, e.N, err)
			}
			switch op.Op {
			case "trusted":
				r.gctx.AddTrusted(op.Source, op.Text)
			case "untrusted":
				r.gctx.AddUntrusted(op.Source, op.Text)
				for _, f := range op.Files {
					r.gctx.AddFileRead(f, []byte(op.Text))
				}
			}
		}
	}
	return true, nil
}

// resumeStatus moves a task that waited (for an approval, or paused) back to work.
func (r *Runner) resumeStatus(ctx context.Context) error {
	switch r.t.Status {
	case task.AwaitingApproval, task.Paused:
		back := task.Running
		if len(r.t.Plan) == 0 {
			back = task.Planning
		}
		return r.setStatus(ctx, back, "resumed")
	}
	return nil
}

// deliverSteers adds the person's steering messages that arrived since the last turn to the
// message that goes to the model next, in order, and marks them delivered in b: the message
// and the mark commit together, so a message is delivered once.
func (r *Runner) deliverSteers(ctx context.Context, b *store.Batch, content []model.Block) ([]model.Block, error) {
	if r.dur == nil {
		return content, nil
	}
	steers, err := r.dur.Steers(ctx, r.t.ID, true)
	if err != nil {
		return content, &storeError{err}
	}
	for _, s := range steers {
		content = append(content, model.Block{Type: model.BlockText, Text: "[Message from the person, sent while you were working; it comes before anything else you were doing]\n" + s.Message})
		r.trusted(b, "user", s.Message)
		b.Delivered = append(b.Delivered, store.Delivered{ID: s.ID, At: r.cfg.Now()})
		r.addEvent(b, event.SteerReceived, map[string]any{"steer_id": s.ID, "message": s.Message, "turn": r.turn})
		r.addAudit(b, "steer.received", map[string]any{"steer_id": s.ID, "message_sha256": digest(s.Message), "bytes": len(s.Message)})
	}
	return content, nil
}

// control reads what a person asked of the task at a turn boundary.
func (r *Runner) control(ctx context.Context) (string, error) {
	if r.dur == nil {
		return "", nil
	}
	want, err := r.dur.Control(ctx, r.t.ID)
	if err != nil {
		return "", &storeError{err}
	}
	return want, nil
}

// pause moves the task to paused and suspends it; the control is cleared in the same commit.
func (r *Runner) pause(ctx context.Context, b *store.Batch) error {
	from := r.t.Status
	if err := task.Transition(from, task.Paused); err != nil {
		return err
	}
	r.t.Status = task.Paused
	r.t.UpdatedAt = r.cfg.Now()
	b.Task = r.t
	b.Controls = append(b.Controls, store.Control{Task: r.t.ID, Want: "", At: r.cfg.Now()})
	data := map[string]any{"from": from, "to": task.Paused, "reason": "paused by the person"}
	r.addEvent(b, event.TaskStatus, data)
	r.addAudit(b, "task.status", data)
	r.checkpoint(b)
	if err := r.commit(ctx, b); err != nil {
		return err
	}
	r.suspended = SuspendPaused
	return errSuspended
}

// unknownOutcome is what the model is told of a call in doubt.
func unknownOutcome(tool string) string {
	return fmt.Sprintf("outcome unknown: keepup stopped while this %s call was running, so it may or may not have taken effect. "+
		"Check the current state (for example by reading the file or listing the folder) before doing anything that depends on it; "+
		"repeating this exact call will need the person's approval.", tool)
}

// settled returns the journalled result of a call that finished before a restart.
func settled(c store.ToolCall) (model.Block, bool) {
	switch c.Status {
	case store.CallOK, store.CallError, store.CallRefused, store.CallUnknown:
		return model.Block{Type: model.BlockToolResult, ToolUseID: c.ID, Content: c.Result, IsError: c.Status != store.CallOK}, true
	}
	return model.Block{}, false
}

// isSuspend reports whether err is a suspension, not a failure.
func isSuspend(err error) bool { return errors.Is(err, errSuspended) }

// FilesWritten returns the files a task wrote, moved or deleted, from its checkpoint (nil when
// it has none or it cannot be read).
func FilesWritten(st *store.TaskState) []string {
	if st == nil {
		return nil
	}
	var s runState
	if json.Unmarshal(st.Data, &s) != nil {
		return nil
	}
	return s.FilesWritten
}
