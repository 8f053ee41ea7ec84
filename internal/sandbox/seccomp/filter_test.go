//go:build linux && (amd64 || arm64)

package seccomp

import (
	"encoding/binary"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mustFilter(t *testing.T) []unix.SockFilter {
	t.Helper()
	prog, err := Filter()
	if err != nil {
		t.Fatalf("Filter: %v", err)
	}
	return prog
}

func TestProgramShape(t *testing.T) {
	prog := mustFilter(t)
	if len(prog) >= 4096 || len(prog) > unix.BPF_MAXINSNS {
		t.Fatalf("program has %d instructions, want < 4096", len(prog))
	}
	t.Logf("%d instructions, %d system calls in the table", len(prog), len(Denied()))
	for pc, f := range prog {
		if f.Code&0x07 != unix.BPF_JMP {
			continue
		}
		if f.Code == unix.BPF_JMP|unix.BPF_JA {
			t.Fatalf("instruction %d: unexpected unconditional jump", pc)
		}
		for _, off := range []uint8{f.Jt, f.Jf} {
			if target := pc + 1 + int(off); target >= len(prog) {
				t.Errorf("instruction %d jumps to %d, past the end (%d)", pc, target, len(prog))
			}
		}
	}
	if last := prog[len(prog)-1]; last.Code != unix.BPF_RET|unix.BPF_K || last.K != unix.SECCOMP_RET_ALLOW {
		t.Errorf("last instruction = %+v, want ret ALLOW", last)
	}
	if err := validate(prog); err != nil {
		t.Error(err)
	}
	// The first instructions check the architecture before anything else.
	if prog[0].Code != unix.BPF_LD|unix.BPF_W|unix.BPF_ABS || prog[0].K != offArch {
		t.Errorf("first instruction = %+v, want load of seccomp_data.arch", prog[0])
	}
}

func TestProgramBytes(t *testing.T) {
	prog := mustFilter(t)
	raw, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw)%8 != 0 || len(raw) != 8*len(prog) {
		t.Fatalf("Program() is %d bytes for %d instructions", len(raw), len(prog))
	}
	for i, f := range prog {
		b := raw[8*i:]
		got := unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:]),
		}
		if got != f {
			t.Fatalf("instruction %d serialized as %+v, want %+v", i, got, f)
		}
	}
}

func TestDenied(t *testing.T) {
	names := Denied()
	for _, want := range []string{"socket", "socketpair", "io_uring_setup", "ptrace", "mount",
		"unshare", "setns", "bpf", "keyctl", "open_by_handle_at", "init_module", "personality",
		"ioctl", "clone", "clone3", "chroot", "syslog"} {
		if !slices.Contains(names, want) {
			t.Errorf("Denied() lacks %q", want)
		}
	}
	if slices.Contains(names, "kcmp") {
		t.Error("kcmp is meant to stay allowed")
	}
	if got := slices.Contains(names, "iopl"); got != (runtime.GOARCH == "amd64") {
		t.Errorf("iopl in Denied() = %v on %s", got, runtime.GOARCH)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("%q listed twice", n)
		}
		seen[n] = true
	}
	for _, r := range rules {
		if strings.TrimSpace(r.why) == "" {
			t.Errorf("rule for %s has no reason", r.name)
		}
	}
}

func TestCompileFailsClosed(t *testing.T) {
	if _, err := compile(arch, append(slices.Clone(rules), rule{name: "no_such_syscall", action: eperm, why: "x"})); err == nil {
		t.Error("unknown system-call name compiled")
	}
	if _, err := compile(arch, append(slices.Clone(rules), rules[0])); err == nil {
		t.Error("duplicate rule compiled")
	}
}

func TestAssemblerJumpRange(t *testing.T) {
	build := func(n int) error {
		a := newAsm()
		a.ldAbs(offNr)
		a.jeq(1, "far", "")
		for i := 0; i < n; i++ {
			a.ret(retAllow)
		}
		a.label("far")
		a.ret(eperm)
		_, err := a.assemble()
		return err
	}
	if err := build(255); err != nil {
		t.Errorf("jump of 255 rejected: %v", err)
	}
	if err := build(256); err == nil {
		t.Error("jump of 256 accepted")
	}
	a := newAsm()
	a.jeq(1, "nowhere", "")
	a.ret(retAllow)
	if _, err := a.assemble(); err == nil {
		t.Error("undefined label accepted")
	}
	a = newAsm()
	a.label("back")
	a.ldAbs(offNr)
	a.jeq(1, "back", "")
	a.ret(retAllow)
	if _, err := a.assemble(); err == nil {
		t.Error("backward jump accepted")
	}
}

// seccompData mirrors struct seccomp_data.
type seccompData struct {
	nr   int32
	arch uint32
	args [6]uint64
}

// eval interprets the subset of classic BPF the filter uses, as the kernel would.
func eval(t *testing.T, prog []unix.SockFilter, d seccompData) uint32 {
	t.Helper()
	var mem [seccompDataSize]byte
	binary.NativeEndian.PutUint32(mem[0:], uint32(d.nr))
	binary.NativeEndian.PutUint32(mem[4:], d.arch)
	for i, v := range d.args {
		binary.NativeEndian.PutUint64(mem[offArgs+8*i:], v)
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		f := prog[pc]
		switch f.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.NativeEndian.Uint32(mem[f.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= f.K
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if acc == f.K {
				pc += int(f.Jt)
			} else {
				pc += int(f.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			if acc&f.K != 0 {
				pc += int(f.Jt)
			} else {
				pc += int(f.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return f.K
		default:
			t.Fatalf("unexpected opcode %#x at %d", f.Code, pc)
		}
	}
	t.Fatal("ran off the end of the program")
	return 0
}

// allowedForTest names system calls the filter must let through.
var allowedForTest = map[string]uintptr{"getpid": unix.SYS_GETPID, "read": unix.SYS_READ, "kcmp": unix.SYS_KCMP}

func TestFilterLogic(t *testing.T) {
	prog := mustFilter(t)
	nr := func(name string) int32 {
		n, ok := arch.nr[name]
		if !ok {
			n, ok = allowedForTest[name]
		}
		if !ok {
			t.Fatalf("no number for %s", name)
		}
		return int32(n)
	}
	call := func(name string, args ...uint64) seccompData {
		d := seccompData{nr: nr(name), arch: arch.audit}
		copy(d.args[:], args)
		return d
	}
	const hi = 0xdeadbeef << 32 // junk in the high word that the kernel ignores
	cases := []struct {
		desc string
		d    seccompData
		want uint32
	}{
		{"foreign arch", seccompData{nr: nr("getpid"), arch: unix.AUDIT_ARCH_I386}, retKillProcess},
		{"foreign arch arm", seccompData{nr: nr("getpid"), arch: unix.AUDIT_ARCH_ARM}, retKillProcess},
		{"getpid", call("getpid"), retAllow},
		{"read", call("read", 0, 0, 0), retAllow},
		{"kcmp", call("kcmp"), retAllow},
		{"socket unix", call("socket", unix.AF_UNIX, unix.SOCK_STREAM), eperm},
		{"socket unix high bits", call("socket", hi|unix.AF_UNIX, unix.SOCK_STREAM), eperm},
		{"socket inet", call("socket", unix.AF_INET, unix.SOCK_STREAM), retAllow},
		{"socket inet6", call("socket", unix.AF_INET6, unix.SOCK_DGRAM), retAllow},
		{"socketpair stream", call("socketpair", unix.AF_UNIX, unix.SOCK_STREAM), retAllow},
		{"socketpair stream flags", call("socketpair", unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC), retAllow},
		{"socketpair stream high bits", call("socketpair", hi|unix.AF_UNIX, hi|unix.SOCK_STREAM), retAllow},
		{"socketpair dgram", call("socketpair", unix.AF_UNIX, unix.SOCK_DGRAM), eperm},
		{"socketpair seqpacket", call("socketpair", unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC), eperm},
		{"socketpair inet stream", call("socketpair", unix.AF_INET, unix.SOCK_STREAM), eperm},
		{"io_uring_setup", call("io_uring_setup"), enosys},
		{"io_uring_enter", call("io_uring_enter"), enosys},
		{"io_uring_register", call("io_uring_register"), enosys},
		{"clone3", call("clone3"), enosys},
		{"ptrace", call("ptrace"), eperm},
		{"mount", call("mount"), eperm},
		{"personality linux", call("personality", 0), retAllow},
		{"personality linux32", call("personality", 8), retAllow},
		{"personality uname26", call("personality", 0x20000), retAllow},
		{"personality uname26|linux32", call("personality", 0x20008), retAllow},
		{"personality query", call("personality", 0xffffffff), retAllow},
		{"personality query high bits", call("personality", 0xffffffff|hi), retAllow},
		{"personality no aslr", call("personality", 0x0040000), eperm},
		{"personality no aslr high bits", call("personality", hi|0x0040000), eperm},
		{"personality read implies exec", call("personality", 0x0400000), eperm},
		{"ioctl TIOCSTI", call("ioctl", 0, unix.TIOCSTI), eperm},
		{"ioctl TIOCSTI high bits", call("ioctl", 0, hi|unix.TIOCSTI), eperm},
		{"ioctl TIOCLINUX", call("ioctl", 0, unix.TIOCLINUX), eperm},
		{"ioctl TCGETS", call("ioctl", 0, unix.TCGETS), retAllow},
		{"clone thread", call("clone", unix.CLONE_VM|unix.CLONE_FS|unix.CLONE_FILES|unix.CLONE_SIGHAND|unix.CLONE_THREAD|unix.CLONE_SYSVSEM), retAllow},
		{"clone fork", call("clone", uint64(unix.SIGCHLD)), retAllow},
		{"clone vfork pidfd", call("clone", unix.CLONE_VM|unix.CLONE_VFORK|unix.CLONE_PIDFD|uint64(unix.SIGCHLD)), retAllow},
		{"clone newuser", call("clone", unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)), eperm},
		{"clone newuser high bits", call("clone", hi|unix.CLONE_NEWUSER), eperm},
		{"clone newns", call("clone", unix.CLONE_NEWNS), eperm},
		{"clone newnet", call("clone", unix.CLONE_NEWNET), eperm},
		{"clone newpid", call("clone", unix.CLONE_NEWPID), eperm},
		{"clone newipc", call("clone", unix.CLONE_NEWIPC), eperm},
		{"clone newuts", call("clone", unix.CLONE_NEWUTS), eperm},
		{"clone newcgroup", call("clone", unix.CLONE_NEWCGROUP), eperm},
	}
	for _, r := range rules {
		if _, ok := arch.nr[r.name]; ok && r.when == nil {
			cases = append(cases, struct {
				desc string
				d    seccompData
				want uint32
			}{r.name + " (table)", call(r.name), r.action})
		}
	}
	if arch.x32 {
		cases = append(cases, struct {
			desc string
			d    seccompData
			want uint32
		}{"x32 getpid", seccompData{nr: x32Bit | nr("getpid"), arch: arch.audit}, eperm})
	}
	for _, c := range cases {
		if got := eval(t, prog, c.d); got != c.want {
			t.Errorf("%s: action %#x, want %#x", c.desc, got, c.want)
		}
	}
}
