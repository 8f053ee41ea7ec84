package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/keepup/keepup/internal/audit"
)

func TestExportJSONL(t *testing.T) {
	t.Parallel()
	recs := chain(t, 3)
	var out bytes.Buffer
	if err := audit.Export(&out, audit.Records(recs)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(recs) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(recs), out.String())
	}
	for i, line := range lines {
		var got struct {
			Seq   int64           `json:"seq"`
			Prev  string          `json:"prev"`
			Hash  string          `json:"hash"`
			Entry json.RawMessage `json:"entry"`
		}
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, line)
		}
		r := recs[i]
		if got.Seq != r.Seq || got.Prev != r.Prev || got.Hash != r.Hash || !bytes.Equal(got.Entry, r.Body) {
			t.Fatalf("line %d = %s, want record %+v", i+1, line, r)
		}
		// The export alone is enough to check the chain.
		if audit.Seal(got.Seq, got.Prev, got.Entry) != got.Hash {
			t.Fatalf("line %d: cannot be re-verified from the export", i+1)
		}
	}
	want := `{"seq":1,"prev":"` + audit.Genesis + `","hash":"` + recs[0].Hash + `","entry":` + string(recs[0].Body) + "}"
	if lines[0] != want {
		t.Fatalf("first line\n got %s\nwant %s", lines[0], want)
	}
}

func TestExportOddBodies(t *testing.T) {
	t.Parallel()
	recs := []audit.Record{
		{Seq: 1, Prev: audit.Genesis, Hash: "h1", Body: []byte("{\n  \"type\": \"x\"\n}")},
		{Seq: 2, Prev: "h1", Hash: "h2", Body: []byte("not json\n\"<>")},
		{Seq: 3, Prev: "h2\"", Hash: "h3", Body: []byte(`{"type":"y"}`)},
	}
	var out bytes.Buffer
	if err := audit.Export(&out, audit.Records(recs)); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	var got []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3", len(got))
	}
	if got[0]["entry"].(map[string]any)["type"] != "x" {
		t.Errorf("multi-line body not kept as an object: %v", got[0])
	}
	if got[1]["entry_raw"] != "not json\n\"<>" || got[1]["entry"] != nil {
		t.Errorf("invalid body not exported as entry_raw: %v", got[1])
	}
	if got[2]["prev"] != "h2\"" {
		t.Errorf("prev not escaped: %v", got[2])
	}
}

func TestExportScan(t *testing.T) {
	t.Parallel()
	recs := chain(t, 10)
	var out bytes.Buffer
	if err := audit.Export(&out, audit.Scan(t.Context(), scanOf(recs), 4)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 6 {
		t.Fatalf("%d lines, want the 6 records after seq 4", n)
	}
	if !strings.HasPrefix(out.String(), `{"seq":5,`) {
		t.Fatalf("export starts %.20q, want seq 5", out.String())
	}

	boom := errors.New("disk on fire")
	failing := func(ctx context.Context, after int64, fn func(audit.Record) error) error {
		if err := fn(recs[0]); err != nil {
			return err
		}
		return boom
	}
	if err := audit.Export(&out, audit.Scan(t.Context(), failing, 0)); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
}

func TestScanStopsEarly(t *testing.T) {
	t.Parallel()
	recs := chain(t, 10)
	n := 0
	for r, err := range audit.Scan(t.Context(), scanOf(recs), 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if r.Seq == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatalf("saw %d records, want 3", n)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestExportWriteError(t *testing.T) {
	t.Parallel()
	if err := audit.Export(failWriter{}, audit.Records(chain(t, 2))); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the writer's error", err)
	}
}
