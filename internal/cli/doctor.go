package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
	"github.com/keepup/keepup/internal/sandbox/seccomp"
	"github.com/keepup/keepup/internal/scope"
)

// doctorReport prints one line per check: ok, warn or FAIL, and a remedy for what failed.
type doctorReport struct {
	w      *bufio.Writer
	failed int
}

func (r *doctorReport) ok(format string, args ...any) {
	fmt.Fprintf(r.w, "ok    %s\n", fmt.Sprintf(format, args...))
	r.w.Flush()
}

func (r *doctorReport) warn(format string, args ...any) {
	fmt.Fprintf(r.w, "warn  %s\n", fmt.Sprintf(format, args...))
	r.w.Flush()
}

func (r *doctorReport) fail(remedy, format string, args ...any) {
	r.failed++
	fmt.Fprintf(r.w, "FAIL  %s\n", fmt.Sprintf(format, args...))
	if remedy != "" {
		fmt.Fprintf(r.w, "      fix: %s\n", remedy)
	}
	r.w.Flush()
}

const (
	remedyBwrap  = "apt-get install bubblewrap (as root), or your distribution's bubblewrap package"
	remedyUserns = "user namespaces are disabled: sysctl -w kernel.unprivileged_userns_clone=1 (Debian) or user.max_user_namespaces=15000; " +
		"on Ubuntu 24.04 AppArmor restricts them: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or install an AppArmor profile for /usr/bin/bwrap that allows userns"
)

// cmdDoctor checks what the sandbox needs, then starts one and runs an escape self-test in it.
func cmdDoctor(st *State, args []string) error {
	if len(args) > 0 {
		return usagef("usage: keepup doctor")
	}
	r := &doctorReport{w: bufio.NewWriter(st.Stdout)}
	r.ok("keepup %s on %s", Version, kernelRelease())

	if path, err := exec.LookPath("bwrap"); err != nil {
		r.fail(remedyBwrap, "bubblewrap is not installed (no bwrap in PATH)")
	} else if out, err := exec.Command(path, "--version").Output(); err != nil {
		r.fail(remedyBwrap, "bubblewrap at %s does not run: %v", path, err)
	} else {
		r.ok("%s (%s)", strings.TrimSpace(string(out)), path)
	}

	if n, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(n)) == "0" {
		r.fail(remedyUserns, "user namespaces: user.max_user_namespaces is 0")
	} else if v, err := os.ReadFile("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); err == nil && strings.TrimSpace(string(v)) == "1" {
		r.warn("user namespaces: AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1); the sandbox start below tells whether bwrap is allowed")
	} else {
		r.ok("user namespaces available")
	}

	if abi, err := landlockABI(); err != nil {
		r.warn("Landlock unavailable (%v): the sandbox still runs, without its second file-system layer", err)
	} else {
		r.ok("Landlock ABI %d", abi)
	}

	if err := unix.Prctl(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		r.fail("a kernel built with CONFIG_SECCOMP_FILTER", "seccomp: %v", err)
	} else if prog, err := seccomp.Program(); err != nil {
		r.fail("", "seccomp filter: %v", err)
	} else {
		r.ok("seccomp filter: %d instructions, %d system calls refused", len(prog)/8, len(seccomp.Denied()))
	}

	// Without cgroup v2, what bounds a session is the backend's to say (selfTest).
	dir, v2 := cgroupV2()
	if v2 {
		r.ok("cgroup v2 at %s with pids, memory and cpu controllers: per-session limits", dir)
	}

	set, err := loadSettings(st)
	if err != nil {
		r.fail("fix the file named", "configuration: %v", err)
	} else {
		selfTest(st, set, r, v2)
	}
	if r.failed > 0 {
		return &exitError{code: ExitFailed, msg: fmt.Sprintf("doctor: %d check(s) failed; tasks will not run until they pass", r.failed)}
	}
	return nil
}

// selfTest starts a real session sandbox over temporary folders and runs keepup's own probe
// inside it (__sandbox-selftest), which tries a few escapes.
func selfTest(st *State, set *settings, r *doctorReport, cgroupV2 bool) {
	const noV2 = "cgroup v2: no writable hierarchy with the pids, memory and cpu controllers"
	backend, err := openBackend(st, set, "")
	if err != nil {
		if !cgroupV2 {
			r.warn("%s", noV2)
		}
		r.fail(remedyBwrap+"; "+remedyUserns, "%v", err)
		return
	}
	if b, ok := backend.(*bwrap.Backend); ok && !cgroupV2 {
		if l := b.Limiter(); strings.HasPrefix(l, "cgroup v1") {
			r.ok("per-session limits through %s; no CPU limit", l)
		} else {
			r.warn("%s, nor writable cgroup v1 pids and memory folders: per-command rlimits are used instead", noV2)
		}
	}
	if b, ok := backend.(*bwrap.Backend); ok {
		if b.GuardStage() {
			r.ok("keepup makes the guards of protected paths in a mount namespace of its own when there are many (folders holding repositories)")
		} else {
			r.warn("keepup cannot make a user namespace of its own here, so bwrap binds every guard of protected paths itself: a session over a folder holding many repositories starts slowly (about 4 s for 100; on Ubuntu 24.04 an AppArmor profile for keepup that allows userns lifts this)")
		}
	}
	tmp, err := os.MkdirTemp("", "keepup-doctor-")
	if err != nil {
		r.fail("", "temporary folder: %v", err)
		return
	}
	defer os.RemoveAll(tmp)
	rw, ro := filepath.Join(tmp, "rw"), filepath.Join(tmp, "ro")
	os.MkdirAll(rw, 0o755)
	os.MkdirAll(ro, 0o755)
	os.WriteFile(filepath.Join(ro, "keep.txt"), []byte("keep"), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.fail("", "loopback listener: %v", err)
		return
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	sess, err := scope.Open(scope.Config{Grants: []scope.Grant{{Name: "rw", Path: rw, Mode: scope.RW}, {Name: "ro", Path: ro, Mode: scope.RO}},
		Outputs: filepath.Join(tmp, "outputs")})
	if err != nil {
		r.fail("", "session: %v", err)
		return
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	sb, err := backend.Start(ctx, sandboxSpec(sess))
	if err != nil {
		r.fail(remedyUserns, "the sandbox does not start: %s", oneLine(err.Error()))
		return
	}
	defer sb.Close()
	var out, errb bytes.Buffer
	res, err := sb.Run(ctx, sandbox.Command{
		Args:    []string{bwrapExe, "__sandbox-selftest", sess.MountRoot() + "/rw", sess.MountRoot() + "/ro", port},
		Stdout:  &out,
		Stderr:  &errb,
		Timeout: 30 * time.Second,
	})
	if err != nil {
		r.fail(remedyUserns, "the sandbox does not run commands: %s", oneLine(err.Error()))
		return
	}
	r.ok("a sandbox starts and runs a command (%s)", time.Since(start).Round(time.Millisecond))
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		verdict, what, _ := strings.Cut(line, " ")
		if verdict == "ok" {
			r.ok("self-test: %s", what)
		} else {
			r.fail("report this: the sandbox let an escape through", "self-test: %s", what)
		}
	}
	if res.ExitCode != 0 && !strings.Contains(out.String(), "fail") {
		r.fail("", "self-test exited %d: %s", res.ExitCode, oneLine(errb.String()))
	}
	if data, err := os.ReadFile(filepath.Join(ro, "keep.txt")); err != nil || string(data) != "keep" {
		r.fail("report this", "self-test: a read-only grant changed on the host")
	}
	// The self-test made new/.git/hooks/pre-commit, where no guard reached: gone when it ended.
	made := sess.MountRoot() + "/rw/new/.git/hooks"
	if _, err := os.Lstat(filepath.Join(rw, "new", ".git", "hooks")); err == nil || !slices.Contains(res.Quarantined, made) {
		r.fail("report this", "self-test: a protected path made in a new folder stayed there (moved: %v)", res.Quarantined)
	} else {
		r.ok("self-test: a protected path made in a new folder is moved out when the command ends")
	}
}

// bwrapExe is where the sandbox backend puts keepup's own binary inside.
const bwrapExe = "/.keepup/keepup"

// cmdSelfTest runs inside a sandbox (hidden: __sandbox-selftest RW RO PORT) and prints one
// "ok <check>" or "fail <check>: <detail>" line per escape it tries.
func cmdSelfTest(st *State, args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(st.Stderr, "usage: __sandbox-selftest RW RO PORT")
		return 2
	}
	rw, ro, port := args[0], args[1], args[2]
	failed := 0
	check := func(name string, err error) {
		if err != nil {
			failed++
			fmt.Fprintf(st.Stdout, "fail %s: %v\n", name, err)
		} else {
			fmt.Fprintf(st.Stdout, "ok %s\n", name)
		}
	}
	status, _ := os.ReadFile("/proc/self/status")
	field := func(k string) string {
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, k+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return "?"
	}
	check("runs as an unprivileged user without capabilities (uid 1000, CapEff 0, NoNewPrivs 1, Seccomp 2)", func() error {
		if os.Getuid() != 1000 || field("CapEff") != "0000000000000000" || field("NoNewPrivs") != "1" || field("Seccomp") != "2" {
			return fmt.Errorf("uid %d, CapEff %s, NoNewPrivs %s, Seccomp %s", os.Getuid(), field("CapEff"), field("NoNewPrivs"), field("Seccomp"))
		}
		return nil
	}())
	check("host secrets are not visible (/etc/shadow, /root, /home)", func() error {
		for _, p := range []string{"/etc/shadow", "/root/.bashrc", "/root/.ssh"} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists", p)
			}
		}
		if ents, err := os.ReadDir("/home"); err == nil && len(ents) > 1 {
			return fmt.Errorf("/home lists %d entries", len(ents))
		}
		return nil
	}())
	check("a read-only grant cannot be written", mustFail(os.WriteFile(filepath.Join(ro, "keep.txt"), []byte("x"), 0o644)))
	check("a protected path cannot be created (.git/hooks/pre-commit)", mustFail(func() error {
		os.MkdirAll(filepath.Join(rw, ".git", "hooks"), 0o755)
		return os.WriteFile(filepath.Join(rw, ".git", "hooks", "pre-commit"), []byte("x"), 0o755)
	}()))
	check("the read-write grant can be written", os.WriteFile(filepath.Join(rw, "ok.txt"), []byte("ok"), 0o644))
	// Below the top, in a folder of the command's making, no bind reaches: the host moves this
	// out when the command ends, and checks that it did.
	check("a new folder in the grant can be made, with a repository in it", func() error {
		if err := os.MkdirAll(filepath.Join(rw, "new", ".git", "hooks"), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(rw, "new", ".git", "hooks", "pre-commit"), []byte("x"), 0o755)
	}())
	check("no network: the host's loopback listener is unreachable", mustFail(func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}()))
	check("Unix sockets cannot be created", mustFail(func() error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}()))
	check("ptrace is refused", mustFail(func() error {
		_, _, e := unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		if e != 0 {
			return e
		}
		return nil
	}()))
	check("mount is refused", mustFail(unix.Mount("none", "/tmp", "tmpfs", 0, "")))
	if failed > 0 {
		return 1
	}
	return 0
}

func mustFail(err error) error {
	if err == nil {
		return errors.New("it succeeded")
	}
	return nil
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "linux"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

// landlockABI asks the kernel which Landlock ABI it supports.
func landlockABI() (int, error) {
	const createRulesetVersion = 1
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, createRulesetVersion)
	if e != 0 {
		return 0, e
	}
	return int(v), nil
}

// cgroupV2 finds a writable cgroup v2 hierarchy whose root offers pids, memory and cpu.
func cgroupV2() (string, bool) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	for _, l := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		dir := f[4]
		ctrl, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		if err != nil {
			continue
		}
		have := strings.Fields(string(ctrl))
		need := map[string]bool{"pids": false, "memory": false, "cpu": false}
		for _, c := range have {
			if _, ok := need[c]; ok {
				need[c] = true
			}
		}
		if need["pids"] && need["memory"] && need["cpu"] && unix.Access(dir, unix.W_OK) == nil {
			return dir, true
		}
	}
	return "", false
}
