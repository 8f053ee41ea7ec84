package audit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/keepup/keepup/internal/audit"
)

// A store seals each entry onto the chain with Seal, inside its write transaction.
func ExampleSeal() {
	e := audit.Entry{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Type: "task.created", Task: "t1"}
	body, _ := e.Body()
	first := audit.Record{Seq: 1, Prev: audit.Genesis, Body: body}
	first.Hash = audit.Seal(first.Seq, first.Prev, first.Body)
	fmt.Println(string(body))
	fmt.Println(first.Hash)
	// Output:
	// {"time":"2026-01-02T03:04:05Z","type":"task.created","task":"t1"}
	// eb5a2145440fc34e35fea9640bc3884c36211969f4bf5c20bf99a4b99165ec91
}

// Verify reads the chain through a scan function (a store's ScanAudit) and checks it against
// the anchor, which is read first.
func ExampleVerify() {
	var recs []audit.Record
	prev := audit.Genesis
	for i, typ := range []string{"task.created", "tool.call", "task.finished"} {
		body, _ := audit.Entry{Time: time.Unix(int64(i), 0), Type: typ, Task: "t1"}.Body()
		r := audit.Record{Seq: int64(i + 1), Prev: prev, Body: body}
		r.Hash = audit.Seal(r.Seq, r.Prev, r.Body)
		recs, prev = append(recs, r), r.Hash
	}
	scan := func(ctx context.Context, after int64, fn func(audit.Record) error) error {
		for _, r := range recs[after:] {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	anchor := audit.Anchor{Seq: 3, Hash: recs[2].Hash}
	rep, err := audit.Verify(context.Background(), scan, anchor)
	fmt.Println(rep.Entries, err)

	recs[1].Body = []byte(`{"type":"nothing to see"}`)
	_, err = audit.Verify(context.Background(), scan, anchor)
	var broken *audit.BrokenError
	fmt.Println(errors.As(err, &broken), broken.Seq)
	fmt.Println(err)
	// Output:
	// 3 <nil>
	// true 2
	// audit chain broken at entry 2: hash does not match its content (entry edited)
}

func ExampleExport() {
	body := []byte(`{"time":"2026-01-02T03:04:05Z","type":"task.created","task":"t1"}`)
	r := audit.Record{Seq: 1, Prev: audit.Genesis, Body: body}
	r.Hash = audit.Seal(r.Seq, r.Prev, r.Body)
	if err := audit.Export(os.Stdout, audit.Records([]audit.Record{r})); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"eb5a2145440fc34e35fea9640bc3884c36211969f4bf5c20bf99a4b99165ec91","entry":{"time":"2026-01-02T03:04:05Z","type":"task.created","task":"t1"}}
}
