package task

import (
	"errors"
	"testing"
)

func TestTransitions(t *testing.T) {
	t.Parallel()
	legal := map[[2]State]bool{}
	for from, tos := range transitions {
		for _, to := range tos {
			legal[[2]State{from, to}] = true
		}
	}
	// The lifecycle of DESIGN.md, spelled out so that a change to the table is caught here.
	want := [][2]State{
		{Queued, Planning}, {Planning, Running}, {Running, Summarizing}, {Summarizing, Completed},
		{Planning, AwaitingApproval}, {AwaitingApproval, Planning}, {Running, AwaitingApproval}, {AwaitingApproval, Running},
		{Planning, Paused}, {Paused, Planning}, {Running, Paused}, {Paused, Running},
		{Summarizing, Failed}, {Running, Failed}, {Running, Cancelled}, {Queued, Cancelled},
	}
	for _, w := range want {
		if err := Transition(w[0], w[1]); err != nil {
			t.Errorf("Transition(%s, %s) = %v, want legal", w[0], w[1], err)
		}
	}
	illegal := [][2]State{
		{Queued, Running}, {Queued, Completed}, {Planning, Completed}, {Running, Completed},
		{Completed, Running}, {Failed, Planning}, {Cancelled, Queued}, {Summarizing, Running},
		{Paused, Summarizing}, {AwaitingApproval, Summarizing}, {Running, Queued}, {Running, Running},
		{"bogus", Planning}, {Queued, "bogus"},
	}
	for _, c := range illegal {
		err := Transition(c[0], c[1])
		var te *TransitionError
		if !errors.As(err, &te) || te.From != c[0] || te.To != c[1] {
			t.Errorf("Transition(%s, %s) = %v, want *TransitionError", c[0], c[1], err)
		}
	}
	// Every pair is either in the table or refused.
	for _, from := range States {
		for _, to := range States {
			if (Transition(from, to) == nil) != legal[[2]State{from, to}] {
				t.Errorf("Transition(%s, %s) disagrees with the table", from, to)
			}
		}
		if from.Terminal() && len(transitions[from]) > 0 {
			t.Errorf("terminal state %s has transitions", from)
		}
	}
}

func TestPlanValidate(t *testing.T) {
	t.Parallel()
	ok := Plan{{ID: "1", Title: "Read", Status: Done}, {ID: "2", Title: "Write", Status: Pending}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(ok) = %v", err)
	}
	if f, n := ok.Counts(); f != 1 || n != 2 {
		t.Errorf("Counts = %d/%d, want 1/2", f, n)
	}
	bad := []struct {
		p    Plan
		want string
	}{
		{Plan{}, "plan: items: at least one item is needed"},
		{Plan{{ID: "", Title: "x", Status: Pending}}, "plan: items[0].id: empty"},
		{Plan{{ID: "1", Title: "x", Status: Pending}, {ID: "1", Title: "y", Status: Pending}}, `plan: items[1].id: "1" used twice`},
		{Plan{{ID: "1", Title: " ", Status: Pending}}, "plan: items[0].title: empty"},
		{Plan{{ID: "1", Title: "x", Status: "started"}}, `plan: items[0].status: "started" is not one of pending, in_progress, done, skipped, failed`},
	}
	for _, c := range bad {
		if err := c.p.Validate(); err == nil || err.Error() != c.want {
			t.Errorf("Validate(%v) = %v, want %q", c.p, err, c.want)
		}
	}
}
