// Package task owns the task lifecycle of DESIGN.md: the states, the legal transitions between
// them, and the plan. An illegal transition is an error and is never applied. It must never run
// anything; the agent loop drives it.
package task

import (
	"fmt"
	"strings"
	"time"

	"github.com/keepup/keepup/internal/scope"
)

// State is a task's lifecycle state.
type State string

const (
	Queued           State = "queued"
	Planning         State = "planning"
	Running          State = "running"
	AwaitingApproval State = "awaiting_approval"
	Paused           State = "paused"
	Summarizing      State = "summarizing"
	Completed        State = "completed"
	Failed           State = "failed"
	Cancelled        State = "cancelled"
)

// States lists every state, in lifecycle order.
var States = []State{Queued, Planning, Running, AwaitingApproval, Paused, Summarizing, Completed, Failed, Cancelled}

// transitions is the whole state machine. awaiting_approval and paused are reachable from
// planning and running and return to where they came from (either of the two).
var transitions = map[State][]State{
	Queued:           {Planning, Cancelled, Failed},
	Planning:         {Running, AwaitingApproval, Paused, Summarizing, Failed, Cancelled},
	Running:          {AwaitingApproval, Paused, Summarizing, Failed, Cancelled},
	AwaitingApproval: {Planning, Running, Paused, Failed, Cancelled},
	Paused:           {Planning, Running, Failed, Cancelled},
	Summarizing:      {Completed, Failed, Cancelled},
}

// Terminal reports whether s is an end state.
func (s State) Terminal() bool { return s == Completed || s == Failed || s == Cancelled }

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, k := range States {
		if k == s {
			return true
		}
	}
	return false
}

// CanTransition reports whether from -> to is legal.
func CanTransition(from, to State) bool {
	for _, t := range transitions[from] {
		if t == to {
			return true
		}
	}
	return false
}

// TransitionError is returned for an illegal transition.
type TransitionError struct{ From, To State }

func (e *TransitionError) Error() string {
	return fmt.Sprintf("illegal task transition %s -> %s", e.From, e.To)
}

// Transition checks from -> to and returns a *TransitionError if it is illegal.
func Transition(from, to State) error {
	if !from.Valid() || !to.Valid() || !CanTransition(from, to) {
		return &TransitionError{From: from, To: to}
	}
	return nil
}

// ItemStatus is a plan item's status.
type ItemStatus string

const (
	Pending    ItemStatus = "pending"
	InProgress ItemStatus = "in_progress"
	Done       ItemStatus = "done"
	Skipped    ItemStatus = "skipped"
	ItemFailed ItemStatus = "failed"
)

// PlanItem is one subtask of the plan.
type PlanItem struct {
	ID     string     `json:"id"`
	Title  string     `json:"title"`
	Status ItemStatus `json:"status"`
	Owner  string     `json:"owner,omitempty"`
}

// Plan is the ordered list of subtasks.
type Plan []PlanItem

// Validate checks ids are present and unique, titles are present and statuses known.
func (p Plan) Validate() error {
	if len(p) == 0 {
		return fmt.Errorf("plan: items: at least one item is needed")
	}
	seen := map[string]bool{}
	for i, it := range p {
		if strings.TrimSpace(it.ID) == "" {
			return fmt.Errorf("plan: items[%d].id: empty", i)
		}
		if seen[it.ID] {
			return fmt.Errorf("plan: items[%d].id: %q used twice", i, it.ID)
		}
		seen[it.ID] = true
		if strings.TrimSpace(it.Title) == "" {
			return fmt.Errorf("plan: items[%d].title: empty", i)
		}
		switch it.Status {
		case Pending, InProgress, Done, Skipped, ItemFailed:
		default:
			return fmt.Errorf("plan: items[%d].status: %q is not one of pending, in_progress, done, skipped, failed", i, it.Status)
		}
	}
	return nil
}

// Counts returns how many items are finished (done or skipped) and how many there are.
func (p Plan) Counts() (finished, total int) {
	for _, it := range p {
		if it.Status == Done || it.Status == Skipped {
			finished++
		}
	}
	return finished, len(p)
}

// Task is the stored record of a task.
type Task struct {
	ID        string    `json:"id"`
	Session   string    `json:"session"`
	Parent    string    `json:"parent,omitempty"`
	Prompt    string    `json:"prompt"`
	Status    State     `json:"status"`
	Plan      Plan      `json:"plan"`
	Summary   string    `json:"summary,omitempty"`
	Error     string    `json:"error,omitempty"`
	Model     string    `json:"model"`
	Approvals string    `json:"approvals"`
	Grants    []Grant   `json:"grants"`
	Outputs   string    `json:"outputs"`
	Turns     int       `json:"turns"`
	Usage     Usage     `json:"usage"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Options
}

// Options are what a task was created with beyond its prompt, model and grants.
type Options struct {
	// Priority is 1 (highest) to 4 (lowest) in the queue; 0 when the task was not queued.
	Priority int `json:"priority,omitempty"`
	// MaxTurns bounds the work phase; 0: the default.
	MaxTurns int `json:"max_turns,omitempty"`
	// Depth is 0 for a task a person created, parent's + 1 for a subagent.
	Depth int `json:"depth,omitempty"`
	// Tools, when not empty, are the only tools the task may use (a subagent's brief).
	Tools []string `json:"tools,omitempty"`
	// Call is the parent's spawn_subagents call that created this subagent; Title its brief's.
	Call  string `json:"call,omitempty"`
	Title string `json:"title,omitempty"`
	// Held marks a subagent queued without a job yet: its parent has as many running as the
	// limit allows, and releases it when one ends.
	Held bool `json:"held,omitempty"`
	// Schedule is the schedule that created the task, and Slot the slot it runs for.
	Schedule string    `json:"schedule,omitempty"`
	Slot     time.Time `json:"slot,omitzero"`
}

// Grant is the stored description of one folder grant.
type Grant struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Mode string `json:"mode"`
}

// SessionConfig is the configuration that reopens t's session as it was created: its grants,
// outputs and uploads, copying nothing (the caller sets Home).
func (t *Task) SessionConfig() scope.Config {
	var grants []scope.Grant
	uploads := ""
	for _, g := range t.Grants {
		switch g.Name {
		case scope.OutputsName:
		case scope.UploadsName:
			uploads = g.Path
		default:
			grants = append(grants, scope.Grant{Name: g.Name, Path: g.Path, Mode: scope.Mode(g.Mode)})
		}
	}
	return scope.Config{ID: t.Session, Grants: grants, Outputs: t.Outputs, UploadsDir: uploads, Reopen: true}
}

// Usage is a task's token use.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}
