package inside

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// A stub that was stopped (or died) while idle is retired, not handed the next command.
func TestTakeStubRetiresStoppedStubs(t *testing.T) {
	t.Parallel()
	h := &helper{exe: os.Args[0], jobs: map[uint64]*job{}}
	t.Cleanup(func() { h.stopSpares(true) })
	h.allowSpares()
	idle := func() *stubProc {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			h.spareMu.Lock()
			n := len(h.idle)
			var st *stubProc
			if n > 0 {
				st = h.idle[n-1]
			}
			h.spareMu.Unlock()
			if st != nil {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatal("no idle stub was started")
			}
			time.Sleep(time.Millisecond)
		}
	}
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGKILL} {
		bad := idle()
		if !bad.healthy() {
			t.Fatalf("a fresh stub is not healthy")
		}
		if err := bad.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for bad.healthy() {
			if time.Now().After(deadline) {
				t.Fatalf("the stub is healthy after %v", sig)
			}
			time.Sleep(time.Millisecond)
		}
		st, err := h.takeStub()
		if err != nil {
			t.Fatal(err)
		}
		if st == bad || !st.healthy() {
			t.Fatalf("after %v: took stub %d (the bad one %d), healthy %v", sig, st.cmd.Process.Pid, bad.cmd.Process.Pid, st.healthy())
		}
		st.stop()
		// Retired: killed and reaped.
		deadline = time.Now().Add(5 * time.Second)
		for {
			if _, ok := procState(bad.cmd.Process.Pid); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the stub stopped by %v was not retired", sig)
			}
			time.Sleep(time.Millisecond)
		}
		h.refill()
	}
}
