package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/task"
)

//go:embed update_plan.md
var updatePlanDescription string

// UpdatePlan is the update_plan tool: {items: [{id, title, status}]}. It stores the plan
// through Env.Plan and has no effect outside the runtime.
type UpdatePlan struct{}

const updatePlanSchema = `{
  "type": "object",
  "properties": {
    "items": {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "properties": {
          "id": {"type": "string", "minLength": 1, "description": "Short unique id."},
          "title": {"type": "string", "minLength": 1, "description": "What the subtask does."},
          "status": {"type": "string", "enum": ["pending", "in_progress", "done", "skipped", "failed"]}
        },
        "required": ["id", "title", "status"],
        "additionalProperties": false
      }
    }
  },
  "required": ["items"],
  "additionalProperties": false
}`

func (UpdatePlan) Spec() model.ToolSpec {
	return spec("update_plan", updatePlanDescription, updatePlanSchema)
}

func (UpdatePlan) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Items []struct {
			ID     string          `json:"id"`
			Title  string          `json:"title"`
			Status task.ItemStatus `json:"status"`
		} `json:"items"`
	}
	if err := decode("update_plan", input, &in); err != nil {
		return nil, err
	}
	plan := make(task.Plan, 0, len(in.Items))
	for _, it := range in.Items {
		plan = append(plan, task.PlanItem{ID: it.ID, Title: it.Title, Status: it.Status})
	}
	if err := plan.Validate(); err != nil {
		return nil, Refusef("%v", err)
	}
	finished, total := plan.Counts()
	return &Call{
		Action: policy.Action{
			Tool:    "update_plan",
			Ops:     []policy.Op{{Effect: policy.EffectNone, Subject: "update_plan"}},
			Summary: fmt.Sprintf("update the plan (%d of %s finished)", finished, plural(total, "item", "items")),
		},
		Idempotent: true,
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			if env == nil || env.Plan == nil {
				return failed(Refusef("plans cannot be recorded in this session"))
			}
			if err := env.Plan(ctx, plan); err != nil {
				return nil, fmt.Errorf("update_plan: %w", err)
			}
			return &Result{Content: fmt.Sprintf("plan updated: %d of %s finished", finished, plural(total, "item", "items"))}, nil
		},
	}, nil
}
