package inside

import (
	"bytes"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stubSet is the helper's live exec stubs, and the subreaper's work for the rest of its
// children. The helper is the sandbox's child subreaper: a stub's command runs under the stub,
// which kills what the command leaves, but a command can kill its stub (see doc.go), and then
// what it started (a setsid process, a double-forked daemon) is reparented to the helper. Every
// child of the helper that is not a stub is such an orphan, and is killed, with its
// descendants, and reaped by sweep.
//
// Stubs are waited for by os/exec (through a pidfd, or wait4 on their pid): sweep never waits
// for a stub, nor for any pid but those of children it knows are not stubs. A stub is
// registered in the same critical section that starts it, and sweep holds it while it looks:
// a stub just started is never taken for an orphan.
type stubSet struct {
	mu   sync.Mutex
	pids map[int]bool // started and not yet waited for
}

// start starts cmd as a stub.
func (s *stubSet) start(cmd *exec.Cmd) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	if s.pids == nil {
		s.pids = map[int]bool{}
	}
	s.pids[cmd.Process.Pid] = true
	return nil
}

// wait waits for a stub started by start to exit. Its pid is no longer a stub's once it is
// reaped (and could be a new process's).
func (s *stubSet) wait(cmd *exec.Cmd) error {
	err := cmd.Wait()
	s.mu.Lock()
	delete(s.pids, cmd.Process.Pid)
	s.mu.Unlock()
	return err
}

// watch sweeps whenever a child of the helper exits or stops (SIGCHLD): an orphan that exits
// on its own is reaped, and a stub that died leaves nothing of its command (the helper's
// reply for that command does not wait for this: see runStub). It never returns.
func (s *stubSet) watch() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGCHLD)
	for range ch {
		s.sweep()
	}
}

// sweep kills every process that is neither a live stub nor descended from one, round after
// round (they may fork while they are killed; a killed orphan's children are reparented to us
// and found by the next round), and reaps them, until no child of ours is left but the stubs.
// Without an orphan (always, unless a stub died) it is one scan of /proc.
func (s *stubSet) sweep() {
	self := os.Getpid()
	for range 5000 {
		s.mu.Lock()
		procs := scanProcs()
		var orphans []proc
		for _, p := range procs[self] {
			if !s.pids[p.pid] {
				orphans = append(orphans, p)
			}
		}
		if len(orphans) == 0 {
			s.mu.Unlock()
			return
		}
		for _, o := range orphans {
			// Below the stubs, commands run; below an orphan, only what it started.
			for _, p := range append([]proc{o}, descendantsIn(procs, o.pid)...) {
				if p.live() {
					_ = syscall.Kill(p.pid, syscall.SIGKILL)
				}
			}
			// Not a stub: os/exec never waits for it, and no stub can take its pid while we
			// hold s.mu.
			var ws unix.WaitStatus
			_, _ = unix.Wait4(o.pid, &ws, unix.WNOHANG, nil)
		}
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

// proc is a process as /proc/PID/stat shows it.
type proc struct {
	pid   int
	state byte // R, S, D, T, t, Z, X...
}

// live reports whether p has not exited (a zombie has).
func (p proc) live() bool { return p.state != 'Z' && p.state != 'X' }

// scanProcs lists the processes of the sandbox's pid namespace (a short list), by parent.
func scanProcs() map[int][]proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	kids := map[int][]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, ppid, ok := procStat(pid); ok {
			kids[ppid] = append(kids[ppid], proc{pid: pid, state: state})
		}
	}
	return kids
}

// procStat reads the state (R, S, D, T, t, Z...) and the parent of process pid from
// /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err == nil
}

// descendantsIn lists the processes descended from pid in procs, parents first.
func descendantsIn(procs map[int][]proc, pid int) []proc {
	var out []proc
	queue := procs[pid]
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, procs[p.pid]...)
	}
	return out
}
