// Package storetest is the conformance suite every store.Store driver must pass, in the manner
// of River's riverdrivertest: a driver's own test calls Run with a function that opens a fresh,
// empty store, and the suite checks the behaviour the rest of keepup relies on. It owns no
// storage and must never depend on a particular driver; anything driver-specific (files,
// several processes, tampering with rows) belongs in the driver's own tests.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// Run runs the suite. open must return a new, empty store for each call and close it when the
// test ends (t.Cleanup). Every subtest runs in parallel.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()

	type testBundle struct {
		st  store.Store
		ctx context.Context
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		t.Parallel()
		return &testBundle{st: open(t), ctx: t.Context()}
	}

	t.Run("Tasks", func(t *testing.T) {
		t.Parallel()

		t.Run("RoundTripsEveryField", func(t *testing.T) {
			bundle := setup(t)
			want := fullTask("t1")
			mustCommit(t, bundle.st, &store.Batch{Task: &want})
			got, err := bundle.st.Task(bundle.ctx, "t1")
			if err != nil {
				t.Fatalf("Task: %v", err)
			}
			assertTask(t, *got, want)

			// An upsert replaces the stored task.
			want.Status = task.Running
			want.Plan[0].Status = task.Done
			want.Plan = append(want.Plan, task.PlanItem{ID: "3", Title: "Write the report", Status: task.Pending})
			want.Usage = task.Usage{InputTokens: 5000, OutputTokens: 900}
			want.Turns = 4
			want.Summary, want.Error = "", "partial"
			want.UpdatedAt = want.UpdatedAt.Add(time.Minute)
			mustCommit(t, bundle.st, &store.Batch{Task: &want})
			got, err = bundle.st.Task(bundle.ctx, "t1")
			if err != nil {
				t.Fatalf("Task: %v", err)
			}
			assertTask(t, *got, want)
		})

		t.Run("RoundTripsEmptyValues", func(t *testing.T) {
			bundle := setup(t)
			for _, want := range []task.Task{
				{ID: "bare"},
				{ID: "empty-lists", Plan: task.Plan{}, Grants: []task.Grant{}, Status: task.Queued},
			} {
				mustCommit(t, bundle.st, &store.Batch{Task: &want})
				got, err := bundle.st.Task(bundle.ctx, want.ID)
				if err != nil {
					t.Fatalf("Task(%s): %v", want.ID, err)
				}
				assertTask(t, *got, want)
			}
		})

		t.Run("NotFound", func(t *testing.T) {
			bundle := setup(t)
			_, err := bundle.st.Task(bundle.ctx, "nope")
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Task(unknown) error = %v, want store.ErrNotFound", err)
			}
		})

		t.Run("ListNewestFirstWithFilters", func(t *testing.T) {
			bundle := setup(t)
			base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
			mk := func(id string, minutes int, st task.State, parent string) {
				tk := task.Task{ID: id, Status: st, Parent: parent, Session: "s",
					CreatedAt: base.Add(time.Duration(minutes) * time.Minute), UpdatedAt: base}
				mustCommit(t, bundle.st, &store.Batch{Task: &tk})
			}
			// Committed out of creation order, so insertion order cannot pass for time order.
			mk("b", 2, task.Running, "")
			mk("a", 1, task.Completed, "")
			mk("d", 4, task.Queued, "b")
			mk("c", 3, task.Failed, "b")
			mk("e", 5, task.Running, "")
			mk("e2", 5, task.Queued, "") // same time as e, committed later: listed first

			str := func(s string) *string { return &s }
			tests := []struct {
				name string
				f    store.TaskFilter
				want []string
			}{
				{"all", store.TaskFilter{}, []string{"e2", "e", "d", "c", "b", "a"}},
				{"limit", store.TaskFilter{Limit: 2}, []string{"e2", "e"}},
				{"one status", store.TaskFilter{Status: []task.State{task.Running}}, []string{"e", "b"}},
				{"statuses", store.TaskFilter{Status: []task.State{task.Queued, task.Failed}}, []string{"e2", "d", "c"}},
				{"children", store.TaskFilter{Parent: str("b")}, []string{"d", "c"}},
				{"top level", store.TaskFilter{Parent: str("")}, []string{"e2", "e", "b", "a"}},
				{"combined", store.TaskFilter{Parent: str(""), Status: []task.State{task.Running, task.Queued}, Limit: 2}, []string{"e2", "e"}},
				{"none match", store.TaskFilter{Status: []task.State{task.Paused}}, nil},
			}
			for _, tt := range tests {
				got, err := bundle.st.Tasks(bundle.ctx, tt.f)
				if err != nil {
					t.Fatalf("%s: Tasks: %v", tt.name, err)
				}
				var ids []string
				for _, tk := range got {
					ids = append(ids, tk.ID)
				}
				if !reflect.DeepEqual(ids, tt.want) {
					t.Errorf("%s: Tasks = %v, want %v", tt.name, ids, tt.want)
				}
			}
			got, _ := bundle.st.Tasks(bundle.ctx, store.TaskFilter{Limit: 1})
			if len(got) != 1 || got[0].Session != "s" || !got[0].CreatedAt.Equal(base.Add(5*time.Minute)) {
				t.Errorf("Tasks does not return whole tasks: %+v", got)
			}
		})
	})

	t.Run("Events", func(t *testing.T) {
		t.Parallel()

		t.Run("AppendInOrderAfterLimit", func(t *testing.T) {
			bundle := setup(t)
			commitTask(t, bundle.st, "t1")
			commitTask(t, bundle.st, "t2")
			var want []event.Event
			for i := int64(1); i <= 9; i += 3 {
				b := &store.Batch{Events: []event.Event{ev("t1", i), ev("t1", i+1), ev("t1", i+2)}}
				want = append(want, b.Events...)
				b.Events = append(b.Events, ev("t2", i)) // interleaved with another task
				mustCommit(t, bundle.st, b)
			}
			got, err := bundle.st.Events(bundle.ctx, "t1", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			assertEvents(t, got, want)
			got, _ = bundle.st.Events(bundle.ctx, "t1", 4, 0)
			assertEvents(t, got, want[4:])
			got, _ = bundle.st.Events(bundle.ctx, "t1", 4, 2)
			assertEvents(t, got, want[4:6])
			got, _ = bundle.st.Events(bundle.ctx, "t1", 9, 0)
			assertEvents(t, got, nil)
			got, _ = bundle.st.Events(bundle.ctx, "unknown", 0, 0)
			assertEvents(t, got, nil)

			for _, tt := range []struct {
				task string
				want int64
			}{{"t1", 9}, {"t2", 7}, {"unknown", 0}} {
				n, err := bundle.st.LastSeq(bundle.ctx, tt.task)
				if err != nil || n != tt.want {
					t.Errorf("LastSeq(%s) = %d, %v; want %d", tt.task, n, err, tt.want)
				}
			}
		})

		t.Run("DataAndTimeRoundTrip", func(t *testing.T) {
			bundle := setup(t)
			commitTask(t, bundle.st, "t1")
			e1 := ev("t1", 1)
			e1.Time = time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 2*3600))
			e1.Data = json.RawMessage(`{"tool_call_id":"toolu_1","effect":"write","decision":"ask","rule":"default","by":"mode","nested":{"a":[1,2.5,"x"]}}`)
			e2 := ev("t1", 2)
			e2.Data = nil
			e2.Time = time.Time{}
			mustCommit(t, bundle.st, &store.Batch{Events: []event.Event{e1, e2}})
			got, err := bundle.st.Events(bundle.ctx, "t1", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			assertEvents(t, got, []event.Event{e1, e2})
		})

		t.Run("DuplicateSeqRejected", func(t *testing.T) {
			bundle := setup(t)
			commitTask(t, bundle.st, "t1")
			mustCommit(t, bundle.st, &store.Batch{Events: []event.Event{ev("t1", 1), ev("t1", 2)}})
			for name, b := range map[string]*store.Batch{
				"across batches": {Events: []event.Event{ev("t1", 3), ev("t1", 2)}},
				"in one batch":   {Events: []event.Event{ev("t1", 3), ev("t1", 3)}},
			} {
				err := bundle.st.Commit(bundle.ctx, b)
				if !errors.Is(err, store.ErrDuplicateEvent) {
					t.Errorf("%s: Commit error = %v, want store.ErrDuplicateEvent", name, err)
				}
			}
			if n, _ := bundle.st.LastSeq(bundle.ctx, "t1"); n != 2 {
				t.Errorf("LastSeq after rejected commits = %d, want 2", n)
			}
		})

		t.Run("UnknownTaskRejected", func(t *testing.T) {
			bundle := setup(t)
			err := bundle.st.Commit(bundle.ctx, &store.Batch{Events: []event.Event{ev("ghost", 1)}})
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("event of an unknown task: Commit error = %v, want store.ErrNotFound", err)
			}
			// Creating the task in the same batch is enough.
			tk := task.Task{ID: "ghost", Status: task.Queued}
			mustCommit(t, bundle.st, &store.Batch{Task: &tk, Events: []event.Event{ev("ghost", 1)}})
		})
	})

	t.Run("ToolCalls", func(t *testing.T) {
		t.Parallel()

		t.Run("UpsertKeepsFirstWriteOrder", func(t *testing.T) {
			bundle := setup(t)
			commitTask(t, bundle.st, "t1")
			commitTask(t, bundle.st, "t2")
			start := time.Date(2026, 4, 1, 12, 0, 0, 5, time.UTC)
			call := func(id string, turn int) store.ToolCall {
				return store.ToolCall{Task: "t1", ID: id, Turn: turn, Tool: "write_file",
					Input: `{"path":"out.md","content":"hi"}`, Effect: "write", Decision: "allow",
					Status: store.CallIntent, StartedAt: start.Add(time.Duration(turn) * time.Second)}
			}
			// Ids chosen so that neither id nor insertion time order agrees with write order.
			c1, c2, c3 := call("toolu_z", 1), call("toolu_a", 1), call("toolu_m", 2)
			other := call("toolu_b", 1)
			other.Task = "t2"
			mustCommit(t, bundle.st, &store.Batch{Calls: []store.ToolCall{c1}})
			mustCommit(t, bundle.st, &store.Batch{Calls: []store.ToolCall{other, c2}})

			c1.Status, c1.Result, c1.FinishedAt = store.CallOK, "wrote 2 bytes", start.Add(3*time.Second)
			c2.Status, c2.Result, c2.FinishedAt = store.CallError, "disk full", start.Add(4*time.Second)
			mustCommit(t, bundle.st, &store.Batch{Calls: []store.ToolCall{c3, c2, c1}})

			got, err := bundle.st.ToolCalls(bundle.ctx, "t1")
			if err != nil {
				t.Fatal(err)
			}
			want := []store.ToolCall{c1, c2, c3}
			if !reflect.DeepEqual(normCalls(got), normCalls(want)) {
				t.Fatalf("ToolCalls =\n%+v\nwant\n%+v", got, want)
			}
			got, _ = bundle.st.ToolCalls(bundle.ctx, "t2")
			if len(got) != 1 || got[0].ID != "toolu_b" {
				t.Fatalf("ToolCalls(t2) = %+v", got)
			}
			got, _ = bundle.st.ToolCalls(bundle.ctx, "none")
			if len(got) != 0 {
				t.Fatalf("ToolCalls(none) = %+v", got)
			}
		})

		t.Run("UnknownTaskRejected", func(t *testing.T) {
			bundle := setup(t)
			err := bundle.st.Commit(bundle.ctx, &store.Batch{Calls: []store.ToolCall{{Task: "ghost", ID: "c", Status: store.CallIntent}}})
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Commit error = %v, want store.ErrNotFound", err)
			}
		})
	})

	t.Run("Approvals", func(t *testing.T) {
		t.Parallel()

		t.Run("PendingFilterAndResolve", func(t *testing.T) {
			bundle := setup(t)
			commitTask(t, bundle.st, "t1")
			commitTask(t, bundle.st, "t2")
			base := time.Date(2026, 4, 2, 8, 0, 0, 0, time.UTC)
			ap := func(id, taskID string, minute int) store.Approval {
				return store.Approval{ID: id, Task: taskID, CallID: "call-" + id, Tool: "bash", Effect: "exec",
					Summary: "run make", Provenance: "user", Status: store.ApprovalPending,
					CreatedAt: base.Add(time.Duration(minute) * time.Minute)}
			}
			a1, a2, a3 := ap("a1", "t1", 1), ap("a2", "t1", 2), ap("a3", "t2", 3)
			mustCommit(t, bundle.st, &store.Batch{Approvals: []store.Approval{a3, a1}})
			mustCommit(t, bundle.st, &store.Batch{Approvals: []store.Approval{a2}})

			check := func(name, taskID string, pending bool, want ...store.Approval) {
				t.Helper()
				got, err := bundle.st.Approvals(bundle.ctx, taskID, pending)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !reflect.DeepEqual(normApprovals(got), normApprovals(want)) {
					t.Errorf("%s: Approvals =\n%+v\nwant\n%+v", name, got, want)
				}
			}
			check("all pending", "", true, a1, a2, a3)
			check("t1 pending", "t1", true, a1, a2)

			a1.Status, a1.Scope, a1.By, a1.ResolvedAt = store.ApprovalApproved, "task", "user", base.Add(10*time.Minute)
			a3.Status, a3.Scope, a3.By, a3.ResolvedAt = store.ApprovalDenied, "call", "user", base.Add(11*time.Minute)
			mustCommit(t, bundle.st, &store.Batch{Approvals: []store.Approval{a1, a3}})

			check("all pending after resolving", "", true, a2)
			check("t1 pending after resolving", "t1", true, a2)
			check("t1 all", "t1", false, a1, a2)
			check("everything", "", false, a1, a2, a3)
			check("t2 pending", "t2", true)
		})

		t.Run("UnknownTaskRejected", func(t *testing.T) {
			bundle := setup(t)
			err := bundle.st.Commit(bundle.ctx, &store.Batch{Approvals: []store.Approval{{ID: "a", Task: "ghost", Status: store.ApprovalPending}}})
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Commit error = %v, want store.ErrNotFound", err)
			}
		})
	})

	t.Run("Audit", func(t *testing.T) {
		t.Parallel()

		t.Run("EmptyChain", func(t *testing.T) {
			bundle := setup(t)
			a, err := bundle.st.AuditAnchor(bundle.ctx)
			if err != nil || a != (audit.Anchor{Seq: 0, Hash: audit.Genesis}) {
				t.Fatalf("AuditAnchor = %+v, %v; want {0, Genesis}", a, err)
			}
			recs, err := bundle.st.AuditRecords(bundle.ctx, "")
			if err != nil || len(recs) != 0 {
				t.Fatalf("AuditRecords = %v, %v", recs, err)
			}
			rep, err := audit.Verify(bundle.ctx, bundle.st.ScanAudit, a)
			if err != nil || rep.Entries != 0 {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}
		})

		t.Run("SealsConsecutively", func(t *testing.T) {
			bundle := setup(t)
			commitTask(t, bundle.st, "t1")
			var entries []audit.Entry
			for i := range 4 { // batches of 1, 2, 3 and 4 entries
				var b store.Batch
				for j := range i + 1 {
					e := entry(fmt.Sprintf("t%d", j%2+1), fmt.Sprintf("batch %d entry %d", i, j))
					b.Audit = append(b.Audit, e)
					entries = append(entries, e)
				}
				mustCommit(t, bundle.st, &b)
			}
			var recs []audit.Record
			if err := bundle.st.ScanAudit(bundle.ctx, 0, func(r audit.Record) error {
				recs = append(recs, r) // retained on purpose: records are the caller's to keep
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(recs) != len(entries) {
				t.Fatalf("ScanAudit returned %d records, want %d", len(recs), len(entries))
			}
			prev := audit.Genesis
			for i, r := range recs {
				body, _ := entries[i].Body()
				switch {
				case r.Seq != int64(i+1):
					t.Fatalf("record %d has Seq %d", i, r.Seq)
				case r.Prev != prev:
					t.Fatalf("record %d: Prev %s, want %s", r.Seq, r.Prev, prev)
				case string(r.Body) != string(body):
					t.Fatalf("record %d: Body %s, want %s", r.Seq, r.Body, body)
				case r.Hash != audit.Seal(r.Seq, r.Prev, r.Body):
					t.Fatalf("record %d: Hash is not audit.Seal(seq, prev, body)", r.Seq)
				}
				prev = r.Hash
			}
			a, err := bundle.st.AuditAnchor(bundle.ctx)
			if err != nil || a != (audit.Anchor{Seq: int64(len(recs)), Hash: prev}) {
				t.Fatalf("AuditAnchor = %+v, %v; want the last record", a, err)
			}
			rep, err := audit.Verify(bundle.ctx, bundle.st.ScanAudit, a)
			if err != nil || rep.Head != a || rep.Entries != int64(len(recs)) {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}

			// after skips, and fn's error stops the scan and comes back as is.
			var seqs []int64
			stop := errors.New("stop")
			err = bundle.st.ScanAudit(bundle.ctx, 6, func(r audit.Record) error {
				seqs = append(seqs, r.Seq)
				if r.Seq == 8 {
					return stop
				}
				return nil
			})
			if !errors.Is(err, stop) || !reflect.DeepEqual(seqs, []int64{7, 8}) {
				t.Fatalf("ScanAudit(after 6, stop at 8) = %v, %v", seqs, err)
			}

			all, err := bundle.st.AuditRecords(bundle.ctx, "")
			if err != nil || !reflect.DeepEqual(all, recs) {
				t.Fatalf("AuditRecords(\"\") differs from ScanAudit: %v", err)
			}
		})

		t.Run("RecordsByTask", func(t *testing.T) {
			bundle := setup(t)
			mustCommit(t, bundle.st, &store.Batch{Audit: []audit.Entry{
				entry("t1", "a"), entry("t2", "b"), entry("", "config loaded"), entry("t1", "c"),
			}})
			mustCommit(t, bundle.st, &store.Batch{Audit: []audit.Entry{entry("t2", "d"), entry("t1", "e")}})
			for _, tt := range []struct {
				task string
				want []int64
			}{{"t1", []int64{1, 4, 6}}, {"t2", []int64{2, 5}}, {"", []int64{1, 2, 3, 4, 5, 6}}, {"t3", nil}} {
				recs, err := bundle.st.AuditRecords(bundle.ctx, tt.task)
				if err != nil {
					t.Fatal(err)
				}
				var seqs []int64
				for _, r := range recs {
					seqs = append(seqs, r.Seq)
					if r.Hash != audit.Seal(r.Seq, r.Prev, r.Body) {
						t.Errorf("record %d is not returned as stored", r.Seq)
					}
				}
				if !reflect.DeepEqual(seqs, tt.want) {
					t.Errorf("AuditRecords(%q) seqs = %v, want %v", tt.task, seqs, tt.want)
				}
			}
		})

		t.Run("ConcurrentCommitsStayConsecutive", func(t *testing.T) {
			bundle := setup(t)
			const writers, each = 8, 25
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Go(func() {
					id := fmt.Sprintf("w%d", w)
					tk := task.Task{ID: id, Status: task.Running}
					for i := range each {
						b := &store.Batch{
							Task:   &tk,
							Events: []event.Event{ev(id, int64(i+1))},
							Audit:  []audit.Entry{entry(id, fmt.Sprint(i)), entry(id, fmt.Sprint(i, "b"))},
						}
						if err := bundle.st.Commit(bundle.ctx, b); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			a, err := bundle.st.AuditAnchor(bundle.ctx)
			if err != nil || a.Seq != writers*each*2 {
				t.Fatalf("AuditAnchor = %+v, %v; want seq %d", a, err, writers*each*2)
			}
			if _, err := audit.Verify(bundle.ctx, bundle.st.ScanAudit, a); err != nil {
				t.Fatalf("Verify after concurrent commits: %v", err)
			}
		})
	})

	t.Run("Commit", func(t *testing.T) {
		t.Parallel()

		t.Run("FailedCommitLeavesNothing", func(t *testing.T) {
			bundle := setup(t)
			before := fullTask("t1")
			mustCommit(t, bundle.st, &store.Batch{
				Task:   &before,
				Events: []event.Event{ev("t1", 1), ev("t1", 2)},
				Calls:  []store.ToolCall{{Task: "t1", ID: "c1", Tool: "read_file", Status: store.CallIntent}},
				Audit:  []audit.Entry{entry("t1", "created")},
			})
			anchor, _ := bundle.st.AuditAnchor(bundle.ctx)

			after := before
			after.Status, after.Summary = task.Completed, "should not be stored"
			err := bundle.st.Commit(bundle.ctx, &store.Batch{
				Task:      &after,
				Events:    []event.Event{ev("t1", 3), ev("t1", 2)}, // 2 is a duplicate
				Calls:     []store.ToolCall{{Task: "t1", ID: "c1", Status: store.CallOK}, {Task: "t1", ID: "c2", Status: store.CallIntent}},
				Approvals: []store.Approval{{ID: "a1", Task: "t1", Status: store.ApprovalPending}},
				Audit:     []audit.Entry{entry("t1", "x"), entry("t1", "y")},
			})
			if !errors.Is(err, store.ErrDuplicateEvent) {
				t.Fatalf("Commit error = %v, want store.ErrDuplicateEvent", err)
			}
			assertUnchanged(t, bundle.st, before, 2, anchor)

			// A failure late in the batch (after events, calls and approvals were written) too.
			err = bundle.st.Commit(bundle.ctx, &store.Batch{
				Task:      &after,
				Events:    []event.Event{ev("t1", 3)},
				Calls:     []store.ToolCall{{Task: "t1", ID: "c2", Status: store.CallIntent}},
				Approvals: []store.Approval{{ID: "a1", Task: "t1", Status: store.ApprovalPending}, {ID: "a2", Task: "ghost"}},
				Audit:     []audit.Entry{entry("t1", "x")},
			})
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Commit error = %v, want store.ErrNotFound", err)
			}
			assertUnchanged(t, bundle.st, before, 2, anchor)

			// The chain carries on from where it was.
			mustCommit(t, bundle.st, &store.Batch{Audit: []audit.Entry{entry("t1", "next")}})
			a, _ := bundle.st.AuditAnchor(bundle.ctx)
			if a.Seq != anchor.Seq+1 {
				t.Fatalf("anchor after a good commit = %d, want %d", a.Seq, anchor.Seq+1)
			}
			if _, err := audit.Verify(bundle.ctx, bundle.st.ScanAudit, a); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})

		t.Run("CancelledContextWritesNothing", func(t *testing.T) {
			bundle := setup(t)
			ctx, cancel := context.WithCancel(bundle.ctx)
			cancel()
			tk := task.Task{ID: "t1", Status: task.Queued}
			err := bundle.st.Commit(ctx, &store.Batch{Task: &tk, Audit: []audit.Entry{entry("t1", "x")}})
			if err == nil {
				t.Fatal("Commit with a cancelled context succeeded")
			}
			if _, err := bundle.st.Task(bundle.ctx, "t1"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("task written by a cancelled commit: %v", err)
			}
			if a, _ := bundle.st.AuditAnchor(bundle.ctx); a.Seq != 0 {
				t.Fatalf("audit written by a cancelled commit: %+v", a)
			}
		})

		t.Run("EmptyBatch", func(t *testing.T) {
			bundle := setup(t)
			mustCommit(t, bundle.st, &store.Batch{})
			if a, _ := bundle.st.AuditAnchor(bundle.ctx); a.Seq != 0 {
				t.Fatalf("empty batch moved the anchor: %+v", a)
			}
		})
	})
}

func assertUnchanged(t *testing.T, st store.Store, wantTask task.Task, wantLastSeq int64, wantAnchor audit.Anchor) {
	t.Helper()
	ctx := t.Context()
	got, err := st.Task(ctx, wantTask.ID)
	if err != nil {
		t.Fatal(err)
	}
	assertTask(t, *got, wantTask)
	if n, _ := st.LastSeq(ctx, wantTask.ID); n != wantLastSeq {
		t.Errorf("LastSeq = %d after a failed commit, want %d", n, wantLastSeq)
	}
	calls, _ := st.ToolCalls(ctx, wantTask.ID)
	if len(calls) != 1 || calls[0].Status != store.CallIntent {
		t.Errorf("tool calls changed by a failed commit: %+v", calls)
	}
	if aps, _ := st.Approvals(ctx, "", false); len(aps) != 0 {
		t.Errorf("approvals written by a failed commit: %+v", aps)
	}
	if a, _ := st.AuditAnchor(ctx); a != wantAnchor {
		t.Errorf("anchor = %+v after a failed commit, want %+v", a, wantAnchor)
	}
	if recs, _ := st.AuditRecords(ctx, ""); int64(len(recs)) != wantAnchor.Seq {
		t.Errorf("%d audit records after a failed commit, want %d", len(recs), wantAnchor.Seq)
	}
}

func mustCommit(t *testing.T, st store.Store, b *store.Batch) {
	t.Helper()
	if err := st.Commit(t.Context(), b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func commitTask(t *testing.T, st store.Store, id string) {
	t.Helper()
	tk := task.Task{ID: id, Session: "brave-loving-maxwell", Status: task.Running, CreatedAt: time.Now()}
	mustCommit(t, st, &store.Batch{Task: &tk})
}

func fullTask(id string) task.Task {
	cet := time.FixedZone("CET", 3600)
	return task.Task{
		ID:      id,
		Session: "brave-loving-maxwell",
		Parent:  "parent-1",
		Prompt:  "Sort the receipts in ~/Receipts by month and write a summary.",
		Status:  task.Planning,
		Plan: task.Plan{
			{ID: "1", Title: "List the receipts", Status: task.InProgress, Owner: "main"},
			{ID: "2", Title: "Sort them", Status: task.Pending},
		},
		Summary:   "",
		Error:     "",
		Model:     "anthropic:claude-sonnet-4-5",
		Approvals: "ask",
		Grants: []task.Grant{
			{Name: "Receipts", Path: "/home/ana/Receipts", Mode: "rw"},
			{Name: "docs", Path: "/home/ana/Documents/ünïcode ✓", Mode: "ro"},
		},
		Outputs:   "/home/ana/.local/share/keepup/outputs/brave-loving-maxwell",
		Turns:     2,
		Usage:     task.Usage{InputTokens: 1234, OutputTokens: 567},
		CreatedAt: time.Date(2026, 2, 3, 4, 5, 6, 789012345, cet),
		UpdatedAt: time.Date(2026, 2, 3, 4, 6, 0, 1, cet),
		Options: task.Options{Priority: 3, MaxTurns: 7, Depth: 1, Tools: []string{"read_file", "write_file"},
			Call: "toolu_1", Title: "Sort", Schedule: "s-1", Slot: time.Date(2026, 2, 3, 4, 0, 0, 0, time.UTC)},
	}
}

func assertTask(t *testing.T, got, want task.Task) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("times = %v, %v; want %v, %v", got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
	}
	got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("task =\n%#v\nwant\n%#v", got, want)
	}
}

func ev(taskID string, seq int64) event.Event {
	return event.Event{
		Seq:     seq,
		Time:    time.Date(2026, 1, 1, 0, 0, 0, int(seq), time.UTC),
		Task:    taskID,
		Session: "brave-loving-maxwell",
		Type:    event.ToolResult,
		Data:    json.RawMessage(fmt.Sprintf(`{"tool_call_id":"toolu_%d","ok":true}`, seq)),
	}
}

func assertEvents(t *testing.T, got, want []event.Event) {
	t.Helper()
	norm := func(es []event.Event) []event.Event {
		out := make([]event.Event, len(es))
		for i, e := range es {
			e.Time = e.Time.UTC()
			if len(e.Data) == 0 {
				e.Data = nil
			}
			out[i] = e
		}
		return out
	}
	if !reflect.DeepEqual(norm(got), norm(want)) {
		t.Errorf("events =\n%+v\nwant\n%+v", got, want)
	}
}

func normCalls(cs []store.ToolCall) []store.ToolCall {
	out := make([]store.ToolCall, len(cs))
	for i, c := range cs {
		c.StartedAt, c.FinishedAt = c.StartedAt.UTC(), c.FinishedAt.UTC()
		out[i] = c
	}
	return out
}

func normApprovals(as []store.Approval) []store.Approval {
	out := make([]store.Approval, len(as))
	for i, a := range as {
		a.CreatedAt, a.ResolvedAt = a.CreatedAt.UTC(), a.ResolvedAt.UTC()
		out[i] = a
	}
	return out
}

func entry(taskID, what string) audit.Entry {
	return audit.Entry{
		Time:    time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		Type:    "tool.call",
		Task:    taskID,
		Session: "brave-loving-maxwell",
		Data:    map[string]any{"what": what, "tool": "read_file", "decision": "allow"},
	}
}
