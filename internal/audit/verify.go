package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
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
// Records past the anchor (committed after the anchor was read) are checked like the others.
// The first problem is returned as a *BrokenError; an error from scan is returned wrapped.
// Memory use does not grow with the chain.
func Verify(ctx context.Context, scan ScanFunc, anchor Anchor) (Report, error) {
	v := verifier{anchor: anchor, prevHash: append(make([]byte, 0, 64), Genesis...)}
	err := scan(ctx, 0, v.check)
	if v.broken != nil {
		return Report{}, v.broken
	}
	if err != nil {
		return Report{}, fmt.Errorf("audit verify: reading the chain: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	if anchor.Seq > v.seq {
		end := "chain ends at entry " + strconv.FormatInt(v.seq, 10)
		if v.seq == 0 {
			end = "chain is empty"
		}
		return Report{}, &BrokenError{Seq: v.seq + 1, Reason: fmt.Sprintf(
			"truncated: %s but the anchor says %d (entries removed from the end)", end, anchor.Seq)}
	}
	return Report{Entries: v.seq, Head: Anchor{Seq: v.seq, Hash: string(v.prevHash)}}, nil
}

// errBroken stops the scan once a *BrokenError is set.
var errBroken = errors.New("audit chain broken")

// verifier holds the state carried from one record to the next. Everything it keeps is copied
// into its own buffers, so a scan may reuse a record's memory.
type verifier struct {
	anchor   Anchor
	seq      int64  // Seq of the last good record
	prevHash []byte // Hash of the last good record (Genesis before the first)
	sealer   sealer
	broken   *BrokenError
}

func (v *verifier) check(r Record) error {
	want := v.seq + 1
	if r.Seq != want {
		reason := fmt.Sprintf("expected seq %d, found %d", want, r.Seq)
		switch {
		case r.Seq == want+1:
			reason += " (entry deleted)"
		case r.Seq > want:
			reason += " (entries deleted)"
		default:
			reason += " (entries reordered or duplicated)"
		}
		return v.fail(want, reason)
	}
	linked := string(v.prevHash) == r.Prev
	sealed := v.sealer.matches(r.Seq, r.Prev, r.Body, r.Hash)
	switch {
	case !linked && !sealed:
		return v.fail(r.Seq, fmt.Sprintf("neither its prev nor its hash fit at this position after entry %d (entries reordered or replaced)", v.seq))
	case !linked && v.seq == 0:
		return v.fail(r.Seq, "prev is not the genesis hash (chain replaced or its start removed)")
	case !linked:
		return v.fail(r.Seq, fmt.Sprintf("prev does not match the hash of entry %d (an entry rewritten and resealed, or entries inserted)", v.seq))
	case !sealed:
		return v.fail(r.Seq, "hash does not match its content (entry edited)")
	}
	if r.Seq == v.anchor.Seq && r.Hash != v.anchor.Hash {
		return v.fail(r.Seq, "hash differs from the anchor's (chain rewritten)")
	}
	v.seq = r.Seq
	v.prevHash = append(v.prevHash[:0], r.Hash...)
	return nil
}

func (v *verifier) fail(seq int64, reason string) error {
	v.broken = &BrokenError{Seq: seq, Reason: reason}
	return errBroken
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
