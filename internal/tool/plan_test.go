package tool

import (
	"context"
	"errors"
	"testing"

	"github.com/keepup/keepup/internal/task"
)

func TestUpdatePlan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.mustPrepare(t, "update_plan", `{"items": [{"id": "1", "title": "Read the receipts", "status": "done"}, {"id": "2", "title": "Write the report", "status": "in_progress"}]}`)
	if ops(c) != "none" || c.Action.Ops[0].Target != nil || c.Action.Summary != "update the plan (1 of 2 items finished)" {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res := mustRun(t, c)
	if res.Content != "plan updated: 1 of 2 items finished" || len(b.plans) != 1 {
		t.Fatalf("result %+v, plans %v", res, b.plans)
	}
	want := task.Plan{{ID: "1", Title: "Read the receipts", Status: task.Done}, {ID: "2", Title: "Write the report", Status: task.InProgress}}
	if len(b.plans[0]) != 2 || b.plans[0][0] != want[0] || b.plans[0][1] != want[1] {
		t.Errorf("plan %+v", b.plans[0])
	}
	_, err := b.prepare(t, "update_plan", `{"items": [{"id": "1", "title": "a", "status": "done"}, {"id": "1", "title": "b", "status": "pending"}]}`)
	assertRefusal(t, err, `plan: items[1].id: "1" used twice`)
	_, err = b.prepare(t, "update_plan", `{"items": [{"id": " ", "title": "a", "status": "done"}]}`)
	assertRefusal(t, err, "items[0].id: empty")

	// A store failure is the runtime's error, not the model's.
	b.env.Plan = func(context.Context, task.Plan) error { return errors.New("disk full") }
	if _, err := b.mustPrepare(t, "update_plan", `{"items": [{"id": "1", "title": "a", "status": "done"}]}`).Run(context.Background()); err == nil {
		t.Error("store failure swallowed")
	}
	b.env.Plan = nil
	runFails(t, b.mustPrepare(t, "update_plan", `{"items": [{"id": "1", "title": "a", "status": "done"}]}`), "cannot be recorded")
}

func TestAskUser(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.mustPrepare(t, "ask_user", `{"question": "Which colour?\nBlue or red?"}`)
	if ops(c) != "none" || c.Action.Summary != "ask the user: Which colour? Blue or red?" || c.ReadOnly || c.Idempotent {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res := mustRun(t, c)
	if res.Content != "The user answered: use the blue one" || len(b.questions) != 1 || b.questions[0] != "Which colour?\nBlue or red?" {
		t.Fatalf("result %+v, questions %q", res, b.questions)
	}
	_, err := b.prepare(t, "ask_user", `{"question": "   "}`)
	assertRefusal(t, err, "question is empty")
	b.env.Ask = nil
	runFails(t, b.mustPrepare(t, "ask_user", `{"question": "?"}`), "no user can answer")
	b.env.Ask = func(ctx context.Context, q string) (string, error) { return "", errors.New("timed out") }
	runFails(t, b.mustPrepare(t, "ask_user", `{"question": "?"}`), "the question was not answered: timed out")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.mustPrepare(t, "ask_user", `{"question": "?"}`).Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}
