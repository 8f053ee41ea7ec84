package bwrap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/inside"
	"golang.org/x/sys/unix"
)

// BaseEnv is the environment every command starts from; nothing of the host's environment
// enters the sandbox.
var BaseEnv = map[string]string{
	"PATH":    "/usr/local/bin:/usr/bin:/bin",
	"HOME":    Home,
	"USER":    "keepup",
	"LOGNAME": "keepup",
	"SHELL":   "/bin/bash",
	"LANG":    "C.UTF-8",
	"TERM":    "dumb",
	"TMPDIR":  "/tmp",
}

// etcFiles are the host /etc entries bound read-only when present: what the dynamic linker,
// TLS and time zones need. Never the host's accounts, shell rc files, resolver or anything else.
var etcFiles = []string{
	"ld.so.cache", "ld.so.conf", "ld.so.conf.d",
	"ssl", "ca-certificates", "ca-certificates.conf", "pki", "crypto-policies",
	"alternatives", "localtime", "timezone", "mime.types", "protocols", "services",
	"os-release",
}

// Generated /etc files.
const (
	etcPasswd   = "root:x:0:0:root:/root:/usr/sbin/nologin\nkeepup:x:1000:1000:keepup:" + Home + ":/bin/bash\n"
	etcGroup    = "root:x:0:\nkeepup:x:1000:\n"
	etcHosts    = "127.0.0.1\tlocalhost keepup\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	etcHostname = "keepup\n"
	etcNSSwitch = "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nprotocols: files\nservices: files\n"
)

// reserved are the sandbox paths a mount may not cover.
var reserved = []string{"/", "/usr", "/etc", "/proc", "/dev", "/sys", "/tmp", "/home", Home, "/.keepup",
	"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/var", "/run", "/root"}

// systemLinks lays out /bin, /sbin and /lib*: symlinks where the host has symlinks (a merged
// /usr), read-only binds where it has folders.
func systemLinks() []string {
	var args []string
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"} {
		fi, err := os.Lstat(d)
		if err != nil {
			continue
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if t, err := os.Readlink(d); err == nil {
				args = append(args, "--symlink", t, d)
			}
		} else if fi.IsDir() {
			args = append(args, "--ro-bind", d, d)
		}
	}
	return args
}

// layout is a session's bwrap command line and the descriptors it refers to.
type layout struct {
	args  []string
	files []*os.File // ExtraFiles: fd 3 + index
	// created lists the placeholders made on the host (by bwrap, or by createPlaceholders for
	// the guard stage); guarded, every path guarded in a read-write mount.
	created, guarded []placeholder
	// landlockRW lists the read-write mount destinations.
	landlockRW []string
	// stage lists the guards the guard stage makes (Backend.feat.guardStage), in order; bwrap
	// then binds none of them itself.
	stage []stageGuard
	// listed counts the files and folders the read-write mounts' walks listed.
	listed int
}

// stageGuard is a guard for the guard stage. A placeholder (one with a Src) is made on the
// host before the stage starts; its device and inode are known once createPlaceholders has
// made it.
type stageGuard struct {
	inside.GuardMount
	dir bool // the placeholder is a folder
}

// addFile registers f to be passed to bwrap and returns its descriptor number there.
func (l *layout) addFile(f *os.File) string {
	l.files = append(l.files, f)
	return strconv.Itoa(3 + len(l.files) - 1)
}

func (l *layout) closeFiles() {
	for _, f := range l.files {
		if f != nil {
			f.Close()
		}
	}
}

// validateSpec checks what Start is given.
func validateSpec(spec *sandbox.Spec) error {
	if spec.SessionID == "" || strings.Trim(spec.SessionID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" || strings.HasPrefix(spec.SessionID, ".") {
		return fmt.Errorf("bwrap: Spec.SessionID %q: want letters, digits, '-', '_' and '.'", spec.SessionID)
	}
	dests := map[string]bool{}
	for i, m := range spec.Mounts {
		if !filepath.IsAbs(m.Host) {
			return fmt.Errorf("bwrap: Spec.Mounts[%d].Host %q is not absolute", i, m.Host)
		}
		if !path.IsAbs(m.Dest) || path.Clean(m.Dest) != m.Dest {
			return fmt.Errorf("bwrap: Spec.Mounts[%d].Dest %q is not a clean absolute path", i, m.Dest)
		}
		for _, r := range reserved {
			if m.Dest == r || strings.HasPrefix(m.Dest+"/", r+"/") && r != "/" {
				return fmt.Errorf("bwrap: Spec.Mounts[%d].Dest %q covers the sandbox's %s", i, m.Dest, r)
			}
		}
		if dests[m.Dest] {
			return fmt.Errorf("bwrap: Spec.Mounts[%d].Dest %q is mounted twice", i, m.Dest)
		}
		dests[m.Dest] = true
		if len(m.Protect) > 0 && !m.RW {
			// Harmless (a read-only mount protects everything), but say so: it is a caller bug.
			return fmt.Errorf("bwrap: Spec.Mounts[%d] is read-only but lists protected paths", i)
		}
	}
	if spec.Workdir != "" && !path.IsAbs(spec.Workdir) {
		return fmt.Errorf("bwrap: Spec.Workdir %q is not absolute", spec.Workdir)
	}
	if !spec.Network.Enabled() && (spec.Network.ProxyToken != "" || len(spec.Network.ProxyCA) > 0 || len(spec.Network.Env) > 0) {
		return errNoProxy
	}
	if strings.IndexFunc(spec.Network.ProxyToken, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return errors.New("bwrap: Spec.Network.ProxyToken holds spaces or control characters")
	}
	for k := range spec.Network.Env {
		if !validEnvName(k) {
			return fmt.Errorf("bwrap: Spec.Network.Env: invalid variable name %q", k)
		}
	}
	for k := range spec.Env {
		if !validEnvName(k) {
			return fmt.Errorf("bwrap: Spec.Env: invalid variable name %q", k)
		}
	}
	return nil
}

// writeStateFiles writes the placeholder sources into dir.
func writeStateFiles(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "empty-file"), nil, 0o444); err != nil {
		return err
	}
	return os.Mkdir(filepath.Join(dir, "empty-dir"), 0o555)
}

// buildLayout works out the bwrap command line of a session, and with allowStage, the guards
// the guard stage is to make (see Backend.stageFrom). It opens the host folders of the
// mounts; the caller closes l.files (also on error, which closes what was opened).
func (b *Backend) buildLayout(ctx context.Context, spec *sandbox.Spec, stateDir string, helperArg string, allowStage bool) (*layout, error) {
	// fd 3: the helper's control socket, fd 4: the seccomp filter; the session fills them in.
	l := &layout{files: make([]*os.File, 2)}
	a := func(s ...string) { l.args = append(l.args, s...) }
	a("--unshare-user", "--uid", strconv.Itoa(UID), "--gid", strconv.Itoa(GID))
	if b.feat.disableUserns {
		a("--disable-userns")
	}
	a("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try",
		"--hostname", "keepup", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv")
	for _, k := range sortedKeys(BaseEnv) {
		a("--setenv", k, BaseEnv[k])
	}
	// System: /usr read-only, /bin and friends as on the host.
	a("--ro-bind", "/usr", "/usr")
	a(systemLinks()...)
	for _, e := range slices.Concat(etcFiles, javaEtc()) {
		p := "/etc/" + e
		fi, err := os.Lstat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Size() <= maxCopied {
			if f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0); err == nil {
				b.copyIn(l, f, p)
				continue
			}
		}
		// A link into /usr (os-release, localtime) leads to the same file inside.
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if t, err := filepath.EvalSymlinks(p); err == nil && strings.HasPrefix(t, "/usr/") {
				a("--symlink", t, p)
				continue
			}
		}
		if _, err := os.Stat(p); err == nil {
			a("--ro-bind", p, p)
		}
	}
	for _, g := range [][2]string{{"passwd", etcPasswd}, {"group", etcGroup}, {"hosts", etcHosts},
		{"hostname", etcHostname}, {"nsswitch.conf", etcNSSwitch}} {
		f, err := sealedFile("keepup-etc-"+g[0], []byte(g[1]))
		if err != nil {
			return l, fmt.Errorf("bwrap: /etc/%s: %w", g[0], err)
		}
		b.copyIn(l, f, "/etc/"+g[0])
	}
	a("--symlink", "/proc/self/mounts", "/etc/mtab")
	a("--proc", "/proc", "--dev", "/dev")
	tmpfs := func(dest, perms string, size int64) {
		if b.feat.perms {
			a("--perms", perms)
		}
		if b.feat.size {
			a("--size", strconv.FormatInt(size, 10))
		}
		a("--tmpfs", dest)
	}
	tmpfs("/tmp", "1777", b.cfg.TmpfsBytes)
	tmpfs(Home, "0700", b.cfg.TmpfsBytes)
	// /dev is a tmpfs without a size; its own shm, and then nothing else in it, is writable.
	tmpfs("/dev/shm", "1777", b.cfg.TmpfsBytes/4)
	a("--remount-ro", "/dev")
	a("--dir", "/var", "--symlink", "../tmp", "/var/tmp")
	a("--ro-bind", b.cfg.Exe, ExePath)
	if spec.Network.Enabled() {
		bundle, jks, system := caStores(b.systemBundles, spec.Network.ProxyCA, filepath.Join(b.cfg.StateDir, systemCertsCache))
		// The bundle is shown at the system bundle's own path too, for the tools that read only
		// that: where /etc shows it (a bound folder of etcFiles) and it is a plain file. There it
		// is the one copy, and CABundle a link to it.
		atSystem := false
		if system != "" && strings.HasPrefix(system, "/etc/") {
			top := strings.SplitN(strings.TrimPrefix(system, "/etc/"), "/", 2)[0]
			if slices.Contains(etcFiles, top) {
				_, err := os.Stat(system)
				atSystem = err == nil
			}
		}
		f, err := sealedFile("keepup-ca-bundle", bundle)
		if err != nil {
			return l, fmt.Errorf("bwrap: %s: %w", CABundle, err)
		}
		if atSystem {
			if b.feat.perms {
				a("--perms", "0444")
			}
			a("--ro-bind-data", l.addFile(f), system, "--symlink", system, CABundle)
		} else {
			b.copyIn(l, f, CABundle)
		}
		if f, err = sealedFile("keepup-java-truststore", jks); err != nil {
			return l, fmt.Errorf("bwrap: %s: %w", JavaTrustStore, err)
		}
		b.copyIn(l, f, JavaTrustStore)
		if spec.Network.ProxyToken != "" {
			f, err := sealedFile("keepup-java-agent", javaProxyAgentJar())
			if err != nil {
				return l, fmt.Errorf("bwrap: Java agent: %w", err)
			}
			b.copyIn(l, f, JavaProxyAgent)
		}
	}

	// The grants, parents before anything mounted inside them. Their guards are planned first:
	// how many there are decides who makes them (Backend.stageFrom).
	mounts := slices.Clone(spec.Mounts)
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(mounts[i].Dest, "/") < strings.Count(mounts[j].Dest, "/")
	})
	type grant struct {
		m    sandbox.Mount
		host string
		root *os.File
		pl   *guardPlan // read-write mounts only
	}
	var grants []grant
	fail := func(err error) (*layout, error) {
		for _, g := range grants {
			g.root.Close()
			if g.pl != nil {
				g.pl.close()
			}
		}
		return l, err
	}
	guards := 0
	for _, m := range mounts {
		host, err := filepath.EvalSymlinks(m.Host)
		if err != nil {
			return fail(fmt.Errorf("bwrap: mount %s: %w", m.Host, err))
		}
		if fi, err := os.Stat(host); err != nil || !fi.IsDir() {
			return fail(fmt.Errorf("bwrap: mount %s is not a folder", m.Host))
		}
		root, err := openNoFollow(host, "")
		if err != nil {
			return fail(fmt.Errorf("bwrap: mount %s: %w", m.Host, err))
		}
		g := grant{m: m, host: host, root: root}
		if m.RW {
			if g.pl, err = planGuards(ctx, host, m.Protect); err != nil {
				root.Close()
				return fail(fmt.Errorf("bwrap: mount %s: %w", m.Host, err))
			}
			guards += len(g.pl.guards)
			l.listed += g.pl.listed
		}
		grants = append(grants, g)
	}
	stage := allowStage && b.feat.guardStage && guards >= b.stageFrom
	for _, g := range grants {
		b.bind(l, g.m.RW, g.root, g.host, g.m.Dest)
		if g.pl == nil {
			continue
		}
		l.landlockRW = append(l.landlockRW, g.m.Dest)
		l.created = append(l.created, g.pl.created...)
		l.guarded = append(l.guarded, g.pl.guarded...)
		for _, gd := range g.pl.guards {
			if stage {
				l.stage = append(l.stage, stageGuardFor(g.host, stateDir, gd))
				continue
			}
			dest := path.Join(g.m.Dest, gd.rel)
			switch gd.kind {
			case guardPin:
				b.bind(l, true, gd.f, filepath.Join(g.host, gd.rel), dest)
			case guardRO:
				b.bind(l, false, gd.f, filepath.Join(g.host, gd.rel), dest)
			case guardPlaceholder:
				src := "empty-file"
				if gd.dir {
					src = "empty-dir"
				}
				a("--ro-bind", filepath.Join(stateDir, src), dest)
			}
		}
	}
	// The root and the folders bwrap made in it (/sessions/..., /etc) are read-only.
	a("--remount-ro", "/")
	a("--seccomp", "4", "--chdir", "/")
	a(ExePath, "__sandbox-helper", helperArg)
	return l, nil
}

// stageGuardFor is guard g of the read-write mount of host for the guard stage. It closes g's
// descriptor: the stage opens the path again in its own mount namespace, and checks it is the
// inode g's descriptor named (one that cannot be told is never matched: the start fails).
func stageGuardFor(host, stateDir string, g guard) stageGuard {
	sg := stageGuard{GuardMount: inside.GuardMount{Root: host, Rel: g.rel}}
	if g.kind == guardPlaceholder {
		sg.dir, sg.RO = g.dir, true
		sg.Src = filepath.Join(stateDir, "empty-file")
		if g.dir {
			sg.Src = filepath.Join(stateDir, "empty-dir")
		}
		return sg
	}
	defer g.f.Close()
	sg.RO = g.kind == guardRO
	var st unix.Stat_t
	if unix.Fstat(int(g.f.Fd()), &st) == nil {
		sg.Dev, sg.Ino = uint64(st.Dev), st.Ino
	}
	return sg
}

// createPlaceholders makes on the host the placeholders of the guard stage's guards, as bwrap
// makes those of its binds: an empty folder or file where a protected path does not exist,
// found and made without following a symlink, and notes each one's device and inode. One that
// exists meanwhile (another session's placeholder, or the user's file) is guarded as it is.
func createPlaceholders(gs []stageGuard) error {
	for i := range gs {
		g := &gs[i]
		if g.Src == "" { // a pin or a read-only bind: the path exists
			continue
		}
		dir, err := openNoFollow(g.Root, path.Dir(g.Rel)) // O_PATH: enough for the *at calls
		if err != nil {
			return fmt.Errorf("placeholder %s: %w", filepath.Join(g.Root, g.Rel), err)
		}
		name := path.Base(g.Rel)
		if g.dir {
			err = unix.Mkdirat(int(dir.Fd()), name, 0o755)
		} else {
			var fd int
			if fd, err = unix.Openat(int(dir.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644); err == nil {
				unix.Close(fd)
			}
		}
		var st unix.Stat_t
		if err == nil || errors.Is(err, unix.EEXIST) {
			err = unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		dir.Close()
		if err != nil {
			return fmt.Errorf("placeholder %s: %w", filepath.Join(g.Root, g.Rel), err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("%w: %s (replace it with what it points to, or grant the folder read-only)", ErrSymlinkProtected, filepath.Join(g.Root, g.Rel))
		}
		g.Dev, g.Ino = uint64(st.Dev), st.Ino
	}
	return nil
}

// maxCopied is the size up to which a host /etc file is copied into the sandbox rather than
// bound.
const maxCopied = 1 << 20

// copyIn adds a read-only copy of f's content at dest, in the sandbox's root folder (read-only
// once set up). Copies replace binds wherever a file needs no live view of the host: every
// bind costs bwrap a read and parse of the whole mount table (bwrap's bind_mount), so a
// session's few dozen binds cost it time quadratic in their number (some 2 ms for 13 files,
// measured against copies).
func (b *Backend) copyIn(l *layout, f *os.File, dest string) {
	if b.feat.perms {
		l.args = append(l.args, "--perms", "0444")
	}
	l.args = append(l.args, "--file", l.addFile(f), dest)
}

// bind adds a bind of a host folder or file: through its open descriptor when bwrap can take
// one (the path cannot be swapped for a symlink between the check and the mount), else by path.
func (b *Backend) bind(l *layout, rw bool, f *os.File, host, dest string) {
	if b.feat.bindFD {
		op := "--ro-bind-fd"
		if rw {
			op = "--bind-fd"
		}
		l.args = append(l.args, op, l.addFile(f), dest)
		return
	}
	f.Close()
	op := "--ro-bind"
	if rw {
		op = "--bind"
	}
	l.args = append(l.args, op, host, dest)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func validEnvName(k string) bool {
	return k != "" && !strings.ContainsAny(k, "=\x00")
}

// envFor composes a command's environment: BaseEnv, then the proxy's settings and
// Network.Env when the session reaches an egress proxy, then the session's Env, then the
// command's. Malformed entries and keepup's own KEEPUP_* variables are dropped: keepup's
// configuration never enters the sandbox.
func envFor(spec *sandbox.Spec, extra []string) []string {
	env := map[string]string{}
	for k, v := range BaseEnv {
		env[k] = v
	}
	set := func(k, v string) {
		if !validEnvName(k) || strings.HasPrefix(strings.ToUpper(k), "KEEPUP_") || strings.ContainsRune(v, 0) {
			return
		}
		env[k] = v
	}
	if spec.Network.Enabled() {
		for k, v := range proxyEnv(&spec.Network) {
			set(k, v)
		}
		for k, v := range spec.Network.Env {
			set(k, v)
		}
	}
	for k, v := range spec.Env {
		set(k, v)
	}
	for _, kv := range extra {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		set(k, v)
	}
	out := make([]string, 0, len(env))
	for _, k := range sortedKeys(env) {
		out = append(out, k+"="+env[k])
	}
	return out
}

var errClosed = errors.New("bwrap: session is closed")
