package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/store/storetest"
	"github.com/keepup/keepup/internal/task"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "keepup.db"))
	})
}

func TestDurableConformance(t *testing.T) {
	t.Parallel()
	storetest.RunDurable(t, func(t *testing.T) store.Durable {
		return openTest(t, filepath.Join(t.TempDir(), "keepup.db"))
	})
}

func openTest(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func TestOpenConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "Config.Path: empty"},
		{Config{Path: ":memory:"}, "Config.Path"},
		{Config{Path: "file:x.db?mode=memory"}, "Config.Path"},
		{Config{Path: filepath.Join(dir, "x.db"), BusyTimeout: -time.Second}, "Config.BusyTimeout"},
	} {
		_, err := Open(t.Context(), tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%+v) error = %v, want it to mention %q", tt.cfg, err, tt.want)
		}
	}
}

func TestOpenCreatesAPrivateFileInWALMode(t *testing.T) {
	t.Parallel()
	// A path that needs escaping in a file: URI, in a directory that does not exist yet.
	path := filepath.Join(t.TempDir(), "home dir", "a?b#c%d.db")
	db := openTest(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database mode = %v, want 0600", fi.Mode().Perm())
	}
	if d, _ := os.Stat(filepath.Dir(path)); d.Mode().Perm() != 0o700 {
		t.Errorf("directory mode = %v, want 0700", d.Mode().Perm())
	}
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"foreign_keys": "1",
		"synchronous":  "1", // NORMAL
		"busy_timeout": "5000",
	} {
		var got string
		if err := db.w.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil || got != want {
			t.Errorf("write connection: PRAGMA %s = %q, %v; want %q", pragma, got, err, want)
		}
	}
	var qo string
	if err := db.r.QueryRow("PRAGMA query_only").Scan(&qo); err != nil || qo != "1" {
		t.Errorf("read pool: query_only = %q, %v; want 1", qo, err)
	}
	if _, err := db.r.Exec(`DELETE FROM audit`); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestMigrations(t *testing.T) {
	t.Parallel()

	versions := func(t *testing.T, db *sql.DB) []string {
		t.Helper()
		rows, err := db.Query(`SELECT version || ':' || name FROM schema_migrations ORDER BY version`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}

	t.Run("ReopenIsANoOp", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "keepup.db")
		db := openTest(t, path)
		tk := task.Task{ID: "t1", Status: task.Queued}
		if err := db.Commit(t.Context(), &store.Batch{Task: &tk, Audit: []audit.Entry{{Type: "x"}}}); err != nil {
			t.Fatal(err)
		}
		db2 := openTest(t, path) // a second handle while the first is open, as a second process would
		if got := versions(t, db2.w); strings.Join(got, ",") != "1:0001_init,2:0002_queue" {
			t.Fatalf("schema_migrations = %v", got)
		}
		if _, err := db2.Task(t.Context(), "t1"); err != nil {
			t.Fatalf("data lost on reopen: %v", err)
		}
		if a, _ := db2.AuditAnchor(t.Context()); a.Seq != 1 {
			t.Fatalf("anchor reset on reopen: %+v", a)
		}
	})

	t.Run("ConcurrentFirstOpens", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "keepup.db")
		dbs := make([]*DB, 4)
		var wg sync.WaitGroup
		for i := range dbs {
			wg.Go(func() {
				db, err := Open(t.Context(), Config{Path: path})
				if err != nil {
					t.Errorf("Open %d: %v", i, err)
					return
				}
				t.Cleanup(func() { db.Close() })
				dbs[i] = db
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if got := versions(t, dbs[0].w); strings.Join(got, ",") != "1:0001_init,2:0002_queue" {
			t.Fatalf("schema_migrations = %v", got)
		}
	})

	t.Run("AppliesOnlyNewOnes", func(t *testing.T) {
		t.Parallel()
		db := openTest(t, filepath.Join(t.TempDir(), "keepup.db"))
		ms, err := loadMigrations(fstest.MapFS{
			"migrations/0001_init.sql":  {Data: []byte(mustRead(t, "migrations/0001_init.sql"))},
			"migrations/0002_queue.sql": {Data: []byte(mustRead(t, "migrations/0002_queue.sql"))},
			"migrations/0003_notes.sql": {Data: []byte("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);\nINSERT INTO notes (text) VALUES ('hello');")},
		})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := migrate(t.Context(), db.w, ms); err != nil {
				t.Fatalf("migrate: %v", err)
			}
		}
		if got := versions(t, db.w); strings.Join(got, ",") != "1:0001_init,2:0002_queue,3:0003_notes" {
			t.Fatalf("schema_migrations = %v", got)
		}
		var n int
		if err := db.w.QueryRow(`SELECT count(*) FROM notes`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("migration 2 ran %d times (%v), want once", n, err)
		}
	})

	t.Run("FailedMigrationAppliesNothing", func(t *testing.T) {
		t.Parallel()
		db := openTest(t, filepath.Join(t.TempDir(), "keepup.db"))
		ms, err := loadMigrations(fstest.MapFS{
			"migrations/0001_init.sql":  {Data: []byte(mustRead(t, "migrations/0001_init.sql"))},
			"migrations/0002_queue.sql": {Data: []byte(mustRead(t, "migrations/0002_queue.sql"))},
			"migrations/0003_ok.sql":    {Data: []byte("CREATE TABLE ok (id INTEGER);")},
			"migrations/0004_bad.sql":   {Data: []byte("CREATE TABLE bad (id INTEGER); SELEKT 1;")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := migrate(t.Context(), db.w, ms); err == nil || !strings.Contains(err.Error(), "0004_bad") {
			t.Fatalf("migrate error = %v, want one naming 0004_bad", err)
		}
		if got := versions(t, db.w); strings.Join(got, ",") != "1:0001_init,2:0002_queue" {
			t.Fatalf("schema_migrations = %v after a failed migration", got)
		}
		if _, err := db.w.Exec(`SELECT * FROM ok`); err == nil {
			t.Fatal("table of migration 3 exists although migration 4 failed")
		}
	})

	t.Run("BadNumbering", func(t *testing.T) {
		t.Parallel()
		for name, fsys := range map[string]fstest.MapFS{
			"gap":     {"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}},
			"no num":  {"migrations/init.sql": {}},
			"from 0":  {"migrations/0000_a.sql": {}},
			"twice 1": {"migrations/0001_a.sql": {}, "migrations/01_b.sql": {}},
		} {
			if _, err := loadMigrations(fsys); err == nil {
				t.Errorf("%s: loadMigrations accepted it", name)
			}
		}
		ms, err := loadMigrations(migrationFS)
		if err != nil || len(ms) == 0 {
			t.Fatalf("embedded migrations: %v, %d", err, len(ms))
		}
	})

	t.Run("NewerDatabaseIsAClearError", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "keepup.db")
		db := openTest(t, path)
		if _, err := db.w.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future', 0)`); err != nil {
			t.Fatal(err)
		}
		_, err := Open(t.Context(), Config{Path: path})
		if !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("Open error = %v, want ErrSchemaTooNew", err)
		}
		if !strings.Contains(err.Error(), "version 99") || !strings.Contains(err.Error(), "upgrade keepup") {
			t.Fatalf("error %q does not say which version and what to do", err)
		}
	})
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := migrationFS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Two handles on one file stand for two processes: each has its own write connection and
// mutex, so only SQLite's lock (BEGIN IMMEDIATE + busy_timeout) keeps the chain consecutive.
func TestTwoHandlesCommitConcurrently(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keepup.db")
	dbs := []*DB{openTest(t, path), openTest(t, path)}
	const goroutines, commits = 4, 40 // per handle
	var wg sync.WaitGroup
	errs := make(chan error, len(dbs)*goroutines)
	for h, db := range dbs {
		for g := range goroutines {
			wg.Go(func() {
				id := fmt.Sprintf("h%d-g%d", h, g)
				tk := task.Task{ID: id, Status: task.Running}
				for i := range commits {
					b := typicalBatch(&tk, int64(i+1))
					if err := db.Commit(t.Context(), b); err != nil {
						errs <- fmt.Errorf("%s commit %d: %w", id, i, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const want = 2 * goroutines * commits
	for h, db := range dbs {
		a, err := db.AuditAnchor(t.Context())
		if err != nil || a.Seq != want {
			t.Fatalf("handle %d: anchor = %+v, %v; want seq %d", h, a, err, want)
		}
		rep, err := audit.Verify(t.Context(), db.ScanAudit, a)
		if err != nil || rep.Entries != want {
			t.Fatalf("handle %d: Verify = %+v, %v", h, rep, err)
		}
	}
}

// typicalBatch is what one agent step writes: the task, three events, one tool call and one
// audit entry.
func typicalBatch(tk *task.Task, step int64) *store.Batch {
	now := time.Now()
	tk.Turns = int(step)
	tk.UpdatedAt = now
	tk.Usage.InputTokens += 1200
	seq := (step-1)*3 + 1
	callID := fmt.Sprintf("toolu_%06d", step)
	data := []byte(`{"tool_call_id":"` + callID + `","tool":"read_file","effect":"read","decision":"allow","rule":"grant:notes:ro","by":"rule"}`)
	return &store.Batch{
		Task: tk,
		Events: []event.Event{
			{Seq: seq, Time: now, Task: tk.ID, Session: tk.Session, Type: event.ToolRequested, Data: data},
			{Seq: seq + 1, Time: now, Task: tk.ID, Session: tk.Session, Type: event.PolicyDecision, Data: data},
			{Seq: seq + 2, Time: now, Task: tk.ID, Session: tk.Session, Type: event.ToolResult, Data: data},
		},
		Calls: []store.ToolCall{{
			Task: tk.ID, ID: callID, Turn: int(step), Tool: "read_file",
			Input: `{"path":"/sessions/brave-loving-maxwell/mnt/notes/todo.md"}`, Effect: "read",
			Decision: "allow", Status: store.CallOK, Result: "312 bytes", StartedAt: now, FinishedAt: now,
		}},
		Audit: []audit.Entry{{
			Time: now, Type: "tool.call", Task: tk.ID, Session: tk.Session,
			Data: map[string]any{"tool": "read_file", "call_id": callID, "decision": "allow", "status": "ok"},
		}},
	}
}

// TestTwoProcessesCommitConcurrently runs real processes (this test binary again) committing
// to one file while this process does too.
func TestTwoProcessesCommitConcurrently(t *testing.T) {
	t.Parallel()
	if path := os.Getenv("KEEPUP_SQLITE_TEST_CHILD_DB"); path != "" {
		t.Skip("child process")
	}
	path := filepath.Join(t.TempDir(), "keepup.db")
	db := openTest(t, path)
	const children, commits = 2, 150
	cmds := make([]*exec.Cmd, children)
	for i := range cmds {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestChildProcessCommits$", "-test.count=1")
		cmd.Env = append(os.Environ(),
			"KEEPUP_SQLITE_TEST_CHILD_DB="+path,
			fmt.Sprintf("KEEPUP_SQLITE_TEST_CHILD_ID=child%d", i),
			fmt.Sprintf("KEEPUP_SQLITE_TEST_CHILD_COMMITS=%d", commits))
		cmd.Stdout, cmd.Stderr = &strings.Builder{}, &strings.Builder{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	// Start together once every child has opened the database.
	for i := range children {
		waitForFile(t, fmt.Sprintf("%s.child%d.ready", path, i))
	}
	if err := os.WriteFile(path+".go", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tk := task.Task{ID: "parent", Status: task.Running}
	for i := range commits {
		if err := db.Commit(t.Context(), typicalBatch(&tk, int64(i+1))); err != nil {
			t.Fatalf("parent commit %d: %v", i, err)
		}
		time.Sleep(200 * time.Microsecond) // paced like an agent, so that writers interleave
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s%s", i, err, cmd.Stdout, cmd.Stderr)
		}
		if !strings.Contains(fmt.Sprint(cmd.Stdout), "PASS") {
			t.Fatalf("child %d did not run:\n%s", i, cmd.Stdout)
		}
	}
	a, err := db.AuditAnchor(t.Context())
	if err != nil || a.Seq != (children+1)*commits {
		t.Fatalf("anchor = %+v, %v; want seq %d", a, err, (children+1)*commits)
	}
	if rep, err := audit.Verify(t.Context(), db.ScanAudit, a); err != nil || rep.Entries != a.Seq {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	var switches int
	if err := db.r.QueryRow(`SELECT count(*) FROM audit a JOIN audit b ON b.seq = a.seq + 1 WHERE a.task <> b.task`).Scan(&switches); err != nil {
		t.Fatal(err)
	}
	t.Logf("the chain changes writer %d times", switches)
}

// TestChildProcessCommits is the child of TestTwoProcessesCommitConcurrently; alone it does
// nothing.
func TestChildProcessCommits(t *testing.T) {
	t.Parallel()
	path := os.Getenv("KEEPUP_SQLITE_TEST_CHILD_DB")
	if path == "" {
		t.Skip("run by TestTwoProcessesCommitConcurrently")
	}
	var commits int
	fmt.Sscan(os.Getenv("KEEPUP_SQLITE_TEST_CHILD_COMMITS"), &commits)
	db := openTest(t, path)
	tk := task.Task{ID: os.Getenv("KEEPUP_SQLITE_TEST_CHILD_ID"), Status: task.Running}
	if err := os.WriteFile(path+"."+tk.ID+".ready", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitForFile(t, path+".go")
	for i := range commits {
		if err := db.Commit(t.Context(), typicalBatch(&tk, int64(i+1))); err != nil {
			t.Fatalf("%s commit %d: %v", tk.ID, i, err)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOpenNotADatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keepup.db")
	if err := os.WriteFile(path, []byte("these are my notes, not a database\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), Config{Path: path})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open(text file) error = %v, want one naming %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "these are my notes, not a database\n" {
		t.Fatal("Open changed a file that is not a database")
	}
}

func TestCommitWaitsForAnotherProcessLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keepup.db")
	a, b := openTest(t, path), openTest(t, path)
	// Hold the write lock from handle a as a long transaction in another process would.
	tx, err := a.w.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- b.Commit(context.Background(), &store.Batch{Audit: []audit.Entry{{Type: "waited"}}})
	}()
	select {
	case err := <-done:
		t.Fatalf("Commit did not wait for the other writer: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Commit after the lock was released: %v", err)
	}
}

func TestOpenDoesNotWaitForAWriter(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keepup.db")
	a := openTest(t, path)
	tx, err := a.w.BeginTx(t.Context(), nil) // another process in the middle of a commit
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	start := time.Now()
	b, err := Open(t.Context(), Config{Path: path, BusyTimeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Open of an up-to-date database waited %v for the write lock", d)
	}
	if _, err := b.Tasks(t.Context(), store.TaskFilter{}); err != nil {
		t.Fatalf("reading while another writer holds the lock: %v", err)
	}
	start = time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close waited %v for the write lock", d)
	}
}

func TestCommitGivesUpAfterBusyTimeout(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keepup.db")
	a := openTest(t, path)
	b, err := Open(t.Context(), Config{Path: path, BusyTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tx, err := a.w.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	start := time.Now()
	err = b.Commit(t.Context(), &store.Batch{Audit: []audit.Entry{{Type: "x"}}})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "busy") && !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Commit error = %v, want a busy/locked error", err)
	}
	if d := time.Since(start); d < 80*time.Millisecond || d > 3*time.Second {
		t.Fatalf("Commit gave up after %v, want about the 100ms busy timeout", d)
	}
}

// TestWALStaysBounded guards the background checkpointer: without the second, locked pass the
// WAL is never rewound and grows by every commit (about 35 KB each), forever.
func TestWALStaysBounded(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("commits 3000 batches")
	}
	path := filepath.Join(t.TempDir(), "keepup.db")
	db := openTest(t, path)
	tk := task.Task{ID: "t1", Status: task.Running}
	for i := range 3000 {
		if err := db.Commit(t.Context(), typicalBatch(&tk, int64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	// Unbounded, it would be about 100 MB by now; rewound, it stays near 64 commits' worth.
	if fi.Size() > 40<<20 {
		t.Fatalf("WAL is %d MB after 3000 commits: it is not being rewound", fi.Size()>>20)
	}
	t.Logf("WAL: %d KB", fi.Size()>>10)
}

func TestClosedDB(t *testing.T) {
	t.Parallel()
	db, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "keepup.db")})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Commit(t.Context(), &store.Batch{Audit: []audit.Entry{{Type: "x"}}}); err == nil {
		t.Fatal("Commit on a closed DB succeeded")
	}
	if _, err := db.Task(t.Context(), "x"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Task on a closed DB: %v", err)
	}
	if _, err := db.Tasks(t.Context(), store.TaskFilter{}); err == nil {
		t.Fatal("Tasks on a closed DB succeeded")
	}
	if err := db.ScanAudit(t.Context(), 0, func(audit.Record) error { return nil }); err == nil {
		t.Fatal("ScanAudit on a closed DB succeeded")
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
