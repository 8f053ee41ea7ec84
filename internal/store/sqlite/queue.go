package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/store"
)

// Writer is the single write connection's pool, for a queue that must share its transactions
// (River's SQLite driver). Everything written through it outside Commit bypasses the audit
// chain: only the queue's own tables may be written that way.
func (db *DB) Writer() *sql.DB { return db.w }

// SetEnqueuer installs the function that inserts Batch.Jobs inside Commit's transaction.
func (db *DB) SetEnqueuer(e store.Enqueuer) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.enq = e
}

func empty(b *store.Batch) bool {
	return b.Task == nil && len(b.More) == 0 && len(b.Events) == 0 && len(b.Calls) == 0 && len(b.Approvals) == 0 &&
		len(b.Audit) == 0 && len(b.Log) == 0 && b.State == nil && len(b.Steers) == 0 &&
		len(b.Delivered) == 0 && len(b.Controls) == 0 && len(b.Schedules) == 0 &&
		len(b.Unschedule) == 0 && len(b.Jobs) == 0
}

// assignSeqs numbers the events whose Seq is zero after their task's last event (stored or
// earlier in this batch), writing the numbers back into evs.
func (db *DB) assignSeqs(ctx context.Context, tx *sql.Tx, evs []event.Event) error {
	var last map[string]int64
	for i := range evs {
		e := &evs[i]
		if last == nil {
			last = map[string]int64{}
		}
		cur, ok := last[e.Task]
		if !ok {
			if err := tx.StmtContext(ctx, db.ws.lastSeq).QueryRowContext(ctx, e.Task).Scan(&cur); err != nil {
				return fmt.Errorf("event seq of task %q: %w", e.Task, err)
			}
		}
		if e.Seq == 0 {
			e.Seq = cur + 1
		}
		last[e.Task] = max(cur, e.Seq)
	}
	return nil
}

// commitQueue writes the orchestration parts of b inside tx.
func (db *DB) commitQueue(ctx context.Context, tx *sql.Tx, b *store.Batch) error {
	fk := func(what string, err error) error {
		if sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
			return fmt.Errorf("%s: %w", what, store.ErrNotFound)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(b.Log) > 0 {
		next := map[string]int64{}
		for i := range b.Log {
			l := &b.Log[i]
			n, ok := next[l.Task]
			if !ok {
				if err := tx.StmtContext(ctx, db.ws.lastLogN).QueryRowContext(ctx, l.Task).Scan(&n); err != nil {
					return fmt.Errorf("log of task %q: %w", l.Task, err)
				}
			}
			n++
			next[l.Task] = n
			l.N = n
			if _, err := tx.StmtContext(ctx, db.ws.insertLog).ExecContext(ctx, l.Task, n, l.Kind, l.Data); err != nil {
				return fk(fmt.Sprintf("log %d of task %q", n, l.Task), err)
			}
		}
	}
	if s := b.State; s != nil {
		if _, err := tx.StmtContext(ctx, db.ws.upsertState).ExecContext(ctx, s.Task, s.Data); err != nil {
			return fk(fmt.Sprintf("state of task %q", s.Task), err)
		}
	}
	for i := range b.Steers {
		s := &b.Steers[i]
		if s.ID != 0 {
			return fmt.Errorf("steers[%d]: already stored (id %d)", i, s.ID)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO steers (task, message, created_at) VALUES (?, ?, ?)`, s.Task, s.Message, nanos(s.CreatedAt))
		if err != nil {
			return fk(fmt.Sprintf("steer of task %q", s.Task), err)
		}
		if s.ID, err = res.LastInsertId(); err != nil {
			return err
		}
	}
	for _, d := range b.Delivered {
		res, err := tx.ExecContext(ctx, `UPDATE steers SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL`, nanos(d.At), d.ID)
		if err != nil {
			return fmt.Errorf("steer %d: %w", d.ID, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("steer %d: not found or already delivered", d.ID)
		}
	}
	for _, c := range b.Controls {
		if _, err := tx.ExecContext(ctx, `INSERT INTO controls (task, want, at) VALUES (?, ?, ?)
			ON CONFLICT (task) DO UPDATE SET want = excluded.want, at = excluded.at`, c.Task, c.Want, nanos(c.At)); err != nil {
			return fk(fmt.Sprintf("control of task %q", c.Task), err)
		}
	}
	for _, s := range b.Schedules {
		if s.ID == "" {
			return errors.New("schedule: empty ID")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schedules (id, spec, next, last_slot, last_task, created_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, next = excluded.next,
				last_slot = excluded.last_slot, last_task = excluded.last_task, created_at = excluded.created_at`,
			s.ID, s.Spec, nanos(s.Next), nanos(s.LastSlot), s.LastTask, nanos(s.CreatedAt)); err != nil {
			return fmt.Errorf("schedule %q: %w", s.ID, err)
		}
	}
	for _, id := range b.Unschedule {
		res, err := tx.ExecContext(ctx, `DELETE FROM schedules WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("schedule %q: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("schedule %q: %w", id, store.ErrNotFound)
		}
	}
	if len(b.Jobs) > 0 {
		if db.enq == nil {
			return errors.New("jobs: no queue is attached to this store")
		}
		if err := db.enq(ctx, tx, b.Jobs); err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
	}
	return nil
}

// Log returns a task's log entries with N > after, in order.
func (db *DB) Log(ctx context.Context, taskID string, after int64) ([]store.LogEntry, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT n, kind, CAST(data AS BLOB) FROM task_log WHERE task = ? AND n > ? ORDER BY n`, taskID, after)
	if err != nil {
		return nil, fmt.Errorf("sqlite: log of task %q: %w", taskID, err)
	}
	defer rows.Close()
	var out []store.LogEntry
	for rows.Next() {
		l := store.LogEntry{Task: taskID}
		if err := rows.Scan(&l.N, &l.Kind, &l.Data); err != nil {
			return nil, fmt.Errorf("sqlite: log of task %q: %w", taskID, err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// State returns a task's checkpoint, or nil when it has none.
func (db *DB) State(ctx context.Context, taskID string) (*store.TaskState, error) {
	var data []byte
	err := db.r.QueryRowContext(ctx, `SELECT CAST(data AS BLOB) FROM task_state WHERE task = ?`, taskID).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: state of task %q: %w", taskID, err)
	}
	return &store.TaskState{Task: taskID, Data: data}, nil
}

// Steers returns a task's steering messages in order, undelivered ones only if pendingOnly.
func (db *DB) Steers(ctx context.Context, taskID string, pendingOnly bool) ([]store.Steer, error) {
	var rows *sql.Rows
	var err error
	if pendingOnly {
		rows, err = db.rs.pendingSteers.QueryContext(ctx, taskID)
	} else {
		rows, err = db.r.QueryContext(ctx, `SELECT id, message, created_at, delivered_at FROM steers WHERE task = ? ORDER BY id`, taskID)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: steers of task %q: %w", taskID, err)
	}
	defer rows.Close()
	var out []store.Steer
	for rows.Next() {
		s := store.Steer{Task: taskID}
		var created, delivered sql.NullInt64
		if err := rows.Scan(&s.ID, &s.Message, &created, &delivered); err != nil {
			return nil, fmt.Errorf("sqlite: steers of task %q: %w", taskID, err)
		}
		s.CreatedAt, s.Delivered = fromNanos(created), fromNanos(delivered)
		out = append(out, s)
	}
	return out, rows.Err()
}

// Control returns what was asked of a task ("" if nothing).
func (db *DB) Control(ctx context.Context, taskID string) (string, error) {
	var want string
	err := db.rs.control.QueryRowContext(ctx, taskID).Scan(&want)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sqlite: control of task %q: %w", taskID, err)
	}
	return want, nil
}

// Approval returns one approval or store.ErrNotFound.
func (db *DB) Approval(ctx context.Context, id string) (*store.Approval, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+approvalCols+` FROM approvals WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: approval %q: %w", id, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: approval %q: %w", id, err)
		}
		return nil, fmt.Errorf("approval %q: %w", id, store.ErrNotFound)
	}
	a, err := scanApproval(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: approval %q: %w", id, err)
	}
	return &a, nil
}

// Schedules lists schedules by next slot; a non-zero due keeps those with Next <= due.
func (db *DB) Schedules(ctx context.Context, due time.Time) ([]store.Schedule, error) {
	q := `SELECT id, CAST(spec AS BLOB), next, last_slot, last_task, created_at FROM schedules`
	var args []any
	if !due.IsZero() {
		q += ` WHERE next <= ?`
		args = append(args, nanos(due))
	}
	rows, err := db.r.QueryContext(ctx, q+` ORDER BY next, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: schedules: %w", err)
	}
	defer rows.Close()
	var out []store.Schedule
	for rows.Next() {
		var s store.Schedule
		var next, last, created sql.NullInt64
		if err := rows.Scan(&s.ID, &s.Spec, &next, &last, &s.LastTask, &created); err != nil {
			return nil, fmt.Errorf("sqlite: schedules: %w", err)
		}
		s.Next, s.LastSlot, s.CreatedAt = fromNanos(next), fromNanos(last), fromNanos(created)
		out = append(out, s)
	}
	return out, rows.Err()
}
