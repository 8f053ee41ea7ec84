package seccomp

import "golang.org/x/sys/unix"

// rule refuses one system call, always (when == nil) or when its arguments match when.
// Arguments are compared on their low 32 bits only, which is exactly what the kernel looks at
// for every argument checked here (int family/type/personality, unsigned int ioctl request,
// and clone's flags, of which the kernel keeps lower_32_bits()): comparing the full 64-bit
// register would let a caller set a high bit the kernel ignores and slip past the check.
type rule struct {
	name   string // system-call name, the key of the architecture's table
	when   cond   // nil: always
	action uint32
	why    string
}

var (
	eperm  = retErrno(unix.EPERM)
	enosys = retErrno(unix.ENOSYS)
)

// Namespace-creating clone flags. CLONE_NEWTIME (0x80) lies in clone()'s exit-signal byte;
// no valid signal has that bit, so refusing it only turns the kernel's EINVAL into EPERM.
const cloneNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP |
	unix.CLONE_NEWTIME

// Personalities Docker's default profile allows: PER_LINUX, PER_LINUX32, UNAME26,
// UNAME26|PER_LINUX32, and 0xffffffff (query the current persona without changing it).
// Everything else is refused, notably ADDR_NO_RANDOMIZE (turns off ASLR for what is exec'd
// next) and READ_IMPLIES_EXEC.
var allowedPersonalities = []uint32{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

// rules is the filter, in evaluation order. Anything not listed is allowed. Refusals return an
// error (mostly EPERM) rather than killing, so programs that probe for a feature degrade
// gracefully; ENOSYS is used where libraries treat it as "not available here, fall back".
var rules = []rule{
	// Sockets.
	{name: "socket", when: argIn{arg: 0, vals: []uint32{unix.AF_UNIX}}, action: eperm,
		why: "no new Unix sockets: they would reach host daemons whose sockets are visible inside (bind-mounted paths, abstract sockets if the network namespace is shared); what must talk over a Unix socket inside is handed a connected descriptor, or is set up before the filter applies"},
	{name: "socketpair", when: not{all{
		argIn{arg: 0, vals: []uint32{unix.AF_UNIX}},
		argIn{arg: 1, clear: unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC, vals: []uint32{unix.SOCK_STREAM}},
	}}, action: eperm,
		why: "only anonymous Unix stream pairs (what subprocess plumbing uses); other families and types are attack surface nothing here needs"},

	// io_uring bypasses seccomp for the operations it performs and has been a rich source of
	// kernel bugs. ENOSYS makes runtimes (libuv, tokio, liburing users) fall back to plain
	// system calls.
	{name: "io_uring_setup", action: enosys, why: "io_uring operations are not seen by seccomp; large kernel attack surface"},
	{name: "io_uring_enter", action: enosys, why: "io_uring (see io_uring_setup)"},
	{name: "io_uring_register", action: enosys, why: "io_uring (see io_uring_setup)"},

	// Reading or writing other processes.
	{name: "ptrace", action: eperm, why: "tracing other processes; historical seccomp bypasses on older kernels"},
	{name: "process_vm_readv", action: eperm, why: "reads another process's memory"},
	{name: "process_vm_writev", action: eperm, why: "writes another process's memory"},
	{name: "pidfd_getfd", action: eperm, why: "steals file descriptors from another process (ptrace-class access)"},

	// Namespaces and mounts: the sandbox's view of the filesystem is fixed by the backend.
	{name: "clone", when: argAny{arg: 0, bits: cloneNamespaceFlags}, action: eperm,
		why: "new namespaces (user namespaces in particular) reopen mount and capability games inside the sandbox; plain fork and thread creation stay allowed"},
	{name: "clone3", action: enosys, why: "its flags live in memory seccomp cannot read; ENOSYS makes libc fall back to clone, whose flags are checked"},
	{name: "unshare", action: eperm, why: "new namespaces, as for clone"},
	{name: "setns", action: eperm, why: "joining other namespaces"},
	{name: "mount", action: eperm, why: "changes the filesystem view the backend set up (e.g. remounting protected paths read-write)"},
	{name: "umount2", action: eperm, why: "unmounting would reveal what mounts hide or drop read-only overlays"},
	{name: "pivot_root", action: eperm, why: "changes the root"},
	{name: "chroot", action: eperm, why: "changes the root; classic escape helper"},
	{name: "fsopen", action: eperm, why: "new mount API"},
	{name: "fsconfig", action: eperm, why: "new mount API"},
	{name: "fsmount", action: eperm, why: "new mount API"},
	{name: "fspick", action: eperm, why: "new mount API (reconfigures existing mounts)"},
	{name: "move_mount", action: eperm, why: "new mount API"},
	{name: "open_tree", action: eperm, why: "new mount API (clones mount trees)"},
	{name: "open_tree_attr", action: eperm, why: "new mount API (open_tree with attribute changes)"},
	{name: "mount_setattr", action: eperm, why: "new mount API (e.g. clearing read-only)"},

	// Kernel programmability and introspection.
	{name: "bpf", action: eperm, why: "eBPF programs and maps: large kernel attack surface"},
	{name: "perf_event_open", action: eperm, why: "performance events: kernel attack surface and side channels"},
	{name: "userfaultfd", action: eperm, why: "lets exploits stall the kernel mid-copy to win races"},
	{name: "lookup_dcookie", action: eperm, why: "kernel profiling interface"},
	{name: "syslog", action: eperm, why: "reads the kernel log (addresses, host information)"},

	// Keyrings are not namespaced: keys of the user on the host could be found or planted.
	{name: "keyctl", action: eperm, why: "kernel keyrings are not namespaced"},
	{name: "add_key", action: eperm, why: "kernel keyrings are not namespaced"},
	{name: "request_key", action: eperm, why: "kernel keyrings are not namespaced"},

	// File handles open files by inode number, bypassing path lookup and therefore mounts.
	{name: "open_by_handle_at", action: eperm, why: "opens files by handle, ignoring the mount layout (the 'shocker' escape)"},
	{name: "name_to_handle_at", action: eperm, why: "produces handles for open_by_handle_at"},

	// Kernel code and whole-machine state.
	{name: "kexec_load", action: eperm, why: "loads a new kernel"},
	{name: "kexec_file_load", action: eperm, why: "loads a new kernel"},
	{name: "init_module", action: eperm, why: "loads kernel modules"},
	{name: "finit_module", action: eperm, why: "loads kernel modules"},
	{name: "delete_module", action: eperm, why: "unloads kernel modules"},
	{name: "reboot", action: eperm, why: "reboots the machine"},
	{name: "acct", action: eperm, why: "process accounting is machine-wide"},
	{name: "swapon", action: eperm, why: "swap is machine-wide"},
	{name: "swapoff", action: eperm, why: "swap is machine-wide"},
	{name: "settimeofday", action: eperm, why: "the clock is machine-wide"},
	{name: "clock_settime", action: eperm, why: "the clock is machine-wide"},
	{name: "adjtimex", action: eperm, why: "the clock is machine-wide"},
	{name: "clock_adjtime", action: eperm, why: "the clock is machine-wide (adjtimex for any clock)"},
	{name: "quotactl", action: eperm, why: "filesystem quotas are host state"},
	{name: "quotactl_fd", action: eperm, why: "filesystem quotas are host state"},
	{name: "vhangup", action: eperm, why: "hangs up the controlling terminal of other sessions"},
	{name: "iopl", action: eperm, why: "raw I/O port access (amd64)"},
	{name: "ioperm", action: eperm, why: "raw I/O port access (amd64)"},

	// Persona and terminals.
	{name: "personality", when: not{argIn{arg: 0, vals: allowedPersonalities}}, action: eperm,
		why: "only the personas Docker's default profile allows; others disable ASLR or make data executable"},
	{name: "ioctl", when: argIn{arg: 1, vals: []uint32{unix.TIOCSTI, unix.TIOCLINUX}}, action: eperm,
		why: "TIOCSTI and TIOCLINUX push keystrokes into a terminal shared with the user, which then run outside the sandbox"},
}

// cond is a predicate over the system call's arguments, compiled to jumps: to match if it
// holds, else to nomatch. It may clobber A.
type cond interface {
	emit(a *asm, match, nomatch string)
}

// argIn holds if (low32(args[arg]) &^ clear) is one of vals.
type argIn struct {
	arg   int
	clear uint32
	vals  []uint32
}

func (c argIn) emit(a *asm, match, nomatch string) {
	a.ldAbs(argLow(c.arg))
	if c.clear != 0 {
		a.and(^c.clear)
	}
	for i, v := range c.vals {
		if i == len(c.vals)-1 {
			a.jeq(v, match, nomatch)
		} else {
			a.jeq(v, match, "")
		}
	}
}

// argAny holds if low32(args[arg]) has any of bits set.
type argAny struct {
	arg  int
	bits uint32
}

func (c argAny) emit(a *asm, match, nomatch string) {
	a.ldAbs(argLow(c.arg))
	a.jset(c.bits, match, nomatch)
}

// not holds if c does not.
type not struct{ c cond }

func (n not) emit(a *asm, match, nomatch string) { n.c.emit(a, nomatch, match) }

// all holds if every condition does (checked in order, stopping at the first that fails).
type all []cond

func (cs all) emit(a *asm, match, nomatch string) {
	for i, c := range cs {
		if i == len(cs)-1 {
			c.emit(a, match, nomatch)
			return
		}
		next := a.fresh("and")
		c.emit(a, next, nomatch)
		a.label(next)
	}
}
