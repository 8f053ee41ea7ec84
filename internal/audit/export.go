package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
)

// Export writes records as JSON Lines, one record a line, in the order given:
//
//	{"seq":1,"prev":"<hex>","hash":"<hex>","entry":{...the entry's body as stored...}}
//
// The body is written byte for byte, so anyone can recompute Seal(seq, prev, entry) from the
// file and check the chain without keepup. A body that is not valid JSON (only a tampered
// store has one) is written as a JSON string under "entry_raw" instead of "entry", so the
// export still succeeds and shows it; a valid body spread over several lines is compacted.
//
// records yields records or an error; the first error stops the export and is returned.
// Records and Scan adapt a slice and a store's scan.
func Export(w io.Writer, records iter.Seq2[Record, error]) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var line, compact bytes.Buffer
	for r, err := range records {
		if err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		line.Reset()
		line.WriteString(`{"seq":`)
		line.Write(strconv.AppendInt(line.AvailableBuffer(), r.Seq, 10))
		line.WriteString(`,"prev":`)
		writeJSONString(&line, r.Prev)
		line.WriteString(`,"hash":`)
		writeJSONString(&line, r.Hash)
		switch {
		case !json.Valid(r.Body):
			line.WriteString(`,"entry_raw":`)
			writeJSONString(&line, string(r.Body))
		case bytes.ContainsAny(r.Body, "\r\n"):
			compact.Reset()
			if err := json.Compact(&compact, r.Body); err != nil {
				return fmt.Errorf("audit export: entry %d: %w", r.Seq, err)
			}
			line.WriteString(`,"entry":`)
			line.Write(compact.Bytes())
		default:
			line.WriteString(`,"entry":`)
			line.Write(r.Body)
		}
		line.WriteString("}\n")
		if _, err := bw.Write(line.Bytes()); err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	return nil
}

// writeJSONString writes s as a JSON string. Hashes are plain hex, so the common case is a
// copy between quotes; anything else goes through encoding/json.
func writeJSONString(b *bytes.Buffer, s string) {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			plain = false
			break
		}
	}
	if plain {
		b.WriteByte('"')
		b.WriteString(s)
		b.WriteByte('"')
		return
	}
	q, _ := json.Marshal(s) // a string always marshals
	b.Write(q)
}

// Records yields the records of a slice, for Export.
func Records(records []Record) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		for _, r := range records {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// errStopped ends a scan when the consumer of Scan's iterator stops early.
var errStopped = errors.New("audit: iteration stopped")

// Scan yields the records a ScanFunc streams (those with Seq > after), for Export. A scan
// error is yielded last. A record is valid only until the next one is yielded.
func Scan(ctx context.Context, scan ScanFunc, after int64) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		stopped := false
		err := scan(ctx, after, func(r Record) error {
			if !yield(r, nil) {
				stopped = true
				return errStopped
			}
			return nil
		})
		if err != nil && !stopped {
			yield(Record{}, err)
		}
	}
}
