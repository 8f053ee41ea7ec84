package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// readStmts are the fixed queries, prepared on the read pool.
type readStmts struct {
	task, events, lastSeq, calls, scanAudit, anchor *sql.Stmt
	control, pendingSteers                          *sql.Stmt // read at every turn boundary
}

// auditCols reads a record as stored. The CAST keeps a body delivered as []byte (which the
// driver allocates afresh for each row) even if someone stored it as TEXT, which database/sql
// would copy into a buffer it reuses for the next row.
const auditCols = `seq, prev, hash, CAST(body AS BLOB)`

const taskCols = `id, session, parent, prompt, status, plan, summary, error, model, approvals, grants,
	outputs, turns, usage, created_at, updated_at, extra`

func (s *readStmts) prepare(ctx context.Context, db *sql.DB) (err error) {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.task, `SELECT ` + taskCols + ` FROM tasks WHERE id = ?`},
		{&s.events, `SELECT seq, time, session, type, CAST(data AS BLOB) FROM events WHERE task = ? AND seq > ? ORDER BY seq LIMIT ?`},
		{&s.lastSeq, `SELECT COALESCE(MAX(seq), 0) FROM events WHERE task = ?`},
		{&s.calls, `SELECT task, id, turn, tool, input, effect, decision, status, result, started_at, finished_at
			FROM tool_calls WHERE task = ? ORDER BY ord`},
		{&s.scanAudit, `SELECT ` + auditCols + ` FROM audit WHERE seq > ? ORDER BY seq`},
		{&s.anchor, `SELECT seq, hash FROM audit_anchor WHERE id = 1`},
		{&s.control, `SELECT want FROM controls WHERE task = ?`},
		{&s.pendingSteers, `SELECT id, message, created_at, delivered_at FROM steers WHERE task = ? AND delivered_at IS NULL ORDER BY id`},
	} {
		if *p.dst, err = db.PrepareContext(ctx, p.sql); err != nil {
			return fmt.Errorf("prepare %.40q: %w", p.sql, err)
		}
	}
	return nil
}

func (s *readStmts) close() error {
	return closeStmts(s.task, s.events, s.lastSeq, s.calls, s.scanAudit, s.anchor, s.control, s.pendingSteers)
}

type scanner interface{ Scan(dest ...any) error }

func scanTask(sc scanner) (task.Task, error) {
	var t task.Task
	var status string
	var plan, grants, usage, extra []byte
	var created, updated sql.NullInt64
	if err := sc.Scan(&t.ID, &t.Session, &t.Parent, &t.Prompt, &status, &plan, &t.Summary, &t.Error, &t.Model,
		&t.Approvals, &grants, &t.Outputs, &t.Turns, &usage, &created, &updated, &extra); err != nil {
		return t, err
	}
	t.Status = task.State(status)
	t.CreatedAt, t.UpdatedAt = fromNanos(created), fromNanos(updated)
	if err := json.Unmarshal(plan, &t.Plan); err != nil {
		return t, fmt.Errorf("task %q: plan: %w", t.ID, err)
	}
	if err := json.Unmarshal(grants, &t.Grants); err != nil {
		return t, fmt.Errorf("task %q: grants: %w", t.ID, err)
	}
	if err := json.Unmarshal(usage, &t.Usage); err != nil {
		return t, fmt.Errorf("task %q: usage: %w", t.ID, err)
	}
	if err := json.Unmarshal(extra, &t.Options); err != nil {
		return t, fmt.Errorf("task %q: options: %w", t.ID, err)
	}
	return t, nil
}

// Task returns one task or store.ErrNotFound.
func (db *DB) Task(ctx context.Context, id string) (*task.Task, error) {
	t, err := scanTask(db.rs.task.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: task %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: task %q: %w", id, err)
	}
	return &t, nil
}

// Tasks lists tasks, newest (by CreatedAt) first.
func (db *DB) Tasks(ctx context.Context, f store.TaskFilter) ([]task.Task, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("sqlite: tasks: TaskFilter.Limit: %d is negative", f.Limit)
	}
	var q strings.Builder
	var args []any
	q.WriteString(`SELECT ` + taskCols + ` FROM tasks WHERE 1`)
	if len(f.Status) > 0 {
		q.WriteString(` AND status IN (?` + strings.Repeat(`, ?`, len(f.Status)-1) + `)`)
		for _, s := range f.Status {
			args = append(args, string(s))
		}
	}
	if f.Parent != nil {
		q.WriteString(` AND parent = ?`)
		args = append(args, *f.Parent)
	}
	// rowid breaks ties in insertion order, so equal times still list the later task first.
	q.WriteString(` ORDER BY created_at DESC, rowid DESC`)
	if f.Limit > 0 {
		q.WriteString(` LIMIT ?`)
		args = append(args, f.Limit)
	}
	rows, err := db.r.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: tasks: %w", err)
	}
	defer rows.Close()
	var out []task.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: tasks: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: tasks: %w", err)
	}
	return out, nil
}

// Events returns a task's events with Seq > after, in Seq order; limit 0 means all.
func (db *DB) Events(ctx context.Context, taskID string, after int64, limit int) ([]event.Event, error) {
	if limit < 0 {
		return nil, fmt.Errorf("sqlite: events of task %q: limit %d is negative", taskID, limit)
	}
	lim := int64(limit)
	if lim == 0 {
		lim = -1 // SQLite: no limit
	}
	rows, err := db.rs.events.QueryContext(ctx, taskID, after, lim)
	if err != nil {
		return nil, fmt.Errorf("sqlite: events of task %q: %w", taskID, err)
	}
	defer rows.Close()
	var out []event.Event
	for rows.Next() {
		e := event.Event{Task: taskID}
		var t sql.NullInt64
		var data sql.RawBytes // a fresh slice per row from the driver (see auditCols); kept as is
		if err := rows.Scan(&e.Seq, &t, &e.Session, &e.Type, &data); err != nil {
			return nil, fmt.Errorf("sqlite: events of task %q: %w", taskID, err)
		}
		e.Time = fromNanos(t)
		if data != nil {
			e.Data = json.RawMessage(data)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: events of task %q: %w", taskID, err)
	}
	return out, nil
}

// LastSeq returns the highest event Seq of a task, 0 if it has none.
func (db *DB) LastSeq(ctx context.Context, taskID string) (int64, error) {
	var n int64
	if err := db.rs.lastSeq.QueryRowContext(ctx, taskID).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: last seq of task %q: %w", taskID, err)
	}
	return n, nil
}

// ToolCalls returns a task's tool-call journal in the order calls were first written.
func (db *DB) ToolCalls(ctx context.Context, taskID string) ([]store.ToolCall, error) {
	rows, err := db.rs.calls.QueryContext(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: tool calls of task %q: %w", taskID, err)
	}
	defer rows.Close()
	var out []store.ToolCall
	for rows.Next() {
		var c store.ToolCall
		var status string
		var started, finished sql.NullInt64
		if err := rows.Scan(&c.Task, &c.ID, &c.Turn, &c.Tool, &c.Input, &c.Effect, &c.Decision, &status,
			&c.Result, &started, &finished); err != nil {
			return nil, fmt.Errorf("sqlite: tool calls of task %q: %w", taskID, err)
		}
		c.Status = store.CallStatus(status)
		c.StartedAt, c.FinishedAt = fromNanos(started), fromNanos(finished)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: tool calls of task %q: %w", taskID, err)
	}
	return out, nil
}

// Approvals returns the approvals of a task ("" for every task), oldest first; only pending
// ones if pendingOnly.
func (db *DB) Approvals(ctx context.Context, taskID string, pendingOnly bool) ([]store.Approval, error) {
	q := `SELECT ` + approvalCols + ` FROM approvals WHERE 1`
	var args []any
	if taskID != "" {
		q += ` AND task = ?`
		args = append(args, taskID)
	}
	if pendingOnly {
		q += ` AND status = 'pending'`
	}
	q += ` ORDER BY created_at, rowid`
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: approvals: %w", err)
	}
	defer rows.Close()
	var out []store.Approval
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: approvals: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: approvals: %w", err)
	}
	return out, nil
}

const approvalCols = `id, task, call_id, tool, effect, summary, provenance, status, scope, resolved_by,
	created_at, resolved_at`

func scanApproval(sc scanner) (store.Approval, error) {
	var a store.Approval
	var status string
	var created, resolved sql.NullInt64
	if err := sc.Scan(&a.ID, &a.Task, &a.CallID, &a.Tool, &a.Effect, &a.Summary, &a.Provenance, &status,
		&a.Scope, &a.By, &created, &resolved); err != nil {
		return a, err
	}
	a.Status = store.ApprovalStatus(status)
	a.CreatedAt, a.ResolvedAt = fromNanos(created), fromNanos(resolved)
	return a, nil
}

// ScanAudit calls fn for each audit record with Seq > after, in Seq order, as stored, from one
// consistent snapshot. The Record passed to fn is fn's to keep: modernc.org/sqlite copies each
// value out of SQLite into fresh memory, so the strings and the body are used as delivered,
// without a second copy (storetest checks that retained records stay intact).
func (db *DB) ScanAudit(ctx context.Context, after int64, fn func(audit.Record) error) error {
	rows, err := db.rs.scanAudit.QueryContext(ctx, after)
	if err != nil {
		return fmt.Errorf("sqlite: scan audit: %w", err)
	}
	defer rows.Close()
	var r audit.Record
	var body sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&r.Seq, &r.Prev, &r.Hash, &body); err != nil {
			return fmt.Errorf("sqlite: scan audit: %w", err)
		}
		r.Body = body
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: scan audit: %w", err)
	}
	return nil
}

// AuditRecords returns the records of one task (Entry.Task == taskID), or all if "".
func (db *DB) AuditRecords(ctx context.Context, taskID string) ([]audit.Record, error) {
	q := `SELECT ` + auditCols + ` FROM audit ORDER BY seq`
	var args []any
	if taskID != "" {
		q = `SELECT ` + auditCols + ` FROM audit WHERE task = ? ORDER BY seq`
		args = append(args, taskID)
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit records: %w", err)
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		var body sql.RawBytes
		if err := rows.Scan(&r.Seq, &r.Prev, &r.Hash, &body); err != nil {
			return nil, fmt.Errorf("sqlite: audit records: %w", err)
		}
		r.Body = body
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: audit records: %w", err)
	}
	return out, nil
}

// AuditAnchor returns the chain head as last committed ({0, audit.Genesis} when empty).
func (db *DB) AuditAnchor(ctx context.Context) (audit.Anchor, error) {
	var a audit.Anchor
	if err := db.rs.anchor.QueryRowContext(ctx).Scan(&a.Seq, &a.Hash); err != nil {
		return a, fmt.Errorf("sqlite: audit anchor: %w", err)
	}
	return a, nil
}
