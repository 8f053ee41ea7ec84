// Package sqlite is the default store.Store driver: one SQLite file (KEEPUP_HOME/keepup.db)
// through modernc.org/sqlite, pure Go. It owns the schema and its migrations, and the sealing
// of audit entries onto the chain inside each Commit's write transaction.
//
// Several processes may share the file: every Commit is one BEGIN IMMEDIATE transaction, so
// writers serialize on SQLite's lock (waiting up to Config.BusyTimeout) and the audit chain
// stays consecutive. Inside a process, writes go through one connection behind a mutex and
// reads through a separate pool, in WAL mode so that reads never wait for a writer.
//
// It must never decide policy, run tools or check the audit chain (audit.Verify does), and
// never change stored data outside a Commit (creating and migrating the schema aside).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/keepup/keepup/internal/store"
)

// Config configures Open.
type Config struct {
	// Path is the database file, normally KEEPUP_HOME/keepup.db. Required. Its directory is
	// created (0700) if missing, and a new file is created readable by its owner only.
	Path string
	// BusyTimeout is how long a Commit waits for another process's write to finish before
	// failing with SQLITE_BUSY. Default 5s.
	BusyTimeout time.Duration
}

// DefaultBusyTimeout is Config.BusyTimeout's default.
const DefaultBusyTimeout = 5 * time.Second

func (c *Config) validate() error {
	if c.Path == "" {
		return errors.New("sqlite: Config.Path: empty; want a database file such as $KEEPUP_HOME/keepup.db")
	}
	if c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:") {
		return fmt.Errorf("sqlite: Config.Path: %q: want a file path (a URI or :memory: cannot be shared by the write and read connections)", c.Path)
	}
	if c.BusyTimeout < 0 {
		return fmt.Errorf("sqlite: Config.BusyTimeout: %v is negative", c.BusyTimeout)
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
	return nil
}

// DB is a store.Store on one SQLite file. It is safe for concurrent use.
type DB struct {
	path string
	w    *sql.DB    // exactly one connection; every write goes through it
	r    *sql.DB    // read pool; query_only
	mu   sync.Mutex // serializes Commit in this process, ahead of SQLite's file lock
	// closed is set by Close, under mu. Reads after Close fail on their closed statements.
	closed    bool
	closeOnce sync.Once
	closeErr  error
	ws        writeStmts // prepared on w
	rs        readStmts  // prepared on r
	ckpt      *checkpointer
	enq       store.Enqueuer // under mu
}

var _ store.Durable = (*DB)(nil)

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) and migrates the database at cfg.Path.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: Config.Path: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// Create the file ourselves so that it is private; SQLite gives -wal and -shm the same mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	} else if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}

	db := &DB{path: path}
	ok := false
	defer func() {
		if !ok {
			db.Close()
		}
	}()

	db.w, err = sql.Open("sqlite", dsn(path, cfg.BusyTimeout, connWrite))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	db.w.SetConnMaxLifetime(0)
	db.w.SetConnMaxIdleTime(0)

	ms, err := loadMigrations(migrationFS)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := migrate(ctx, db.w, ms); err != nil {
		return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}

	db.r, err = sql.Open("sqlite", dsn(path, cfg.BusyTimeout, connRead))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	db.r.SetMaxOpenConns(n)
	db.r.SetMaxIdleConns(n)
	db.r.SetConnMaxIdleTime(0)

	cdb, err := sql.Open("sqlite", dsn(path, cfg.BusyTimeout, connCheckpoint))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	cdb.SetMaxOpenConns(1)
	db.ckpt = startCheckpointer(cdb, &db.mu)

	if err := db.ws.prepare(ctx, db.w); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := db.rs.prepare(ctx, db.r); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	ok = true
	return db, nil
}

type connKind int

const (
	connWrite      connKind = iota // the one connection that writes
	connRead                       // the read pool
	connCheckpoint                 // the background checkpointer's
)

// dsn builds the modernc.org/sqlite data source name for one kind of connection.
//
// On the write connection, _txlock=immediate makes BeginTx issue BEGIN IMMEDIATE, taking the
// write lock up front: a deferred transaction that read the audit head and then tried to write
// while another process held the lock would fail with SQLITE_BUSY_SNAPSHOT instead of waiting.
// wal_autocheckpoint(0) leaves checkpoints to the checkpointer.
func dsn(path string, busy time.Duration, kind connKind) string {
	u := url.URL{Scheme: "file", OmitHost: true, Path: path}
	q := "?_pragma=busy_timeout(" + strconv.FormatInt(busy.Milliseconds(), 10) + ")" +
		"&_pragma=foreign_keys(1)" +
		"&_pragma=synchronous(NORMAL)"
	switch kind {
	case connWrite:
		q += "&_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)&_txlock=immediate"
	case connRead:
		q += "&_pragma=query_only(1)"
	}
	return u.String() + q
}

// Path returns the absolute path of the database file.
func (db *DB) Path() string { return db.path }

// Close closes the database. Commits in flight finish first; later calls fail.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		errs := []error{db.ckpt.close()} // before taking mu, which a checkpoint may be waiting for
		db.mu.Lock()
		defer db.mu.Unlock()
		db.closed = true
		errs = append(errs, db.ws.close(), db.rs.close())
		if db.r != nil {
			errs = append(errs, db.r.Close())
		}
		if db.w != nil {
			// No PRAGMA optimize here: it may want the write lock, and Close would then wait
			// for another process's commit. The schema's queries need no statistics.
			errs = append(errs, db.w.Close())
		}
		db.closeErr = errors.Join(errs...)
	})
	return db.closeErr
}

// closeStmts closes the non-nil statements of a set.
func closeStmts(stmts ...*sql.Stmt) error {
	var errs []error
	for _, s := range stmts {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// nanos stores a time as Unix nanoseconds, and the zero time as NULL.
func nanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// fromNanos is nanos reversed; times come back in UTC.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}
