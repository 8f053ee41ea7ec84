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
// task's state, its journal and its audit entries never disagree after a crash.
type Batch struct {
	Task      *task.Task    // upserted when set
	Events    []event.Event // appended; Seq is assigned by the caller and unique per task
	Calls     []ToolCall    // upserted by (Task, ID)
	Approvals []Approval    // upserted by ID
	Audit     []audit.Entry // sealed onto the chain in order, inside the transaction
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
