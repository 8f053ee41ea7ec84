package queue

import (
	"errors"
	"fmt"
	"time"

	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// TaskRequest is what a person asks for when they queue a task (HTTP API, CLI).
type TaskRequest struct {
	// Prompt is the task's goal. Required; at most MaxPromptBytes.
	Prompt string `json:"prompt"`
	// Grants are folder grants as on the command line: "[NAME=]PATH[:ro|:rw]".
	Grants []string `json:"grants,omitempty"`
	// Uploads are host files attached read-only and untrusted; each at most MaxUploadBytes.
	Uploads []string `json:"uploads,omitempty"`
	// Model is a model SPEC; "" uses the daemon's default.
	Model string `json:"model,omitempty"`
	// Approvals is ask, deny or auto; "" uses the configured default.
	Approvals string `json:"approvals,omitempty"`
	// Priority is 1 (highest) to 4 (lowest); 0 means 2. FIFO within a priority.
	Priority int `json:"priority,omitempty"`
	// MaxTurns bounds the work phase; 0 uses the default (100).
	MaxTurns int `json:"max_turns,omitempty"`
	// Schedule, when set, makes this a schedule that creates a task per slot instead of one task.
	Schedule *ScheduleSpec `json:"schedule,omitempty"`
}

// ScheduleSpec says when a scheduled task runs.
type ScheduleSpec struct {
	// Cron is a standard five-field cron expression (minute hour day-of-month month
	// day-of-week), or a descriptor such as "@hourly". Evaluated in UTC.
	Cron string `json:"cron"`
	// Missed says what happens to slots that passed while the daemon was down: "skip" (the
	// default) runs nothing for them, "run_once" runs one task for all of them.
	Missed string `json:"missed,omitempty"`
}

// Schedule is a stored schedule.
type Schedule struct {
	ID        string      `json:"id"`
	Request   TaskRequest `json:"request"`
	Cron      string      `json:"cron"`
	Missed    string      `json:"missed"`
	Next      time.Time   `json:"next"`                // the next slot to fire
	LastSlot  time.Time   `json:"last_slot,omitzero"`  // the last slot a task was created for
	LastTask  string      `json:"last_task,omitempty"` // that task
	CreatedAt time.Time   `json:"created_at"`
}

// Steer is one steering message as stored; Delivered is when the runner handed it to the
// model (zero: not yet).
type Steer = store.Steer

// Limits of the API's inputs.
const (
	MaxPromptBytes  = 256 << 10
	MaxSteerBytes   = 64 << 10
	MaxUploadBytes  = 32 << 20
	MaxUploads      = 32
	MaxGrants       = 32
	DefaultPriority = 2
)

// ErrNotFound is returned for an unknown task, approval or schedule id.
var ErrNotFound = store.ErrNotFound

// InputError is bad input: Field names the request field (JSON name, e.g. "grants[1]"), Msg
// says what is wrong. Nothing was changed.
type InputError struct {
	Field string
	Msg   string
}

func (e *InputError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Msg) }

// ConflictError is a request that does not fit the task's state (pausing a finished task,
// approving an approval already resolved). Nothing was changed.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

func inputErr(field, format string, args ...any) error {
	return &InputError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &ConflictError{Msg: fmt.Sprintf(format, args...)}
}

// IsInput reports whether err is an *InputError.
func IsInput(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}

// Decision answers an approval from the inbox.
type Decision struct {
	Approve bool   `json:"approve"`
	Scope   string `json:"scope,omitempty"` // "call" (default) or "task"
	By      string `json:"by,omitempty"`    // who answered, for the audit ("api", "cli", a name)
}

// TaskView is a task with what the API adds to it: its children's ids.
type TaskView struct {
	task.Task
	Children []string `json:"children,omitempty"`
}

// ApprovalView is a pending or resolved approval.
type ApprovalView = store.Approval
