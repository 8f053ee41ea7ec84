// Package tool owns the tool contract every capability implements (built-in file tools now;
// shell, web, MCP and browser later), the registry that validates a call's arguments against the
// tool's JSON schema, and the built-in tools themselves. A tool never decides whether it may run:
// Prepare only decodes, resolves scope and classifies; the agent's pipeline decides, journals and
// then calls Run. A tool must never touch the host except through its scope.Session.
package tool

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/task"
)

// Tool is one capability offered to the model.
type Tool interface {
	// Spec is the name, description and input schema the model sees.
	Spec() model.ToolSpec
	// Prepare decodes schema-valid input, resolves the paths it names against the session's
	// grants and classifies what the call would do. A refusal (path outside grants, write to a
	// read-only grant, ...) is a *Refusal: it goes back to the model as a tool error.
	Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error)
}

// Call is a prepared tool call, ready for the pipeline to decide on.
type Call struct {
	Action policy.Action
	// ReadOnly calls of one turn run concurrently; the others run in order.
	ReadOnly bool
	// Idempotent calls may be re-run after a crash left their outcome unknown.
	Idempotent bool
	// Run performs the call. It is called at most once, only after the pipeline allowed it.
	Run func(ctx context.Context) (*Result, error)
}

// Result is what a call produced.
type Result struct {
	// Content is the text that goes back to the model.
	Content string
	// IsError marks a failed call (a refusal at run time included).
	IsError bool
	// Sources names where Content came from (e.g. "file:notes/plan.md"); content from the
	// session's files, uploads, the web or connectors is untrusted.
	Sources   []string
	Untrusted bool
	// Files records, for the audit, the SHA-256 of each touched file before and after.
	Files []FileChange
}

// FileChange is one file touched by a call. Before/After are hex SHA-256, "" when absent.
type FileChange struct {
	Path   string `json:"path"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

// Env is what a tool may use.
type Env struct {
	Session *scope.Session
	Task    string
	// Plan stores a new plan (update_plan).
	Plan func(ctx context.Context, p task.Plan) error
	// Ask puts a question to the user and returns the answer (ask_user).
	Ask func(ctx context.Context, question string) (string, error)
	// Output streams a chunk of a running call's output (tool.output events).
	Output func(stream, chunk string)
	// Sandbox runs commands in the session's isolation boundary (bash). Nil when the session
	// has none: tools that need it refuse.
	Sandbox sandbox.Session
	// Web is the HTTP client whose requests go through the session's egress proxy
	// (web_fetch). Nil when the session has no network: those tools refuse.
	Web *http.Client
	// Spawn runs subagents for this call (spawn_subagents) and returns their results; nil
	// when the task may not start any.
	Spawn func(ctx context.Context, briefs []Brief) ([]ChildResult, error)
}

// Refusal is a call refused before or while running, with a message the model can act on.
type Refusal struct{ Msg string }

func (r *Refusal) Error() string { return r.Msg }

// Refusef returns a *Refusal.
func Refusef(format string, args ...any) error {
	return &Refusal{Msg: sprintf(format, args...)}
}
