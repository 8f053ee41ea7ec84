// Package audit owns the tamper-evident audit chain: the shape of an entry, how entries are
// sealed (each carries the SHA-256 of the one before it), how a chain is verified and how it is
// exported. Storage lives in internal/store, which seals entries inside its write transaction
// with Seal. This package must never write anything itself.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
)

// Entry is what is recorded, before it is sealed into the chain.
type Entry struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"` // e.g. task.created, tool.call, approval, model.call
	Task    string    `json:"task,omitempty"`
	Session string    `json:"session,omitempty"`
	Data    any       `json:"data,omitempty"`
}

// Body returns the canonical bytes of e that the chain seals.
func (e Entry) Body() ([]byte, error) {
	e.Time = e.Time.UTC()
	return json.Marshal(e)
}

// Record is one sealed entry as stored.
type Record struct {
	Seq  int64  // 1-based, consecutive
	Prev string // hex SHA-256 of the previous record; Genesis for the first
	Hash string // hex SHA-256 over seq, prev and body
	Body []byte // Entry.Body()
}

// Genesis is the Prev of the first record.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Seal computes the hash of a record: SHA-256("<seq>\n<prev>\n" + body), hex-encoded. The
// sequence number is inside the hash, so reordering or renumbering records breaks the chain.
func Seal(seq int64, prev string, body []byte) string {
	h := sha256.New()
	var buf [24]byte
	h.Write(strconv.AppendInt(buf[:0], seq, 10))
	h.Write([]byte{'\n'})
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write(body)
	var sum [32]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// Anchor is the chain's head as last committed, kept apart from the records so that a
// truncated chain is detected.
type Anchor struct {
	Seq  int64
	Hash string
}
