// Package agent owns the agent loop and the one pipeline every tool call goes through:
//
//	decode args -> resolve scope -> classify effect -> guard (provenance) -> policy -> [approval]
//	  -> journal intent -> execute -> journal result -> audit -> label provenance -> model
//
// It drives a task through its lifecycle (planning, running, summarizing), enforces budgets,
// compacts the context and records every step as events, journal rows and audit entries in one
// store transaction each. It must never touch the host except through tools, and never let the
// model widen its own permissions.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/guard"
	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
	"github.com/keepup/keepup/internal/tool"
)

// Answer is a person's answer to an approval request.
type Answer string

const (
	AnswerYes     Answer = "yes"      // this call only
	AnswerNo      Answer = "no"       // refuse this call
	AnswerYesTask Answer = "yes-task" // this call and every later one of the same effect in this task
)

// ApprovalRequest is what a person is shown before a significant action.
type ApprovalRequest struct {
	ID         string
	Task       string
	CallID     string
	Tool       string
	Effect     policy.Effect
	Summary    string
	Targets    []policy.Target
	Rule       string
	Provenance guard.Label
	// Guard is the injection guard's explanation when one of its rules asked (R1–R6), shown
	// with the action: which rule, why, and the content that led to it.
	Guard string
}

// Person answers approvals and questions. The CLI asks on the terminal; the daemon (later) puts
// them in its inbox.
type Person interface {
	Approve(ctx context.Context, req ApprovalRequest) (Answer, error)
	Answer(ctx context.Context, question string) (string, error)
}

// Decider decides on a classified action (the policy with the task's approval mode bound).
type Decider func(policy.Action) policy.Decision

// Budgets are enforced by the runtime whatever the model does. Zero means no limit.
type Budgets struct {
	MaxTurns  int           // model turns in the work phase; default 100
	MaxTokens int64         // input+output tokens over the task
	WallTime  time.Duration // from the start of Run
}

// Config is everything a Runner needs. Fields marked required are checked by New.
type Config struct {
	Store    store.Store    // required
	Provider model.Provider // required; wrapped with Retry
	Tools    *tool.Registry // required
	Decide   Decider        // required
	Person   Person         // required
	Session  *scope.Session // required
	Task     *task.Task     // required: a new task (status queued) or one to continue
	// Sandbox is the session's isolation boundary for tools that run commands (bash); nil
	// when the session has none, and those tools refuse.
	Sandbox sandbox.Session
	// Web is the HTTP client whose requests go through the session's egress proxy; nil: no
	// network, and web_fetch refuses.
	Web *http.Client

	Retry   model.RetryConfig
	Budgets Budgets
	// MaxConsecutiveErrors fails the task after this many malformed tool calls in a row (unknown
	// tool, invalid JSON, schema mismatch). Default 5.
	MaxConsecutiveErrors int
	// ContextWindow is the model's window in tokens (default 200,000). Compaction starts when the
	// conversation reaches CompactAt of it (default 0.75), keeping the last KeepMessages messages
	// (default 6).
	ContextWindow int
	CompactAt     float64
	KeepMessages  int
	// MaxTokensPerTurn is the output cap of one model call (default 8192).
	MaxTokensPerTurn int
	// Guard configures the injection rules (R1–R6) checked before policy; the zero value is
	// guard.DefaultConfig(). Headless says nobody can answer a confirmation (approvals deny):
	// R2 then denies outright.
	Guard    *guard.Config
	Headless bool
	// ExecNetwork says the session's commands can reach the network (through the egress
	// proxy, for the hosts allowed): R6 then applies to code execution.
	ExecNetwork bool
	// AuditModelContent records the text of model turns in the audit (off by default).
	AuditModelContent bool
	// OnEvent receives every event after it is committed to the journal.
	OnEvent func(event.Event)
	// OnText receives streamed model text as it arrives (not journalled until the turn ends).
	OnText func(string)
	// Now is the clock (default time.Now).
	Now func() time.Time

	// SliceTurns, when positive, makes Run return after that many work turns at a turn
	// boundary (Suspended: SuspendSlice), with the task checkpointed: a queue runs long tasks
	// as bounded slices. Zero: Run goes on until the task ends or waits.
	SliceTurns int
	// Queue, when set, is told of suspensions and of the end, inside the same commits.
	Queue Queue
	// Spawner runs subagents (spawn_subagents); nil: the tool refuses.
	Spawner Spawner
	// Limits bound subagents; zero fields take their defaults.
	Limits Limits
}

// Queue is what a runner tells the orchestrator, in the commit that records the step, so
// that the task's state and the jobs that continue it never disagree after a crash.
type Queue interface {
	// Suspend adds to b what a task that stops for reason needs (for a slice: the job that
	// continues it).
	Suspend(t *task.Task, reason Suspension, b *store.Batch)
	// Finish adds to b what the end of t must commit with it (the parent's continuation when
	// t was its last running child).
	Finish(ctx context.Context, t *task.Task, b *store.Batch) error
}

// Spawner runs a parent's briefs as child tasks and returns their results. It may return
// ErrSuspend when the children run elsewhere and are not done yet: the parent continues when
// they are. It must be idempotent for a (parent, callID): a second call after a crash creates
// no second set of children.
type Spawner interface {
	// progress, when the spawner runs the children itself, reports a child's status as it
	// changes (the parent's plan shows it).
	Spawn(ctx context.Context, parent *task.Task, callID string, children []*task.Task, progress func(child string, status task.State)) ([]ChildResult, error)
}

// ChildResult is what a finished child returns to its parent.
type ChildResult = tool.ChildResult

// Limits bound subagents whatever the model asks.
type Limits struct {
	MaxDepth      int // default 2: a person's task (0) -> child (1) -> grandchild (2)
	MaxConcurrent int // children of one task running at once; default 8
	MaxChildren   int // children of one task in all; default 32
}

// DefaultLimits are the subagent limits when Config.Limits leaves them zero.
var DefaultLimits = Limits{MaxDepth: 2, MaxConcurrent: 8, MaxChildren: 32}

// WithDefaults returns l with its zero fields set to DefaultLimits'.
func (l Limits) WithDefaults() Limits {
	if l.MaxDepth == 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	if l.MaxConcurrent == 0 {
		l.MaxConcurrent = DefaultLimits.MaxConcurrent
	}
	if l.MaxChildren == 0 {
		l.MaxChildren = DefaultLimits.MaxChildren
	}
	return l
}

func (c *Config) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("agent: Config.Store is required")
	case c.Provider == nil:
		return errors.New("agent: Config.Provider is required")
	case c.Tools == nil:
		return errors.New("agent: Config.Tools is required")
	case c.Decide == nil:
		return errors.New("agent: Config.Decide is required")
	case c.Person == nil:
		return errors.New("agent: Config.Person is required")
	case c.Session == nil:
		return errors.New("agent: Config.Session is required")
	case c.Task == nil:
		return errors.New("agent: Config.Task is required")
	}
	if c.Budgets.MaxTurns == 0 {
		c.Budgets.MaxTurns = 100
	}
	if c.Budgets.MaxTurns < 0 || c.Budgets.MaxTokens < 0 || c.Budgets.WallTime < 0 {
		return errors.New("agent: Config.Budgets: limits must not be negative")
	}
	if c.MaxConsecutiveErrors == 0 {
		c.MaxConsecutiveErrors = 5
	}
	if c.ContextWindow == 0 {
		c.ContextWindow = 200_000
	}
	if c.CompactAt == 0 {
		c.CompactAt = 0.75
	}
	if c.CompactAt <= 0 || c.CompactAt >= 1 {
		return fmt.Errorf("agent: Config.CompactAt: %v is not between 0 and 1", c.CompactAt)
	}
	if c.KeepMessages == 0 {
		c.KeepMessages = 6
	}
	if c.MaxTokensPerTurn == 0 {
		c.MaxTokensPerTurn = 8192
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SliceTurns < 0 {
		return errors.New("agent: Config.SliceTurns: must not be negative")
	}
	c.Limits = c.Limits.WithDefaults()
	return nil
}
