package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// BenchmarkCommitTypicalBatch measures one agent step's write: a task upsert, three events,
// one tool call and one audit entry, in one transaction on a real file. A turn makes about
// 6-10 of these.
func BenchmarkCommitTypicalBatch(b *testing.B) {
	db := openTest(b, filepath.Join(b.TempDir(), "keepup.db"))
	tk := task.Task{
		ID: "bench", Session: "brave-loving-maxwell", Prompt: "Tidy my notes", Status: task.Running,
		Model: "anthropic:claude-sonnet-4-5", Approvals: "ask", CreatedAt: time.Now(),
		Plan:   task.Plan{{ID: "1", Title: "Read the notes", Status: task.InProgress}, {ID: "2", Title: "Write a summary", Status: task.Pending}},
		Grants: []task.Grant{{Name: "notes", Path: "/home/ana/notes", Mode: "rw"}},
	}
	ctx := b.Context()
	step := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		step++
		if err := db.Commit(ctx, typicalBatch(&tk, step)); err != nil {
			b.Fatal(err)
		}
	}
}

// realisticEntry is an audit entry of about 300 bytes once sealed, like a tool call's.
func realisticEntry(i int) audit.Entry {
	return audit.Entry{
		Time:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		Type:    "tool.call",
		Task:    fmt.Sprintf("task-%04d", i/50),
		Session: "brave-loving-maxwell",
		Data: map[string]any{
			"tool":     "read_file",
			"call_id":  fmt.Sprintf("toolu_01%016d", i),
			"input":    map[string]any{"path": fmt.Sprintf("/sessions/brave-loving-maxwell/mnt/notes/%d.md", i)},
			"effect":   "read",
			"decision": "allow",
			"rule":     "grant:notes:ro",
			"status":   "ok",
		},
	}
}

// BenchmarkVerify reads and checks a 200,000-entry chain from a real SQLite file: the work of
// `keepup audit verify`.
func BenchmarkVerify(b *testing.B) {
	const n, perBatch = 200_000, 2_000
	db := openTest(b, filepath.Join(b.TempDir(), "keepup.db"))
	ctx := b.Context()
	var size int
	for i := 0; i < n; i += perBatch {
		batch := &store.Batch{Audit: make([]audit.Entry, perBatch)}
		for j := range batch.Audit {
			batch.Audit[j] = realisticEntry(i + j)
		}
		if i == 0 {
			body, _ := batch.Audit[0].Body()
			size = len(body)
		}
		if err := db.Commit(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	// As in a database at rest: the chain in the main file, not in the WAL.
	if _, err := db.w.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		b.Fatal(err)
	}
	anchor, err := db.AuditAnchor(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rep, err := audit.Verify(ctx, db.ScanAudit, anchor)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Entries != n {
			b.Fatalf("verified %d entries, want %d", rep.Entries, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(size), "body-bytes")
}
