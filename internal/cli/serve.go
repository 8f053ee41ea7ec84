package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keepup/keepup/internal/agent"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/server"
	"github.com/keepup/keepup/internal/store/sqlite"
	"github.com/keepup/keepup/internal/task"
	"github.com/keepup/keepup/internal/tool"
)

// cmdServe runs the daemon: the queue's workers and the HTTP API on loopback and a Unix socket,
// until SIGINT or SIGTERM. Tasks a previous daemon left running continue from their
// checkpoints.
func cmdServe(st *State, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "127.0.0.1:0", "TCP address of the API (loopback unless --allow-remote)")
	socket := fs.String("socket", "", "Unix socket of the API (default KEEPUP_HOME/keepup.sock)")
	allowRemote := fs.Bool("allow-remote", false, "let --addr be a non-loopback address")
	maxRunning := fs.Int("max-running", 0, "task slices running at once (default 4 x CPUs)")
	maxPerSession := fs.Int("max-per-session", 0, "slices of one session running at once (default: --max-running)")
	sliceTurns := fs.Int("slice-turns", 0, "model turns per slice before a task is checkpointed and requeued (default 8)")
	sandboxChoice := fs.String("sandbox", "", "sandbox backend: bwrap (default) or none (development only)")
	var roots listFlag
	fs.Var(&roots, "grant-root", "a folder under which tasks may be granted folders (repeatable; default: any folder the daemon can read)")
	const use = "usage: keepup serve [--addr HOST:PORT] [--socket PATH] [--max-running N] [--max-per-session N] [--slice-turns N]"
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return usagef("serve: %v; %s", err, use)
	}
	for name, v := range map[string]int{"--max-running": *maxRunning, "--max-per-session": *maxPerSession, "--slice-turns": *sliceTurns} {
		if v < 0 {
			return usagef("serve: %s %d: must not be negative", name, v)
		}
	}
	set, err := loadSettings(st)
	if err != nil {
		return err
	}
	if err := ensureHome(set.home); err != nil {
		return err
	}
	unlock, err := lockDaemon(set.home)
	if err != nil {
		return err
	}
	defer unlock()
	backend, err := openBackend(st, set, *sandboxChoice)
	if err != nil {
		return err
	}
	ctx, stop := st.Context()
	defer stop()
	dbPath := filepath.Join(set.home, "keepup.db")
	db, err := sqlite.Open(ctx, sqlite.Config{Path: dbPath})
	if err != nil {
		return usagef("database %s: %v", dbPath, err)
	}
	defer db.Close()

	logger := slog.New(slog.NewTextHandler(st.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rt := newDaemonRuntime(st, set, backend, db)
	for _, r := range roots {
		abs, err := filepath.Abs(r)
		if err != nil {
			return usagef("serve: --grant-root %s: %v", r, err)
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return usagef("serve: --grant-root %s: %v", r, err)
		}
		rt.roots = append(rt.roots, real)
	}
	defer rt.closeAll()
	q, err := queue.New(ctx, queue.Config{DB: db, Runtime: rt, MaxRunning: *maxRunning, MaxPerSession: *maxPerSession,
		SliceTurns: *sliceTurns, Logger: logger})
	if err != nil {
		return err
	}
	started := time.Now()
	if err := q.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := q.Stop(sctx); err != nil {
			logger.Warn("stopping the queue", "err", err)
		}
	}()

	if *socket == "" {
		*socket = filepath.Join(set.home, "keepup.sock")
	}
	ls, err := server.Listen(server.ListenConfig{Addr: *addr, Socket: *socket, AllowNonLoopback: *allowRemote})
	if err != nil {
		return usagef("serve: %v", err)
	}
	token := server.NewToken()
	srv, err := server.New(server.Config{Backend: q, Token: token, Logger: logger, Version: Version})
	if err != nil {
		return err
	}
	info := server.Info{PID: os.Getpid(), Addr: ls[0].Addr().String(), Socket: *socket, Token: token, Version: Version, Started: started}
	if err := server.WriteDaemonInfo(set.home, info); err != nil {
		return err
	}
	defer server.RemoveDaemonInfo(set.home)
	fmt.Fprintf(st.Stderr, "keepup: daemon %d serving http://%s and unix:%s (token in %s); %d interrupted task slice(s) continued\n",
		os.Getpid(), info.Addr, info.Socket, filepath.Join(set.home, "daemon.json"), q.Rescued())
	return srv.Serve(ctx, ls...)
}

// lockDaemon takes KEEPUP_HOME/daemon.lock: one daemon per database, so that at start every job
// left running belongs to a dead process.
func lockDaemon(home string) (func(), error) {
	path := filepath.Join(home, "daemon.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, usagef("daemon lock %s: %v", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(f)
		f.Close()
		return nil, usagef("another keepup daemon is running on %s (pid %s)", home, strings.TrimSpace(string(pid)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// daemonRuntime builds tasks for the queue as `keepup run` builds its one task: the same
// configuration, policy, model providers, sandbox backend and egress proxy. A session's sandbox
// and proxy are shared by its tasks (a task and its subagents with the same grants), started
// when first needed and closed when the session has been idle a while.
type daemonRuntime struct {
	st      *State
	set     *settings
	backend sandbox.Backend
	db      *sqlite.DB
	idle    time.Duration
	roots   []string // --grant-root: grants must be inside one of these (none: no limit)

	mu       sync.Mutex
	sessions map[string]*sharedSession
}

func newDaemonRuntime(st *State, set *settings, backend sandbox.Backend, db *sqlite.DB) *daemonRuntime {
	return &daemonRuntime{st: st, set: set, backend: backend, db: db, idle: 2 * time.Minute, sessions: map[string]*sharedSession{}}
}

// sharedSession is the sandbox and proxy of one session and one set of grants.
type sharedSession struct {
	key   string
	refs  int
	timer *time.Timer

	mu sync.Mutex
	eg *sessionEgress
	sb sandbox.Session
	// The sandbox is started from spec on first use.
	backend sandbox.Backend
	spec    sandbox.Spec
	closed  bool
}

func (rt *daemonRuntime) Check(ctx context.Context, req queue.TaskRequest) error {
	_, _, err := rt.check(req)
	return err
}

// check validates a request's model, approval mode and grants, writing nothing.
func (rt *daemonRuntime) check(req queue.TaskRequest) (spec string, mode policy.Mode, err error) {
	spec = strings.TrimSpace(req.Model)
	if spec == "" {
		spec = defaultModelSpec(rt.st.Getenv)
	}
	if spec == "" {
		return "", "", &queue.InputError{Field: "model", Msg: "no model given and the daemon has no default (set KEEPUP_MODEL or ANTHROPIC_API_KEY where it runs)"}
	}
	if _, _, err := openModel(spec, rt.st.Getenv, rt.set); err != nil {
		return "", "", &queue.InputError{Field: "model", Msg: err.Error()}
	}
	name := req.Approvals
	if name == "" {
		name = rt.set.defaultMode
	}
	if mode, err = policy.ParseMode(name); err != nil {
		return "", "", &queue.InputError{Field: "approvals", Msg: err.Error()}
	}
	if err := rt.set.policy.CheckMode(mode); err != nil {
		return "", "", &queue.InputError{Field: "approvals", Msg: err.Error()}
	}
	for i, g := range req.Grants {
		gr, err := scope.ParseGrant(g)
		if err != nil {
			return "", "", &queue.InputError{Field: fmt.Sprintf("grants[%d]", i), Msg: err.Error()}
		}
		if fi, err := os.Stat(gr.Path); err != nil || !fi.IsDir() {
			return "", "", &queue.InputError{Field: fmt.Sprintf("grants[%d]", i), Msg: fmt.Sprintf("%s is not a folder the daemon can read", gr.Path)}
		}
		if !rt.grantable(gr.Path) {
			return "", "", &queue.InputError{Field: fmt.Sprintf("grants[%d]", i), Msg: fmt.Sprintf("%s is outside the folders this daemon may grant (%s)", gr.Path, strings.Join(rt.roots, ", "))}
		}
	}
	return spec, mode, nil
}

// grantable reports whether path (its real location, links resolved) is inside a grant root.
func (rt *daemonRuntime) grantable(path string) bool {
	if len(rt.roots) == 0 {
		return true
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	for _, r := range rt.roots {
		if rel, err := filepath.Rel(r, real); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}

func (rt *daemonRuntime) Prepare(ctx context.Context, req queue.TaskRequest, id string) (*task.Task, error) {
	spec, mode, err := rt.check(req)
	if err != nil {
		return nil, err
	}
	var grants []scope.Grant
	for _, g := range req.Grants {
		gr, _ := scope.ParseGrant(g)
		grants = append(grants, gr)
	}
	sid := scope.NewID()
	uploads := filepath.Join(rt.set.home, "uploads", sid)
	sess, err := scope.Open(scope.Config{ID: sid, Grants: grants, Outputs: filepath.Join(rt.set.home, "outputs", sid),
		Uploads: req.Uploads, UploadsDir: uploads, Home: rt.set.home})
	if err != nil {
		field := "grants"
		if strings.HasPrefix(err.Error(), "upload") {
			field = "uploads"
		}
		return nil, &queue.InputError{Field: field, Msg: err.Error()}
	}
	defer sess.Close()
	if err := os.MkdirAll(filepath.Join(sess.Mount(scope.OutputsName).Path, ".keepup", "bash"), 0o755); err != nil {
		return nil, err
	}
	t := &task.Task{Session: sid, Prompt: req.Prompt, Model: spec, Approvals: string(mode), Outputs: sess.Mount(scope.OutputsName).Path}
	for _, m := range sess.Mounts {
		t.Grants = append(t.Grants, task.Grant{Name: m.Name, Path: m.Path, Mode: string(m.Mode)})
	}
	return t, nil
}

func (rt *daemonRuntime) Open(ctx context.Context, t *task.Task) (agent.Config, func(), error) {
	sess, err := reopenSession(t, rt.set.home)
	if err != nil {
		return agent.Config{}, nil, err
	}
	prov, window, err := openModel(t.Model, rt.st.Getenv, rt.set)
	if err != nil {
		sess.Close()
		return agent.Config{}, nil, err
	}
	mode, err := policy.ParseMode(t.Approvals)
	if err != nil {
		sess.Close()
		return agent.Config{}, nil, err
	}
	reg, err := tool.NewRegistry(tool.Builtins()...)
	if err != nil {
		sess.Close()
		return agent.Config{}, nil, err
	}
	ss, err := rt.acquire(t, sess)
	if err != nil {
		sess.Close()
		return agent.Config{}, nil, err
	}
	cfg := agent.Config{
		Provider:          prov,
		Tools:             reg,
		Decide:            func(a policy.Action) policy.Decision { return rt.set.policy.Decide(a, mode) },
		Session:           sess,
		Sandbox:           lazySandbox{ss},
		Web:               ss.eg.client,
		Headless:          mode == policy.ModeDeny,
		ExecNetwork:       ss.eg.allows,
		ContextWindow:     window,
		AuditModelContent: rt.set.auditModelContent,
	}
	return cfg, func() {
		sess.Close()
		rt.release(ss)
	}, nil
}

// acquire returns the shared sandbox and proxy of t's session and grants, starting the proxy
// if needed (the sandbox starts on the first command).
func (rt *daemonRuntime) acquire(t *task.Task, sess *scope.Session) (*sharedSession, error) {
	var sb strings.Builder
	sb.WriteString(t.Session)
	for _, m := range sess.Mounts {
		fmt.Fprintf(&sb, "\x00%s=%s:%s", m.Name, m.Path, m.Mode)
	}
	key := sb.String()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if ss, ok := rt.sessions[key]; ok {
		ss.refs++
		if ss.timer != nil {
			ss.timer.Stop()
			ss.timer = nil
		}
		return ss, nil
	}
	eg, err := startEgress(rt.set, rt.db.Commit, t.ID, t.Session, nil)
	if err != nil {
		return nil, err
	}
	spec := sandboxSpec(sess)
	spec.Network = eg.network()
	ss := &sharedSession{key: key, refs: 1, eg: eg, spec: spec, backend: rt.backend}
	rt.sessions[key] = ss
	return ss, nil
}

// release drops a reference; an unused session closes after the idle time, so that the next
// slice of a task finds its sandbox (its /tmp, what it installed) as it was.
func (rt *daemonRuntime) release(ss *sharedSession) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if ss.refs--; ss.refs > 0 {
		return
	}
	ss.timer = time.AfterFunc(rt.idle, func() {
		rt.mu.Lock()
		if ss.refs > 0 || rt.sessions[ss.key] != ss {
			rt.mu.Unlock()
			return
		}
		delete(rt.sessions, ss.key)
		rt.mu.Unlock()
		ss.close()
	})
}

func (rt *daemonRuntime) closeAll() {
	rt.mu.Lock()
	all := rt.sessions
	rt.sessions = map[string]*sharedSession{}
	rt.mu.Unlock()
	for _, ss := range all {
		if ss.timer != nil {
			ss.timer.Stop()
		}
		ss.close()
	}
}

func (ss *sharedSession) close() {
	ss.closeSandbox()
	ss.eg.Close()
}

// closeSandbox closes the sandbox, if it started, and keeps it from starting again.
func (ss *sharedSession) closeSandbox() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.closed = true
	if ss.sb != nil {
		_ = ss.sb.Close()
		ss.sb = nil
	}
}

// lazySandbox starts the session's sandbox on its first command: most tasks never run one, and
// a daemon holding a thousand tasks must not hold a thousand sandboxes.
type lazySandbox struct{ ss *sharedSession }

func (l lazySandbox) Run(ctx context.Context, cmd sandbox.Command) (sandbox.Result, error) {
	sb, err := l.ss.started(ctx)
	if err != nil {
		return sandbox.Result{}, err
	}
	return sb.Run(ctx, cmd)
}

func (l lazySandbox) Close() error { return nil } // the runtime closes shared sessions

func (ss *sharedSession) started(ctx context.Context) (sandbox.Session, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.sb != nil {
		return ss.sb, nil
	}
	if ss.closed {
		return nil, errors.New("sandbox: the session was closed")
	}
	sb, err := ss.backend.Start(context.WithoutCancel(ctx), ss.spec)
	if err != nil {
		return nil, fmt.Errorf("the sandbox cannot start: %v", err)
	}
	ss.sb = sb
	return sb, nil
}
