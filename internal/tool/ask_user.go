package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
)

//go:embed ask_user.md
var askUserDescription string

// AskUser is the ask_user tool: {question}. It puts the question through Env.Ask and returns the
// answer; it has no effect outside the runtime.
type AskUser struct{}

const askUserSchema = `{
  "type": "object",
  "properties": {
    "question": {"type": "string", "minLength": 1, "description": "The question for the user."}
  },
  "required": ["question"],
  "additionalProperties": false
}`

func (AskUser) Spec() model.ToolSpec { return spec("ask_user", askUserDescription, askUserSchema) }

func (AskUser) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Question string `json:"question"`
	}
	if err := decode("ask_user", input, &in); err != nil {
		return nil, err
	}
	q := strings.TrimSpace(in.Question)
	if q == "" {
		return nil, Refusef("question is empty")
	}
	short := strings.Join(strings.Fields(q), " ")
	if len(short) > 120 {
		short = strings.ToValidUTF8(short[:117], "") + "..."
	}
	return &Call{
		Action: policy.Action{
			Tool:    "ask_user",
			Ops:     []policy.Op{{Effect: policy.EffectNone, Subject: "ask_user"}},
			Summary: "ask the user: " + short,
		},
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			if env == nil || env.Ask == nil {
				return failed(Refusef("no user can answer questions in this session; go on with your best judgement and say so in the summary"))
			}
			answer, err := env.Ask(ctx, q)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return failed(fmt.Errorf("the question was not answered: %v", err))
			}
			return &Result{Content: "The user answered: " + answer}, nil
		},
	}, nil
}
