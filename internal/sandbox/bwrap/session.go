package bwrap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/inside"
)

// closeGrace is how long Close waits for bwrap to exit by itself after the control socket
// closes, before it kills it.
const closeGrace = time.Second

// killWait bounds how long Run waits for the helper to report a command it was asked to
// kill (the helper itself gives a stub 5 seconds).
const killWait = 15 * time.Second

// outputGrace bounds how long Run waits, after its command ended, for the command's output
// to drain.
const outputGrace = 2 * time.Second

// Session is a started sandbox: one bwrap, one helper inside, any number of commands.
type Session struct {
	b       *Backend
	spec    sandbox.Spec
	workdir string
	state   *stateDir
	held    []held // placeholder registry entries
	cg      *cgroup
	v1      *v1Cgroup
	watch   *protectWatch // nil until started, and without read-write mounts to guard
	limits  sandbox.Limits

	cmd     *exec.Cmd
	stderr  *tailBuffer
	conn    *inside.Conn
	exited  chan struct{} // closed when bwrap has exited
	waitErr error         // bwrap's exit, valid once exited is closed

	landlockABI int // what the kernel offers, from the helper's ready message
	staged      int // guards the guard stage made (the rest, if any, bwrap did)

	mu      sync.Mutex
	closed  bool
	broken  error // set when the control socket failed: every Run fails with it
	nextID  uint64
	pending map[uint64]chan inside.Reply

	closeOnce sync.Once
	closeErr  error

	// The egress proxy's side on the host (network.go): bg counts the read loop and the proxy
	// listener's server; proxyLn is the proxy address's listener from inside.
	bg      sync.WaitGroup
	proxyLn net.Listener
}

var _ sandbox.Session = (*Session)(nil)

// Start starts a session's sandbox and returns when the helper inside is ready.
func (b *Backend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Session, error) {
	s, err := b.start(ctx, spec, true)
	if errors.Is(err, errGuardStage) {
		// The guard stage could not make the guards (a file system that refuses its mounts, a
		// path replaced meanwhile): bwrap makes them, as where the stage cannot run at all.
		s, err = b.start(ctx, spec, false)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// errGuardStage marks a start that failed in the guard stage, before bwrap ran.
var errGuardStage = errors.New("the guard stage failed")

// start starts a session; stage allows the guard stage to make its guards (see stageFrom).
func (b *Backend) start(ctx context.Context, spec sandbox.Spec, stage bool) (_ *Session, err error) {
	if err := validateSpec(&spec); err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.sessions[spec.SessionID] {
		b.mu.Unlock()
		return nil, fmt.Errorf("bwrap: session %s is already running", spec.SessionID)
	}
	b.sessions[spec.SessionID] = true
	b.mu.Unlock()
	s := &Session{b: b, spec: spec, stderr: &tailBuffer{max: 64 << 10}, exited: make(chan struct{}), pending: map[uint64]chan inside.Reply{}}
	defer func() {
		if err != nil {
			s.teardown()
		}
	}()
	s.workdir = spec.Workdir
	if s.workdir == "" {
		s.workdir = Home
		if len(spec.Mounts) > 0 {
			s.workdir = spec.Mounts[0].Dest
		}
	}
	s.limits = withDefaults(spec.Limits)

	if s.state, err = newStateDir(b.cfg.StateDir, spec.SessionID); err != nil {
		return nil, fmt.Errorf("bwrap: state folder: %w", err)
	}
	var rl inside.Rlimits
	rl.NoFile = uint64(s.limits.OpenFiles)
	rl.FSize = uint64(s.limits.FileBytes)
	if b.cg != nil {
		s.cg, err = b.cg.create(path.Base(s.state.dir), s.limits)
		if err != nil {
			return nil, fmt.Errorf("bwrap: cgroup: %w", err)
		}
	}
	if s.cg == nil {
		if b.v1 != nil {
			if s.v1, err = b.v1.create(path.Base(s.state.dir), s.limits); err != nil {
				return nil, fmt.Errorf("bwrap: cgroup v1: %w", err)
			}
		}
		// What no cgroup bounds, rlimits do (per process).
		if s.v1 == nil || !s.v1.pids {
			rl.NProc = uint64(s.limits.Pids)
		}
		if s.v1 == nil || !s.v1.memory {
			rl.AS = uint64(s.limits.MemoryBytes)
		}
	}
	hc := inside.HelperConfig{
		Landlock: inside.Landlock{RO: []string{"/"}, RW: []string{"/tmp", Home}, Dev: []string{"/dev"}},
		Rlimits:  rl,
	}
	if spec.Network.Enabled() {
		hc.Proxy = ProxyAddr
	}
	l, err := b.buildLayout(ctx, &spec, s.state.dir, "", stage)
	if l != nil {
		defer l.closeFiles()
	}
	if err != nil {
		return nil, err
	}
	listed := l.listed
	hc.Landlock.RW = append(hc.Landlock.RW, l.landlockRW...)
	hcJSON, err := json.Marshal(hc)
	if err != nil {
		return nil, err
	}
	l.args[len(l.args)-1] = string(hcJSON)
	// Register the placeholders before bwrap creates them (a crash still leaves a record), and
	// share those of concurrent sessions on the same folders.
	if s.held, err = b.reg.hold(l.created, l.guarded); err != nil {
		return nil, fmt.Errorf("bwrap: %w", err)
	}

	// fd 3: the control socket; fd 4: the seccomp program.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bwrap: control socket: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "control")
	l.files[0] = os.NewFile(uintptr(pair[1]), "control-helper")
	s.conn, err = inside.NewConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	if s.v1 != nil {
		if err := s.conn.PassCred(); err != nil {
			return nil, fmt.Errorf("bwrap: control socket: %w", err)
		}
	}
	if l.files[1], err = sealedFile("keepup-seccomp", b.seccomp); err != nil {
		return nil, fmt.Errorf("bwrap: seccomp program: %w", err)
	}
	// The guard stage's placeholders, made once registered (bwrap makes its own).
	if err := createPlaceholders(l.stage); err != nil {
		return nil, fmt.Errorf("bwrap: %w", err)
	}
	cmd, err := b.sandboxCommand(l)
	if err != nil {
		return nil, err
	}
	s.staged = len(l.stage)
	cmd.Env = []string{} // bwrap itself needs nothing from keepup's environment
	cmd.Stdin = nil
	cmd.Stdout = s.stderr
	cmd.Stderr = s.stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pdeathsig = true, syscall.SIGKILL
	if s.cg != nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(s.cg.fd.Fd())
	}
	s.cmd = cmd
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started bwrap exits, not the process: keep this
		// thread for the session's life (it waits for bwrap), and never hand it back.
		runtime.LockOSThread()
		// With cgroup v1, this thread enters the session's cgroups to start bwrap, which is
		// then born in them, with everything it starts (see v1Cgroup.enter).
		if s.v1 != nil {
			if err := s.v1.enter(); err != nil {
				started <- fmt.Errorf("cgroup v1: %w", err)
				close(s.exited)
				return
			}
		}
		err := cmd.Start()
		if s.v1 != nil {
			if lerr := s.v1.leave(s.v1.parents); lerr != nil {
				// Stuck in the session's cgroups, this thread goes with them: it ends when
				// bwrap does (it is locked), and destroy spares keepup meanwhile.
				if err == nil {
					_ = cmd.Process.Kill()
					s.waitErr = cmd.Wait()
				}
				started <- fmt.Errorf("cgroup v1: %w", lerr)
				close(s.exited)
				return
			}
		}
		if err != nil {
			started <- err
			close(s.exited)
			return
		}
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("bwrap: start %s: %w", b.bwrap, err)
	}
	l.closeFiles() // bwrap has its copies
	l.files = nil
	ready := make(chan inside.Reply, 1)
	s.bg.Add(1)
	go s.readLoop(ready)
	select {
	case r, ok := <-ready:
		if !ok {
			<-s.exited
			return nil, s.startError()
		}
		s.landlockABI = r.LandlockABI
		if s.v1 != nil {
			// The helper was born in the cgroups (see v1Cgroup.enter): check. Its pid on the
			// host came with the ready message's credentials.
			if s.conn.PeerPID <= 0 {
				return nil, errors.New("bwrap: cgroup v1: the helper's pid is unknown")
			}
			if err := s.v1.holds(s.conn.PeerPID); err != nil {
				return nil, fmt.Errorf("bwrap: cgroup v1: %w", err)
			}
		}
	case <-s.exited:
		return nil, s.startError()
	case <-ctx.Done():
		return nil, fmt.Errorf("bwrap: waiting for the sandbox to start: %w", ctx.Err())
	}
	// Before any command: the placeholders bwrap made are there, and count as existing.
	// A session of one command is never reopened: it keeps no baseline.
	baseline := ""
	if !spec.OneCommand {
		baseline = filepath.Join(b.cfg.StateDir, baselineDir, spec.SessionID+".json")
	}
	// A session of one command searches its mounts whole when the command ends, unless they are
	// large enough that watching them is cheaper (see oneCommandWatchFrom).
	if s.watch, err = newProtectWatch(ctx, &spec, b.reg, baseline, spec.OneCommand && listed < b.watchFrom); err != nil {
		return nil, fmt.Errorf("bwrap: %w", err)
	}
	return s, nil
}

// startError says why bwrap exited before the helper was ready.
func (s *Session) startError() error {
	err := s.waitErr
	if err == nil {
		err = errors.New("exited")
	}
	err = bwrapError(s.b.bwrap, err, s.stderr.String())
	if s.staged > 0 && s.cmd.ProcessState != nil && s.cmd.ProcessState.ExitCode() == inside.GuardFailed {
		err = fmt.Errorf("%w: %w", errGuardStage, err)
	}
	return err
}

// readLoop dispatches the helper's replies until the control socket fails.
func (s *Session) readLoop(ready chan<- inside.Reply) {
	defer s.bg.Done()
	first := true
	for {
		var r inside.Reply
		files, err := s.conn.Recv(&r, inside.ReplyFDs)
		if err != nil {
			if first {
				close(ready)
			}
			s.fail(err)
			return
		}
		if first {
			first = false
			if !r.Ready {
				closeFiles(files...)
				close(ready)
				s.fail(errors.New("the helper did not say it was ready"))
				return
			}
			if s.spec.Network.Enabled() {
				if len(files) != 1 {
					closeFiles(files...)
					close(ready)
					s.fail(fmt.Errorf("the helper handed over %d proxy listeners, want 1", len(files)))
					return
				}
				if err := s.serveProxy(files[0]); err != nil {
					close(ready)
					s.fail(err)
					return
				}
			} else {
				closeFiles(files...)
			}
			ready <- r
			continue
		}
		closeFiles(files...)
		s.mu.Lock()
		ch := s.pending[r.ID]
		delete(s.pending, r.ID)
		s.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

// fail marks the session broken and ends every pending Run.
func (s *Session) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil {
		if s.closed {
			s.broken = errClosed
		} else {
			s.broken = err
		}
	}
	for id, ch := range s.pending {
		close(ch)
		delete(s.pending, id)
	}
}

// brokenError explains why the session cannot run commands, with what bwrap said.
func (s *Session) brokenError() error {
	s.mu.Lock()
	closed, broken := s.closed, s.broken
	s.mu.Unlock()
	if closed {
		return errClosed
	}
	select {
	case <-s.exited:
		msg := strings.TrimSpace(s.stderr.String())
		if msg == "" {
			msg = fmt.Sprint(s.waitErr)
		}
		return fmt.Errorf("bwrap: the sandbox ended (%v): %s", s.waitErr, msg)
	case <-time.After(100 * time.Millisecond):
	}
	if msg := strings.TrimSpace(s.stderr.String()); msg != "" {
		return fmt.Errorf("bwrap: the sandbox's control channel failed (%v): %s", broken, msg)
	}
	return fmt.Errorf("bwrap: the sandbox's control channel failed: %v", broken)
}

// LandlockABI is the Landlock ABI version the kernel offers commands (0: none).
func (s *Session) LandlockABI() int { return s.landlockABI }

// Run runs one command in the sandbox. See sandbox.Session.
func (s *Session) Run(ctx context.Context, c sandbox.Command) (sandbox.Result, error) {
	start := time.Now()
	if len(c.Args) == 0 {
		return sandbox.Result{}, errors.New("bwrap: empty command")
	}
	if c.Timeout < 0 {
		return sandbox.Result{}, fmt.Errorf("bwrap: negative timeout %v", c.Timeout)
	}
	if err := ctx.Err(); err != nil {
		return sandbox.Result{}, err
	}
	dir := c.Dir
	if dir == "" {
		dir = s.workdir
	} else if !path.IsAbs(dir) {
		dir = path.Join(s.workdir, dir)
	}

	// The command's stdio: pipes whose far ends travel to the helper with the request.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return sandbox.Result{}, err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return sandbox.Result{}, err
	}
	stderrR, stderrW := stdoutR, stdoutW
	sameOut := c.Stderr != nil && sameWriter(c.Stdout, c.Stderr)
	if !sameOut {
		if stderrR, stderrW, err = os.Pipe(); err != nil {
			stdinR.Close()
			stdinW.Close()
			stdoutR.Close()
			stdoutW.Close()
			return sandbox.Result{}, err
		}
	}

	ch := make(chan inside.Reply, 1)
	s.mu.Lock()
	if s.closed || s.broken != nil {
		s.mu.Unlock()
		closeFiles(stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW)
		return sandbox.Result{}, s.brokenError()
	}
	s.nextID++
	id := s.nextID
	s.pending[id] = ch
	s.mu.Unlock()
	// The protect watch tells what the command made from what the host made meanwhile.
	s.watch.begin()
	watching := true
	endWatch := func() []string {
		if !watching {
			return nil
		}
		watching = false
		return s.watch.end()
	}
	defer endWatch()

	req := inside.Request{ID: id, FDs: 3, Run: &inside.Run{
		Args: c.Args, Dir: dir, Env: envFor(&s.spec, c.Env), TimeoutNS: int64(c.Timeout),
	}}
	err = s.conn.Send(req, stdinR, stdoutW, stderrW)
	closeFiles(stdinR, stdoutW)
	if !sameOut {
		stderrW.Close()
	}
	if err != nil {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
		closeFiles(stdinW, stdoutR)
		if !sameOut {
			stderrR.Close()
		}
		return sandbox.Result{}, fmt.Errorf("bwrap: send command: %w (%v)", err, s.brokenError())
	}

	// Stream. Stdin is not waited for: a reader that never ends must not hold up Run.
	go func() {
		if c.Stdin != nil {
			_, _ = io.Copy(stdinW, c.Stdin)
		}
		stdinW.Close()
	}()
	var copies sync.WaitGroup
	drain := func(r *os.File, w io.Writer) {
		copies.Add(1)
		go func() {
			defer copies.Done()
			if w == nil {
				w = io.Discard
			}
			_, _ = io.Copy(w, r)
		}()
	}
	drain(stdoutR, c.Stdout)
	if !sameOut {
		drain(stderrR, c.Stderr)
	}
	finish := func() {
		// Every process that held the write ends is dead when the reply comes, so the copies
		// end promptly; the bound covers a stuck writer c.Stdout.
		done := make(chan struct{})
		go func() { copies.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(outputGrace):
		}
		stdoutR.Close()
		stderrR.Close()
		stdinW.Close()
	}

	var r inside.Reply
	var ok bool
	var ctxErr error
	select {
	case r, ok = <-ch:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		_ = s.conn.Send(inside.Request{ID: id, Kill: true})
		select {
		case r, ok = <-ch:
		case <-time.After(killWait):
			// The helper kills a stub that does not end within seconds; not hearing back means
			// the helper itself is stuck. The session is then of no use: end it.
			s.mu.Lock()
			delete(s.pending, id)
			s.mu.Unlock()
			finish()
			go s.Close()
			return sandbox.Result{Duration: time.Since(start)}, fmt.Errorf("bwrap: the sandbox did not confirm killing the command (%w); the session was closed", ctxErr)
		}
	}
	finish()
	if !ok {
		return sandbox.Result{Duration: time.Since(start)}, s.brokenError()
	}
	res := sandbox.Result{ExitCode: r.Exit, Signal: r.Signal, TimedOut: r.TimedOut, Duration: time.Since(start),
		Quarantined: endWatch()}
	if r.Err != "" {
		return res, fmt.Errorf("bwrap: %s", r.Err)
	}
	if ctxErr != nil {
		return res, ctxErr
	}
	return res, nil
}

// Close ends the session: it closes the control socket (the helper exits, and with it bwrap
// and every process in the sandbox), kills bwrap if it has not exited within a second, and
// removes the placeholders and the state folder. The home and /tmp are gone with the sandbox.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.closeErr = s.teardown()
	})
	return s.closeErr
}

// teardown stops bwrap and removes everything the session made on the host.
//
// With no command running (none can start: the session is closed, or never started), all
// that is left in the sandbox is keepup's helper and its idle stubs, which touch nothing of
// the host: the placeholders and the state folder are then removed while bwrap exits, which
// takes milliseconds (every process in the sandbox must be gone). With a command running (its
// reply not in, or its watch not ended), they go once bwrap has exited: the watch first
// searches what the command made before it was killed (the quarantine is in a placeholder).
func (s *Session) teardown() error {
	s.mu.Lock()
	idle := len(s.pending) == 0
	s.mu.Unlock()
	idle = idle && !s.watch.busy()
	if s.conn != nil {
		s.conn.Close()
	}
	s.stopNetwork()
	// The placeholders and the state folder are independent: removed side by side.
	var relErr, stateErr error
	var wg sync.WaitGroup
	cleanUp := func() {
		s.watch.close()
		wg.Go(func() { relErr = s.b.reg.release(s.held) })
		if s.state != nil {
			wg.Go(func() { stateErr = s.state.remove() })
		}
	}
	if idle {
		cleanUp()
	}
	var errs []error
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.exited:
		case <-time.After(closeGrace):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
	}
	if s.cg != nil {
		if err := s.cg.destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.v1 != nil {
		if err := s.v1.destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	if !idle {
		cleanUp()
	}
	wg.Wait()
	errs = append(errs, stateErr, relErr)
	s.b.mu.Lock()
	delete(s.b.sessions, s.spec.SessionID)
	s.b.mu.Unlock()
	return errors.Join(errs...)
}

// sameWriter reports whether a and b are the same writer, as os/exec decides whether stdout
// and stderr share a pipe (and so keep their interleaving).
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false // not comparable
		}
	}()
	return a == b
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// withDefaults fills the zero fields of l.
func withDefaults(l sandbox.Limits) sandbox.Limits {
	if l.Pids <= 0 {
		l.Pids = DefaultPids
	}
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = DefaultMemoryBytes
	}
	if l.OpenFiles <= 0 {
		l.OpenFiles = DefaultOpenFiles
	}
	if l.FileBytes <= 0 {
		l.FileBytes = DefaultFileBytes
	}
	if l.CPUPercent < 0 {
		l.CPUPercent = DefaultCPUPercent
	}
	return l
}

// sealedFile returns a read-only descriptor positioned at the start of a memory file holding b.
func sealedFile(name string, b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
