//go:build linux && (amd64 || arm64)

package seccomp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The probe tests run against the real kernel. The test binary re-executes itself with
// -test.run=^TestHelperProbe$ and probeEnv naming one probe; that child installs the filter
// with Install (unless noInstallEnv is set: a baseline run, or a run whose filter was put in
// place by someone else, e.g. bwrap or the parent), tries one thing and prints the outcome on
// a line starting with resultPrefix. The filter is never installed in the test process itself.
const (
	probeEnv     = "KEEPUP_SECCOMP_PROBE"
	noInstallEnv = "KEEPUP_SECCOMP_PROBE_NO_INSTALL"
	resultPrefix = "seccomp-probe-result: "
)

// probe does one thing and returns nil, a unix.Errno, or another error.
type probe func() error

// sys makes a raw system call, closing the descriptor it returns on success.
func sys(closeResult bool, nr uintptr, args ...uintptr) error {
	var a [6]uintptr
	copy(a[:], args)
	r, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	if e != 0 {
		return e
	}
	if closeResult {
		unix.Close(int(r))
	}
	return nil
}

func ptr[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }

func cstr(s string) uintptr {
	b, err := unix.BytePtrFromString(s)
	if err != nil {
		panic(err)
	}
	return uintptr(unsafe.Pointer(b))
}

var probes = map[string]probe{
	"socket_unix": func() error {
		return sys(true, unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	},
	// AF_UNIX in the low word, garbage in the high word: the kernel sees AF_UNIX, and so must
	// the filter.
	"socket_unix_high_bits": func() error {
		return sys(true, unix.SYS_SOCKET, 0xdeadbeef<<32|unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	},
	"socket_inet": func() error {
		return sys(true, unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	},
	"socketpair_stream": func() error {
		var fds [2]int32
		err := sys(false, unix.SYS_SOCKETPAIR, unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0, ptr(&fds))
		if err == nil {
			unix.Close(int(fds[0]))
			unix.Close(int(fds[1]))
		}
		return err
	},
	"socketpair_dgram": func() error {
		var fds [2]int32
		return sys(false, unix.SYS_SOCKETPAIR, unix.AF_UNIX, unix.SOCK_DGRAM, 0, ptr(&fds))
	},
	"io_uring_setup": func() error {
		var params [120]byte // struct io_uring_params
		return sys(true, unix.SYS_IO_URING_SETUP, 8, ptr(&params))
	},
	"ptrace_traceme": func() error { return sys(false, unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0, 0) },
	"process_vm_readv": func() error {
		var buf [8]byte
		local := unix.Iovec{Base: &buf[0], Len: 8}
		remote := unix.Iovec{Base: &buf[0], Len: 8}
		return sys(false, unix.SYS_PROCESS_VM_READV, uintptr(os.Getpid()), ptr(&local), 1, ptr(&remote), 1, 0)
	},
	// A target that does not exist: without the filter this is ENOENT, never a mount.
	"mount": func() error {
		return sys(false, unix.SYS_MOUNT, cstr("none"), cstr("/nonexistent/keepup-seccomp-probe"), cstr("tmpfs"), 0, 0)
	},
	"unshare_newuser": func() error { return sys(false, unix.SYS_UNSHARE, unix.CLONE_NEWUSER) },
	"setns":           func() error { return sys(false, unix.SYS_SETNS, ^uintptr(0), 0) },
	"bpf": func() error {
		var attr [128]byte
		return sys(true, unix.SYS_BPF, unix.BPF_MAP_CREATE, ptr(&attr), uintptr(len(attr)))
	},
	"perf_event_open": func() error {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
		attr.Size = uint32(unsafe.Sizeof(attr))
		return sys(true, unix.SYS_PERF_EVENT_OPEN, ptr(&attr), 0, ^uintptr(0), ^uintptr(0), 0)
	},
	"userfaultfd": func() error { return sys(true, unix.SYS_USERFAULTFD, unix.O_CLOEXEC) },
	"keyctl": func() error {
		return sys(false, unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(uint32(keySpecSessionKeyring)), 0)
	},
	"open_by_handle_at": func() error {
		var h [8 + 128]byte
		return sys(true, unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), ptr(&h), 0)
	},
	"init_module":       func() error { return sys(false, unix.SYS_INIT_MODULE, 0, 0, cstr("")) },
	"personality_linux": func() error { return sys(false, unix.SYS_PERSONALITY, 0 /* PER_LINUX */) },
	"personality_query": func() error { return sys(false, unix.SYS_PERSONALITY, 0xffffffff) },
	"personality_addr_no_randomize": func() error {
		return sys(false, unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */)
	},
	// fd 0 of the probe child is /dev/null, so without the filter this is ENOTTY.
	"ioctl_tiocsti": func() error {
		c := byte('x')
		return sys(false, unix.SYS_IOCTL, 0, unix.TIOCSTI, ptr(&c))
	},
	"ioctl_fionread": func() error {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return err
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		var n int32
		return sys(false, unix.SYS_IOCTL, uintptr(p[0]), unix.TIOCINQ, ptr(&n))
	},
	// No arguments: without the filter, EFAULT/EINVAL; with it, ENOSYS so libc falls back.
	"clone3": func() error { return sys(false, unix.SYS_CLONE3, 0, 0) },
	"clone_newuser": func() error {
		runtime.LockOSThread() // keep the rest of the runtime off this thread if it forks
		r, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if e != 0 {
			return e
		}
		if r == 0 { // the child, if the filter failed to stop it
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
		var ws unix.WaitStatus
		unix.Wait4(int(r), &ws, 0, nil)
		return nil
	},
	"x32_getpid": func() error { return sys(false, x32Bit|unix.SYS_GETPID) },

	// Normal life.
	"getpid": func() error {
		if pid, _, e := unix.Syscall(unix.SYS_GETPID, 0, 0, 0); e != 0 || int(pid) != os.Getpid() {
			return fmt.Errorf("getpid = %d, %v", pid, e)
		}
		return nil
	},
	"file_io": func() error {
		dir, err := os.MkdirTemp("", "keepup-seccomp")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte("hello"), 0o600); err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if string(b) != "hello" {
			return fmt.Errorf("read back %q", b)
		}
		return nil
	},
	"exec_true": func() error { return exec.Command("/bin/true").Run() },
	"exec_shell_pipe": func() error {
		out, err := exec.Command("/bin/sh", "-c", "echo hi | cat").Output()
		if err != nil {
			return err
		}
		if string(out) != "hi\n" {
			return fmt.Errorf("output %q", out)
		}
		return nil
	},
	// The filter survives fork and exec: a grandchild that does not install anything is still
	// refused an AF_UNIX socket.
	"inherited": func() error {
		res, err := runProbe("socket_unix", false, nil)
		if err != nil {
			return err
		}
		if res != "EPERM" {
			return fmt.Errorf("grandchild socket(AF_UNIX) = %s, want EPERM", res)
		}
		return nil
	},
	"loopback_tcp": func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("pong"))
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		b := make([]byte, 4)
		if _, err := c.Read(b); err != nil || string(b) != "pong" {
			return fmt.Errorf("read %q, %v", b, err)
		}
		return nil
	},
	// Many goroutines, new OS threads (clone with thread flags), channels, timers, GC.
	"goroutines": func() error {
		var wg sync.WaitGroup
		results := make(chan int, 64)
		for i := 0; i < 2000; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if i%100 == 0 {
					runtime.LockOSThread() // forces extra threads; exits them with the goroutine
					time.Sleep(time.Millisecond)
				}
				s := make([]byte, 1<<12)
				s[0] = byte(i)
				select {
				case results <- int(s[0]):
				default:
				}
			}(i)
		}
		wg.Wait()
		runtime.GC()
		close(results)
		n := 0
		for range results {
			n++
		}
		if n == 0 {
			return errors.New("no goroutine reported")
		}
		return nil
	},
}

// TestHelperProbe is the child side; it does nothing in a normal test run.
func TestHelperProbe(t *testing.T) {
	name := os.Getenv(probeEnv)
	if name == "" {
		t.Skip("helper for the probe tests")
	}
	p, ok := probes[name]
	if !ok {
		fmt.Printf("%sunknown probe %q\n", resultPrefix, name)
		os.Exit(0)
	}
	if os.Getenv(noInstallEnv) == "" {
		if err := Install(); err != nil {
			fmt.Printf("%sinstall: %v\n", resultPrefix, err)
			os.Exit(0)
		}
	}
	fmt.Printf("%s%s\n", resultPrefix, outcome(p()))
	os.Exit(0)
}

func outcome(err error) string {
	var e unix.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e) && unix.ErrnoName(e) != "":
		return unix.ErrnoName(e)
	default:
		return "error: " + err.Error()
	}
}

// runProbe runs probe name in a fresh child of the test binary, installing the filter there
// first if install is set, and returns its outcome. wrap, if non-nil, may rewrite the command
// (e.g. to run it under bwrap).
func runProbe(name string, install bool, wrap func(*exec.Cmd) *exec.Cmd) (string, error) {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	cmd := exec.Command(self, "-test.run=^TestHelperProbe$")
	// GORACE: a race-enabled child would otherwise sleep a second at exit.
	cmd.Env = append(os.Environ(), probeEnv+"="+name, "GORACE=atexit_sleep_ms=0")
	if !install {
		cmd.Env = append(cmd.Env, noInstallEnv+"=1")
	}
	if wrap != nil {
		cmd = wrap(cmd)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if res, ok := strings.CutPrefix(sc.Text(), resultPrefix); ok {
			return res, nil
		}
	}
	return "", fmt.Errorf("probe %s printed no result (%v)\nstdout: %s\nstderr: %s", name, err, out.String(), stderr.String())
}

type probeCase struct {
	probe string
	want  string // outcome under the filter: "ok" or an errno name
	// baseline: also run without the filter and require a different outcome, proving the
	// filter (not the environment) caused it. Only where the unfiltered result is certain.
	baseline bool
}

func probeCases() []probeCase {
	cs := []probeCase{
		{"socket_unix", "EPERM", true},
		{"socket_unix_high_bits", "EPERM", true},
		{"socket_inet", "ok", false},
		{"socketpair_stream", "ok", false},
		{"socketpair_dgram", "EPERM", true},
		{"io_uring_setup", "ENOSYS", false},
		{"ptrace_traceme", "EPERM", false},
		{"process_vm_readv", "EPERM", false},
		{"mount", "EPERM", true},
		{"unshare_newuser", "EPERM", false},
		{"setns", "EPERM", true},
		{"bpf", "EPERM", false},
		{"perf_event_open", "EPERM", false},
		{"userfaultfd", "EPERM", false},
		{"keyctl", "EPERM", false},
		{"open_by_handle_at", "EPERM", true},
		{"init_module", "EPERM", false},
		{"personality_linux", "ok", false},
		{"personality_query", "ok", false},
		{"personality_addr_no_randomize", "EPERM", true},
		{"ioctl_tiocsti", "EPERM", true},
		{"ioctl_fionread", "ok", false},
		{"clone3", "ENOSYS", true},
		{"clone_newuser", "EPERM", false},
		{"getpid", "ok", false},
		{"file_io", "ok", false},
		{"exec_true", "ok", false},
		{"exec_shell_pipe", "ok", false},
		{"inherited", "ok", false},
		{"loopback_tcp", "ok", false},
		{"goroutines", "ok", false},
	}
	if runtime.GOARCH == "amd64" {
		cs = append(cs, probeCase{"x32_getpid", "EPERM", true})
	}
	return cs
}

func TestProbes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process per probe")
	}
	for _, c := range probeCases() {
		t.Run(c.probe, func(t *testing.T) {
			t.Parallel()
			got, err := runProbe(c.probe, true, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("under the filter: %s, want %s", got, c.want)
			}
			if !c.baseline {
				return
			}
			base, err := runProbe(c.probe, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			if base == c.want {
				t.Errorf("without the filter the outcome is already %s; the test proves nothing", base)
			}
		})
	}
}

// TestBwrapReadsProgram hands Program() to bwrap's --seccomp, the way the bwrap backend does,
// and checks the filter is in force inside.
func TestBwrapReadsProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("starts bwrap")
	}
	bwrap, err := exec.LookPath("bwrap")
	if err != nil {
		t.Skip("bwrap not installed")
	}
	raw, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	// Check bwrap itself works here before blaming the filter.
	if out, err := exec.Command(bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
		"--unshare-all", "--die-with-parent", "--", "/bin/true").CombinedOutput(); err != nil {
		t.Skipf("bwrap cannot run here: %v: %s", err, out)
	}
	for _, c := range []probeCase{
		{probe: "socket_unix", want: "EPERM"},
		{probe: "clone3", want: "ENOSYS"},
		{probe: "socket_inet", want: "ok"},
		{probe: "exec_true", want: "ok"},
	} {
		t.Run(c.probe, func(t *testing.T) {
			f, err := os.CreateTemp(t.TempDir(), "filter")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(raw); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Seek(0, 0); err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := runProbe(c.probe, false, func(cmd *exec.Cmd) *exec.Cmd {
				w := exec.Command(bwrap, append([]string{"--ro-bind", "/", "/", "--dev", "/dev",
					"--proc", "/proc", "--tmpfs", "/tmp", "--ro-bind", filepath.Dir(cmd.Path), filepath.Dir(cmd.Path),
					"--unshare-all", "--die-with-parent", "--seccomp", "3", "--", cmd.Path}, cmd.Args[1:]...)...)
				w.Path = bwrap
				w.Env = cmd.Env
				w.ExtraFiles = []*os.File{f} // fd 3
				return w
			})
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("under bwrap --seccomp: %s, want %s", got, c.want)
			}
		})
	}
}

// keySpecSessionKeyring is KEY_SPEC_SESSION_KEYRING (-3) as a register value.
var keySpecSessionKeyring = int32(unix.KEY_SPEC_SESSION_KEYRING)
