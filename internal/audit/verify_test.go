package audit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/audit"
)

// chain seals n realistic entries the way a store does.
func chain(t testing.TB, n int) []audit.Record {
	t.Helper()
	recs := make([]audit.Record, 0, n)
	prev := audit.Genesis
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range n {
		e := audit.Entry{
			Time:    base.Add(time.Duration(i) * time.Millisecond),
			Type:    "tool.call",
			Task:    fmt.Sprintf("task-%d", i%7),
			Session: "brave-loving-maxwell",
			Data: map[string]any{
				"tool":     "read_file",
				"call_id":  fmt.Sprintf("toolu_%08d", i),
				"input":    map[string]any{"path": fmt.Sprintf("/sessions/brave-loving-maxwell/mnt/notes/%d.md", i)},
				"decision": "allow",
				"rule":     "grant:notes:ro",
				"status":   "ok",
			},
		}
		body, err := e.Body()
		if err != nil {
			t.Fatal(err)
		}
		seq := int64(i + 1)
		h := audit.Seal(seq, prev, body)
		recs = append(recs, audit.Record{Seq: seq, Prev: prev, Hash: h, Body: body})
		prev = h
	}
	return recs
}

func head(recs []audit.Record) audit.Anchor {
	if len(recs) == 0 {
		return audit.Anchor{Seq: 0, Hash: audit.Genesis}
	}
	last := recs[len(recs)-1]
	return audit.Anchor{Seq: last.Seq, Hash: last.Hash}
}

// scanOf serves recs like a store's ScanAudit, reusing one Body buffer to prove that Verify
// copies what it keeps.
func scanOf(recs []audit.Record) audit.ScanFunc {
	return func(ctx context.Context, after int64, fn func(audit.Record) error) error {
		var buf []byte
		for _, r := range recs {
			if r.Seq <= after {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			buf = append(buf[:0], r.Body...)
			r.Body = buf
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestVerifyIntact(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			recs := chain(t, n)
			rep, err := audit.Verify(t.Context(), scanOf(recs), head(recs))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if rep.Entries != int64(n) || rep.Head != head(recs) {
				t.Fatalf("report = %+v, want %d entries, head %+v", rep, n, head(recs))
			}
		})
	}
}

func TestVerifyEmptyAnchorStillChecksRecords(t *testing.T) {
	t.Parallel()
	recs := chain(t, 5)
	recs[2].Body = []byte(`{"type":"forged"}`)
	_, err := audit.Verify(t.Context(), scanOf(recs), audit.Anchor{})
	wantBroken(t, err, 3, "entry edited")
}

func TestVerifyRecordsPastTheAnchor(t *testing.T) {
	t.Parallel()
	// A commit that lands between reading the anchor and scanning is not an error.
	recs := chain(t, 10)
	rep, err := audit.Verify(t.Context(), scanOf(recs), head(recs[:7]))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Entries != 10 || rep.Head != head(recs) {
		t.Fatalf("report = %+v", rep)
	}
}

func TestVerifyTampered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tamper   func(recs []audit.Record) ([]audit.Record, audit.Anchor)
		wantSeq  int64
		wantText string
	}{
		{
			name: "body edited",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				r[41].Body = []byte(strings.Replace(string(r[41].Body), "allow", "deny", 1))
				return r, head(r)
			},
			wantSeq: 42, wantText: "audit chain broken at entry 42: hash does not match its content (entry edited)",
		},
		{
			name: "hash edited",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				r[9].Hash = strings.Repeat("a", 64)
				return r, head(r)
			},
			wantSeq: 10, wantText: "entry edited",
		},
		{
			name: "middle entry deleted",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				return slices.Delete(r, 41, 42), head(r)
			},
			wantSeq: 42, wantText: "audit chain broken at entry 42: expected seq 42, found 43 (entry deleted)",
		},
		{
			name: "first entry deleted",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				return r[1:], head(r)
			},
			wantSeq: 1, wantText: "expected seq 1, found 2 (entry deleted)",
		},
		{
			name: "several entries deleted",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				return slices.Delete(r, 20, 25), head(r)
			},
			wantSeq: 21, wantText: "expected seq 21, found 26 (entries deleted)",
		},
		{
			name: "entry duplicated",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				return slices.Insert(r, 31, r[30]), head(r)
			},
			wantSeq: 32, wantText: "expected seq 32, found 31 (entries reordered or duplicated)",
		},
		{
			name: "entries reordered, seqs kept in order",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				// What swapping two rows' seq in a table looks like when read back by seq.
				r[19], r[29] = r[29], r[19]
				r[19].Seq, r[29].Seq = 20, 30
				return r, head(r)
			},
			wantSeq: 20, wantText: "(entries reordered or replaced)",
		},
		{
			name: "entries reordered with their seqs",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				r[19], r[20] = r[20], r[19]
				return r, head(r)
			},
			wantSeq: 20, wantText: "expected seq 20, found 21",
		},
		{
			name: "entry rewritten and resealed",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				r[9].Body = []byte(`{"type":"forged"}`)
				r[9].Hash = audit.Seal(10, r[9].Prev, r[9].Body)
				return r, head(r)
			},
			wantSeq: 11, wantText: "prev does not match the hash of entry 10",
		},
		{
			name: "chain replaced from the start",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				r[0].Prev = strings.Repeat("1", 64)
				r[0].Hash = audit.Seal(1, r[0].Prev, r[0].Body)
				return r, head(r)
			},
			wantSeq: 1, wantText: "prev is not the genesis hash",
		},
		{
			name: "truncated",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				return r[:90], head(r)
			},
			wantSeq: 91, wantText: "audit chain broken at entry 91: truncated: chain ends at entry 90 but the anchor says 100",
		},
		{
			name: "truncated to nothing",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				return nil, head(r)
			},
			wantSeq: 1, wantText: "truncated: chain is empty but the anchor says 100",
		},
		{
			name: "whole chain rewritten",
			tamper: func(r []audit.Record) ([]audit.Record, audit.Anchor) {
				a := head(r)
				prev := audit.Genesis
				for i := range r {
					r[i].Body = []byte(`{"type":"forged"}`)
					r[i].Prev = prev
					r[i].Hash = audit.Seal(r[i].Seq, prev, r[i].Body)
					prev = r[i].Hash
				}
				return r, a
			},
			wantSeq: 100, wantText: "hash differs from the anchor's (chain rewritten)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			recs, anchor := tt.tamper(chain(t, 100))
			_, err := audit.Verify(t.Context(), scanOf(recs), anchor)
			wantBroken(t, err, tt.wantSeq, tt.wantText)
		})
	}
}

func wantBroken(t *testing.T, err error, seq int64, text string) {
	t.Helper()
	var be *audit.BrokenError
	if !errors.As(err, &be) {
		t.Fatalf("Verify error = %v, want a *audit.BrokenError", err)
	}
	if be.Seq != seq {
		t.Errorf("broken at %d, want %d (%v)", be.Seq, seq, err)
	}
	if !strings.Contains(err.Error(), text) {
		t.Errorf("error %q does not say %q", err, text)
	}
}

func TestVerifyScanError(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	scan := func(ctx context.Context, after int64, fn func(audit.Record) error) error { return boom }
	_, err := audit.Verify(t.Context(), scan, audit.Anchor{})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap %v", err, boom)
	}
	var be *audit.BrokenError
	if errors.As(err, &be) {
		t.Fatalf("a read failure must not be reported as a broken chain: %v", err)
	}
}

func TestVerifyCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	recs := chain(t, 10)
	_, err := audit.Verify(ctx, scanOf(recs), head(recs))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// BenchmarkVerify measures the checks alone, over records already in memory.
func BenchmarkVerify(b *testing.B) {
	const n = 200_000
	recs := chain(b, n)
	scan, anchor := scanOf(recs), head(recs)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := audit.Verify(b.Context(), scan, anchor); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
