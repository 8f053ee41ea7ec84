// Command attack is the escape suite's attacker. Each subcommand tries one way out of a keepup
// sandbox and prints one line:
//
//	BLOCKED <why>   exit 0: every attempt failed
//	ESCAPED <what>  exit 1: at least one attempt worked
//
// Exit 3 means the probe itself could not run (bad arguments, an unexpected failure): the
// tests treat it as a failure, never as a block. Run on the host, where nothing contains it, a
// probe reports ESCAPED: the tests do that to show every probe can see what it looks for.
//
// Path arguments may start with "@/", meaning the sandbox's mount folder (/sessions/<id>/mnt/,
// found from where this binary is: /sessions/<id>/mnt/tools/attack), or "~/", meaning $HOME.
//
// Probes that may be killed by seccomp (SIGSYS) or by a resource limit (SIGKILL) run in a
// child process; the parent reports such a death as a block.
//
// Standard library and golang.org/x/sys/unix only, so it builds static with CGO_ENABLED=0.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Payload is what write probes put in files; tests look for it on the host.
const Payload = "PWNED-by-attack"

// report collects the attempts of one probe.
type report struct {
	escaped, blocked []string
}

func (r *report) esc(format string, args ...any) {
	r.escaped = append(r.escaped, fmt.Sprintf(format, args...))
}
func (r *report) blk(format string, args ...any) {
	r.blocked = append(r.blocked, fmt.Sprintf(format, args...))
}

// check records err as a block, or the attempt as an escape when it worked.
func (r *report) check(what string, err error) bool {
	if err != nil {
		r.blk("%s: %v", what, errText(err))
		return false
	}
	r.esc("%s", what)
	return true
}

// report prints the verdict line without exiting.
func (r *report) report() {
	if len(r.escaped) > 0 {
		fmt.Println("ESCAPED " + strings.Join(r.escaped, "; "))
	} else {
		fmt.Println("BLOCKED " + strings.Join(r.blocked, "; "))
	}
}

func (r *report) done() {
	if len(r.escaped) > 0 {
		fmt.Println("ESCAPED " + strings.Join(r.escaped, "; "))
		if len(r.blocked) > 0 {
			fmt.Println("(blocked: " + strings.Join(r.blocked, "; ") + ")")
		}
		os.Exit(1)
	}
	if len(r.blocked) == 0 {
		fail("nothing was attempted")
	}
	fmt.Println("BLOCKED " + strings.Join(r.blocked, "; "))
	os.Exit(0)
}

// errText names the errno of err when it has one (EPERM, EROFS, ...), for readable reports.
func errText(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		if n := unix.ErrnoName(en); n != "" {
			return n + " (" + err.Error() + ")"
		}
	}
	return err.Error()
}

func fail(format string, args ...any) {
	fmt.Printf("ERROR "+format+"\n", args...)
	os.Exit(3)
}

// probes run in-process; wrapped ones run in a child (see the package comment).
var probes = map[string]struct {
	fn      func(r *report, args []string)
	wrapped bool
	// killOK: a SIGKILL of the child is a block (a resource limit ended it).
	killOK bool
}{
	"ok":          {fn: probeOK},
	"write":       {fn: probeWrite},
	"create":      {fn: probeCreate},
	"mutate":      {fn: probeMutate},
	"read":        {fn: probeRead},
	"list":        {fn: probeList},
	"lacks":       {fn: probeLacks},
	"hardlink":    {fn: probeHardlink},
	"renameaside": {fn: probeRenameAside},
	"procroot":    {fn: probeProcRoot},
	"envscan":     {fn: probeEnvScan},
	"ids":         {fn: probeIDs},
	"status":      {fn: probeStatus},
	"mknod":       {fn: probeMknod, wrapped: true},
	"mount":       {fn: probeMount, wrapped: true},
	"sys":         {fn: probeSys, wrapped: true},
	"iouring":     {fn: probeIOUring, wrapped: true},
	"ptrace":      {fn: probePtrace, wrapped: true},
	"unix":        {fn: probeUnix, wrapped: true},
	"abstract":    {fn: probeAbstract, wrapped: true},
	"tcp":         {fn: probeTCP, wrapped: true},
	"dns":         {fn: probeDNS, wrapped: true},
	"raw":         {fn: probeRaw, wrapped: true},
	"tiocsti":     {fn: probeTIOCSTI, wrapped: true},
	"forkbomb":    {fn: probeForkBomb, wrapped: true, killOK: true},
	"memhog":      {fn: probeMemHog, wrapped: true, killOK: true},
	"memhogs":     {fn: probeMemHogs},
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: attack PROBE ARGS...")
	}
	name, args := os.Args[1], os.Args[2:]
	switch name {
	case "hold":
		hold(false)
	case "hold-hard":
		hold(true)
	case "daemon":
		daemon(args)
		return
	case "daemon2":
		daemon2(args)
		return
	case "tree":
		tree(args)
		return
	case "-child":
		if len(args) == 0 {
			fail("-child needs a probe")
		}
		p, ok := probes[args[0]]
		if !ok {
			fail("unknown probe %q", args[0])
		}
		r := &report{}
		p.fn(r, expandAll(args[1:]))
		r.done()
	}
	p, ok := probes[name]
	if !ok {
		fail("unknown probe %q", name)
	}
	if !p.wrapped {
		r := &report{}
		p.fn(r, expandAll(args))
		r.done()
	}
	exe, err := os.Executable()
	if err != nil {
		fail("os.Executable: %v", err)
	}
	cmd := exec.Command(exe, append([]string{"-child", name}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			switch {
			case ws.Signal() == syscall.SIGSYS:
				fmt.Printf("BLOCKED %s was killed by SIGSYS (seccomp)\n", name)
				os.Exit(0)
			case ws.Signal() == syscall.SIGKILL && p.killOK:
				fmt.Printf("BLOCKED %s was killed by SIGKILL (a resource limit)\n", name)
				os.Exit(0)
			}
			fail("%s child killed by %v", name, ws.Signal())
		}
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		fail("starting the %s child: %v", name, err)
	}
}

// mntDir is /sessions/<id>/mnt inside a sandbox: two levels above this binary.
func mntDir() string {
	exe, err := os.Executable()
	if err != nil {
		fail("os.Executable: %v", err)
	}
	return filepath.Dir(filepath.Dir(exe))
}

func expand(p string) string {
	switch {
	case strings.HasPrefix(p, "@/"):
		return filepath.Join(mntDir(), p[2:])
	case strings.HasPrefix(p, "~/"):
		home, _ := os.UserHomeDir()
		return filepath.Join(home, p[2:])
	}
	return p
}

func expandAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expand(a)
	}
	return out
}

func need(args []string, n int, use string) {
	if len(args) < n {
		fail("usage: %s", use)
	}
}

// probeOK is the positive control: it runs, and says who it is and where.
func probeOK(r *report, args []string) {
	wd, _ := os.Getwd()
	fmt.Printf("OK uid=%d euid=%d gid=%d pid=%d cwd=%s mnt=%s\n", os.Getuid(), os.Geteuid(), os.Getgid(), os.Getpid(), wd, mntDir())
	os.Exit(0)
}

// writeFile opens p for writing (following symlinks, creating it) and writes the payload.
func writeFile(p string, flags int) error {
	f, err := os.OpenFile(p, flags, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(Payload)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// probeWrite: write PATH... — open each (following symlinks; create, truncate) and write.
func probeWrite(r *report, args []string) {
	need(args, 1, "write PATH...")
	for _, p := range args {
		r.check("write "+p, writeFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC))
	}
}

// probeCreate: create PATH... — make the missing parent folders, then the file.
func probeCreate(r *report, args []string) {
	need(args, 1, "create PATH...")
	for _, p := range args {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.blk("mkdir -p %s: %v", filepath.Dir(p), errText(err))
			continue
		}
		r.check("create "+p, writeFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC))
	}
}

// probeMutate: mutate PATH... — every way of changing an existing file or folder.
func probeMutate(r *report, args []string) {
	need(args, 1, "mutate PATH...")
	for _, p := range args {
		fi, err := os.Lstat(p)
		if err != nil {
			r.blk("lstat %s: %v", p, errText(err))
			continue
		}
		r.check("setxattr "+p, unix.Lsetxattr(p, "user.pwned", []byte("1"), 0))
		r.check("utimes "+p, os.Chtimes(p, time.Unix(0, 0), time.Unix(0, 0)))
		r.check("chmod "+p, os.Chmod(p, 0o777))
		if fi.IsDir() {
			r.check("create in "+p, writeFile(filepath.Join(p, "pwned.txt"), os.O_WRONLY|os.O_CREATE|os.O_EXCL))
			r.check("mkdir in "+p, os.Mkdir(filepath.Join(p, "pwned.d"), 0o755))
			r.check("symlink in "+p, os.Symlink("/", filepath.Join(p, "pwned.lnk")))
			r.check("mkfifo in "+p, unix.Mkfifo(filepath.Join(p, "pwned.fifo"), 0o644))
			ents, _ := os.ReadDir(p)
			for _, en := range ents {
				if !strings.HasPrefix(en.Name(), "pwned") {
					c := filepath.Join(p, en.Name())
					if en.Type().IsRegular() {
						r.check("write "+c, writeFile(c, os.O_WRONLY|os.O_APPEND))
					}
					r.check("rename "+c, os.Rename(c, c+".moved"))
					break
				}
			}
			r.check("rename "+p, os.Rename(p, p+".moved"))
			r.check("rmdir "+p, unix.Rmdir(p))
			continue
		}
		if fi.Mode().IsRegular() {
			r.check("append "+p, writeFile(p, os.O_WRONLY|os.O_APPEND))
			r.check("truncate "+p, os.Truncate(p, 0))
		}
		r.check("rename "+p, os.Rename(p, p+".moved"))
		r.check("unlink "+p, unix.Unlink(p))
	}
}

// probeRead: read PATH... — read each file; reading any is an escape.
func probeRead(r *report, args []string) {
	need(args, 1, "read PATH...")
	for _, p := range args {
		b, err := os.ReadFile(p)
		if err != nil {
			r.blk("read %s: %v", p, errText(err))
			continue
		}
		if len(b) > 48 {
			b = b[:48]
		}
		r.esc("read %s: %q", p, b)
	}
}

// probeList: list DIR... — a folder that exists and has entries is an escape.
func probeList(r *report, args []string) {
	need(args, 1, "list DIR...")
	for _, d := range args {
		ents, err := os.ReadDir(d)
		if err != nil {
			r.blk("list %s: %v", d, errText(err))
			continue
		}
		if len(ents) == 0 {
			r.blk("%s is empty", d)
			continue
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		r.esc("%s holds %s", d, strings.Join(names, ","))
	}
}

// probeLacks: lacks DIR NAME... — DIR (which may hold things of the sandbox's own) shows none
// of the host's NAMEs.
func probeLacks(r *report, args []string) {
	need(args, 2, "lacks DIR NAME...")
	ents, err := os.ReadDir(args[0])
	if err != nil {
		r.blk("list %s: %v", args[0], errText(err))
		return
	}
	have := map[string]bool{}
	var names []string
	for _, e := range ents {
		have[e.Name()] = true
		names = append(names, e.Name())
	}
	for _, n := range args[1:] {
		if have[n] {
			r.esc("%s holds the host's %s", args[0], n)
		}
	}
	r.blk("%s holds only %v", args[0], names)
}

// probeHardlink: hardlink SRC DST — link SRC at DST, then write through DST.
func probeHardlink(r *report, args []string) {
	need(args, 2, "hardlink SRC DST")
	src, dst := args[0], args[1]
	if err := os.Link(src, dst); err != nil {
		r.blk("link %s %s: %v", src, dst, errText(err))
		return
	}
	if err := writeFile(dst, os.O_WRONLY|os.O_APPEND); err != nil {
		r.blk("linked %s at %s but writing failed: %v", src, dst, errText(err))
		return
	}
	r.esc("linked %s at %s and wrote through it", src, dst)
}

// probeRenameAside: renameaside DIR FILE — move DIR aside, then recreate FILE (under DIR's
// old path) from scratch. The escape is FILE being written.
func probeRenameAside(r *report, args []string) {
	need(args, 2, "renameaside DIR FILE")
	dir, file := args[0], args[1]
	if err := os.Rename(dir, dir+".aside"); err != nil {
		r.blk("rename %s aside: %v", dir, errText(err))
	} else {
		fmt.Fprintf(os.Stderr, "note: moved %s aside\n", dir)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		r.blk("recreate %s: %v", filepath.Dir(file), errText(err))
		return
	}
	r.check("recreate "+file, writeFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC))
}

// procEntries lists the numeric entries of /proc plus self and thread-self.
func procEntries() []string {
	out := []string{"self", "thread-self"}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// probeProcRoot: procroot PATH — reach the host's PATH through /proc/<pid>/root and
// /proc/<pid>/cwd of every process visible, reading and writing.
func probeProcRoot(r *report, args []string) {
	need(args, 1, "procroot PATH")
	target := args[0]
	tried := 0
	for _, pid := range procEntries() {
		for _, via := range []string{"root", "cwd"} {
			base := "/proc/" + pid + "/" + via
			p := base + target
			if via == "cwd" {
				// cwd is a folder somewhere; climb to / from it.
				p = base + strings.Repeat("/..", 16) + target
			}
			tried++
			if b, err := os.ReadFile(p); err == nil {
				r.esc("read %s: %q", p, trim(b))
			} else if !errors.Is(err, os.ErrNotExist) {
				r.blk("read %s: %v", p, errText(err))
			}
			if err := writeFile(p, os.O_WRONLY|os.O_APPEND); err == nil {
				r.esc("wrote %s", p)
			}
		}
	}
	if len(r.escaped) == 0 {
		r.blk("%s not found through /proc/*/root or /proc/*/cwd (%d paths tried)", target, tried)
	}
}

func trim(b []byte) []byte {
	if len(b) > 48 {
		return b[:48]
	}
	return b
}

// probeEnvScan: envscan HEX... — look for each secret (hex-encoded on the command line, so
// that command lines do not carry it) in this process's environment and in the environment
// and command line of every process visible.
func probeEnvScan(r *report, args []string) {
	need(args, 1, "envscan HEXSECRET...")
	var secrets []string
	for _, a := range args {
		b, err := hex.DecodeString(a)
		if err != nil || len(b) == 0 {
			fail("envscan: %q is not hex", a)
		}
		secrets = append(secrets, string(b))
	}
	look := func(where, text string) {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				r.esc("%s holds a secret (%d chars)", where, len(s))
			}
		}
	}
	look("os.Environ", strings.Join(os.Environ(), "\n"))
	unreadable := 0
	procs := procEntries()
	for _, pid := range procs {
		for _, f := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile("/proc/" + pid + "/" + f)
			if err != nil {
				unreadable++
				continue
			}
			look("/proc/"+pid+"/"+f, string(b))
		}
	}
	r.blk("no secret in the environment or in /proc/*/{environ,cmdline} of %d processes (%d unreadable)", len(procs), unreadable)
}

// probeIDs: the process's ids; a setuid binary that gained anything is an escape.
func probeIDs(r *report, args []string) {
	uid, euid, gid, egid := os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid()
	ids := fmt.Sprintf("uid=%d euid=%d gid=%d egid=%d", uid, euid, gid, egid)
	switch {
	case euid == 0:
		r.esc("euid 0 (%s)", ids)
	case euid != uid || egid != gid:
		r.esc("effective ids changed (%s)", ids)
	default:
		r.blk("%s", ids)
	}
	// /proc/self/status: NoNewPrivs, for the record.
	if st, err := readStatus(); err == nil {
		r.blk("NoNewPrivs=%s", st["NoNewPrivs"])
	}
}

func readStatus() (map[string]string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, sc.Err()
}

// probeStatus: capabilities all zero, NoNewPrivs 1, a seccomp filter on.
func probeStatus(r *report, args []string) {
	st, err := readStatus()
	if err != nil {
		fail("reading /proc/self/status: %v", err)
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		v, ok := st[k]
		if !ok {
			continue // CapAmb is missing on old kernels
		}
		n, err := strconv.ParseUint(v, 16, 64)
		if err != nil {
			fail("%s: %q", k, v)
		}
		if n != 0 {
			r.esc("%s=%s", k, v)
		} else {
			r.blk("%s=0", k)
		}
	}
	if v := st["NoNewPrivs"]; v != "1" {
		r.esc("NoNewPrivs=%s", v)
	} else {
		r.blk("NoNewPrivs=1")
	}
	if v := st["Seccomp"]; v != "2" {
		r.esc("Seccomp=%s (no filter)", v)
	} else {
		r.blk("Seccomp=2")
	}
	r.blk("Uid=%s", st["Uid"])
}

// probeMknod: mknod DIR... — create device nodes (/dev/null's 1:3, a disk's 8:0) in each.
func probeMknod(r *report, args []string) {
	need(args, 1, "mknod DIR...")
	for _, d := range args {
		p := filepath.Join(d, "pwned-null")
		r.check("mknod c 1 3 "+p, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		p = filepath.Join(d, "pwned-sda")
		r.check("mknod b 8 0 "+p, unix.Mknod(p, unix.S_IFBLK|0o666, int(unix.Mkdev(8, 0))))
	}
}

// probeMount: mount DIR [RO-MOUNT...] — mount a tmpfs and bind / on DIR, and remount each
// RO-MOUNT read-write.
func probeMount(r *report, args []string) {
	need(args, 1, "mount DIR [RO-MOUNT...]")
	dir := args[0]
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); r.check("mount tmpfs on "+dir, err) {
		unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err := unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, ""); r.check("bind / on "+dir, err) {
		unix.Unmount(dir, unix.MNT_DETACH)
	}
	for _, m := range args[1:] {
		r.check("remount rw "+m, unix.Mount("", m, "", unix.MS_REMOUNT|unix.MS_BIND, ""))
		r.check("umount "+m, unix.Unmount(m, unix.MNT_DETACH))
	}
}

// probeSys: sys NAME — one system call the sandbox refuses.
func probeSys(r *report, args []string) {
	need(args, 1, "sys NAME")
	var err error
	switch args[0] {
	case "unshare-user":
		err = inChild(func() syscall.Errno {
			_, _, en := unix.RawSyscall(unix.SYS_UNSHARE, unix.CLONE_NEWUSER, 0, 0)
			return en
		})
	case "unshare-mount":
		// In a new user namespace we would hold every capability: prove it with a mount.
		tmpfs, tmp := cstr("tmpfs"), cstr("/tmp")
		err = inChild(func() syscall.Errno {
			if _, _, en := unix.RawSyscall(unix.SYS_UNSHARE, unix.CLONE_NEWUSER|unix.CLONE_NEWNS, 0, 0); en != 0 {
				return en
			}
			_, _, en := unix.RawSyscall6(unix.SYS_MOUNT, uintptr(unsafe.Pointer(tmpfs)), uintptr(unsafe.Pointer(tmp)), uintptr(unsafe.Pointer(tmpfs)), 0, 0, 0)
			return en
		})
	case "clone-newuser":
		pid, _, en := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.CLONE_NEWUSER|unix.SIGCHLD), 0, 0, 0, 0, 0)
		if en == 0 {
			if pid == 0 {
				unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
			}
			var ws unix.WaitStatus
			unix.Wait4(int(pid), &ws, 0, nil)
		} else {
			err = en
		}
	case "setns":
		fd, oerr := unix.Open("/proc/self/ns/mnt", unix.O_RDONLY, 0)
		if oerr != nil {
			err = oerr
			break
		}
		err = inChild(func() syscall.Errno {
			_, _, en := unix.RawSyscall(unix.SYS_SETNS, uintptr(fd), unix.CLONE_NEWNS, 0)
			return en
		})
	case "chroot":
		err = unix.Chroot("/")
	case "bpf":
		// BPF_PROG_LOAD of nothing: EINVAL means the call got through to the kernel.
		attr := make([]byte, 128)
		_, _, en := unix.Syscall(unix.SYS_BPF, 5, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		err = reached(en)
	case "perf_event_open":
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
		attr.Size = uint32(unsafe.Sizeof(attr))
		var fd int
		fd, err = unix.PerfEventOpen(&attr, 0, -1, -1, 0)
		if err == nil {
			unix.Close(fd)
		}
	case "userfaultfd":
		fd, _, en := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0)
		if en == 0 {
			unix.Close(int(fd))
		} else {
			err = en
		}
	case "keyctl":
		_, err = unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_USER_KEYRING, 0, 0, 0)
	case "add_key":
		_, err = unix.AddKey("user", "keepup-escape-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
	case "personality":
		// ADDR_NO_RANDOMIZE turns off ASLR for what is exec'd next.
		_, _, en := unix.Syscall(unix.SYS_PERSONALITY, 0x0040000, 0, 0)
		err = errnoErr(en)
	case "open_by_handle_at":
		// A zero handle for the root: EINVAL/ESTALE means the call reached the kernel.
		h := make([]byte, 8+128)
		cwd := unix.AT_FDCWD
		_, _, en := unix.Syscall6(unix.SYS_OPEN_BY_HANDLE_AT, uintptr(cwd), uintptr(unsafe.Pointer(&h[0])), unix.O_RDONLY, 0, 0, 0)
		err = reached(en)
	case "process_vm_readv":
		buf := make([]byte, 8)
		local := []unix.Iovec{{Base: &buf[0], Len: 8}}
		remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&buf[0])), Len: 8}}
		_, err = unix.ProcessVMReadv(os.Getpid(), local, remote, 0)
	case "init_module":
		_, _, en := unix.Syscall(unix.SYS_INIT_MODULE, 0, 0, 0)
		err = reached(en)
	case "kexec_load":
		// An architecture that is not this one: the kernel refuses it after checking
		// privileges, so nothing is loaded or unloaded even where the call is allowed.
		_, _, en := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0x7fff0000, 0, 0)
		err = reached(en)
	case "syslog":
		buf := make([]byte, 64)
		_, err = unix.Klogctl(3, buf) // SYSLOG_ACTION_READ_ALL
	default:
		fail("sys: unknown call %q", args[0])
	}
	r.check(args[0], err)
}

// inChild runs fn in a raw fork of this process — single-threaded, as unshare and setns
// need — and returns the errno it returned. fn must only make raw system calls.
func inChild(fn func() syscall.Errno) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, _, en := unix.RawSyscall(unix.SYS_FORK, 0, 0, 0)
	if en != 0 {
		return fmt.Errorf("fork: %w", en)
	}
	if pid == 0 {
		code := fn()
		unix.RawSyscall(unix.SYS_EXIT_GROUP, uintptr(code), 0, 0)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(int(pid), &ws, 0, nil); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	if ws.Signaled() {
		return fmt.Errorf("killed by %v", ws.Signal())
	}
	if ws.ExitStatus() != 0 {
		return syscall.Errno(ws.ExitStatus())
	}
	return nil
}

// cstr is a NUL-terminated copy of s, made before a raw fork.
func cstr(s string) *byte {
	b := append([]byte(s), 0)
	return &b[0]
}

// reached turns an errno into an escape when the kernel got to validate the arguments (so
// nothing in front of it refused the call): EINVAL, EFAULT, EBADF, ESTALE and the like.
func reached(en syscall.Errno) error {
	switch en {
	case unix.EPERM, unix.EACCES, unix.ENOSYS, unix.ESRCH:
		return en
	}
	return nil
}

func errnoErr(en syscall.Errno) error {
	if en == 0 {
		return nil
	}
	return en
}

// probeIOUring: io_uring_setup.
func probeIOUring(r *report, args []string) {
	params := make([]byte, 120) // struct io_uring_params
	fd, _, en := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params[0])), 0)
	if en == 0 {
		unix.Close(int(fd))
	}
	r.check("io_uring_setup", errnoErr(en))
}

// probePtrace: ptrace [PID] — attach to PID (another process of the sandbox) and to a child of
// our own; read their memory with process_vm_readv.
func probePtrace(r *report, args []string) {
	var pids []int
	if len(args) > 0 {
		pid, err := strconv.Atoi(args[0])
		if err != nil {
			fail("ptrace: %q is not a pid", args[0])
		}
		pids = append(pids, pid)
	}
	exe, _ := os.Executable()
	child := exec.Command(exe, "hold", "ptrace-target")
	if err := child.Start(); err != nil {
		fail("starting a child: %v", err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	pids = append(pids, child.Process.Pid)
	time.Sleep(100 * time.Millisecond)
	runtime.LockOSThread() // ptrace requests must come from the tracing thread
	for _, pid := range pids {
		if err := unix.PtraceAttach(pid); r.check(fmt.Sprintf("PTRACE_ATTACH %d", pid), err) {
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, unix.WALL, nil)
			unix.PtraceDetach(pid)
		}
		if err := unix.PtraceSeize(pid); r.check(fmt.Sprintf("PTRACE_SEIZE %d", pid), err) {
			unix.PtraceDetach(pid)
		}
		buf := make([]byte, 8)
		local := []unix.Iovec{{Base: &buf[0], Len: 8}}
		remote := []unix.RemoteIovec{{Base: 0x400000, Len: 8}} // the static binary's text
		// EFAULT and the like mean the access check passed (the address was just wrong).
		_, err := unix.ProcessVMReadv(pid, local, remote, 0)
		var en syscall.Errno
		if errors.As(err, &en) {
			err = reached(en)
		}
		r.check(fmt.Sprintf("process_vm_readv %d", pid), err)
	}
}

// probeUnix: unix PATH — connect to a Unix socket by path.
func probeUnix(r *report, args []string) {
	need(args, 1, "unix PATH")
	for _, typ := range []int{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET} {
		r.check(fmt.Sprintf("connect %s (type %d)", args[0], typ), connectUnix(typ, &unix.SockaddrUnix{Name: args[0]}))
	}
}

// probeAbstract: abstract NAME — connect to the abstract Unix socket @NAME.
func probeAbstract(r *report, args []string) {
	need(args, 1, "abstract NAME")
	r.check("connect @"+args[0], connectUnix(unix.SOCK_STREAM, &unix.SockaddrUnix{Name: "@" + args[0]}))
}

func connectUnix(typ int, sa *unix.SockaddrUnix) error {
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sa); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if typ != unix.SOCK_DGRAM {
		unix.Write(fd, []byte("hello from the sandbox\n"))
	}
	return nil
}

// probeTCP: tcp HOST:PORT... — connect to each.
func probeTCP(r *report, args []string) {
	need(args, 1, "tcp HOST:PORT...")
	for _, a := range args {
		c, err := net.DialTimeout("tcp", a, 3*time.Second)
		if err == nil {
			c.Write([]byte("hello from the sandbox\n"))
			c.Close()
		}
		r.check("connect "+a, err)
	}
}

// probeDNS: dns NAME [SERVER:PORT...] — resolve NAME with the system's resolver and with each
// SERVER.
func probeDNS(r *report, args []string) {
	need(args, 1, "dns NAME [SERVER:PORT...]")
	name := args[0]
	lookup := func(what string, res *net.Resolver) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		addrs, err := res.LookupHost(ctx, name)
		if err == nil {
			r.esc("%s resolved %s to %v", what, name, addrs)
			return
		}
		r.blk("%s: %v", what, err)
	}
	lookup("system resolver", &net.Resolver{PreferGo: true})
	for _, srv := range args[1:] {
		srv := srv
		lookup("resolver "+srv, &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", srv)
		}})
	}
}

// probeRaw: raw sockets (ICMP, IPv6 ICMP, packet).
func probeRaw(r *report, args []string) {
	try := func(what string, domain, typ, proto int) {
		fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		if err == nil {
			unix.Close(fd)
		}
		r.check(what, err)
	}
	try("socket(AF_INET, SOCK_RAW, ICMP)", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	try("socket(AF_INET, SOCK_RAW, RAW)", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	try("socket(AF_INET6, SOCK_RAW, ICMPV6)", unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
	try("socket(AF_PACKET, SOCK_RAW)", unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// probeTIOCSTI pushes a line into the input of every terminal it can reach: stdin, stdout,
// stderr and /dev/tty.
func probeTIOCSTI(r *report, args []string) {
	fds := map[string]int{"stdin": 0, "stdout": 1, "stderr": 2}
	if fd, err := unix.Open("/dev/tty", unix.O_RDWR|unix.O_NOCTTY, 0); err == nil {
		fds["/dev/tty"] = fd
	} else {
		r.blk("open /dev/tty: %v", errText(err))
	}
	names := make([]string, 0, len(fds))
	for n := range fds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fd := fds[n]
		var err error
		for _, c := range []byte("#keepup-tiocsti\n") {
			c := c
			if err = unix.IoctlSetPointerInt(fd, unix.TIOCSTI, int(c)); err != nil {
				break
			}
		}
		r.check("TIOCSTI on "+n, err)
	}
}

// probeForkBomb: forkbomb [MAX] — fork children that stay until MAX are alive at once. Each
// child is a raw fork that only pauses, so the bomb costs kernel memory, not user memory.
// Reaching MAX means nothing limited the number of processes.
func probeForkBomb(r *report, args []string) {
	max := 10000
	if len(args) > 0 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n <= 0 {
			fail("forkbomb: %q is not a count", args[0])
		}
		max = n
	}
	signal.Ignore(syscall.SIGCHLD)
	runtime.LockOSThread()
	var pids []int
	var ferr syscall.Errno
	for len(pids) < max {
		pid, _, en := unix.RawSyscall(unix.SYS_FORK, 0, 0, 0)
		if en != 0 {
			ferr = en
			break
		}
		if pid == 0 {
			// The child: die with the parent, then wait for a signal, touching nothing of the
			// Go runtime.
			unix.RawSyscall(unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0)
			for {
				unix.RawSyscall(unix.SYS_PAUSE, 0, 0, 0)
			}
		}
		pids = append(pids, int(pid))
	}
	for _, p := range pids {
		unix.Kill(p, unix.SIGKILL)
	}
	if ferr != 0 {
		r.blk("fork failed after %d processes: %v", len(pids), errText(ferr))
		return
	}
	r.esc("%d processes alive at once, no limit hit", len(pids))
}

// probeMemHog: memhog [MB [hold]] — map and touch memory until MB (default: half the
// machine's memory) are resident. With hold, it then keeps the memory until its standard input
// closes.
func probeMemHog(r *report, args []string) {
	if len(args) > 1 && args[1] == "hold" {
		defer func() {
			r.report()
			io.Copy(io.Discard, os.Stdin)
			r.done()
		}()
	}
	var limit int64
	if len(args) > 0 {
		n, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || n <= 0 {
			fail("memhog: %q is not a size in MB", args[0])
		}
		limit = n << 20
	} else {
		limit = memTotal() / 2
		if limit <= 0 {
			fail("memhog: cannot read MemTotal")
		}
	}
	const chunk = 64 << 20
	page := os.Getpagesize()
	var got int64
	for got < limit {
		m, err := unix.Mmap(-1, 0, chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			r.blk("mmap failed after %d MB: %v", got>>20, errText(err))
			return
		}
		for i := 0; i < chunk; i += page {
			m[i] = 1
		}
		got += chunk
	}
	r.esc("%d MB resident, no limit hit", got>>20)
}

// probeMemHogs: memhogs [PROCS [MB]] — the memory hog spread over PROCS processes (default 8)
// holding MB together (default: half the machine's memory), so that a limit per process does
// not stop it. Reaching MB at once means nothing limited the session as a whole.
func probeMemHogs(r *report, args []string) {
	procs := 8
	if len(args) > 0 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n <= 0 {
			fail("memhogs: %q is not a count", args[0])
		}
		procs = n
	}
	total := memTotal() / 2 >> 20
	if len(args) > 1 {
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || n <= 0 {
			fail("memhogs: %q is not a size in MB", args[1])
		}
		total = n
	}
	share := (total + int64(procs) - 1) / int64(procs)
	exe, _ := os.Executable()
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		line  chan string
	}
	var kids []child
	defer func() {
		for _, k := range kids {
			k.stdin.Close()
			k.cmd.Process.Kill()
			k.cmd.Wait()
		}
	}()
	for i := 0; i < procs; i++ {
		c := exec.Command(exe, "-child", "memhog", strconv.FormatInt(share, 10), "hold")
		in, err := c.StdinPipe()
		if err != nil {
			fail("memhogs: %v", err)
		}
		out, err := c.StdoutPipe()
		if err != nil {
			fail("memhogs: %v", err)
		}
		if err := c.Start(); err != nil {
			r.blk("starting hog %d: %v", i, errText(err))
			break
		}
		k := child{cmd: c, stdin: in, line: make(chan string, 1)}
		go func() {
			sc := bufio.NewScanner(out)
			if sc.Scan() {
				k.line <- sc.Text()
			}
			close(k.line)
		}()
		kids = append(kids, k)
	}
	var held int64
	var notes []string
	for i, k := range kids {
		l, ok := <-k.line
		if !ok {
			notes = append(notes, fmt.Sprintf("hog %d died", i))
			continue
		}
		var mb int64
		if f := strings.Fields(l); len(f) > 1 {
			if f[0] == "ESCAPED" {
				mb, _ = strconv.ParseInt(f[1], 10, 64)
			} else if j := strings.Index(l, "after "); j >= 0 {
				mb, _ = strconv.ParseInt(strings.Fields(l[j+6:])[0], 10, 64)
				notes = append(notes, fmt.Sprintf("hog %d: %s", i, l))
			}
		}
		held += mb
	}
	if held >= total {
		r.esc("%d processes held %d MB at once, no limit hit", len(kids), held)
		return
	}
	r.blk("%d processes held only %d of %d MB at once (%s)", len(kids), held, total, strings.Join(notes, "; "))
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 0
}

// hold sleeps for 1000 seconds; hard, it ignores the polite signals too. The marker is its
// argument, for the host to find it in /proc.
func hold(hard bool) {
	if hard {
		signal.Ignore(syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGPIPE)
	}
	time.Sleep(1000 * time.Second)
	os.Exit(0)
}

// daemon MARKER: leave a hold-hard behind that tries to outlive its command: a new session,
// no terminal, its parent gone (double fork), polite signals ignored.
func daemon(args []string) {
	need(args, 1, "daemon MARKER")
	exe, _ := os.Executable()
	c := exec.Command(exe, "daemon2", args[0])
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Run(); err != nil {
		fail("daemon: %v", err)
	}
	fmt.Println("STARTED daemon " + args[0])
}

func daemon2(args []string) {
	exe, _ := os.Executable()
	c := exec.Command(exe, "hold-hard", args[0])
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		fail("daemon2: %v", err)
	}
	os.Exit(0)
}

// tree MARKER: a process tree for the timeout to kill: a child in the same process group, a
// daemon that left it, and this process, all holding.
func tree(args []string) {
	need(args, 1, "tree MARKER")
	exe, _ := os.Executable()
	c := exec.Command(exe, "hold", args[0])
	if err := c.Start(); err != nil {
		fail("tree: %v", err)
	}
	daemon(args)
	fmt.Println("STARTED tree " + args[0])
	hold(true)
}
