package sqlite

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"time"
)

// checkpointEvery is how many commits pass between background checkpoints: with 6-12 pages a
// commit, close to SQLite's default of a checkpoint per 1000 WAL pages.
const checkpointEvery = 64

// checkpointer copies WAL frames back into the database file on its own connection and
// goroutine. The write connection has wal_autocheckpoint off: otherwise the commit that
// crosses the threshold pays for the checkpoint, fsyncs included (milliseconds), inside a
// step of the agent's turn.
//
// A checkpoint alone is not enough: SQLite rewinds the WAL to its start only when a writer
// begins while every frame is already copied back, and commits made during a concurrent
// checkpoint keep that from happening, so the WAL would grow forever (and every commit get
// slower). So each round is a PASSIVE checkpoint that runs alongside commits and does the
// bulk of the copying, then a second one under the in-process write mutex for the few frames
// committed meanwhile: the next commit then finds the WAL fully copied and rewinds it.
type checkpointer struct {
	db      *sql.DB
	writeMu *sync.Mutex // DB.mu
	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	n       int // commits since the last kick; guarded by writeMu
}

func startCheckpointer(db *sql.DB, writeMu *sync.Mutex) *checkpointer {
	c := &checkpointer{db: db, writeMu: writeMu, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	c.wg.Go(c.run)
	return c
}

// committed is called after each successful commit, under writeMu.
func (c *checkpointer) committed() {
	if c == nil {
		return
	}
	c.n++
	if c.n < checkpointEvery {
		return
	}
	c.n = 0
	select {
	case c.kick <- struct{}{}:
	default: // one is already due
	}
}

func (c *checkpointer) run() {
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		}
		if err := c.checkpoint(); err != nil {
			// Not fatal: the WAL only grows until a later checkpoint or the last Close.
			slog.Debug("sqlite: background checkpoint", "err", err)
		}
	}
}

func (c *checkpointer) checkpoint() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.passive(ctx); err != nil {
		return err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.passive(ctx)
}

func (c *checkpointer) passive(ctx context.Context) error {
	var busy, logFrames, copied int
	return c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied)
}

// close stops the goroutine, waiting for a checkpoint in progress, and closes the connection.
// It must not be called with writeMu held.
func (c *checkpointer) close() error {
	if c == nil {
		return nil
	}
	close(c.stop)
	c.wg.Wait()
	return c.db.Close()
}
