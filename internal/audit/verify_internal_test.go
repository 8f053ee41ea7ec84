package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func sealedChain(n int) []Record {
	recs := make([]Record, 0, n)
	prev := Genesis
	for i := range n {
		body, _ := Entry{Time: time.Unix(int64(i), 0), Type: "tool.call", Task: "t", Data: i}.Body()
		seq := int64(i + 1)
		h := Seal(seq, prev, body)
		recs = append(recs, Record{Seq: seq, Prev: prev, Hash: h, Body: body})
		prev = h
	}
	return recs
}

// scanSlice serves records with Seq > after in slice order (which a tampering may have
// changed), reusing string and body memory between calls to fn as a driver may.
func scanSlice(recs []Record) ScanFunc {
	return func(ctx context.Context, after int64, fn func(Record) error) error {
		var buf []byte
		for _, r := range recs {
			if r.Seq <= after {
				continue
			}
			buf = append(buf[:0], r.Prev...)
			buf = append(buf, r.Hash...)
			buf = append(buf, r.Body...)
			r.Prev = string(buf[:len(r.Prev)]) // copies, but from the reused buffer
			r.Hash = string(buf[len(r.Prev) : len(r.Prev)+len(r.Hash)])
			r.Body = buf[len(r.Prev)+len(r.Hash):]
			if err := fn(r); err != nil {
				return err
			}
		}
		return ctx.Err()
	}
}

// TestVerifyPartsAgree tampers with every position of a chain in every way and checks that
// checking it in 2 to 7 parts gives exactly the answer of checking it in one.
func TestVerifyPartsAgree(t *testing.T) {
	t.Parallel()
	const n = 60
	type tampering struct {
		name string
		fn   func(r []Record, k int) ([]Record, Anchor)
	}
	head := func(r []Record) Anchor { return Anchor{Seq: r[len(r)-1].Seq, Hash: r[len(r)-1].Hash} }
	tamperings := []tampering{
		{"intact", func(r []Record, k int) ([]Record, Anchor) { return r, head(r) }},
		{"edited", func(r []Record, k int) ([]Record, Anchor) {
			r[k].Body = append(slices.Clone(r[k].Body), ' ')
			return r, head(r)
		}},
		{"deleted", func(r []Record, k int) ([]Record, Anchor) { a := head(r); return slices.Delete(r, k, k+1), a }},
		{"three deleted", func(r []Record, k int) ([]Record, Anchor) {
			a := head(r)
			return slices.Delete(r, k, min(k+3, len(r))), a
		}},
		{"swapped with the next, seqs kept", func(r []Record, k int) ([]Record, Anchor) {
			a := head(r)
			if k+1 == len(r) {
				k--
			}
			r[k], r[k+1] = r[k+1], r[k]
			r[k].Seq, r[k+1].Seq = r[k+1].Seq, r[k].Seq
			return r, a
		}},
		{"resealed", func(r []Record, k int) ([]Record, Anchor) {
			a := head(r)
			r[k].Body = []byte(`{}`)
			r[k].Hash = Seal(r[k].Seq, r[k].Prev, r[k].Body)
			return r, a
		}},
		{"duplicated", func(r []Record, k int) ([]Record, Anchor) { return slices.Insert(r, k+1, r[k]), head(r) }},
		{"truncated", func(r []Record, k int) ([]Record, Anchor) { a := head(r); return r[:k], a }},
		{"anchor moved", func(r []Record, k int) ([]Record, Anchor) { return r, Anchor{Seq: int64(k + 1), Hash: Genesis} }},
		{"empty hash", func(r []Record, k int) ([]Record, Anchor) { r[k].Hash = ""; return r, head(r) }},
	}
	for _, tm := range tamperings {
		t.Run(tm.name, func(t *testing.T) {
			t.Parallel()
			for k := range n {
				recs, anchor := tm.fn(sealedChain(n), k)
				want, wantErr := verify(t.Context(), scanSlice(recs), anchor, 1)
				if tm.name == "intact" && wantErr != nil {
					t.Fatalf("intact chain: %v", wantErr)
				}
				if tm.name != "intact" && wantErr == nil {
					t.Fatalf("k=%d: tampering not detected", k)
				}
				for parts := 2; parts <= 7; parts++ {
					got, gotErr := verify(t.Context(), scanSlice(recs), anchor, parts)
					if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || got != want {
						t.Fatalf("k=%d, %d parts: got %+v, %v\nwant %+v, %v", k, parts, got, gotErr, want, wantErr)
					}
				}
			}
		})
	}
}

func TestVerifyPartsScanError(t *testing.T) {
	t.Parallel()
	recs := sealedChain(40)
	boom := errors.New("disk on fire")
	scan := func(ctx context.Context, after int64, fn func(Record) error) error {
		if after >= 20 {
			return boom
		}
		return scanSlice(recs)(ctx, after, fn)
	}
	_, err := verify(t.Context(), scan, Anchor{Seq: 40, Hash: recs[39].Hash}, 4)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	// A broken entry before the failing part is still the answer.
	recs[3].Body = []byte(`{}`)
	_, err = verify(t.Context(), scan, Anchor{Seq: 40, Hash: recs[39].Hash}, 4)
	var be *BrokenError
	if !errors.As(err, &be) || be.Seq != 4 {
		t.Fatalf("err = %v, want entry 4 broken", err)
	}
}
