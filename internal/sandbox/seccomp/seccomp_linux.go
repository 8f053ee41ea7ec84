package seccomp

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets into struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer;
// __u64 args[6]; }.
const (
	offNr           = 0
	offArch         = 4
	offArgs         = 16
	seccompDataSize = 64
)

// argLow is the offset of the low 32 bits of args[i]. Both supported architectures are
// little-endian, so the low word comes first.
func argLow(i int) uint32 { return offArgs + 8*uint32(i) }

// Seccomp actions.
const (
	retAllow       = unix.SECCOMP_RET_ALLOW
	retKillProcess = unix.SECCOMP_RET_KILL_PROCESS
)

func retErrno(e unix.Errno) uint32 {
	return unix.SECCOMP_RET_ERRNO | (uint32(e) & unix.SECCOMP_RET_DATA)
}

// Filter compiles the rule table for the build's architecture into a classic BPF program for
// SECCOMP_SET_MODE_FILTER. The result is validated (length, jump targets, final return).
func Filter() ([]unix.SockFilter, error) {
	if !arch.supported {
		return nil, ErrUnsupportedArch
	}
	return compile(arch, rules)
}

// Program returns Filter() serialized as the raw array of struct sock_filter
// {u16 code; u8 jt; u8 jf; u32 k} in native byte order: exactly what `bwrap --seccomp FD`
// reads from FD. Its length is a multiple of 8.
func Program() ([]byte, error) {
	prog, err := Filter()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 8*len(prog))
	for _, f := range prog {
		out = binary.NativeEndian.AppendUint16(out, f.Code)
		out = append(out, f.Jt, f.Jf)
		out = binary.NativeEndian.AppendUint32(out, f.K)
	}
	return out, nil
}

// Install sets no_new_privs and installs the filter on every thread of the calling process
// (SECCOMP_FILTER_FLAG_TSYNC), using raw system calls. It is irreversible for this process and
// everything it later starts. It is meant for tests and for code that runs inside the sandbox;
// the bwrap backend hands Program() to bwrap instead.
func Install() error {
	prog, err := Filter()
	if err != nil {
		return err
	}
	// no_new_privs is per thread until TSYNC copies it to the others, so both calls must be
	// made from the same OS thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, _, e := unix.RawSyscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("seccomp: prctl(PR_SET_NO_NEW_PRIVS): %w", e)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	runtime.KeepAlive(&fprog)
	if e != 0 {
		return fmt.Errorf("seccomp: seccomp(SECCOMP_SET_MODE_FILTER): %w", e)
	}
	if r != 0 {
		// With TSYNC a positive result is the id of a thread that could not be synchronized;
		// nothing was installed.
		return fmt.Errorf("seccomp: could not synchronize the filter to thread %d", r)
	}
	return nil
}

// Denied returns the names of the system calls the filter refuses on this architecture, always
// or for some arguments (socket, socketpair, personality, ioctl, clone), in table order. It
// is nil on an unsupported architecture.
func Denied() []string {
	if !arch.supported {
		return nil
	}
	var names []string
	for _, r := range rules {
		if _, ok := arch.nr[r.name]; ok {
			names = append(names, r.name)
		}
	}
	return names
}

// archTable is one architecture's facts: its audit architecture, whether it has the x32 ABI,
// its system-call numbers by name, and the names of rule-table system calls it does not have.
type archTable struct {
	supported bool
	audit     uint32
	x32       bool
	nr        map[string]uintptr
	absent    []string
}

// x32Bit marks x32-ABI system calls on amd64 (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

// compile emits:
//
//	load arch; foreign architecture -> KILL_PROCESS
//	load nr; (amd64) x32 bit set -> ERRNO(EPERM)
//	for each rule: nr != rule's nr -> next rule; [argument checks]; return action
//	ALLOW
//
// Each rule's block ends in returns only, so A still holds nr whenever the next block starts,
// and every jump is local to its block, far below the 255-instruction limit of BPF jumps.
func compile(at archTable, table []rule) ([]unix.SockFilter, error) {
	a := newAsm()

	a.ldAbs(offArch)
	a.jeq(at.audit, "arch_ok", "")
	a.ret(retKillProcess)
	a.label("arch_ok")

	a.ldAbs(offNr)
	if at.x32 {
		a.jset(x32Bit, "", "nr_ok")
		a.ret(retErrno(unix.EPERM))
		a.label("nr_ok")
	}

	absent := map[string]bool{}
	for _, n := range at.absent {
		absent[n] = true
	}
	seen := map[string]bool{}
	for _, r := range table {
		if seen[r.name] {
			return nil, fmt.Errorf("seccomp: system call %q has two rules", r.name)
		}
		seen[r.name] = true
		nr, ok := at.nr[r.name]
		if !ok {
			if absent[r.name] {
				continue
			}
			return nil, fmt.Errorf("seccomp: no number for system call %q on %s", r.name, runtime.GOARCH)
		}
		next := a.fresh("next")
		a.jeq(uint32(nr), "", next)
		if r.when == nil {
			a.ret(r.action)
		} else {
			act, allow := a.fresh("act"), a.fresh("allow")
			r.when.emit(a, act, allow)
			a.label(act)
			a.ret(r.action)
			a.label(allow)
			a.ret(retAllow)
		}
		a.label(next)
	}
	a.ret(retAllow)

	prog, err := a.assemble()
	if err != nil {
		return nil, err
	}
	if err := validate(prog); err != nil {
		return nil, err
	}
	return prog, nil
}
