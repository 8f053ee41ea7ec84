package inside

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Exit codes a shell would use when it cannot run a command.
const (
	exitCannotRun = 126
	exitNotFound  = 127
)

// ExecMain is `keepup __sandbox-exec`: runs commands as the helper asks, one at a time. The
// helper starts it before it has a command for it (so the stub's start and runtime
// initialization are off the command's path): the stub readies itself, then waits for a
// request on the stream socket it inherits as fd 3 (the command, and its stdin, stdout and
// stderr as SCM_RIGHTS descriptors), and reports how the command ended on the same socket once
// nothing the command started is left. The report says whether the stub takes another
// request; it exits when it does not, or when the socket closes.
func ExecMain(args []string) int {
	f := os.NewFile(3, "request")
	if f == nil {
		fmt.Fprintln(os.Stderr, "keepup exec stub: started without its request socket")
		return exitCannotRun
	}
	// NewConn keeps a close-on-exec duplicate: the command must not inherit the socket.
	conn, err := NewConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "keepup exec stub: %v\n", err)
		return exitCannotRun
	}
	defer conn.Close()
	return serveStub(conn)
}

// maxStubCommands bounds the commands one stub runs before it makes way for a fresh one.
const maxStubCommands = 1000

// stubReserve is the number of idle threads a stub keeps for waiting, timing out and
// reporting (see reserveThreads).
const stubReserve = 8

// stub is an exec stub's state across the commands it runs.
type stub struct {
	conn  *Conn
	reqs  chan stubRequest // closed when the socket fails or closes
	gone  chan struct{}    // closed with reqs: the helper is gone
	kills chan struct{}    // a kill request may have arrived (see killSeq)
	// killSeq is the highest Seq a kill request named: the command with that Seq, if it is
	// running or yet to run, is to be killed.
	killSeq atomic.Uint64
	term    chan os.Signal // SIGTERM
	null    *os.File       // /dev/null, for the stdio between commands
	rs      *ruleset       // built for rsFor
	rsFor   Landlock
}

type stubRequest struct {
	spec  execSpec
	stdio []*os.File
}

func serveStub(conn *Conn) int {
	st := &stub{conn: conn, reqs: make(chan stubRequest), gone: make(chan struct{}), kills: make(chan struct{}, 1),
		term: make(chan os.Signal, 1)}
	// The session's process limit counts threads, and a command may use all of it (a fork
	// bomb): start the threads this stub will need to wait, time out and report now, while
	// they can still be had, so that it never dies for want of one.
	reserveThreads(stubReserve)
	// A SIGTERM (which only a command can send it) kills the running command, as a kill
	// request does; it never ends the stub and leaves the command's processes to no reaper.
	signal.Notify(st.term, syscall.SIGTERM)
	setupErr := stubSetup()
	if setupErr == nil {
		var err error
		if st.null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
			setupErr = err
		}
	}
	go st.read()
	for n := 1; ; n++ {
		req, ok := <-st.reqs
		if !ok {
			return 0
		}
		var res execResult
		if setupErr != nil {
			closeAll(req.stdio)
			res = execResult{Exit: exitCannotRun, Err: setupErr.Error()}
		} else {
			res = st.run(req)
			// The command's stdio is let go before the report: its readers see end of file
			// once the command's processes are gone, not when the stub goes.
			st.detachStdio()
			res.Again = res.Err == "" && !hasChildren() && n < maxStubCommands
		}
		if st.rs != nil && !res.Again {
			st.rs.close()
		}
		if err := st.conn.Send(res); err != nil || !res.Again {
			return res.Exit
		}
		// The locked thread the command was started from is gone with it: top the reserve up
		// again, before the next command.
		reserveThreads(stubReserve)
	}
}

// stubSetup is what a stub does once, before its first command.
func stubSetup() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %v", err)
	}
	// Orphans of the command (daemons, setsid, nohup) are reparented to us, so we can kill them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %v", err)
	}
	return nil
}

// read receives the helper's requests until the socket fails: commands go to reqs, kill
// requests set killSeq.
func (st *stub) read() {
	defer close(st.gone)
	defer close(st.reqs)
	for {
		var spec execSpec
		stdio, err := st.conn.Recv(&spec, func(v any) int { return v.(*execSpec).FDs })
		if err != nil {
			return
		}
		if spec.Kill {
			closeAll(stdio)
			for {
				cur := st.killSeq.Load()
				if spec.Seq <= cur || st.killSeq.CompareAndSwap(cur, spec.Seq) {
					break
				}
			}
			select {
			case st.kills <- struct{}{}:
			default:
			}
			continue
		}
		st.reqs <- stubRequest{spec, stdio}
	}
}

// killed reports whether a kill request names seq.
func (st *stub) killed(seq uint64) bool { return st.killSeq.Load() >= seq }

// run runs one command and waits until nothing it started is left.
func (st *stub) run(req stubRequest) execResult {
	spec, stdio := req.spec, req.stdio
	// A SIGTERM from an earlier command is not this one's.
	select {
	case <-st.term:
	default:
	}
	if len(stdio) != 3 {
		closeAll(stdio)
		return execResult{Exit: exitCannotRun, Err: fmt.Sprintf("read request: %d descriptors, want 3", len(stdio))}
	}
	// The command's stdio becomes ours (until detachStdio), without close-on-exec.
	for i, f := range stdio {
		if err := unix.Dup3(int(f.Fd()), i, 0); err != nil {
			closeAll(stdio)
			return execResult{Exit: exitCannotRun, Err: fmt.Sprintf("install stdio: %v", err)}
		}
	}
	closeAll(stdio)
	if len(spec.Args) == 0 {
		return execResult{Exit: exitCannotRun, Err: "empty command"}
	}
	if err := setRlimits(spec.Rlimits); err != nil {
		return execResult{Exit: exitCannotRun, Err: err.Error()}
	}
	rs, err := st.ruleset(spec.Landlock)
	if err != nil {
		// Fail closed: a ruleset that was asked for and cannot be built means no command.
		return execResult{Exit: exitCannotRun, Err: err.Error()}
	}

	if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		fmt.Fprintf(os.Stderr, "%s: cannot change to directory %s: %v\n", spec.Args[0], spec.Dir, errors.Unwrap(err))
		return execResult{Exit: exitCannotRun, LandlockABI: rs.abi}
	}
	path, err := lookPath(spec.Args[0], envValue(spec.Env, "PATH"), spec.Dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", spec.Args[0], err)
		code := exitCannotRun
		if errors.Is(err, errNotFound) {
			code = exitNotFound
		}
		return execResult{Exit: code, LandlockABI: rs.abi}
	}
	if st.killed(spec.Seq) {
		return execResult{Exit: 128 + int(syscall.SIGKILL), Signal: "SIGKILL", Killed: true, LandlockABI: rs.abi}
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   spec.Args,
		Env:    spec.Env,
		Dir:    spec.Dir,
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		// Its own process group, so one kill reaches the command and its jobs; SIGKILL if we die.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}

	type exited struct {
		state *os.ProcessState
		err   error
	}
	started := make(chan error, 1)
	done := make(chan exited, 1)
	go func() {
		// Landlock binds the calling thread only: restrict this locked thread and fork the
		// command from it, so the command is confined while the stub's other threads are not
		// (under Landlock's signal scoping the command cannot signal or trace them; this thread,
		// in its domain, it can, and a SIGSTOP stops the whole stub: see helper.healthy). The
		// thread is never unlocked: it exits with this goroutine instead of being reused. It
		// also stays alive as long as the command, which Pdeathsig requires.
		runtime.LockOSThread()
		if err := rs.restrictThread(); err != nil {
			started <- err
			return
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		ps, err := cmd.Process.Wait()
		done <- exited{ps, err}
	}()
	if err := <-started; err != nil {
		if errors.Is(err, errLandlock) {
			return execResult{Exit: exitCannotRun, Err: err.Error()}
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", spec.Args[0], startError(err))
		return execResult{Exit: exitCannotRun, LandlockABI: rs.abi}
	}
	// Let go of the command's stdio, so its readers see end of file when the command's last
	// process is gone rather than when we report.
	st.detachStdio()

	pgid := cmd.Process.Pid
	var timeout <-chan time.Time
	if spec.TimeoutNS > 0 {
		t := time.NewTimer(time.Duration(spec.TimeoutNS))
		defer t.Stop()
		timeout = t.C
	}
	res := execResult{LandlockABI: rs.abi}
	kill := func() {
		if !res.Killed {
			res.Killed = true
			killTree(pgid)
		}
	}
	if st.killed(spec.Seq) {
		kill()
	}
	gone := st.gone
	var ex exited
wait:
	for {
		select {
		case ex = <-done:
			break wait
		case <-timeout:
			res.TimedOut = true
			killTree(pgid)
		case <-st.kills:
			if st.killed(spec.Seq) {
				kill()
			}
		case <-st.term:
			kill()
		case <-gone:
			// The helper is gone (the session is ending): so is the command.
			kill()
			gone = nil
		}
	}
	// Whatever the command left behind dies with it. With no child at all (the usual case)
	// nothing is left: every orphan of the command is reparented to us before its parent's
	// exit can be reaped, so the scans of /proc are skipped.
	if hasChildren() {
		killTree(pgid)
		reapAll()
	} else {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if ex.err != nil {
		res.Exit = exitCannotRun
		res.Err = fmt.Sprintf("wait: %v", ex.err)
		return res
	}
	ws := ex.state.Sys().(syscall.WaitStatus)
	switch {
	case ws.Exited():
		res.Exit = ws.ExitStatus()
	case ws.Signaled():
		res.Exit = 128 + int(ws.Signal())
		res.Signal = unix.SignalName(ws.Signal())
	default:
		res.Exit = exitCannotRun
	}
	return res
}

// ruleset returns the Landlock ruleset for l, built once for the stub's commands.
func (st *stub) ruleset(l Landlock) (*ruleset, error) {
	if st.rs != nil && slices.Equal(st.rsFor.RO, l.RO) && slices.Equal(st.rsFor.RW, l.RW) && slices.Equal(st.rsFor.Dev, l.Dev) {
		return st.rs, nil
	}
	rs, err := newRuleset(l)
	if err != nil {
		return nil, err
	}
	if st.rs != nil {
		st.rs.close()
	}
	st.rs, st.rsFor = rs, l
	return rs, nil
}

// detachStdio points the stub's stdin, stdout and stderr at /dev/null.
func (st *stub) detachStdio() {
	for fd := range 3 {
		_ = unix.Dup3(int(st.null.Fd()), fd, 0)
	}
}

func startError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Op == "chdir" {
		return fmt.Errorf("cannot change to directory %s: %v", pe.Path, pe.Err)
	}
	return err
}

// killTree kills the command's process group and then every live process reparented to us,
// until none is left. Each round kills the children we have; their own children are
// reparented to us when they die and are found by a later round. It does not reap: the
// command itself is reaped by its Wait, the rest by reapAll.
func killTree(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	for range 5000 {
		kids := children()
		if len(kids) == 0 {
			return
		}
		for _, pid := range kids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(time.Millisecond)
	}
}

// hasChildren reports whether this process has any child, live or zombie (without reaping).
func hasChildren() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return !errors.Is(err, unix.ECHILD)
}

// reapAll kills and reaps children until there are none (ECHILD).
func reapAll() {
	for range 10000 {
		for _, pid := range children() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		var ws unix.WaitStatus
		_, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.ECHILD) {
			return
		}
	}
}

// children lists the live (not zombie) processes whose parent is this process, from /proc
// (the sandbox's own pid namespace, so a short list).
func children() []int {
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == self {
			kids = append(kids, pid)
		}
	}
	return kids
}

func setRlimits(r Rlimits) error {
	set := func(name string, res int, v uint64) error {
		if v == 0 {
			return nil
		}
		var cur syscall.Rlimit
		if err := syscall.Getrlimit(res, &cur); err != nil {
			return fmt.Errorf("getrlimit(%s): %w", name, err)
		}
		if v > cur.Max {
			v = cur.Max
		}
		// The hard limit too, so the command cannot raise it again.
		// syscall.Setrlimit (not unix) so os/exec passes RLIMIT_NOFILE on unchanged.
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("setrlimit(%s, %d): %w", name, v, err)
		}
		return nil
	}
	if err := syscall.Setrlimit(unix.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		return fmt.Errorf("setrlimit(RLIMIT_CORE): %w", err)
	}
	if err := set("RLIMIT_NOFILE", unix.RLIMIT_NOFILE, r.NoFile); err != nil {
		return err
	}
	if err := set("RLIMIT_FSIZE", unix.RLIMIT_FSIZE, r.FSize); err != nil {
		return err
	}
	if err := set("RLIMIT_NPROC", unix.RLIMIT_NPROC, r.NProc); err != nil {
		return err
	}
	return set("RLIMIT_AS", unix.RLIMIT_AS, r.AS)
}

var errLandlock = errors.New("landlock")

// ruleset is a built Landlock ruleset, enforced per thread by restrictThread.
type ruleset struct {
	fd    int // -1: nothing to enforce (no Landlock in this kernel)
	flags uint32
	abi   int // the ABI version enforced, 0 for none
}

// landlockABI is the Landlock ABI version of the running kernel, capped at what go-landlock
// knows; 0 when there is none.
func landlockABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil || v < 0 {
		return 0
	}
	return min(v, maxLandlockABI)
}

// maxLandlockABI is the highest Landlock ABI the vendored go-landlock speaks.
const maxLandlockABI = 11

func newRuleset(l Landlock) (*ruleset, error) {
	abi := landlockABI()
	if abi == 0 {
		return &ruleset{fd: -1}, nil
	}
	cfg := landlock.Config{
		HandledAccessFS: landlock.V11.HandledAccessFS,
		Scoped:          landlock.V11.Scoped,
	}.BestEffort()
	rw := landlock.RWDirs(l.RW...).IgnoreIfMissing()
	if abi >= 2 {
		// Renames and links between directories (git, mv) need "refer"; asking for it on a
		// kernel without it would make best effort drop Landlock altogether.
		rw = rw.WithRefer()
	}
	rules := []landlock.Rule{
		landlock.RODirs(l.RO...).IgnoreIfMissing(),
		rw,
		landlock.RWDirs(l.Dev...).WithIoctlDev().IgnoreIfMissing(),
	}
	fd, flags, err := cfg.NewRulesetFD(rules...)
	if err != nil {
		return nil, fmt.Errorf("%w: build ruleset: %v", errLandlock, err)
	}
	if fd < 0 {
		return &ruleset{fd: -1}, nil
	}
	return &ruleset{fd: fd, flags: flags, abi: abi}, nil
}

// restrictThread enforces the ruleset on the calling (locked) thread only.
func (r *ruleset) restrictThread() error {
	if r.fd < 0 {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("%w: prctl(PR_SET_NO_NEW_PRIVS): %v", errLandlock, err)
	}
	if err := ll.LandlockRestrictSelf(r.fd, r.flags); err != nil {
		return fmt.Errorf("%w: landlock_restrict_self: %v", errLandlock, err)
	}
	return nil
}

func (r *ruleset) close() {
	if r.fd >= 0 {
		unix.Close(r.fd)
	}
}

var errNotFound = errors.New("command not found")

// lookPath finds file in the command's PATH (not the stub's), as a shell would; relative
// names are relative to the command's working directory, dir.
func lookPath(file, path, dir string) (string, error) {
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if strings.Contains(file, "/") {
		p := abs(file)
		if err := executable(p); err != nil {
			return "", err
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := abs(filepath.Join(d, file))
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", errNotFound
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errNotFound
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return errors.New("permission denied")
	}
	return nil
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// reserveThreads makes the Go runtime start n OS threads and keep them idle: each of n
// goroutines holds its own thread until all of them have one, then lets it go back to the
// runtime's pool of idle threads, which it reuses instead of creating new ones.
func reserveThreads(n int) {
	var started, done sync.WaitGroup
	release := make(chan struct{})
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			started.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	started.Wait()
	close(release)
	done.Wait()
}
