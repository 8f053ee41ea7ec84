package script

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keepup/keepup/internal/model"
)

func TestParseErrorsNameTurnAndField(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{``, "invalid JSON"},
		{`[]`, "must be a JSON object"},
		{`{}`, `field "turns" is missing`},
		{`{"turns": {}}`, "turns: must be an array of objects"},
		{`{"turns": [], "extra": 1}`, `unknown field "extra"`},
		{`{"turns": [{"txt": "x"}]}`, "turns[0].txt: unknown field"},
		{`{"turns": [{"text": 3}]}`, "turns[0].text: expected string, got number"},
		{`{"turns": [{}, {"delay_ms": -1}]}`, "turns[1].delay_ms: -1 is negative"},
		{`{"turns": [{"tool_calls": [{"input": {}}]}]}`, "turns[0].tool_calls[0].name: missing or empty"},
		{`{"turns": [{"tool_calls": [{"name": "x"}, {"name": "y", "input": [1]}]}]}`, "turns[0].tool_calls[1].input: must be an object"},
		{`{"turns": [{"tool_calls": [{"name": "x", "args": {}}]}]}`, "turns[0].tool_calls[0].args: unknown field"},
		{`{"turns": [{"tool_calls": {"name": "x"}}]}`, "turns[0].tool_calls: must be an array"},
		{"{\n\"turns\": [\n{\"text\": }]}", "line 3"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", c.in, err, c.want)
		}
	}
}

func TestPlaysTurnsInOrder(t *testing.T) {
	t.Parallel()
	s, err := Parse([]byte(`{"turns": [
		{"text": "plan", "tool_calls": [{"name": "read_file", "input": {"path": "/sessions/${session}/mnt/a/x"}}]},
		{"tool_calls": [{"name": "write_file", "input": "{\"path\": bad json"}]},
		{"text": "Final summary."}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	p := New("s.json", s)
	ctx := context.Background()
	req := model.Request{Purpose: model.PurposeWork, Vars: map[string]string{"session": "brave-x"}}
	r1, err := p.Complete(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	uses := r1.Message.ToolUses()
	if r1.Message.Text() != "plan" || len(uses) != 1 || uses[0].Input != `{"path": "/sessions/brave-x/mnt/a/x"}` || uses[0].ID != "script_0_0" {
		t.Fatalf("turn 1 = %+v", r1.Message)
	}
	if r1.StopReason != "tool_use" || r1.Usage.InputTokens <= 0 {
		t.Errorf("turn 1 stop=%s usage=%+v", r1.StopReason, r1.Usage)
	}
	r2, _ := p.Complete(ctx, req)
	if got := r2.Message.ToolUses()[0].Input; got != `{"path": bad json` {
		t.Errorf("raw string input = %q, want it verbatim", got)
	}
	r3, _ := p.Complete(ctx, req)
	if r3.Message.Text() != "Final summary." || len(r3.Message.ToolUses()) != 0 || r3.StopReason != "end_turn" {
		t.Errorf("turn 3 = %+v", r3)
	}
	// Out of turns: an empty final turn; a summary request repeats the last text.
	r4, _ := p.Complete(ctx, req)
	if len(r4.Message.Content) != 0 {
		t.Errorf("past the end = %+v, want empty", r4.Message)
	}
	r5, _ := p.Complete(ctx, model.Request{Purpose: model.PurposeSummary})
	if r5.Message.Text() != "Final summary." {
		t.Errorf("summary = %q", r5.Message.Text())
	}
}

func TestDelayHonoursCancellation(t *testing.T) {
	t.Parallel()
	s, _ := Parse([]byte(`{"turns": [{"text": "slow", "delay_ms": 60000}]}`))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New("s", s).Complete(ctx, model.Request{}); err != context.Canceled {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"turns": []}`,
		`{"turns": [{"text": "a", "tool_calls": [{"name": "read_file", "input": {"path": "x"}}], "delay_ms": 5}]}`,
		`{"turns": [{"tool_calls": [{"name": "x", "input": "{not json"}]}]}`,
		`{"turns": [{"text": 1}]}`, `{"turns": null}`, `null`, `{"turns": [null]}`, `{"turns": [{"tool_calls": [null]}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		for i, turn := range s.Turns {
			if turn.DelayMS < 0 {
				t.Fatalf("turn %d: negative delay accepted", i)
			}
			for _, c := range turn.ToolCalls {
				if strings.TrimSpace(c.Name) == "" {
					t.Fatalf("turn %d: empty tool name accepted", i)
				}
				in := rawInput(c.Input)
				if in == "" {
					t.Fatalf("empty raw input")
				}
				_ = json.Valid([]byte(in))
			}
		}
		// Playing a parsed script never fails.
		p := New("f", s)
		for range len(s.Turns) + 1 {
			if _, err := p.Complete(context.Background(), model.Request{}); err != nil {
				t.Fatal(err)
			}
		}
	})
}
