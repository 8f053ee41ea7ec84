package inside

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSubreaperSweep: as the helper does, the test process becomes a child subreaper with
// stubs in a stubSet; processes the stubs orphan are reparented to it. sweep kills a live
// orphan (and what it forks) and reaps it, and leaves the stubs and their children alone; an
// orphan that exits on its own is reaped when it does (watch), not left a zombie. It runs in a
// process of its own: a subreaper's sweep kills every child that is not a stub, the other
// tests' included.
func TestSubreaperSweep(t *testing.T) {
	if os.Getenv("KEEPUP_TEST_SUBREAPER") != "1" {
		t.Parallel()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSubreaperSweep$", "-test.v")
		cmd.Env = append(os.Environ(), "KEEPUP_TEST_SUBREAPER=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	n := 230000 + self%10000
	stubSleep, orphanSleep, quickSleep := strconv.Itoa(n), strconv.Itoa(n+1), "0.5"
	s := &stubSet{}
	// Last: what the stubs' commands left running (the first stub's sleep) was reparented to
	// this process when the stubs were killed, and dies with the sweep; else it would outlive
	// the test by days.
	t.Cleanup(s.sweep)
	stub := func(script string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", script)
		if err := s.start(cmd); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			s.wait(cmd)
		})
		return cmd
	}
	// orphans lists our children that are not stubs, zombies included.
	orphans := func() []proc {
		var out []proc
		for _, p := range scanProcs()[self] {
			s.mu.Lock()
			isStub := s.pids[p.pid]
			s.mu.Unlock()
			if !isStub {
				out = append(out, p)
			}
		}
		return out
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 5s; orphans %v", what, orphans())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// A stub whose command keeps a child, and orphans a process that keeps forking.
	st := stub("sleep " + stubSleep + " & (setsid sh -c 'while :; do sleep " + orphanSleep + "; done' &); wait")
	waitFor("the orphan is adopted", func() bool { return len(orphans()) > 0 && alive("sleep", orphanSleep) })
	s.sweep()
	if o := orphans(); len(o) > 0 {
		t.Fatalf("after a sweep, children that are not stubs: %v", o)
	}
	if alive("sleep", orphanSleep) {
		t.Fatal("the orphan's child outlived the sweep")
	}
	if state, ok := procState(st.Process.Pid); !ok || state == 'Z' || !alive("sleep", stubSleep) {
		t.Fatalf("the sweep reached the stub (state %q, %v) or its child (alive %v)", state, ok, alive("sleep", stubSleep))
	}

	// An orphan that exits on its own is reaped.
	go s.watch()
	stub("(sleep " + quickSleep + " &); exec sleep " + stubSleep)
	waitFor("the orphan is adopted", func() bool { return len(orphans()) > 0 })
	waitFor("the orphan that exited is reaped", func() bool { return len(orphans()) == 0 })
}

func (p proc) String() string { return fmt.Sprintf("%d(%c)", p.pid, p.state) }
