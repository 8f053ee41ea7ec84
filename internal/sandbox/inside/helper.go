package inside

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stubGrace is how long a stub may take to clean up after a kill request before the helper
// kills it outright.
const stubGrace = 5 * time.Second

// HelperMain is `keepup __sandbox-helper CONFIG`: the session's long-lived process inside the
// sandbox. It serves requests from the control socket (fd 3) until the socket closes, then
// returns the process exit code.
func HelperMain(args []string) int {
	if err := helperMain(args); err != nil {
		fmt.Fprintf(os.Stderr, "keepup sandbox helper: %v\n", err)
		return 1
	}
	return 0
}

type helper struct {
	conn *Conn
	cfg  HelperConfig
	exe  string

	mu   sync.Mutex
	jobs map[uint64]*job

	stubs stubSet // the live stubs; every other child is an orphan, to kill

	// Idle exec stubs, ready for a command: one is started ahead of the first command (its
	// start and runtime initialization are then off the command's path), and a stub whose
	// command ended cleanly comes back for the next one. A command takes the most recently
	// used; when that left none and the command is still running after spareDelay, another
	// is started in the background for the commands that may come meanwhile; a command that
	// finds none waits for the one being started, if any, else starts its own.
	spareMu   sync.Mutex
	idle      []*stubProc
	spareOK   bool          // stubs may be kept (not closing)
	refilling chan struct{} // while a stub is being started for idle: closed when it is there
}

// maxIdleStubs bounds the idle stubs kept for the next commands.
const maxIdleStubs = 2

// spareDelay is how long a command runs before a spare stub is started beside it. Most
// commands end sooner, and give their stub back: a spare started at once would only compete
// with them for the CPU.
const spareDelay = 50 * time.Millisecond

// stubProc is a started exec stub and the socket its requests go on.
type stubProc struct {
	cmd  *exec.Cmd
	conn *Conn
	seq  uint64   // of its last command
	set  *stubSet // it was started in
}

type job struct {
	killed bool
	stub   *stubProc // nil until the command was handed to a stub
	seq    uint64    // the command's number at stub
	done   bool
	// forced: the stub was killed outright (it was stopped, or did not finish after a kill
	// request or past the command's timeout); timedOut: for the timeout.
	forced   bool
	timedOut bool
}

func helperMain(args []string) error {
	// Whatever bwrap passed on besides the control socket must not reach the commands.
	cloexecFrom(ControlFD + 1)
	// Commands run as the same uid; without this they could ptrace the helper or read its
	// memory through /proc.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
	}
	// A command can kill its stub (see doc.go): what it started then comes to us, not to the
	// sandbox's init, and we kill it (stubSet.sweep).
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	if len(args) != 1 {
		return errors.New("want one argument: the session configuration")
	}
	var cfg HelperConfig
	if err := json.Unmarshal([]byte(args[0]), &cfg); err != nil {
		return fmt.Errorf("session configuration: %w", err)
	}
	f := os.NewFile(ControlFD, "control")
	conn, err := NewConn(f)
	f.Close()
	if err != nil {
		return err
	}
	defer conn.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	h := &helper{conn: conn, cfg: cfg, exe: exe, jobs: map[uint64]*job{}}
	go h.stubs.watch()
	// The spare, and with it every stub, goes when the helper does. Killed, not waited for:
	// bwrap's init exits when the helper does, and the kernel then kills and reaps whatever is
	// left in the sandbox's pid namespace before the init's exit completes; waiting here for
	// the stubs to die (a millisecond or so each) would only delay the session's end.
	defer h.stopSpares(false)
	h.allowSpares()
	ready := Reply{Ready: true, LandlockABI: landlockABI()}
	// The proxy address is listened on before the first command can take it, and the
	// listening socket goes to the backend, which accepts on it (see HelperConfig.Proxy).
	var proxyLn []*os.File
	if cfg.Proxy != "" {
		f, err := proxyListener(cfg.Proxy)
		if err != nil {
			return err
		}
		proxyLn = []*os.File{f}
		ready.FDs = 1
	}
	// With credentials: they tell the backend the helper's pid on the host.
	err = conn.SendCred(ready, proxyLn...)
	closeAll(proxyLn)
	if err != nil {
		return err
	}
	for {
		var req Request
		files, err := conn.Recv(&req, RequestFDs)
		if err != nil {
			// The session closed the socket or keepup died. Returning ends the helper, and with
			// it (bwrap's init exits when its child does) every process in the sandbox.
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch {
		case req.Run != nil:
			h.mu.Lock()
			_, dup := h.jobs[req.ID]
			j := &job{}
			if !dup {
				h.jobs[req.ID] = j
			}
			h.mu.Unlock()
			if dup {
				closeAll(files)
				h.reply(Reply{ID: req.ID, Exit: 126, Err: fmt.Sprintf("request id %d is already running", req.ID)})
				continue
			}
			go h.run(req.ID, j, *req.Run, files)
		case req.Kill:
			closeAll(files)
			h.kill(req.ID)
		default:
			closeAll(files)
		}
	}
}

func (h *helper) reply(r Reply) {
	// A failed send means the socket is gone; the receive loop sees that too and exits.
	_ = h.conn.Send(r)
}

func (h *helper) kill(id uint64) {
	h.mu.Lock()
	j := h.jobs[id]
	if j == nil {
		h.mu.Unlock()
		return
	}
	j.killed = true
	st := j.stub
	h.mu.Unlock()
	if st != nil {
		h.killStub(j)
	}
}

// killStub asks j's stub to kill its command's process tree, and kills the stub itself (and
// the tree) if the command has not ended after stubGrace, or at once if the stub is stopped
// and so cannot. Once j is done the stub may be running another command: it is then never
// killed, and the request names j's command, so the stub ignores it.
func (h *helper) killStub(j *job) {
	h.mu.Lock()
	st, seq := j.stub, j.seq
	h.mu.Unlock()
	if !st.healthy() {
		h.force(j, false)
		return
	}
	_ = st.conn.Send(execSpec{Seq: seq, Kill: true})
	time.AfterFunc(stubGrace, func() { h.force(j, false) })
}

// overdue runs when j's command reaches its timeout. The stub enforces the timeout itself, but
// a stopped stub cannot (a command running as the same user can SIGSTOP it), and the command
// must end all the same: a stopped stub is killed at once, one that has not reported within
// stubGrace is taken for stuck and killed then.
func (h *helper) overdue(j *job) {
	h.mu.Lock()
	st, done := j.stub, j.done
	h.mu.Unlock()
	if done {
		return
	}
	if !st.healthy() {
		h.force(j, true)
		return
	}
	time.AfterFunc(stubGrace, func() { h.force(j, true) })
}

// force kills j's stub outright, unless j is done, and with it everything its command left:
// the stub's descendants are killed first, while the stub (the command's subreaper, even when
// stopped) still holds them; what escapes that (it forked meanwhile) is reparented to the
// helper when the stub dies, and swept before the reply (see runStub).
func (h *helper) force(j *job, timedOut bool) {
	h.mu.Lock()
	if j.done || j.forced {
		h.mu.Unlock()
		return
	}
	j.forced = true
	j.timedOut = timedOut
	st := j.stub
	h.mu.Unlock()
	killDescendants(st.cmd.Process.Pid)
	_ = st.cmd.Process.Kill()
}

func (h *helper) run(id uint64, j *job, run Run, stdio []*os.File) {
	r := h.runStub(j, run, stdio)
	r.ID = id
	h.mu.Lock()
	delete(h.jobs, id)
	h.mu.Unlock()
	h.reply(r)
}

func (h *helper) runStub(j *job, run Run, stdio []*os.File) Reply {
	defer closeAll(stdio)
	if len(stdio) != 3 {
		return Reply{Exit: 126, Err: fmt.Sprintf("run request carries %d descriptors, want 3", len(stdio))}
	}
	spec := execSpec{Run: run, Landlock: h.cfg.Landlock, Rlimits: h.cfg.Rlimits, FDs: 3}
	h.mu.Lock()
	killed := j.killed
	h.mu.Unlock()
	if killed {
		return Reply{Exit: 128 + int(syscall.SIGKILL), Signal: "SIGKILL", Killed: true}
	}
	st, err := h.takeStub()
	if err != nil {
		return Reply{Exit: 126, Err: fmt.Sprintf("start exec stub: %v", err)}
	}
	spec.Seq = st.seq + 1
	if err := st.conn.Send(spec, stdio...); err != nil {
		// A stub that died before it got its request: nothing of the command ran. Once more
		// with a stub of its own.
		st.stop()
		if st, err = h.startStub(); err != nil {
			return Reply{Exit: 126, Err: fmt.Sprintf("start exec stub: %v", err)}
		}
		spec.Seq = 1
		if err := st.conn.Send(spec, stdio...); err != nil {
			st.stop()
			return Reply{Exit: 126, Err: fmt.Sprintf("exec stub: send request: %v", err)}
		}
	}
	st.seq = spec.Seq
	closeAll(stdio) // the stub has its copies; the command's readers must see its end
	h.mu.Lock()
	j.stub, j.seq = st, spec.Seq
	killed = j.killed
	h.mu.Unlock()
	if killed {
		h.killStub(j)
	}
	spare := time.AfterFunc(spareDelay, h.refill)
	if run.TimeoutNS > 0 {
		expire := time.AfterFunc(time.Duration(run.TimeoutNS), func() { h.overdue(j) })
		defer expire.Stop()
	}
	var res execResult
	_, rerr := st.conn.Recv(&res, nil)
	spare.Stop()
	h.mu.Lock()
	j.done = true
	killed, forced, timedOut := j.killed, j.forced, j.timedOut
	h.mu.Unlock()

	if rerr != nil {
		st.conn.Close() // a stub still waiting for requests sees the end and exits
		werr := h.stubs.wait(st.cmd)
		// The stub died (a command can kill it) or hung without reaping what its command
		// started: that is reparented to us now, and dies before the reply.
		h.stubs.sweep()
		if forced && timedOut {
			return Reply{Exit: 128 + int(syscall.SIGKILL), Signal: "SIGKILL", TimedOut: true}
		}
		if killed {
			// Killed before it had started the command (or hung after).
			return Reply{Exit: 128 + int(syscall.SIGKILL), Signal: "SIGKILL", Killed: true}
		}
		return Reply{Exit: 126, Err: fmt.Sprintf("exec stub ended without a result: %v", werr)}
	}
	// The stub has reaped everything the command started: the reply need not wait for the
	// stub itself to exit.
	if res.Again && !forced {
		h.putStub(st)
	} else {
		go st.finish()
	}
	return Reply{Exit: res.Exit, Signal: res.Signal, TimedOut: res.TimedOut, Killed: res.Killed, LandlockABI: res.LandlockABI, Err: res.Err}
}

// startStub starts an exec stub, which readies itself and waits for its request.
func (h *helper) startStub() (*stubProc, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ours := os.NewFile(uintptr(pair[0]), "stub")
	theirs := os.NewFile(uintptr(pair[1]), "stub-request")
	defer theirs.Close()
	conn, err := NewConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(h.exe, ExecCommand)
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := h.stubs.start(cmd); err != nil {
		conn.Close()
		return nil, err
	}
	return &stubProc{cmd: cmd, conn: conn, set: &h.stubs}, nil
}

// healthy reports whether the stub is alive and not stopped: a command running as the same
// user can SIGSTOP it (without Landlock's signal scoping, or through the thread it started the
// command from, which shares the command's Landlock domain), and a stopped stub would hold a
// command handed to it until the command's timeout.
func (st *stubProc) healthy() bool {
	state, ok := procState(st.cmd.Process.Pid)
	return ok && !strings.ContainsRune("TtZX", rune(state))
}

// procState is the state of process pid (R, S, D, T, t, Z...) from /proc/PID/stat.
func procState(pid int) (byte, bool) {
	state, _, ok := procStat(pid)
	return state, ok
}

// killDescendants kills every process descended from pid, round after round until none is
// left alive: a process that forks between the rounds is found by the next, and one whose
// parent dies stays a descendant, reparented to pid (a stub is a subreaper).
func killDescendants(pid int) {
	for range 5000 {
		kids := descendants(pid)
		if len(kids) == 0 {
			return
		}
		for _, k := range kids {
			_ = syscall.Kill(k, syscall.SIGKILL)
		}
		time.Sleep(time.Millisecond)
	}
}

// descendants lists the live (not zombie) processes descended from pid.
func descendants(pid int) []int {
	var out []int
	for _, p := range descendantsIn(scanProcs(), pid) {
		if p.live() {
			out = append(out, p.pid)
		}
	}
	return out
}

// stop kills a stub that is not running a command, and reaps it.
func (st *stubProc) stop() {
	_ = st.cmd.Process.Kill()
	_ = st.set.wait(st.cmd)
	st.conn.Close()
}

// finish lets a stub that is not running a command exit (its socket closes), and reaps it.
func (st *stubProc) finish() {
	st.conn.Close()
	_ = st.set.wait(st.cmd)
}

// takeStub returns an idle stub, or the one being started for idle, or a new one. An idle
// stub that is stopped or dead is retired, never handed a command.
func (h *helper) takeStub() (*stubProc, error) {
	for {
		h.spareMu.Lock()
		if n := len(h.idle); n > 0 {
			st := h.idle[n-1]
			h.idle = h.idle[:n-1]
			h.spareMu.Unlock()
			if !st.healthy() {
				go st.stop()
				continue
			}
			return st, nil
		}
		refilling := h.refilling
		h.spareMu.Unlock()
		if refilling == nil {
			return h.startStub()
		}
		// Further along than a stub started now (a session's first command comes while the
		// first stub starts); another command may take it first, and then this one looks again.
		<-refilling
	}
}

// putStub keeps a stub whose command ended for the next command, unless enough are idle.
func (h *helper) putStub(st *stubProc) {
	h.spareMu.Lock()
	keep := h.spareOK && len(h.idle) < maxIdleStubs
	if keep {
		h.idle = append(h.idle, st)
	}
	h.spareMu.Unlock()
	if !keep {
		go st.finish()
	}
}

// refill starts a stub in the background if none is idle and none is being started.
func (h *helper) refill() {
	h.spareMu.Lock()
	h.refillLocked()
	h.spareMu.Unlock()
}

func (h *helper) refillLocked() {
	if !h.spareOK || len(h.idle) > 0 || h.refilling != nil {
		return
	}
	done := make(chan struct{})
	h.refilling = done
	go func() {
		st, err := h.startStub()
		h.spareMu.Lock()
		h.refilling = nil
		close(done)
		if err == nil && h.spareOK && len(h.idle) < maxIdleStubs {
			h.idle, st = append(h.idle, st), nil
		}
		h.spareMu.Unlock()
		if st != nil {
			st.stop()
		}
	}()
}

// allowSpares starts keeping an idle stub.
func (h *helper) allowSpares() {
	h.spareMu.Lock()
	h.spareOK = true
	h.refillLocked()
	h.spareMu.Unlock()
}

// stopSpares kills the idle stubs and keeps no more; with wait, it also reaps them.
func (h *helper) stopSpares(wait bool) {
	h.spareMu.Lock()
	idle := h.idle
	h.idle = nil
	h.spareOK = false
	h.spareMu.Unlock()
	// All at once: each takes a while to die.
	for _, st := range idle {
		_ = st.cmd.Process.Kill()
	}
	if !wait {
		return
	}
	for _, st := range idle {
		st.stop()
	}
}

// cloexecFrom marks every descriptor from fd up close-on-exec.
func cloexecFrom(fd int) {
	if unix.CloseRange(uint(fd), ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= fd {
			unix.CloseOnExec(n)
		}
	}
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
