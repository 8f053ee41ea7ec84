// Package queue owns orchestration: tasks queued on River (riverqueue/river) in keepup's own
// SQLite database, run as bounded slices of a few turns by a pool of workers, continued after a
// crash from their checkpoints, fanned out to subagents, steered, paused, cancelled, approved from
// an inbox, and created by cron schedules exactly once per slot.
//
// A task's state change, its journal and the jobs that continue it commit in one transaction
// (store.Batch.Jobs, inserted through River's InsertManyTx on the same connection), so after a
// crash a task is never both "running" and without a job, nor continued twice. A job is one
// slice; the job has no River timeout (a long tool call must not be killed) and River's rescuer
// (which ignores such jobs) is replaced by a rescue at start: one daemon owns the database, so
// every job left running belongs to a dead process and is made available again at once.
//
// It must never decide policy or run tools itself: slices run through agent.Runner, with the
// runtime (session, sandbox, egress, model) built by the Runtime it is given.
package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/keepup/keepup/internal/agent"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/store/sqlite"
	"github.com/keepup/keepup/internal/task"
)

// Runtime builds what tasks need; the CLI's daemon provides it.
type Runtime interface {
	// Prepare checks req and returns the record of a new task with id: model, approval mode,
	// grants and outputs resolved, uploads copied into its session. Bad input is an
	// *InputError naming the field; nothing is written then.
	Prepare(ctx context.Context, req TaskRequest, id string) (*task.Task, error)
	// Check validates req as Prepare does, writing nothing (a schedule's request).
	Check(ctx context.Context, req TaskRequest) error
	// Open returns the agent configuration for running a slice of t: provider, tools, policy,
	// session, sandbox, web client, budgets. release is called when the slice ends.
	Open(ctx context.Context, t *task.Task) (cfg agent.Config, release func(), err error)
}

// Config configures New. Zero fields take the documented defaults.
type Config struct {
	// DB is keepup's database; River's tables are created in it. Required.
	DB *sqlite.DB
	// Runtime builds tasks. Required.
	Runtime Runtime
	// MaxRunning bounds the slices running at once over all tasks (River's MaxWorkers).
	// Default 4 × the number of CPUs.
	MaxRunning int
	// MaxPerSession bounds the slices of one session running at once (a task and its
	// subagents). Default MaxRunning.
	MaxPerSession int
	// Limits bound subagents (depth 2, 8 running at once per task, 32 per task).
	Limits agent.Limits
	// SliceTurns is how many turns a slice runs before the task is checkpointed and continued
	// by a new job. Default 8.
	SliceTurns int
	// PollInterval is how often idle workers look for jobs (River's FetchPollInterval; the
	// SQLite driver has no LISTEN). Default 50ms.
	PollInterval time.Duration
	// ScheduleEvery is how often schedules are checked. Default 1s.
	ScheduleEvery time.Duration
	// MissedAfter is how late a schedule slot may fire and still count as on time; older
	// slots follow the schedule's missed policy. Default 1 minute.
	MissedAfter time.Duration
	// Logger receives the queue's logs (slog.Default()).
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
	// ID names this worker process in River (default "keepup-<pid>").
	ID string
}

func (c *Config) validate() error {
	if c.DB == nil {
		return errors.New("queue: Config.DB is required")
	}
	if c.Runtime == nil {
		return errors.New("queue: Config.Runtime is required")
	}
	if c.MaxRunning < 0 || c.MaxPerSession < 0 || c.SliceTurns < 0 || c.PollInterval < 0 || c.ScheduleEvery < 0 || c.MissedAfter < 0 {
		return errors.New("queue: Config: limits and intervals must not be negative")
	}
	if c.MaxRunning == 0 {
		c.MaxRunning = 4 * runtime.NumCPU()
	}
	if c.MaxPerSession == 0 {
		c.MaxPerSession = c.MaxRunning
	}
	if c.SliceTurns == 0 {
		c.SliceTurns = 8
	}
	if c.PollInterval == 0 {
		c.PollInterval = 50 * time.Millisecond
	}
	if c.ScheduleEvery == 0 {
		c.ScheduleEvery = time.Second
	}
	if c.MissedAfter == 0 {
		c.MissedAfter = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ID == "" {
		c.ID = fmt.Sprintf("keepup-%d", os.Getpid())
	}
	c.Limits = c.Limits.WithDefaults()
	return nil
}

// jobKind is the River kind of a task slice.
const jobKind = "keepup_task"

// sliceArgs are a slice job's arguments.
type sliceArgs struct {
	Task string `json:"task"`
}

func (sliceArgs) Kind() string { return jobKind }

// Queue runs tasks. Create it with New, Start it, Stop it.
type Queue struct {
	cfg    Config
	db     *sqlite.DB
	river  *river.Client[*sql.Tx]
	driver riverdriver.Driver[*sql.Tx]

	mu        sync.Mutex
	running   map[string]context.CancelFunc // task id -> cancel of its running slice
	sessions  map[string]int                // session id -> slices running
	busy      map[string]chan struct{}      // task id -> closed when its slice ends
	subs      map[string]map[chan struct{}]struct{}
	resolveMu sync.Mutex // one approval answer at a time
	groupMu   sync.Mutex // guards groupQ and grouping (see commitGrouped)
	groupQ    []*groupReq
	grouping  bool
	planMu    sync.Mutex // one parent-plan update at a time

	stop     context.CancelFunc
	life     context.Context // cancelled when Stop begins; running slices then stop
	loops    sync.WaitGroup
	started  bool
	rescued  int
	rescueAt time.Duration
}

// New checks cfg and prepares the queue: River's migrations run on the database.
func New(ctx context.Context, cfg Config) (*Queue, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	q := &Queue{
		cfg: cfg, db: cfg.DB,
		running:  map[string]context.CancelFunc{},
		life:     context.Background(),
		sessions: map[string]int{},
		busy:     map[string]chan struct{}{},
		subs:     map[string]map[chan struct{}]struct{}{},
	}
	q.driver = riversqlite.New(cfg.DB.Writer())
	mig, err := rivermigrate.New(q.driver, &rivermigrate.Config{Logger: quietLogger(cfg.Logger)})
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	if _, err := mig.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("queue: River's migrations: %w", err)
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &sliceWorker{q: q}); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	q.river, err = river.NewClient(q.driver, &river.Config{
		ID:                cfg.ID,
		Logger:            quietLogger(cfg.Logger),
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.MaxRunning}},
		Workers:           workers,
		FetchPollInterval: cfg.PollInterval,
		FetchCooldown:     min(cfg.PollInterval, 10*time.Millisecond),
		// Slices have no River timeout (see the package doc); a crash is handled by rescue.
		JobTimeout:  -1,
		MaxAttempts: 1000,
		// Completed slice jobs are of no use once done.
		CompletedJobRetentionPeriod: time.Hour,
		PollOnly:                    true,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: River: %w", err)
	}
	cfg.DB.SetEnqueuer(q.enqueue)
	return q, nil
}

// quietLogger drops River's info logs (one per job) and keeps warnings.
func quietLogger(l *slog.Logger) *slog.Logger {
	return slog.New(levelHandler{min: slog.LevelWarn, h: l.Handler()})
}

type levelHandler struct {
	min slog.Level
	h   slog.Handler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.h.Enabled(ctx, l)
}
func (h levelHandler) Handle(ctx context.Context, r slog.Record) error { return h.h.Handle(ctx, r) }
func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{min: h.min, h: h.h.WithAttrs(as)}
}
func (h levelHandler) WithGroup(n string) slog.Handler {
	return levelHandler{min: h.min, h: h.h.WithGroup(n)}
}

// enqueue inserts jobs inside a store transaction (store.Enqueuer).
func (q *Queue) enqueue(ctx context.Context, tx any, jobs []store.Job) error {
	stx, ok := tx.(*sql.Tx)
	if !ok {
		return fmt.Errorf("queue: transaction of type %T, want *sql.Tx", tx)
	}
	params := make([]river.InsertManyParams, 0, len(jobs))
	for _, j := range jobs {
		args, ok := j.Args.(sliceArgs)
		if j.Kind != jobKind || !ok {
			return fmt.Errorf("queue: unknown job kind %q", j.Kind)
		}
		params = append(params, river.InsertManyParams{Args: args, InsertOpts: &river.InsertOpts{Priority: clampPriority(j.Priority)}})
	}
	_, err := q.river.InsertManyTx(ctx, stx, params)
	return err
}

func clampPriority(p int) int {
	if p < 1 {
		return DefaultPriority
	}
	return min(p, 4)
}

// sliceJob is the job that runs (or continues) task t.
func sliceJob(t *task.Task) store.Job {
	// No ScheduledAt: River inserts any job with one as "scheduled", and only its scheduler
	// (every 5s) makes it available. Within a priority, jobs run in the order enqueued.
	return store.Job{Kind: jobKind, Args: sliceArgs{Task: t.ID}, Priority: t.Priority}
}

// Start rescues the jobs a dead process left running, then starts the workers and the
// scheduler. It returns once they run; Stop ends them.
func (q *Queue) Start(ctx context.Context) error {
	begin := time.Now()
	n, err := q.rescue(ctx)
	if err != nil {
		return fmt.Errorf("queue: rescuing interrupted tasks: %w", err)
	}
	q.rescued, q.rescueAt = n, time.Since(begin)
	if n > 0 {
		q.cfg.Logger.Info("continuing interrupted tasks", "jobs", n, "took", q.rescueAt)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	q.stop, q.life = cancel, lctx
	// River gets a context of its own: stopping begins with lctx (slices stop at once, their
	// tasks intact), then River.Stop waits for the workers to return.
	if err := q.river.Start(context.WithoutCancel(ctx)); err != nil {
		cancel()
		return fmt.Errorf("queue: starting River: %w", err)
	}
	q.loops.Add(1)
	go func() {
		defer q.loops.Done()
		q.scheduleLoop(lctx)
	}()
	q.started = true
	return nil
}

// Rescued reports how many jobs Start found left running by a dead process.
func (q *Queue) Rescued() int { return q.rescued }

// Stop stops taking jobs and waits for running slices to end; when ctx ends first, running
// slices are cancelled (their tasks continue at the next start, from their checkpoints).
func (q *Queue) Stop(ctx context.Context) error {
	if !q.started {
		return nil
	}
	q.stop()
	q.loops.Wait()
	err := q.river.Stop(ctx)
	if err != nil && ctx.Err() != nil {
		err = q.river.StopAndCancel(context.Background())
	}
	return err
}

// rescue makes every job left running available again. Only one keepup daemon uses a
// database (the CLI holds KEEPUP_HOME/daemon.lock), so a running job at start belongs to a
// process that died; River's own rescuer would wait for a timeout these jobs do not have.
func (q *Queue) rescue(ctx context.Context) (int, error) {
	exec := q.driver.GetExecutor()
	now := time.Now().UTC()
	total := 0
	var after int64
	for {
		stuck, err := exec.JobGetStuck(ctx, &riverdriver.JobGetStuckParams{AfterID: after, Max: 1000, StuckHorizon: now.Add(time.Second)})
		if err != nil {
			return total, err
		}
		if len(stuck) == 0 {
			return total, nil
		}
		p := &riverdriver.JobRescueManyParams{StuckHorizon: now.Add(time.Second)}
		for _, j := range stuck {
			errData, _ := json.Marshal(rivertype.AttemptError{At: now, Attempt: max(j.Attempt, 0), Error: "the keepup daemon stopped while this slice ran; continued from its checkpoint"})
			p.ID = append(p.ID, j.ID)
			p.Error = append(p.Error, errData)
			p.FinalizedAt = append(p.FinalizedAt, nil)
			p.ScheduledAt = append(p.ScheduledAt, j.ScheduledAt)
			p.State = append(p.State, string(rivertype.JobStateAvailable))
		}
		if _, err := exec.JobRescueMany(ctx, p); err != nil {
			return total, err
		}
		total += len(stuck)
		after = stuck[len(stuck)-1].ID
	}
}

// sliceWorker runs one slice of a task.
type sliceWorker struct {
	river.WorkerDefaults[sliceArgs]
	q *Queue
}

// Timeout: none. A slice may hold a long tool call; the runner's own budgets bound the task.
func (w *sliceWorker) Timeout(*river.Job[sliceArgs]) time.Duration { return -1 }

// snoozeFor is how long a slice whose session is at its limit waits before trying again
// (River then makes it available within its scheduler's interval, 5s).
const snoozeFor = time.Second

func (w *sliceWorker) Work(ctx context.Context, job *river.Job[sliceArgs]) error {
	return w.q.runSlice(ctx, job.Args.Task)
}

// runSlice runs one slice of task id, or settles it without running when there is nothing to
// run (finished, waiting, cancelled).
func (q *Queue) runSlice(ctx context.Context, id string) error {
	t, err := q.db.Task(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if t.Status.Terminal() {
		return nil
	}
	ok, err := q.acquire(ctx, t)
	if err != nil {
		return err
	}
	if !ok {
		return river.JobSnooze(snoozeFor)
	}
	defer q.release(t)
	// Read again under the task's slot: another slice may have just finished it.
	if t, err = q.db.Task(ctx, id); err != nil {
		return err
	}
	if t.Status.Terminal() {
		return nil
	}
	want, err := q.db.Control(ctx, id)
	if err != nil {
		return err
	}
	if want == "cancel" {
		// Subagents the task started (perhaps in the very slice the cancel interrupted) go
		// with it.
		if err := q.cancelChildren(ctx, t); err != nil {
			return err
		}
		return q.cancelIdle(ctx, t, "cancelled by the person")
	}
	switch {
	case t.Status == task.Paused && want != "resume":
		return nil // waits for resume
	case t.Status == task.AwaitingApproval:
		pending, err := q.db.Approvals(ctx, id, true)
		if err != nil {
			return err
		}
		if len(pending) > 0 {
			return nil // waits in the inbox
		}
	}
	if waiting, err := q.waitingForChildren(ctx, t); err != nil || waiting {
		return err
	}
	if want == "resume" {
		if err := q.commit(ctx, &store.Batch{Controls: []store.Control{{Task: id, Want: "", At: q.cfg.Now()}}}); err != nil {
			return err
		}
	}
	if t.Parent != "" && t.Status == task.Queued {
		q.childProgress(ctx, t, task.Planning)
	}

	acfg, rel, err := q.cfg.Runtime.Open(ctx, t)
	if err != nil {
		// The task cannot run here (a granted folder is gone, the sandbox cannot start): it
		// fails with the reason instead of retrying forever.
		return q.failIdle(ctx, t, fmt.Sprintf("cannot run: %v", err))
	}
	defer rel()
	sctx, cancelCause := context.WithCancelCause(ctx)
	defer cancelCause(nil)
	stopWatch := context.AfterFunc(q.life, func() { cancelCause(agent.ErrShutdown) })
	defer stopWatch()
	q.mu.Lock()
	q.running[id] = func() { cancelCause(context.Canceled) }
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.running, id)
		q.mu.Unlock()
	}()

	acfg.Store = q.db
	acfg.Task = t
	acfg.Person = inboxPerson{}
	acfg.Queue = q
	acfg.Spawner = q
	acfg.SliceTurns = q.cfg.SliceTurns
	acfg.Limits = q.cfg.Limits
	user := acfg.OnEvent
	acfg.OnEvent = func(e event.Event) {
		q.notify(e.Task)
		if user != nil {
			user(e)
		}
	}
	if t.MaxTurns > 0 {
		acfg.Budgets.MaxTurns = t.MaxTurns
	}
	r, err := agent.New(acfg)
	if err != nil {
		return q.failIdle(ctx, t, err.Error())
	}
	final, err := r.Run(sctx)
	if err != nil {
		return err // the store failed: River retries the slice, which continues from the checkpoint
	}
	if r.Suspended() == agent.SuspendShutdown {
		return river.JobSnooze(0) // available again at the next start, without using an attempt
	}
	// A slice cancelled while it was creating subagents: they are cancelled too.
	if final.Status == task.Cancelled {
		if err := q.cancelChildren(ctx, final); err != nil {
			return err
		}
	}
	if final.Parent != "" && final.Status != task.Queued {
		q.childProgress(ctx, final, final.Status)
	}
	return nil
}

// acquire takes a slot for a slice of t: one slice per task (a second job of a task waits for
// the first to end: it may carry news the first missed, such as a child that finished), and
// MaxPerSession per session. It reports false when the session is at its limit.
func (q *Queue) acquire(ctx context.Context, t *task.Task) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		done, busy := q.busy[t.ID]
		if !busy {
			break
		}
		q.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			q.mu.Lock()
			return false, ctx.Err()
		}
		q.mu.Lock()
	}
	if q.sessions[t.Session] >= q.cfg.MaxPerSession {
		return false, nil
	}
	q.busy[t.ID] = make(chan struct{})
	q.sessions[t.Session]++
	return true, nil
}

func (q *Queue) release(t *task.Task) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if done, ok := q.busy[t.ID]; ok {
		close(done)
		delete(q.busy, t.ID)
	}
	if q.sessions[t.Session]--; q.sessions[t.Session] <= 0 {
		delete(q.sessions, t.Session)
	}
}

// commit writes b and wakes the streams of the tasks it added events to.
func (q *Queue) commit(ctx context.Context, b *store.Batch) error {
	if err := q.db.Commit(context.WithoutCancel(ctx), b); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, e := range b.Events {
		if !seen[e.Task] {
			seen[e.Task] = true
			q.notify(e.Task)
		}
	}
	return nil
}

// inboxPerson puts approvals in the inbox: the task waits there, holding no worker.
type inboxPerson struct{}

func (inboxPerson) Approve(context.Context, agent.ApprovalRequest) (agent.Answer, error) {
	return "", agent.ErrSuspend
}

func (inboxPerson) Answer(context.Context, string) (string, error) {
	return "", errors.New("no one can answer questions while a queued task runs; decide what is reasonable, say so in the summary, or stop and explain what you need")
}
