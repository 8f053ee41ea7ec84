package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/task"
)

//go:embed spawn_subagents.md
var spawnSubagentsDescription string

// SpawnSubagents is the spawn_subagents tool: {tasks: [{title, instructions, grants?, tools?}]}.
// It runs the briefs as child tasks through Env.Spawn, which applies the runtime's limits and
// intersects each child's permissions with its parent's, and returns their bounded results
// as untrusted content.
type SpawnSubagents struct{}

// Brief is one subagent the model asks for.
type Brief struct {
	Title        string   `json:"title"`
	Instructions string   `json:"instructions"`
	Grants       []string `json:"grants,omitempty"`
	Tools        []string `json:"tools,omitempty"`
}

// ChildResult is what a finished subagent returns to its parent.
type ChildResult struct {
	Task    string     `json:"task"`
	Title   string     `json:"title"`
	Status  task.State `json:"status"`
	Summary string     `json:"summary"`
	Error   string     `json:"error,omitempty"`
	Files   []string   `json:"files,omitempty"`
	Usage   task.Usage `json:"usage"`
}

// Limits of spawn_subagents' input and output.
const (
	MaxBriefs            = 100
	MaxInstructionsBytes = 64 << 10
	MaxChildSummaryBytes = 4 << 10
	MaxChildFiles        = 50
)

const spawnSubagentsSchema = `{
  "type": "object",
  "properties": {
    "tasks": {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "properties": {
          "title": {"type": "string", "minLength": 1, "description": "Short name of the subtask."},
          "instructions": {"type": "string", "minLength": 1, "description": "Everything the subagent needs to do the subtask."},
          "grants": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "Names of your grants it may use (NAME or NAME:ro); all of yours when absent."},
          "tools": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "Names of the tools it may use; all of yours when absent."}
        },
        "required": ["title", "instructions"],
        "additionalProperties": false
      }
    }
  },
  "required": ["tasks"],
  "additionalProperties": false
}`

func (SpawnSubagents) Spec() model.ToolSpec {
	return spec("spawn_subagents", spawnSubagentsDescription, spawnSubagentsSchema)
}

func (SpawnSubagents) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Tasks []Brief `json:"tasks"`
	}
	if err := decode("spawn_subagents", input, &in); err != nil {
		return nil, err
	}
	if len(in.Tasks) > MaxBriefs {
		return nil, Refusef("spawn_subagents: %d tasks in one call; at most %d", len(in.Tasks), MaxBriefs)
	}
	titles := make([]string, 0, len(in.Tasks))
	for i, b := range in.Tasks {
		if strings.TrimSpace(b.Title) == "" || strings.TrimSpace(b.Instructions) == "" {
			return nil, Refusef("spawn_subagents: tasks[%d]: title and instructions must not be blank", i)
		}
		if len(b.Instructions) > MaxInstructionsBytes {
			return nil, Refusef("spawn_subagents: tasks[%d].instructions: %d bytes; at most %d", i, len(b.Instructions), MaxInstructionsBytes)
		}
		titles = append(titles, b.Title)
	}
	return &Call{
		Action: policy.Action{
			Tool: "spawn_subagents",
			// The children's own calls go through the pipeline, each under the same policy.
			Ops:     []policy.Op{{Effect: policy.EffectNone, Subject: "spawn_subagents"}},
			Summary: fmt.Sprintf("start %s: %s", plural(len(in.Tasks), "subagent", "subagents"), strings.Join(titles, "; ")),
		},
		// Spawning is keyed by the call: running it again after a restart finds the same
		// children instead of starting new ones.
		Idempotent: true,
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			if env == nil || env.Spawn == nil {
				return failed(Refusef("subagents cannot be started in this task"))
			}
			results, err := env.Spawn(ctx, in.Tasks)
			if err != nil {
				return nil, err
			}
			return childResults(results), nil
		},
	}, nil
}

// childResults formats the children's outcomes, each bounded, as untrusted content.
func childResults(results []ChildResult) *Result {
	var sb strings.Builder
	res := &Result{Untrusted: true}
	failed := 0
	for _, c := range results {
		if c.Status != task.Completed {
			failed++
		}
		fmt.Fprintf(&sb, "## %s (%s): %s\n", c.Title, c.Task, c.Status)
		if c.Error != "" {
			fmt.Fprintf(&sb, "Error: %s\n", Clip(c.Error, 500))
		}
		if c.Summary != "" {
			sb.WriteString(Clip(c.Summary, MaxChildSummaryBytes))
			sb.WriteString("\n")
		}
		if len(c.Files) > 0 {
			files := c.Files
			if len(files) > MaxChildFiles {
				files = files[:MaxChildFiles]
			}
			fmt.Fprintf(&sb, "Files: %s", strings.Join(files, ", "))
			if len(c.Files) > len(files) {
				fmt.Fprintf(&sb, " and %d more", len(c.Files)-len(files))
			}
			sb.WriteString("\n")
		}
		sb.WriteString("\n")
		res.Sources = append(res.Sources, "subagent:"+c.Task)
	}
	fmt.Fprintf(&sb, "%d of %d subagents completed.", len(results)-failed, len(results))
	res.Content = sb.String()
	return res
}

// Clip shortens s to at most n bytes on a rune boundary, marking the cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… [%d more bytes]", len(s)-cut)
}
