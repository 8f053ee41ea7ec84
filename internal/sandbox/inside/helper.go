package inside

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
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

	bridge *bridge // nil: no egress proxy

	// The spare exec stub: started ahead of the next command, it initializes and then waits
	// for its request, so a command does not wait for a stub's start. A command takes it and
	// a new one is started in the background; a command that finds none (while the next is
	// being started) starts its own.
	spareMu   sync.Mutex
	spare     *stubProc
	spareOK   bool // spares may be started (not closing)
	refilling bool
}

// stubProc is a started exec stub and the socket its request goes on.
type stubProc struct {
	cmd  *exec.Cmd
	conn *Conn
}

type job struct {
	killed bool
	proc   *os.Process // nil until the stub started
	done   bool
}

func helperMain(args []string) error {
	// Whatever bwrap passed on besides the control socket must not reach the commands.
	cloexecFrom(ControlFD + 1)
	// Commands run as the same uid; without this they could ptrace the helper or read its
	// memory through /proc.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
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
	// The spare, and with it every stub, goes when the helper does.
	defer h.stopSpares()
	h.allowSpares()
	// The proxy address is listened on before the first command can take it.
	if cfg.Proxy != "" {
		br, err := newBridge(conn, cfg.Proxy)
		if err != nil {
			return err
		}
		defer br.close()
		h.bridge = br
		go br.serve()
	}
	// With credentials: they tell the backend the helper's pid on the host.
	if err := conn.SendCred(Reply{Ready: true, LandlockABI: landlockABI()}); err != nil {
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
		case req.Conn:
			if h.bridge == nil {
				closeAll(files)
				continue
			}
			h.bridge.deliver(req.ID, files, req.Err)
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
	p := j.proc
	h.mu.Unlock()
	if p != nil {
		h.signalStub(j, p)
	}
}

// signalStub asks the stub to kill its command's process tree (SIGTERM, which the stub
// handles), and kills the stub itself if it has not finished after stubGrace. os.Process
// signals through a pidfd, so a reused pid is never hit.
func (h *helper) signalStub(j *job, p *os.Process) {
	_ = p.Signal(syscall.SIGTERM)
	time.AfterFunc(stubGrace, func() {
		h.mu.Lock()
		done := j.done
		h.mu.Unlock()
		if !done {
			_ = p.Kill()
		}
	})
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
	if err := st.conn.Send(spec, stdio...); err != nil {
		// A spare that died before it got its request: nothing of the command ran. Once more
		// with a stub of its own.
		st.stop()
		if st, err = h.startStub(); err != nil {
			return Reply{Exit: 126, Err: fmt.Sprintf("start exec stub: %v", err)}
		}
		if err := st.conn.Send(spec, stdio...); err != nil {
			st.stop()
			return Reply{Exit: 126, Err: fmt.Sprintf("exec stub: send request: %v", err)}
		}
	}
	closeAll(stdio) // the stub has its copies; the command's readers must see its end
	defer st.conn.Close()
	h.mu.Lock()
	j.proc = st.cmd.Process
	killed = j.killed
	h.mu.Unlock()
	if killed {
		h.signalStub(j, st.cmd.Process)
	}
	var res execResult
	_, rerr := st.conn.Recv(&res, nil)
	werr := st.cmd.Wait()
	h.mu.Lock()
	j.done = true
	killed = j.killed
	h.mu.Unlock()

	if rerr != nil {
		if killed {
			// Killed before it had started the command (or hung after).
			return Reply{Exit: 128 + int(syscall.SIGKILL), Signal: "SIGKILL", Killed: true}
		}
		return Reply{Exit: 126, Err: fmt.Sprintf("exec stub ended without a result: %v", werr)}
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
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, err
	}
	return &stubProc{cmd: cmd, conn: conn}, nil
}

// stop kills a stub that has not been given a command, and reaps it.
func (st *stubProc) stop() {
	_ = st.cmd.Process.Kill()
	_ = st.cmd.Wait()
	st.conn.Close()
}

// takeStub returns the spare stub, or a new one when there is none, and has the next spare
// started.
func (h *helper) takeStub() (*stubProc, error) {
	h.spareMu.Lock()
	st := h.spare
	h.spare = nil
	h.refillLocked()
	h.spareMu.Unlock()
	if st != nil {
		return st, nil
	}
	return h.startStub()
}

// refillLocked starts a spare in the background if there is none and none is being started.
func (h *helper) refillLocked() {
	if !h.spareOK || h.spare != nil || h.refilling {
		return
	}
	h.refilling = true
	go func() {
		st, err := h.startStub()
		h.spareMu.Lock()
		h.refilling = false
		if err == nil && h.spareOK && h.spare == nil {
			h.spare, st = st, nil
		}
		h.spareMu.Unlock()
		if st != nil {
			st.stop()
		}
	}()
}

// allowSpares starts keeping a spare stub.
func (h *helper) allowSpares() {
	h.spareMu.Lock()
	h.spareOK = true
	h.refillLocked()
	h.spareMu.Unlock()
}

// stopSpares kills the spare and starts no more.
func (h *helper) stopSpares() {
	h.spareMu.Lock()
	st := h.spare
	h.spare = nil
	h.spareOK = false
	h.spareMu.Unlock()
	if st != nil {
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
