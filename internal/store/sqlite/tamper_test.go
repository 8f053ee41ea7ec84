package sqlite

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// TestTamperingIsDetected builds a 50-entry chain with Commit on a real file, then changes the
// file the way someone with the sqlite3 shell could, and checks that Verify names the first
// entry that no longer proves itself.
func TestTamperingIsDetected(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		db     *DB
		raw    *sql.DB // a separate connection, as a person with the sqlite3 shell would have
		anchor audit.Anchor
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		path := filepath.Join(t.TempDir(), "keepup.db")
		db := openTest(t, path)
		tk := task.Task{ID: "t1", Session: "brave-loving-maxwell", Status: task.Running}
		for i := range 10 { // 10 commits of 5 entries
			b := &store.Batch{Task: &tk}
			for j := range 5 {
				b.Audit = append(b.Audit, realisticEntry(i*5+j))
			}
			if err := db.Commit(t.Context(), b); err != nil {
				t.Fatal(err)
			}
		}
		anchor, err := db.AuditAnchor(t.Context())
		if err != nil || anchor.Seq != 50 {
			t.Fatalf("anchor = %+v, %v; want seq 50", anchor, err)
		}
		if rep, err := audit.Verify(t.Context(), db.ScanAudit, anchor); err != nil || rep.Entries != 50 {
			t.Fatalf("untouched chain: Verify = %+v, %v", rep, err)
		}
		raw, err := sql.Open("sqlite", dsn(db.Path(), DefaultBusyTimeout, connCheckpoint))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		return &testBundle{db: db, raw: raw, anchor: anchor}
	}
	tamper := func(t *testing.T, bundle *testBundle, stmts ...string) {
		t.Helper()
		for _, s := range stmts {
			res, err := bundle.raw.Exec(s)
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				t.Fatalf("%s: changed nothing", s)
			}
		}
	}
	wantBroken := func(t *testing.T, bundle *testBundle, seq int64, text string) {
		t.Helper()
		anchor, err := bundle.db.AuditAnchor(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		_, err = audit.Verify(t.Context(), bundle.db.ScanAudit, anchor)
		var be *audit.BrokenError
		if !errors.As(err, &be) {
			t.Fatalf("Verify error = %v, want a *audit.BrokenError", err)
		}
		if be.Seq != seq || !strings.Contains(err.Error(), text) {
			t.Fatalf("Verify error = %q (entry %d), want entry %d and %q", err, be.Seq, seq, text)
		}
	}

	t.Run("BodyEdited", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		tamper(t, bundle, `UPDATE audit SET body = replace(body, '"allow"', '"deny"') WHERE seq = 17`)
		wantBroken(t, bundle, 17, "audit chain broken at entry 17: hash does not match its content (entry edited)")
	})

	t.Run("MiddleEntryDeleted", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		tamper(t, bundle, `DELETE FROM audit WHERE seq = 25`)
		wantBroken(t, bundle, 25, "audit chain broken at entry 25: expected seq 25, found 26 (entry deleted)")
	})

	t.Run("EntriesReordered", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		tamper(t, bundle,
			`UPDATE audit SET seq = -1 WHERE seq = 30`,
			`UPDATE audit SET seq = 30 WHERE seq = 12`,
			`UPDATE audit SET seq = 12 WHERE seq = -1`)
		wantBroken(t, bundle, 12, "audit chain broken at entry 12: neither its prev nor its hash fit at this position after entry 11 (entries reordered or replaced)")
	})

	t.Run("Truncated", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t)
		tamper(t, bundle, `DELETE FROM audit WHERE seq > 45`)
		wantBroken(t, bundle, 46, "audit chain broken at entry 46: truncated: chain ends at entry 45 but the anchor says 50")

		// Later commits continue after the anchor, not after the last row left, so they do
		// not paper over the hole.
		if err := bundle.db.Commit(t.Context(), &store.Batch{Audit: []audit.Entry{realisticEntry(99)}}); err != nil {
			t.Fatal(err)
		}
		wantBroken(t, bundle, 46, "expected seq 46, found 51 (entries deleted)")
	})

	t.Run("TruncatedWithTheAnchor", func(t *testing.T) {
		t.Parallel()
		// Truncating and moving the anchor back is not detectable from inside the database;
		// it is why the anchor can be kept elsewhere too. Verify accepts the shorter chain.
		bundle := setup(t)
		recs, err := bundle.db.AuditRecords(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		tamper(t, bundle, `DELETE FROM audit WHERE seq > 45`,
			`UPDATE audit_anchor SET seq = 45, hash = '`+recs[44].Hash+`'`)
		anchor, _ := bundle.db.AuditAnchor(t.Context())
		if rep, err := audit.Verify(t.Context(), bundle.db.ScanAudit, anchor); err != nil || rep.Entries != 45 {
			t.Fatalf("Verify = %+v, %v", rep, err)
		}
		// Against the anchor as it was, the truncation shows.
		if _, err := audit.Verify(t.Context(), bundle.db.ScanAudit, bundle.anchor); err == nil {
			t.Fatal("Verify against the original anchor passed")
		}
	})
}
