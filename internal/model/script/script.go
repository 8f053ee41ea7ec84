// Package script owns the scripted model of DESIGN.md ("script:FILE"): a JSON file of turns
// played in order, ignoring what tools return. It serves the demo, tests, benchmarks and replays,
// and must never be presented as a real model.
package script

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keepup/keepup/internal/model"
)

// Script is a parsed script file.
type Script struct {
	Turns []Turn `json:"turns"`
}

// Turn is one scripted assistant turn.
type Turn struct {
	Text      string `json:"text,omitempty"`
	ToolCalls []Call `json:"tool_calls,omitempty"`
	DelayMS   int    `json:"delay_ms,omitempty"`
}

// Call is one scripted tool call. Input is kept as raw JSON text so that a script can replay a
// malformed call (a string input is sent verbatim, which is how tests play invalid JSON).
type Call struct {
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input,omitempty"`
}

// Parse decodes and checks a script. Errors name the turn and field.
func Parse(data []byte) (*Script, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, describeJSONError(data, err)
	}
	if top == nil {
		return nil, errors.New("the script must be a JSON object with a \"turns\" array")
	}
	for k := range top {
		if k != "turns" {
			return nil, fmt.Errorf("unknown field %q (the script has only \"turns\")", k)
		}
	}
	rawTurns, ok := top["turns"]
	if !ok {
		return nil, errors.New(`field "turns" is missing`)
	}
	var turns []map[string]json.RawMessage
	if err := json.Unmarshal(rawTurns, &turns); err != nil {
		return nil, errors.New("turns: must be an array of objects")
	}
	s := &Script{Turns: make([]Turn, 0, len(turns))}
	for i, raw := range turns {
		var t Turn
		for k, v := range raw {
			var err error
			switch k {
			case "text":
				err = json.Unmarshal(v, &t.Text)
			case "delay_ms":
				err = json.Unmarshal(v, &t.DelayMS)
				if err == nil && t.DelayMS < 0 {
					err = fmt.Errorf("%d is negative", t.DelayMS)
				}
			case "tool_calls":
				var calls []map[string]json.RawMessage
				if err = json.Unmarshal(v, &calls); err != nil {
					err = errors.New("must be an array of objects")
					break
				}
				for j, c := range calls {
					call, cerr := parseCall(c)
					if cerr != nil {
						return nil, fmt.Errorf("turns[%d].tool_calls[%d].%w", i, j, cerr)
					}
					t.ToolCalls = append(t.ToolCalls, call)
				}
			default:
				err = errors.New("unknown field (a turn has text, tool_calls and delay_ms)")
			}
			if err != nil {
				return nil, fmt.Errorf("turns[%d].%s: %s", i, k, typeMsg(err))
			}
		}
		s.Turns = append(s.Turns, t)
	}
	return s, nil
}

func parseCall(c map[string]json.RawMessage) (Call, error) {
	var call Call
	for k, v := range c {
		switch k {
		case "name":
			if err := json.Unmarshal(v, &call.Name); err != nil {
				return call, fmt.Errorf("name: must be a string")
			}
		case "input":
			in := bytes.TrimSpace(v)
			if len(in) > 0 && in[0] != '{' && in[0] != '"' && !bytes.Equal(in, []byte("null")) {
				return call, fmt.Errorf("input: must be an object (or a string of raw JSON text), got %s", kind(in[0]))
			}
			call.Input = v
		default:
			return call, fmt.Errorf("%s: unknown field (a tool call has name and input)", k)
		}
	}
	if strings.TrimSpace(call.Name) == "" {
		return call, fmt.Errorf("name: missing or empty")
	}
	return call, nil
}

func typeMsg(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("expected %s, got %s", te.Type, te.Value)
	}
	return err.Error()
}

func kind(c byte) string {
	switch {
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// describeJSONError turns a decoding error into one line naming where it is.
func describeJSONError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, se.Offset)
		return fmt.Errorf("invalid JSON at line %d, column %d: %v", line, col, se)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return errors.New("the script must be a JSON object with a \"turns\" array")
	}
	if errors.Is(err, io.EOF) {
		return errors.New("the file is empty")
	}
	return err
}

func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, b := range data[:off] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// Load reads and parses a script file; errors name the file.
func Load(path string) (*Script, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("script %s: %w", path, err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("script %s: %w", path, err)
	}
	return s, nil
}

// Provider plays a Script. It is safe for concurrent use. A request with a Turn plays that turn
// of the script; one without plays the turn after the last one played.
type Provider struct {
	name   string
	script *Script

	mu       sync.Mutex
	next     int
	lastText string
}

// New returns a provider playing s; name is what Model() reports (the file name).
func New(name string, s *Script) *Provider { return &Provider{name: name, script: s} }

func (p *Provider) Name() string  { return "script" }
func (p *Provider) Model() string { return p.name }

// Complete plays the next turn. A summary request is answered by the next turn's text if one
// remains, else by the last text played. A work request with no turns left returns an empty
// final turn, which ends the work phase.
func (p *Provider) Complete(ctx context.Context, req model.Request) (*model.Response, error) {
	p.mu.Lock()
	var t Turn
	idx := p.next
	if req.Turn > 0 {
		idx = req.Turn - 1
	}
	have := idx < len(p.script.Turns)
	if have {
		t = p.script.Turns[idx]
		p.next = idx + 1
	}
	last := p.lastText
	if req.Turn > 0 {
		// The last text played before this turn, from the script itself: the provider may be
		// new (a task continued after a restart).
		last = ""
		for i := min(idx, len(p.script.Turns)) - 1; i >= 0; i-- {
			if s := p.script.Turns[i].Text; s != "" {
				last = s
				break
			}
		}
	}
	if have && t.Text != "" {
		p.lastText = t.Text
	}
	p.mu.Unlock()

	if t.DelayMS > 0 {
		timer := time.NewTimer(time.Duration(t.DelayMS) * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	msg := model.Message{Role: model.RoleAssistant}
	if req.Purpose == model.PurposeSummary {
		text := t.Text
		if !have || text == "" {
			text = last
		}
		if text == "" {
			text = "(The scripted model has no summary.)"
		}
		msg.Content = append(msg.Content, model.Block{Type: model.BlockText, Text: text})
	} else if have {
		if t.Text != "" {
			msg.Content = append(msg.Content, model.Block{Type: model.BlockText, Text: t.Text})
		}
		for j, c := range t.ToolCalls {
			msg.Content = append(msg.Content, model.Block{
				Type:  model.BlockToolUse,
				ID:    fmt.Sprintf("script_%d_%d", idx, j),
				Name:  c.Name,
				Input: substitute(rawInput(c.Input), req.Vars),
			})
		}
	}
	if req.OnText != nil {
		if s := msg.Text(); s != "" {
			req.OnText(s)
		}
	}
	stop := "end_turn"
	if len(msg.ToolUses()) > 0 {
		stop = "tool_use"
	}
	return &model.Response{Message: msg, StopReason: stop, Usage: estimate(req, msg), Model: p.name}, nil
}

// rawInput returns the JSON text of a call's input: an object as written, or the contents of a
// string (raw text, possibly invalid JSON), or "{}".
func rawInput(in json.RawMessage) string {
	in = bytes.TrimSpace(in)
	if len(in) == 0 || bytes.Equal(in, []byte("null")) {
		return "{}"
	}
	if in[0] == '"' {
		var s string
		if json.Unmarshal(in, &s) == nil {
			return s
		}
	}
	return string(in)
}

// substitute replaces ${name} by vars[name] in the input text.
func substitute(s string, vars map[string]string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	for k, v := range vars {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	return s
}

// estimate gives token counts of about four characters a token, so that budgets and compaction
// behave with the script model as they do with real ones.
func estimate(req model.Request, out model.Message) model.Usage {
	n := len(req.System)
	for _, m := range req.Messages {
		n += messageChars(m)
	}
	return model.Usage{InputTokens: int64(n/4 + 1), OutputTokens: int64(messageChars(out)/4 + 1)}
}

func messageChars(m model.Message) int {
	n := 0
	for _, b := range m.Content {
		n += len(b.Text) + len(b.Input) + len(b.Content) + len(b.Name)
	}
	return n
}
