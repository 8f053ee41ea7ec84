package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/task"
)

// progress prints a task's events for a person: the plan as a checklist that ticks, the current
// action, refusals, then the summary. On a terminal the checklist is redrawn in place.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	planRows int // rows of the checklist just printed, if nothing came after it
	midText  bool
	outLines map[string]int // output lines shown per tool call
}

// maxOutputLines is how much of a command's output the terminal shows.
const maxOutputLines = 20

func newProgress(w io.Writer, tty bool) *progress {
	return &progress{w: w, tty: tty, outLines: map[string]int{}}
}

func (p *progress) printf(format string, args ...any) {
	if p.midText {
		fmt.Fprintln(p.w)
		p.midText = false
	}
	fmt.Fprintf(p.w, format, args...)
	p.planRows = 0
}

// text streams model text as it arrives.
func (p *progress) text(delta string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.midText {
		fmt.Fprint(p.w, "  ")
	}
	fmt.Fprint(p.w, strings.ReplaceAll(delta, "\n", "\n  "))
	p.midText = true
	p.planRows = 0
}

func (p *progress) event(e event.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var d map[string]any
	_ = json.Unmarshal(e.Data, &d)
	str := func(k string) string { s, _ := d[k].(string); return s }
	switch e.Type {
	case event.ModelTurn:
		if p.midText {
			fmt.Fprintln(p.w)
			p.midText = false
		}
	case event.TaskCreated:
		p.printf("Task %s (session %s), model %s\n", e.Task, e.Session, str("model"))
		if gs, ok := d["grants"].([]any); ok {
			for _, g := range gs {
				m, _ := g.(map[string]any)
				p.printf("  %s %-4s %v -> %v\n", "folder", m["mode"], m["path"], m["mount"])
			}
		}
	case event.PlanUpdated:
		var pl struct {
			Items task.Plan `json:"items"`
		}
		_ = json.Unmarshal(e.Data, &pl)
		p.plan(pl.Items)
	case event.ToolStarted:
		if str("tool") != "update_plan" { // the checklist shows it
			p.printf("  → %s\n", str("summary"))
		}
	case event.ToolResult:
		switch str("status") {
		case "refused", "error":
			msg := str("error")
			if msg == "" {
				msg = str("content")
			}
			p.printf("  ✗ %s: %s\n", str("tool"), firstLine(msg))
		case "denied":
			p.printf("  ⛔ refused: %s (%s)\n", str("summary"), str("rule"))
		}
	case event.ToolOutput:
		// Command output as it streams, indented under its action; long output is cut.
		id := str("tool_call_id")
		if p.outLines[id] >= maxOutputLines {
			return
		}
		for _, line := range strings.Split(strings.TrimRight(str("chunk"), "\n"), "\n") {
			if p.outLines[id]++; p.outLines[id] > maxOutputLines {
				p.printf("    │ …\n")
				break
			}
			p.printf("    │ %s\n", line)
		}
	case event.ModelRetry:
		p.printf("  … model call failed (%s); retrying in %.1fs\n", firstLine(str("error")), toF(d["wait_ms"])/1000)
	case event.ContextCompacted:
		p.printf("  (context compacted: %v messages summarised)\n", d["messages_dropped"])
	case event.TaskSummary:
		p.printf("\nSummary:\n%s\n", indent(str("summary")))
	case event.TaskFinished:
		u, _ := d["usage"].(map[string]any)
		p.printf("\n%s after %v turns (%v tokens in, %v out)\n", strings.ToUpper(str("status")[:1])+str("status")[1:], d["turns"], u["input_tokens"], u["output_tokens"])
		if e := str("error"); e != "" {
			p.printf("Reason: %s\n", e)
		}
		if o := str("outputs"); o != "" {
			p.printf("Outputs: %s\n", o)
		}
	}
}

func (p *progress) plan(items task.Plan) {
	if p.midText {
		fmt.Fprintln(p.w)
		p.midText = false
	}
	if p.tty && p.planRows > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA\x1b[J", p.planRows)
	}
	fmt.Fprintln(p.w, "Plan:")
	for _, it := range items {
		mark := "[ ]"
		switch it.Status {
		case task.Done:
			mark = "[x]"
		case task.InProgress:
			mark = "[>]"
		case task.Skipped:
			mark = "[-]"
		case task.ItemFailed:
			mark = "[!]"
		}
		fmt.Fprintf(p.w, "  %s %s\n", mark, it.Title)
	}
	p.planRows = len(items) + 1
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func indent(s string) string { return "  " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n  ") }

func toF(v any) float64 {
	f, _ := v.(float64)
	return f
}
