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
	spec, err := json.Marshal(execSpec{Run: run, Landlock: h.cfg.Landlock, Rlimits: h.cfg.Rlimits})
	if err != nil {
		return Reply{Exit: 126, Err: err.Error()}
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return Reply{Exit: 126, Err: err.Error()}
	}
	defer specW.Close()
	resR, resW, err := os.Pipe()
	if err != nil {
		specR.Close()
		return Reply{Exit: 126, Err: err.Error()}
	}
	defer resR.Close()

	cmd := exec.Command(h.exe, ExecCommand)
	cmd.Env = []string{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.ExtraFiles = []*os.File{specR, resW} // fd 3, fd 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	h.mu.Lock()
	killed := j.killed
	h.mu.Unlock()
	if killed {
		specR.Close()
		resW.Close()
		return Reply{Exit: 128 + int(syscall.SIGKILL), Signal: "SIGKILL", Killed: true}
	}
	err = cmd.Start()
	specR.Close()
	resW.Close()
	if err != nil {
		return Reply{Exit: 126, Err: fmt.Sprintf("start exec stub: %v", err)}
	}
	h.mu.Lock()
	j.proc = cmd.Process
	killed = j.killed
	h.mu.Unlock()
	if killed {
		h.signalStub(j, cmd.Process)
	}
	// The stub reads the whole spec before anything else; if it died, the write fails and
	// Wait says why.
	_, _ = specW.Write(spec)
	specW.Close()
	out, _ := io.ReadAll(io.LimitReader(resR, 1<<20))
	werr := cmd.Wait()
	h.mu.Lock()
	j.done = true
	killed = j.killed
	h.mu.Unlock()

	var res execResult
	if len(out) == 0 || json.Unmarshal(out, &res) != nil {
		if killed {
			// Killed before it had started the command (or hung after).
			return Reply{Exit: 128 + int(syscall.SIGKILL), Signal: "SIGKILL", Killed: true}
		}
		return Reply{Exit: 126, Err: fmt.Sprintf("exec stub ended without a result: %v", werr)}
	}
	return Reply{Exit: res.Exit, Signal: res.Signal, TimedOut: res.TimedOut, Killed: res.Killed, LandlockABI: res.LandlockABI, Err: res.Err}
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
