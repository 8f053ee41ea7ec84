package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// writeStmts are prepared once on the single write connection; a transaction reuses them
// without preparing again.
type writeStmts struct {
	updateTask, upsertTask, insertEvent, upsertCall, upsertApproval *sql.Stmt
	anchor, insertAudit, setAnchor                                  *sql.Stmt
	lastSeq, lastLogN, insertLog, upsertState                       *sql.Stmt
}

func (s *writeStmts) prepare(ctx context.Context, db *sql.DB) (err error) {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		// The common case: the task exists and its indexed columns (status, parent, created_at)
		// are unchanged. Leaving them out of SET spares SQLite rewriting three index pages,
		// and every page is a WAL frame to write; see Commit.
		{&s.updateTask, `UPDATE tasks SET session = ?, prompt = ?, plan = ?, summary = ?, error = ?, model = ?,
				approvals = ?, grants = ?, outputs = ?, turns = ?, usage = ?, updated_at = ?, extra = ?
			WHERE id = ? AND status = ? AND parent = ? AND created_at IS ?`},
		{&s.upsertTask, `INSERT INTO tasks (id, session, parent, prompt, status, plan, summary, error, model,
				approvals, grants, outputs, turns, usage, created_at, updated_at, extra)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET session = excluded.session, parent = excluded.parent,
				prompt = excluded.prompt, status = excluded.status, plan = excluded.plan,
				summary = excluded.summary, error = excluded.error, model = excluded.model,
				approvals = excluded.approvals, grants = excluded.grants, outputs = excluded.outputs,
				turns = excluded.turns, usage = excluded.usage, created_at = excluded.created_at,
				updated_at = excluded.updated_at, extra = excluded.extra`},
		{&s.insertEvent, `INSERT INTO events (task, seq, time, session, type, data) VALUES (?, ?, ?, ?, ?, ?)`},
		{&s.upsertCall, `INSERT INTO tool_calls (task, id, turn, tool, input, effect, decision, status, result,
				started_at, finished_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (task, id) DO UPDATE SET turn = excluded.turn, tool = excluded.tool,
				input = excluded.input, effect = excluded.effect, decision = excluded.decision,
				status = excluded.status, result = excluded.result, started_at = excluded.started_at,
				finished_at = excluded.finished_at`},
		{&s.upsertApproval, `INSERT INTO approvals (id, task, call_id, tool, effect, summary, provenance, status,
				scope, resolved_by, created_at, resolved_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET task = excluded.task, call_id = excluded.call_id,
				tool = excluded.tool, effect = excluded.effect, summary = excluded.summary,
				provenance = excluded.provenance, status = excluded.status, scope = excluded.scope,
				resolved_by = excluded.resolved_by, created_at = excluded.created_at,
				resolved_at = excluded.resolved_at`},
		{&s.anchor, `SELECT seq, hash FROM audit_anchor WHERE id = 1`},
		{&s.insertAudit, `INSERT INTO audit (seq, prev, hash, task, body) VALUES (?, ?, ?, ?, ?)`},
		{&s.setAnchor, `UPDATE audit_anchor SET seq = ?, hash = ? WHERE id = 1`},
		{&s.lastSeq, `SELECT COALESCE(MAX(seq), 0) FROM events WHERE task = ?`},
		{&s.lastLogN, `SELECT COALESCE(MAX(n), 0) FROM task_log WHERE task = ?`},
		{&s.insertLog, `INSERT INTO task_log (task, n, kind, data) VALUES (?, ?, ?, ?)`},
		{&s.upsertState, `INSERT INTO task_state (task, data) VALUES (?, ?) ON CONFLICT (task) DO UPDATE SET data = excluded.data`},
	} {
		if *p.dst, err = db.PrepareContext(ctx, p.sql); err != nil {
			return fmt.Errorf("prepare %.40q: %w", p.sql, err)
		}
	}
	return nil
}

func (s *writeStmts) close() error {
	return closeStmts(s.updateTask, s.upsertTask, s.insertEvent, s.upsertCall, s.upsertApproval, s.anchor, s.insertAudit, s.setAnchor,
		s.lastSeq, s.lastLogN, s.insertLog, s.upsertState)
}

// encodedTask holds a task's JSON columns, encoded before the write lock is taken.
type encodedTask struct{ plan, grants, usage, extra []byte }

// Commit applies b in one write transaction: the task, then events, calls, approvals, and
// last the audit entries, sealed after the chain head read inside the transaction. Any error
// rolls all of it back.
func (db *DB) Commit(ctx context.Context, b *store.Batch) error {
	if b == nil || empty(b) {
		return nil
	}
	// Everything that can fail without the database is done before taking the lock.
	tasks := b.More
	if b.Task != nil {
		tasks = append([]*task.Task{b.Task}, b.More...)
	}
	ets := make([]encodedTask, len(tasks))
	for i, t := range tasks {
		if t == nil || t.ID == "" {
			return errors.New("sqlite: commit: task: empty ID")
		}
		var err error
		et := &ets[i]
		if et.plan, err = json.Marshal(t.Plan); err != nil {
			return fmt.Errorf("sqlite: commit: task %q: plan: %w", t.ID, err)
		}
		if et.grants, err = json.Marshal(t.Grants); err != nil {
			return fmt.Errorf("sqlite: commit: task %q: grants: %w", t.ID, err)
		}
		if et.usage, err = json.Marshal(t.Usage); err != nil {
			return fmt.Errorf("sqlite: commit: task %q: usage: %w", t.ID, err)
		}
		if et.extra, err = json.Marshal(t.Options); err != nil {
			return fmt.Errorf("sqlite: commit: task %q: options: %w", t.ID, err)
		}
	}
	for i, e := range b.Events {
		if e.Task == "" {
			return fmt.Errorf("sqlite: commit: events[%d] (seq %d): empty Task", i, e.Seq)
		}
	}
	for i, c := range b.Calls {
		if c.Task == "" || c.ID == "" {
			return fmt.Errorf("sqlite: commit: calls[%d]: Task and ID are required (got %q, %q)", i, c.Task, c.ID)
		}
	}
	for i, a := range b.Approvals {
		if a.ID == "" || a.Task == "" {
			return fmt.Errorf("sqlite: commit: approvals[%d]: ID and Task are required (got %q, %q)", i, a.ID, a.Task)
		}
	}
	bodies := make([][]byte, len(b.Audit))
	for i, e := range b.Audit {
		body, err := e.Body()
		if err != nil {
			return fmt.Errorf("sqlite: commit: audit[%d] (%s): %w", i, e.Type, err)
		}
		bodies[i] = body
	}

	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return errors.New("sqlite: commit: database is closed")
	}
	if err := db.commit(ctx, b, tasks, ets, bodies); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

func (db *DB) commit(ctx context.Context, b *store.Batch, tasks []*task.Task, ets []encodedTask, bodies [][]byte) (err error) {
	// BEGIN IMMEDIATE (see dsn): the only step that can wait long, for another process's write
	// lock, and it gives up when ctx is done. The transaction is rolled back if ctx ends later.
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	// The statements inside run on a context without cancellation: holding the write lock they
	// never wait, and a cancellable context costs the driver a goroutine per statement.
	ctx = context.WithoutCancel(ctx)
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()

	for i, t := range tasks {
		et := &ets[i]
		res, err := tx.StmtContext(ctx, db.ws.updateTask).ExecContext(ctx,
			t.Session, t.Prompt, et.plan, t.Summary, t.Error, t.Model, t.Approvals, et.grants, t.Outputs,
			t.Turns, et.usage, nanos(t.UpdatedAt), et.extra, t.ID, string(t.Status), t.Parent, nanos(t.CreatedAt))
		if err != nil {
			return fmt.Errorf("task %q: %w", t.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 { // new, or an indexed column changed
			_, err := tx.StmtContext(ctx, db.ws.upsertTask).ExecContext(ctx,
				t.ID, t.Session, t.Parent, t.Prompt, string(t.Status), et.plan, t.Summary, t.Error, t.Model,
				t.Approvals, et.grants, t.Outputs, t.Turns, et.usage, nanos(t.CreatedAt), nanos(t.UpdatedAt), et.extra)
			if err != nil {
				return fmt.Errorf("task %q: %w", t.ID, err)
			}
		}
	}
	if len(b.Events) > 0 {
		if err := db.assignSeqs(ctx, tx, b.Events); err != nil {
			return err
		}
		st := tx.StmtContext(ctx, db.ws.insertEvent)
		for _, e := range b.Events {
			var data any
			if e.Data != nil {
				data = []byte(e.Data)
			}
			if _, err := st.ExecContext(ctx, e.Task, e.Seq, nanos(e.Time), e.Session, e.Type, data); err != nil {
				switch sqliteCode(err) {
				case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
					return fmt.Errorf("event %d of task %q: %w", e.Seq, e.Task, store.ErrDuplicateEvent)
				case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
					return fmt.Errorf("event %d: task %q: %w", e.Seq, e.Task, store.ErrNotFound)
				}
				return fmt.Errorf("event %d of task %q: %w", e.Seq, e.Task, err)
			}
		}
	}
	if len(b.Calls) > 0 {
		st := tx.StmtContext(ctx, db.ws.upsertCall)
		for _, c := range b.Calls {
			if _, err := st.ExecContext(ctx, c.Task, c.ID, c.Turn, c.Tool, c.Input, c.Effect, c.Decision,
				string(c.Status), c.Result, nanos(c.StartedAt), nanos(c.FinishedAt)); err != nil {
				if sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
					return fmt.Errorf("tool call %q: task %q: %w", c.ID, c.Task, store.ErrNotFound)
				}
				return fmt.Errorf("tool call %q of task %q: %w", c.ID, c.Task, err)
			}
		}
	}
	if len(b.Approvals) > 0 {
		st := tx.StmtContext(ctx, db.ws.upsertApproval)
		for _, a := range b.Approvals {
			if _, err := st.ExecContext(ctx, a.ID, a.Task, a.CallID, a.Tool, a.Effect, a.Summary, a.Provenance,
				string(a.Status), a.Scope, a.By, nanos(a.CreatedAt), nanos(a.ResolvedAt)); err != nil {
				if sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
					return fmt.Errorf("approval %q: task %q: %w", a.ID, a.Task, store.ErrNotFound)
				}
				return fmt.Errorf("approval %q: %w", a.ID, err)
			}
		}
	}
	if err := db.commitQueue(ctx, tx, b); err != nil {
		return err
	}
	if len(b.Audit) > 0 {
		// The head is read under the write lock, so no other writer, in this process or
		// another, can seal between this read and the commit.
		var seq int64
		var prev string
		if err := tx.StmtContext(ctx, db.ws.anchor).QueryRowContext(ctx).Scan(&seq, &prev); err != nil {
			return fmt.Errorf("audit: reading the chain head: %w", err)
		}
		st := tx.StmtContext(ctx, db.ws.insertAudit)
		for i, e := range b.Audit {
			seq++
			hash := audit.Seal(seq, prev, bodies[i])
			if _, err := st.ExecContext(ctx, seq, prev, hash, e.Task, bodies[i]); err != nil {
				if sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
					return fmt.Errorf("audit: entry %d already exists past the anchor (the chain or its anchor was tampered with): %w", seq, err)
				}
				return fmt.Errorf("audit: entry %d: %w", seq, err)
			}
			prev = hash
		}
		if _, err := tx.StmtContext(ctx, db.ws.setAnchor).ExecContext(ctx, seq, prev); err != nil {
			return fmt.Errorf("audit: moving the anchor: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	db.ckpt.committed()
	return nil
}

// sqliteCode returns the extended SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}
