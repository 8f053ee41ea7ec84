package storetest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// RunDurable runs the suite of store.Durable, the orchestrator's part: assigned event seqs,
// task logs, checkpoints, steering, controls, schedules and jobs committed with a batch.
func RunDurable(t *testing.T, open func(t *testing.T) store.Durable) {
	t.Helper()
	type testBundle struct {
		st  store.Durable
		ctx context.Context
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		t.Parallel()
		st := open(t)
		tk := task.Task{ID: "t1", Status: task.Queued}
		mustCommit(t, st, &store.Batch{Task: &tk})
		return &testBundle{st: st, ctx: t.Context()}
	}
	ev := func(seq int64) event.Event {
		return event.Event{Seq: seq, Task: "t1", Type: "x", Time: time.Unix(1, 0).UTC()}
	}

	t.Run("AssignsEventSeqs", func(t *testing.T) {
		bundle := setup(t)
		b := &store.Batch{Events: []event.Event{ev(0), ev(0)}}
		mustCommit(t, bundle.st, b)
		if b.Events[0].Seq != 1 || b.Events[1].Seq != 2 {
			t.Fatalf("assigned seqs %d, %d; want 1, 2", b.Events[0].Seq, b.Events[1].Seq)
		}
		// Writers that do not know each other's seqs interleave without a clash.
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if err := bundle.st.Commit(bundle.ctx, &store.Batch{Events: []event.Event{ev(0)}}); err != nil {
					t.Errorf("Commit: %v", err)
				}
			})
		}
		wg.Wait()
		// A caller-given seq still clashes.
		if err := bundle.st.Commit(bundle.ctx, &store.Batch{Events: []event.Event{ev(3)}}); !errors.Is(err, store.ErrDuplicateEvent) {
			t.Fatalf("commit of a used seq: %v, want ErrDuplicateEvent", err)
		}
		evs, err := bundle.st.Events(bundle.ctx, "t1", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				t.Fatalf("events[%d].Seq = %d; want consecutive seqs from 1", i, e.Seq)
			}
		}
		if len(evs) != 10 {
			t.Fatalf("%d events, want 10", len(evs))
		}
	})

	t.Run("LogAndState", func(t *testing.T) {
		bundle := setup(t)
		b := &store.Batch{Log: []store.LogEntry{{Task: "t1", Kind: "msg", Data: []byte(`{"a":1}`)}, {Task: "t1", Kind: "guard", Data: []byte(`{}`)}},
			State: &store.TaskState{Task: "t1", Data: []byte(`{"turn":1}`)}, Events: []event.Event{ev(1)}}
		mustCommit(t, bundle.st, b)
		if b.Log[0].N != 1 || b.Log[1].N != 2 {
			t.Fatalf("log numbers %d, %d; want 1, 2", b.Log[0].N, b.Log[1].N)
		}
		mustCommit(t, bundle.st, &store.Batch{Log: []store.LogEntry{{Task: "t1", Kind: "msg", Data: []byte(`{"b":2}`)}},
			State: &store.TaskState{Task: "t1", Data: []byte(`{"turn":2}`)}})
		got, err := bundle.st.Log(bundle.ctx, "t1", 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].N != 2 || got[1].N != 3 || string(got[1].Data) != `{"b":2}` || got[0].Kind != "guard" {
			t.Fatalf("Log after 1 = %+v", got)
		}
		st, err := bundle.st.State(bundle.ctx, "t1")
		if err != nil || st == nil || string(st.Data) != `{"turn":2}` {
			t.Fatalf("State = %+v, %v; want the last checkpoint", st, err)
		}
		if st, err := bundle.st.State(bundle.ctx, "nope"); st != nil || err != nil {
			t.Fatalf("State of a task without one = %+v, %v; want nil, nil", st, err)
		}
		// A failed batch leaves no log entry behind.
		err = bundle.st.Commit(bundle.ctx, &store.Batch{Log: []store.LogEntry{{Task: "t1", Kind: "msg", Data: []byte(`{}`)}},
			Events: []event.Event{ev(1)}})
		if !errors.Is(err, store.ErrDuplicateEvent) {
			t.Fatalf("Commit = %v, want ErrDuplicateEvent", err)
		}
		if got, _ := bundle.st.Log(bundle.ctx, "t1", 0); len(got) != 3 {
			t.Fatalf("%d log entries after a failed commit, want 3", len(got))
		}
	})

	t.Run("Steers", func(t *testing.T) {
		bundle := setup(t)
		now := time.Unix(100, 0).UTC()
		b := &store.Batch{Steers: []store.Steer{{Task: "t1", Message: "first", CreatedAt: now}, {Task: "t1", Message: "second", CreatedAt: now}}}
		mustCommit(t, bundle.st, b)
		if b.Steers[0].ID == 0 || b.Steers[1].ID <= b.Steers[0].ID {
			t.Fatalf("steer ids %d, %d; want increasing", b.Steers[0].ID, b.Steers[1].ID)
		}
		mustCommit(t, bundle.st, &store.Batch{Delivered: []store.Delivered{{ID: b.Steers[0].ID, At: now}}})
		// Delivering twice is refused: a message is handed to the model once.
		if err := bundle.st.Commit(bundle.ctx, &store.Batch{Delivered: []store.Delivered{{ID: b.Steers[0].ID, At: now}}}); err == nil {
			t.Fatal("a second delivery of the same steer was accepted")
		}
		pending, err := bundle.st.Steers(bundle.ctx, "t1", true)
		if err != nil || len(pending) != 1 || pending[0].Message != "second" {
			t.Fatalf("pending steers = %+v, %v", pending, err)
		}
		all, err := bundle.st.Steers(bundle.ctx, "t1", false)
		if err != nil || len(all) != 2 || !all[0].Delivered.Equal(now) || !all[1].Delivered.IsZero() {
			t.Fatalf("all steers = %+v, %v", all, err)
		}
		if err := bundle.st.Commit(bundle.ctx, &store.Batch{Steers: []store.Steer{{Task: "nope", Message: "x"}}}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("steer of an unknown task: %v, want ErrNotFound", err)
		}
	})

	t.Run("Controls", func(t *testing.T) {
		bundle := setup(t)
		if c, err := bundle.st.Control(bundle.ctx, "t1"); c != "" || err != nil {
			t.Fatalf("Control = %q, %v; want none", c, err)
		}
		mustCommit(t, bundle.st, &store.Batch{Controls: []store.Control{{Task: "t1", Want: "pause"}}})
		mustCommit(t, bundle.st, &store.Batch{Controls: []store.Control{{Task: "t1", Want: "cancel"}}})
		if c, err := bundle.st.Control(bundle.ctx, "t1"); c != "cancel" || err != nil {
			t.Fatalf("Control = %q, %v; want cancel", c, err)
		}
	})

	t.Run("Schedules", func(t *testing.T) {
		bundle := setup(t)
		t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
		a := store.Schedule{ID: "s-a", Spec: []byte(`{"cron":"@hourly"}`), Next: t0.Add(time.Hour), CreatedAt: t0}
		b := store.Schedule{ID: "s-b", Spec: []byte(`{}`), Next: t0, CreatedAt: t0}
		mustCommit(t, bundle.st, &store.Batch{Schedules: []store.Schedule{a, b}})
		all, err := bundle.st.Schedules(bundle.ctx, time.Time{})
		if err != nil || len(all) != 2 || all[0].ID != "s-b" {
			t.Fatalf("Schedules = %+v, %v; want both, earliest first", all, err)
		}
		if !reflect.DeepEqual(all[1].Spec, a.Spec) || !all[1].Next.Equal(a.Next) {
			t.Fatalf("schedule round trip: %+v", all[1])
		}
		due, err := bundle.st.Schedules(bundle.ctx, t0.Add(time.Minute))
		if err != nil || len(due) != 1 || due[0].ID != "s-b" {
			t.Fatalf("due schedules = %+v, %v", due, err)
		}
		b.LastSlot, b.LastTask, b.Next = t0, "t1", t0.Add(24*time.Hour)
		mustCommit(t, bundle.st, &store.Batch{Schedules: []store.Schedule{b}, Unschedule: []string{"s-a"}})
		all, _ = bundle.st.Schedules(bundle.ctx, time.Time{})
		if len(all) != 1 || all[0].LastTask != "t1" || !all[0].LastSlot.Equal(t0) {
			t.Fatalf("after update and delete: %+v", all)
		}
		if err := bundle.st.Commit(bundle.ctx, &store.Batch{Unschedule: []string{"s-a"}}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleting a deleted schedule: %v, want ErrNotFound", err)
		}
	})

	t.Run("JobsCommitWithTheBatch", func(t *testing.T) {
		bundle := setup(t)
		if err := bundle.st.Commit(bundle.ctx, &store.Batch{Jobs: []store.Job{{Kind: "k"}}}); err == nil {
			t.Fatal("jobs were accepted with no enqueuer attached")
		}
		var got []store.Job
		fail := false
		bundle.st.SetEnqueuer(func(ctx context.Context, tx any, jobs []store.Job) error {
			if fail {
				return errors.New("queue full")
			}
			got = append(got, jobs...)
			return nil
		})
		mustCommit(t, bundle.st, &store.Batch{Jobs: []store.Job{{Kind: "k", Args: 1}}, Events: []event.Event{ev(0)}})
		if len(got) != 1 || got[0].Kind != "k" {
			t.Fatalf("enqueued %+v", got)
		}
		fail = true
		if err := bundle.st.Commit(bundle.ctx, &store.Batch{Jobs: []store.Job{{Kind: "k"}}, Events: []event.Event{ev(0)}}); err == nil {
			t.Fatal("a failing enqueue did not fail the commit")
		}
		if last, _ := bundle.st.LastSeq(bundle.ctx, "t1"); last != 1 {
			t.Fatalf("last seq %d after a failed enqueue; the batch's event must be rolled back", last)
		}
	})

	t.Run("Approval", func(t *testing.T) {
		bundle := setup(t)
		a := store.Approval{ID: "a1", Task: "t1", CallID: "c1", Tool: "write_file", Status: store.ApprovalPending, CreatedAt: time.Unix(5, 0).UTC()}
		mustCommit(t, bundle.st, &store.Batch{Approvals: []store.Approval{a}})
		got, err := bundle.st.Approval(bundle.ctx, "a1")
		if err != nil || !reflect.DeepEqual(*got, a) {
			t.Fatalf("Approval = %+v, %v; want %+v", got, err, a)
		}
		if _, err := bundle.st.Approval(bundle.ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown approval: %v, want ErrNotFound", err)
		}
	})
}
