// Package store owns durable state: tasks, the event journal, the tool-call journal (intent
// before a call executes, result after), approvals and the audit chain. Store is the interface
// every driver implements (SQLite now in store/sqlite; Postgres later) and storetest is the
// conformance suite every driver must pass. It must never decide policy or run tools.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/task"
)

// ErrNotFound is returned when a task, call or approval does not exist. Commit returns it
// (wrapped) for an event, call or approval of a task that was never stored.
var ErrNotFound = errors.New("not found")

// ErrDuplicateEvent is returned (wrapped) by Commit when an event's (Task, Seq) is already
// stored; nothing of the batch is applied.
var ErrDuplicateEvent = errors.New("event seq already used")

// CallStatus is the journal state of one tool call.
type CallStatus string

const (
	CallIntent  CallStatus = "intent"  // decided and about to execute; outcome unknown until a result
	CallOK      CallStatus = "ok"      // executed, succeeded
	CallError   CallStatus = "error"   // executed (or refused while running), failed
	CallRefused CallStatus = "refused" // never executed: invalid, out of scope or denied
	// CallUnknown: the intent was journalled, then keepup stopped before the result; the call
	// is not run again and the model is told its outcome is unknown.
	CallUnknown CallStatus = "unknown"
)

// ToolCall is one row of the tool-call journal.
type ToolCall struct {
	Task       string     `json:"task"`
	ID         string     `json:"id"` // the model's tool_use id
	Turn       int        `json:"turn"`
	Tool       string     `json:"tool"`
	Input      string     `json:"input"`
	Effect     string     `json:"effect"`
	Decision   string     `json:"decision"`
	Status     CallStatus `json:"status"`
	Result     string     `json:"result,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt time.Time  `json:"finished_at,omitzero"`
}

// ApprovalStatus is the state of an approval request.
type ApprovalStatus string

const (
	ApprovalPending  ApprovalStatus = "pending"
	ApprovalApproved ApprovalStatus = "approved"
	ApprovalDenied   ApprovalStatus = "denied"
)

// Approval is a request for a person's decision on one call.
type Approval struct {
	ID         string         `json:"id"`
	Task       string         `json:"task"`
	CallID     string         `json:"call_id"`
	Tool       string         `json:"tool"`
	Effect     string         `json:"effect"`
	Summary    string         `json:"summary"`
	Provenance string         `json:"provenance"`
	Status     ApprovalStatus `json:"status"`
	Scope      string         `json:"scope,omitempty"` // call | task
	By         string         `json:"by,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	ResolvedAt time.Time      `json:"resolved_at,omitzero"`
}

// Batch is everything one step writes; Commit applies it in a single transaction, so that a
// task's state, its journal, its audit entries and the jobs it enqueues never disagree after a
// crash.
type Batch struct {
	Task *task.Task   // upserted when set
	More []*task.Task // more tasks upserted (subagents created together)
	// Events are appended. A Seq the caller set must be unique per task; a zero Seq is
	// assigned by Commit (one more than the task's last, in the order given) and written back
	// into the slice, so that several writers can add to one task's stream.
	Events    []event.Event
	Calls     []ToolCall    // upserted by (Task, ID)
	Approvals []Approval    // upserted by ID
	Audit     []audit.Entry // sealed onto the chain in order, inside the transaction

	Log        []LogEntry  // appended to their task's log; N is assigned and written back
	State      *TaskState  // a task's runner checkpoint, replaced
	Steers     []Steer     // new ones (ID 0) are inserted, and their ID written back
	Delivered  []Delivered // steering messages handed to the model
	Controls   []Control   // upserted by Task
	Schedules  []Schedule  // upserted by ID
	Unschedule []string    // schedule ids deleted
	// Jobs are handed to the store's Enqueuer inside the transaction.
	Jobs []Job
}

// LogEntry is one record of a task's append-only log (see Durable).
type LogEntry struct {
	Task string `json:"task"`
	N    int64  `json:"n"`
	Kind string `json:"kind"`
	Data []byte `json:"data"`
}

// TaskState is a task runner's checkpoint: opaque JSON owned by the agent package.
type TaskState struct {
	Task string
	Data []byte
}

// Steer is a message a person sent to a task.
type Steer struct {
	ID        int64     `json:"id"`
	Task      string    `json:"task"`
	Message   string    `json:"message"`
	CreatedAt time.Time `json:"created_at"`
	Delivered time.Time `json:"delivered,omitzero"`
}

// Delivered marks steering message ID as delivered at At.
type Delivered struct {
	ID int64
	At time.Time
}

// Control is what a person asked of a task that its runner acts on: "pause", "cancel", or ""
// once acted on.
type Control struct {
	Task string
	Want string
	At   time.Time
}

// Schedule is a stored schedule; Spec is the queue's JSON description of it.
type Schedule struct {
	ID        string
	Spec      []byte
	Next      time.Time
	LastSlot  time.Time
	LastTask  string
	CreatedAt time.Time
}

// Job is a unit of queued work enqueued with a Commit: Kind and Args as the queue defines
// them.
type Job struct {
	Kind     string
	Args     any
	Priority int
}

// Enqueuer inserts jobs inside a store transaction (tx is the driver's transaction, e.g.
// *sql.Tx for SQLite).
type Enqueuer func(ctx context.Context, tx any, jobs []Job) error

// Durable is what the orchestrator needs beyond Store to continue tasks after a crash: a task's
// log and checkpoint, steering, controls and schedules.
type Durable interface {
	Store
	// Log returns a task's log entries with N > after, in order.
	Log(ctx context.Context, taskID string, after int64) ([]LogEntry, error)
	// State returns a task's checkpoint, or nil when it has none.
	State(ctx context.Context, taskID string) (*TaskState, error)
	// Steers returns a task's steering messages in order, undelivered ones only if pendingOnly.
	Steers(ctx context.Context, taskID string, pendingOnly bool) ([]Steer, error)
	// Control returns what was asked of a task ("" if nothing).
	Control(ctx context.Context, taskID string) (string, error)
	// Approval returns one approval or ErrNotFound.
	Approval(ctx context.Context, id string) (*Approval, error)
	// Schedules lists schedules by next slot; due, when not zero, keeps those with Next <= due.
	Schedules(ctx context.Context, due time.Time) ([]Schedule, error)
	// SetEnqueuer installs the function that inserts Batch.Jobs.
	SetEnqueuer(Enqueuer)
}

// TaskFilter narrows Tasks.
type TaskFilter struct {
	Limit  int          // 0: no limit
	Status []task.State // empty: any
	Parent *string      // nil: any
}

// Store is a storage driver.
type Store interface {
	// Commit applies b atomically.
	Commit(ctx context.Context, b *Batch) error
	// Task returns one task or ErrNotFound.
	Task(ctx context.Context, id string) (*task.Task, error)
	// Tasks lists tasks, newest first.
	Tasks(ctx context.Context, f TaskFilter) ([]task.Task, error)
	// Events returns a task's events with Seq > after, in order; limit 0 means all.
	Events(ctx context.Context, taskID string, after int64, limit int) ([]event.Event, error)
	// LastSeq returns the highest event Seq of a task (0 if none).
	LastSeq(ctx context.Context, taskID string) (int64, error)
	// ToolCalls returns a task's tool-call journal in the order calls were first written.
	ToolCalls(ctx context.Context, taskID string) ([]ToolCall, error)
	// Approvals returns approvals of a task ("" for all tasks), pending ones only if pendingOnly.
	Approvals(ctx context.Context, taskID string, pendingOnly bool) ([]Approval, error)
	// ScanAudit calls fn for each audit record with Seq > after, in Seq order, as stored (no
	// checks): verification is audit.Verify's job.
	ScanAudit(ctx context.Context, after int64, fn func(audit.Record) error) error
	// AuditRecords returns the records of one task (Entry.Task == taskID), or all if "".
	AuditRecords(ctx context.Context, taskID string) ([]audit.Record, error)
	// AuditAnchor returns the chain head as last committed ({0, audit.Genesis} when empty).
	AuditAnchor(ctx context.Context) (audit.Anchor, error)
	Close() error
}
