package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ScanFunc streams stored records with Seq > after to fn, in Seq order, as stored (no checks).
// A store's ScanAudit method is one. fn returning an error stops the scan, and ScanFunc returns
// that error. A ScanFunc may reuse the memory of a Record once fn has returned; fn copies what
// it keeps.
type ScanFunc func(ctx context.Context, after int64, fn func(Record) error) error

// Report is the outcome of a successful Verify.
type Report struct {
	Entries int64  // how many records were checked
	Head    Anchor // the last record checked; {0, Genesis} for an empty chain
}

// BrokenError is returned by Verify for the first record (in Seq order) at which the chain
// stops proving itself. Seq names that record: for a deleted entry it is the missing Seq, for a
// truncated chain the first missing one at the end.
type BrokenError struct {
	Seq    int64
	Reason string // what is wrong there and what it suggests happened
}

func (e *BrokenError) Error() string {
	return "audit chain broken at entry " + strconv.FormatInt(e.Seq, 10) + ": " + e.Reason
}

// Verify streams the chain through scan and checks that:
//
//   - Seqs start at 1 and go up by exactly one (a gap is a deleted entry, a repeat or a step
//     back is a reordering);
//   - each Prev is the Hash of the record before it (Genesis for the first);
//   - each Hash is Seal(Seq, Prev, Body) (otherwise the entry was edited);
//   - the chain reaches the anchor and agrees with it: ending before anchor.Seq means it was
//     truncated, a different hash at anchor.Seq means it was rewritten.
//
// Records past the anchor (committed after the anchor was read) are checked like the others,
// so read the anchor before calling Verify. The first problem in Seq order is returned as a
// *BrokenError; an error from scan is returned wrapped.
//
// Memory use does not grow with the chain. A long chain is cut into parts at anchor.Seq/N
// boundaries, checked at once by N goroutines (N up to GOMAXPROCS), each calling scan with its
// own after and stopping at the end of its part; the parts are then stitched together at their
// boundaries. scan must therefore allow concurrent calls, as a store's ScanAudit does.
func Verify(ctx context.Context, scan ScanFunc, anchor Anchor) (Report, error) {
	parts := 1
	if anchor.Seq >= 2*minPart {
		parts = int(min(int64(runtime.GOMAXPROCS(0)), anchor.Seq/minPart, maxParts))
	}
	return verify(ctx, scan, anchor, parts)
}

// verify is Verify in a given number of parts (at least 1; fewer than anchor.Seq).
func verify(ctx context.Context, scan ScanFunc, anchor Anchor, parts int) (Report, error) {
	var lowestBroken atomic.Int64 // lowest Seq found broken so far, to stop later parts early
	lowestBroken.Store(math.MaxInt64)
	segs := make([]*segment, parts)
	for i := range segs {
		s := &segment{lo: anchor.Seq / int64(parts) * int64(i), hi: -1, anchor: anchor, lowest: &lowestBroken}
		if i+1 < parts {
			s.hi = anchor.Seq / int64(parts) * int64(i+1)
		}
		s.seq = s.lo
		if i == 0 {
			s.prevHash = append(make([]byte, 0, 64), Genesis...)
		}
		segs[i] = s
	}
	if parts == 1 {
		segs[0].run(ctx, scan)
	} else {
		var wg sync.WaitGroup
		for _, s := range segs {
			wg.Go(func() { s.run(ctx, scan) })
		}
		wg.Wait()
	}

	// Stitch the parts in order; the first problem found in Seq order is the answer.
	cur := segs[0]
	if cur.broken != nil {
		return Report{}, cur.broken
	}
	if cur.err != nil {
		return Report{}, fmt.Errorf("audit verify: reading the chain: %w", cur.err)
	}
	for i, s := range segs[1:] {
		if cur.seq < s.lo { // the previous part ended short of its boundary
			found := segs[i].next
			if found == 0 {
				break // nothing after it: the chain ends there
			}
			return Report{}, &BrokenError{Seq: cur.seq + 1, Reason: seqReason(cur.seq+1, found)}
		}
		if s.first.seen {
			f := &s.first
			anchored := s.lo+1 != anchor.Seq || f.hash == anchor.Hash
			if reason := judge(string(cur.prevHash) == f.prev, f.sealed, anchored, cur.seq); reason != "" {
				return Report{}, &BrokenError{Seq: s.lo + 1, Reason: reason}
			}
		}
		if s.broken != nil {
			return Report{}, s.broken
		}
		if s.err != nil {
			return Report{}, fmt.Errorf("audit verify: reading the chain: %w", s.err)
		}
		if s.seq > s.lo {
			cur = s
		}
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	if anchor.Seq > cur.seq {
		end := "chain ends at entry " + strconv.FormatInt(cur.seq, 10)
		if cur.seq == 0 {
			end = "chain is empty"
		}
		return Report{}, &BrokenError{Seq: cur.seq + 1, Reason: fmt.Sprintf(
			"truncated: %s but the anchor says %d (entries removed from the end)", end, anchor.Seq)}
	}
	return Report{Entries: cur.seq, Head: Anchor{Seq: cur.seq, Hash: string(cur.prevHash)}}, nil
}

const (
	minPart  = 16 << 10 // records; below twice this a chain is checked in one part
	maxParts = 8
)

// errStop ends a part's scan: it reached its end, found a problem, or an earlier part did.
var errStop = errors.New("audit: stop")

// segment checks the records with lo < Seq <= hi (no upper bound if hi < 0). Every record is
// checked against the one before it, except the first of a part that does not start the
// chain: its predecessor belongs to the previous part, so it is kept in first and judged when
// the parts are stitched.
type segment struct {
	lo, hi int64
	anchor Anchor
	lowest *atomic.Int64

	seq      int64  // Seq of the last record that passed the checks (lo before any)
	prevHash []byte // its stored Hash; nil until known in a part other than the first
	first    struct {
		seen       bool
		prev, hash string
		sealed     bool
	}
	next   int64 // Seq of the record past hi that ended the scan; 0 if the rows ran out
	broken *BrokenError
	err    error // from scan
	sealer sealer
}

func (s *segment) run(ctx context.Context, scan ScanFunc) {
	err := scan(ctx, s.lo, s.check)
	if err != nil && !errors.Is(err, errStop) {
		s.err = err
	}
}

func (s *segment) check(r Record) error {
	if s.hi >= 0 && r.Seq > s.hi {
		s.next = r.Seq
		return errStop
	}
	if s.lowest.Load() < s.lo {
		return errStop // an earlier part is broken: that is the answer, not ours
	}
	want := s.seq + 1
	if r.Seq != want {
		return s.fail(want, seqReason(want, r.Seq))
	}
	sealed := s.sealer.matches(r.Seq, r.Prev, r.Body, r.Hash)
	if s.prevHash == nil {
		// Strings are copied: a scan may reuse a record's memory.
		s.first.seen, s.first.prev, s.first.hash, s.first.sealed = true, strings.Clone(r.Prev), strings.Clone(r.Hash), sealed
	} else {
		anchored := r.Seq != s.anchor.Seq || r.Hash == s.anchor.Hash
		if reason := judge(string(s.prevHash) == r.Prev, sealed, anchored, s.seq); reason != "" {
			return s.fail(r.Seq, reason)
		}
	}
	s.seq = r.Seq
	s.prevHash = append(s.prevHash[:0], r.Hash...)
	if s.prevHash == nil {
		s.prevHash = []byte{} // an empty stored hash is still a known one
	}
	return nil
}

func (s *segment) fail(seq int64, reason string) error {
	s.broken = &BrokenError{Seq: seq, Reason: reason}
	for {
		cur := s.lowest.Load()
		if seq >= cur || s.lowest.CompareAndSwap(cur, seq) {
			return errStop
		}
	}
}

// seqReason explains finding Seq found where want was expected.
func seqReason(want, found int64) string {
	reason := fmt.Sprintf("expected seq %d, found %d", want, found)
	switch {
	case found == want+1:
		return reason + " (entry deleted)"
	case found > want:
		return reason + " (entries deleted)"
	default:
		return reason + " (entries reordered or duplicated)"
	}
}

// judge explains what is wrong with a record in the right place by Seq, or returns "". linked:
// its Prev is the previous record's Hash; sealed: its Hash is Seal of its content; anchored:
// it is not the anchor's entry, or has the anchor's hash.
func judge(linked, sealed, anchored bool, prevSeq int64) string {
	switch {
	case !linked && !sealed:
		return fmt.Sprintf("neither its prev nor its hash fit at this position after entry %d (entries reordered or replaced)", prevSeq)
	case !linked && prevSeq == 0:
		return "prev is not the genesis hash (chain replaced or its start removed)"
	case !linked:
		return fmt.Sprintf("prev does not match the hash of entry %d (an entry rewritten and resealed, or entries inserted)", prevSeq)
	case !sealed:
		return "hash does not match its content (entry edited)"
	case !anchored:
		return "hash differs from the anchor's (chain rewritten)"
	}
	return ""
}

// sealer is Seal without allocations: it reuses its buffer and compares hex in place.
type sealer struct {
	buf []byte
	hex [sha256.Size * 2]byte
}

// matches reports whether hash == Seal(seq, prev, body).
func (s *sealer) matches(seq int64, prev string, body []byte, hash string) bool {
	if len(hash) != len(s.hex) {
		return false
	}
	b := strconv.AppendInt(s.buf[:0], seq, 10)
	b = append(b, '\n')
	b = append(b, prev...)
	b = append(b, '\n')
	b = append(b, body...)
	s.buf = b
	sum := sha256.Sum256(b)
	hex.Encode(s.hex[:], sum[:])
	return string(s.hex[:]) == hash
}
