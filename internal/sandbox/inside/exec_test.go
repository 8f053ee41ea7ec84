package inside

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary stand in for keepup as the exec stub.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ExecCommand {
		os.Exit(ExecMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// testStub is an exec stub started on the host (no sandbox around it), spoken to as the
// helper does.
type testStub struct {
	t    *testing.T
	cmd  *exec.Cmd
	conn *Conn
	seq  uint64
}

func startTestStub(t *testing.T) *testStub {
	t.Helper()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "stub"), os.NewFile(uintptr(pair[1]), "stub-request")
	defer theirs.Close()
	conn, err := NewConn(ours)
	ours.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], ExecCommand)
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &testStub{t: t, cmd: cmd, conn: conn}
	t.Cleanup(func() {
		conn.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Errorf("the stub did not exit when its socket closed")
			<-done
		}
	})
	return s
}

// start hands the stub a shell command; wait returns its result and its output.
func (s *testStub) start(script string) (seq uint64, wait func() (execResult, string)) {
	s.t.Helper()
	stdinR, stdinW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	stdinW.Close()
	s.seq++
	seq = s.seq
	spec := execSpec{Run: Run{Args: []string{"/bin/sh", "-c", script}, Dir: s.t.TempDir(), Env: []string{"PATH=/usr/bin:/bin"}},
		Landlock: Landlock{RO: []string{"/"}, RW: []string{"/tmp", "/dev"}}, FDs: 3, Seq: seq}
	err := s.conn.Send(spec, stdinR, outW, outW)
	stdinR.Close()
	outW.Close()
	if err != nil {
		s.t.Fatal(err)
	}
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(outR)
		outR.Close()
		out <- string(b)
	}()
	return seq, func() (execResult, string) {
		s.t.Helper()
		var res execResult
		if _, err := s.conn.Recv(&res, nil); err != nil {
			s.t.Fatalf("result of %q: %v", script, err)
		}
		select {
		case o := <-out:
			return res, o
		case <-time.After(5 * time.Second):
			s.t.Fatalf("%q: the output did not end with the result", script)
			return res, ""
		}
	}
}

func (s *testStub) run(script string) (execResult, string) {
	s.t.Helper()
	_, wait := s.start(script)
	return wait()
}

func (s *testStub) kill(seq uint64) {
	s.t.Helper()
	if err := s.conn.Send(execSpec{Seq: seq, Kill: true}); err != nil {
		s.t.Fatal(err)
	}
}

// alive reports whether a process runs argv (as /proc shows it).
func alive(argv ...string) bool {
	want := strings.Join(argv, "\x00") + "\x00"
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && string(b) == want {
			return true
		}
	}
	return false
}

func gone(t *testing.T, argv ...string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for alive(argv...) {
		if time.Now().After(deadline) {
			t.Fatalf("%q is still running", argv)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// One stub runs commands one after another: each reported once nothing it started is left.
func TestStubRunsCommandsInTurn(t *testing.T) {
	t.Parallel()
	s := startTestStub(t)
	n := strconv.Itoa(200000 + os.Getpid()%10000)
	parent := ""
	for i := range 3 {
		res, out := s.run("sleep " + n + " & echo $PPID; exit " + strconv.Itoa(i))
		if res.Exit != i || res.Err != "" || !res.Again {
			t.Fatalf("command %d: %+v", i, res)
		}
		if parent != "" && out != parent {
			t.Fatalf("command %d ran under %q, the first under %q: not the same stub", i, out, parent)
		}
		parent = out
		gone(t, "sleep", n)
	}
}

// A kill request names its command: one that arrives after its command ended does not reach
// the stub's next command.
func TestStubKillRequests(t *testing.T) {
	t.Parallel()
	s := startTestStub(t)
	n := strconv.Itoa(210000 + os.Getpid()%10000)
	seq, wait := s.start("sleep " + n)
	deadline := time.Now().Add(5 * time.Second)
	for !alive("sleep", n) {
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.kill(seq)
	res, _ := wait()
	if !res.Killed || res.Exit != 137 || res.Signal != "SIGKILL" || !res.Again {
		t.Fatalf("killed command: %+v", res)
	}
	gone(t, "sleep", n)

	s.kill(seq) // late: its command is over
	res, out := s.run("sleep 0.2; echo done")
	if res.Killed || res.Exit != 0 || out != "done\n" {
		t.Fatalf("the next command: %+v %q", res, out)
	}
}

// When the helper goes (its socket closes), so do the stub and its command.
func TestStubEndsWithItsSocket(t *testing.T) {
	t.Parallel()
	s := startTestStub(t)
	n := strconv.Itoa(220000 + os.Getpid()%10000)
	s.start("sleep " + n + " & sleep " + n)
	deadline := time.Now().Add(5 * time.Second)
	for !alive("sleep", n) {
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.conn.Close()
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the stub did not exit")
	}
	gone(t, "sleep", n)
}
