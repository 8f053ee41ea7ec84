package bwrap

import (
	"context"
	"errors"
	"fmt"
	"github.com/keepup/keepup/internal/sandbox/inside"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/seccomp"
)

// Paths inside the sandbox.
const (
	// ExePath is where the keepup executable is bound, read-only.
	ExePath = "/.keepup/keepup"
	// Home is the sandbox user's home, a tmpfs discarded with the session.
	Home = "/home/keepup"
	// UID and GID of the sandbox user "keepup", whatever uid keepup runs as on the host.
	UID = 1000
	GID = 1000
)

// Defaults of sandbox.Limits' zero fields and of Config.TmpfsBytes.
const (
	DefaultPids        = 1024
	DefaultMemoryBytes = 4 << 30
	DefaultOpenFiles   = 8192
	DefaultFileBytes   = 8 << 30
	DefaultCPUPercent  = 0 // no CPU cap
	DefaultTmpfsBytes  = 2 << 30
)

// Remedies, in the errors that wrap sandbox.ErrUnavailable.
const (
	RemedyInstall = "install bubblewrap: apt-get install bubblewrap"
	RemedyUserNS  = "allow unprivileged user namespaces: on Ubuntu 24.04 and later AppArmor restricts them " +
		"(sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or install an AppArmor profile for bwrap that allows userns); " +
		"on Debian before 11 and some hardened kernels set sysctl -w kernel.unprivileged_userns_clone=1; " +
		"check that user.max_user_namespaces is not 0; inside a container, run it with user namespaces allowed (e.g. docker --security-opt seccomp=unconfined --security-opt apparmor=unconfined)"
)

// Config configures the bubblewrap backend.
type Config struct {
	// Bwrap is the bubblewrap executable. Default: "bwrap" looked up in PATH.
	Bwrap string
	// Exe is the keepup executable, bound read-only at ExePath and run inside as the helper
	// (`__sandbox-helper`) and the exec stub (`__sandbox-exec`). Required.
	Exe string
	// StateDir is the host folder for per-session state: generated /etc files, the registry
	// of placeholders made on the host. Default: keepup-sandbox in $XDG_RUNTIME_DIR, else
	// keepup-sandbox-UID in os.TempDir(). Sessions a crashed keepup left behind are cleaned up
	// by the next New with the same StateDir.
	StateDir string
	// TmpfsBytes is the size of each of the sandbox's /tmp and home (memory-backed). Default
	// DefaultTmpfsBytes. Ignored by a bwrap too old to size a tmpfs.
	TmpfsBytes int64
	// CgroupParent is a cgroup v2 folder (e.g. a systemd-delegated one) under which sessions
	// get their cgroup. Default: keepup's own cgroup, if the hierarchy there is usable.
	CgroupParent string
}

// Backend is the bubblewrap sandbox backend for Linux. It is safe for concurrent use.
type Backend struct {
	cfg     Config
	bwrap   string
	feat    features
	seccomp []byte
	cg      *cgroupParent // nil: per-command rlimits instead
	cgWhy   string        // why cg is nil
	v1      *v1Parent     // when cg is nil: cgroup v1 pids and memory, when usable
	reg     *registry
	// stageFrom is the number of guards from which a session's are made by the guard stage
	// (when feat.guardStage): stageMinGuards, but for tests.
	stageFrom int
	// watchFrom is the number of files and folders in its read-write mounts from which a
	// session of one command watches them: oneCommandWatchFrom, but for tests.
	watchFrom int
	planFault func(*inside.GuardPlan) // tests: changes each guard plan
	// systemBundles are where the system's CA bundle is looked for: the package's, but for tests.
	systemBundles []string

	mu       sync.Mutex
	sessions map[string]bool // live session ids
}

// stageMinGuards is the number of guards from which the guard stage makes them rather than
// bwrap. The stage costs a process of its own (keepup starting, some 3-4 ms) and a user
// namespace, and saves bwrap's binds, whose cost grows with the square of their number: on
// tmpfs, paired, a sandbox exec with 26 guards (a grant and outputs) took 45.8 ms through bwrap
// and 49.4 through the stage; with one nested repository in the grant (41 guards), 46.3 and
// 45.5 (even); with three (71 guards), 64.5 and 56.8; with 100 (some 1,500), 4.6 s and 0.40 s.
const stageMinGuards = 40

var _ sandbox.Backend = (*Backend)(nil)

// New checks that bubblewrap can run a sandbox here (it is installed and can create a user
// namespace) and returns the backend. Errors wrap sandbox.ErrUnavailable and carry the remedy.
// A bwrap that passed is recorded in Config.StateDir and not run again by the next New while
// it, the boot and the user namespace sysctls are the same; should it fail later all the same,
// Start says why, with the same remedy.
func New(cfg Config) (*Backend, error) {
	if cfg.Exe == "" {
		return nil, errors.New("bwrap: Config.Exe is required (the keepup executable run inside the sandbox)")
	}
	exe, err := filepath.Abs(cfg.Exe)
	if err != nil {
		return nil, fmt.Errorf("bwrap: Config.Exe: %w", err)
	}
	if fi, err := os.Stat(exe); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("bwrap: Config.Exe %s is not an executable file", cfg.Exe)
	}
	cfg.Exe = exe
	if cfg.TmpfsBytes < 0 {
		return nil, fmt.Errorf("bwrap: Config.TmpfsBytes %d is negative", cfg.TmpfsBytes)
	}
	if cfg.TmpfsBytes == 0 {
		cfg.TmpfsBytes = DefaultTmpfsBytes
	}
	if cfg.StateDir == "" {
		cfg.StateDir = defaultStateDir()
	}
	if cfg.StateDir, err = filepath.Abs(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("bwrap: Config.StateDir: %w", err)
	}
	path, err := findBwrap(cfg.Bwrap)
	if err != nil {
		return nil, err
	}
	prog, err := seccomp.Program()
	if err != nil {
		return nil, fmt.Errorf("%w: seccomp filter: %v", sandbox.ErrUnavailable, err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("bwrap: Config.StateDir: %w", err)
	}
	// Another user must not own (or have planted a symlink at) the folder sessions' state goes in.
	if fi, err := os.Lstat(cfg.StateDir); err != nil || !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
		return nil, fmt.Errorf("bwrap: Config.StateDir %s is not a folder of this user's", cfg.StateDir)
	}
	// The checks that run bwrap are done once per bwrap and boot (see probeFile).
	key, keyOK := currentProbeKey(path, cfg.Exe)
	feat, cached := loadProbe(cfg.StateDir, key)
	if !keyOK || !cached {
		if feat, err = probeFeatures(path); err != nil {
			return nil, err
		}
		if err := probeUserNS(context.Background(), path, feat); err != nil {
			return nil, err
		}
		feat.guardStage = probeGuardStage(cfg.Exe, path) == nil
		if keyOK {
			saveProbe(cfg.StateDir, key, feat)
		}
	}
	b := &Backend{cfg: cfg, bwrap: path, feat: feat, seccomp: prog, sessions: map[string]bool{}, stageFrom: stageMinGuards, watchFrom: oneCommandWatchFrom, systemBundles: systemBundles,
		reg: &registry{dir: filepath.Join(cfg.StateDir, registryDir)}}
	b.cg, b.cgWhy = findCgroup(cfg.CgroupParent)
	if b.cg == nil && cfg.CgroupParent == "" {
		var why string
		if b.v1, why = findV1(); b.v1 == nil {
			b.cgWhy += "; " + why
		}
	}
	parents := b.cgroupParents()
	cleanStale(cfg.StateDir, b.reg, parents)
	sweepCgroups(parents)
	return b, nil
}

// cgroupParents lists the folders sessions' cgroups are made in: none when no cgroup is used.
func (b *Backend) cgroupParents() []string {
	var dirs []string
	if b.cg != nil {
		dirs = append(dirs, b.cg.dir)
	}
	if b.v1 != nil {
		// Either may be "" (not usable): a relative path would name a folder in keepup's own.
		for _, d := range []string{b.v1.pids, b.v1.memory} {
			if d != "" {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// baselineDir is the folder in Config.StateDir of the running sessions' protect-watch
// baselines (see newProtectWatch).
const baselineDir = "baselines"

// registryDir is the placeholder registry's folder in Config.StateDir.
const registryDir = "placeholders"

// Name is "bwrap".
func (b *Backend) Name() string { return "bwrap" }

// GuardStage reports whether keepup's guard stage can make the guards of protected paths here
// (see stage.go); when not, bwrap binds them all.
func (b *Backend) GuardStage() bool { return b.feat.guardStage }

// Limiter says how resource limits are enforced: "cgroup v2 at DIR", or per-command rlimits
// (with the reason cgroup v2 is not used), with the number of processes and the memory
// bounded by cgroup v1 folders when there are writable ones.
func (b *Backend) Limiter() string {
	switch {
	case b.cg != nil:
		return "cgroup v2 at " + b.cg.dir
	case b.v1 != nil:
		return b.v1.String() + ", and rlimits (" + b.cgWhy + ")"
	}
	return "rlimits (" + b.cgWhy + ")"
}

func defaultStateDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "keepup-sandbox")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("keepup-sandbox-%d", os.Getuid()))
}

// findBwrap resolves the bubblewrap executable.
func findBwrap(p string) (string, error) {
	if p == "" {
		p = "bwrap"
	}
	path, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("%w: bubblewrap not found (%s): %s", sandbox.ErrUnavailable, p, RemedyInstall)
	}
	return path, nil
}

// features are the optional bwrap options this bwrap understands (from its --help).
type features struct {
	version       string
	disableUserns bool // --disable-userns (0.8)
	bindFD        bool // --bind-fd, --ro-bind-fd
	size          bool // --size for --tmpfs
	perms         bool // --perms
	// guardStage: keepup's guard stage (inside.GuardMain) can make a user and mount namespace
	// and mounts in it here, and run bwrap from there; else bwrap binds the guards itself.
	guardStage bool
}

func probeFeatures(path string) (features, error) {
	var f features
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return f, fmt.Errorf("%w: %s --version: %v: %s", sandbox.ErrUnavailable, path, err, RemedyInstall)
	}
	f.version = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "bubblewrap"))
	help, _ := exec.Command(path, "--help").CombinedOutput()
	h := string(help)
	for _, req := range []string{"--unshare-user", "--unshare-pid", "--die-with-parent", "--seccomp", "--cap-drop", "--new-session", "--unshare-cgroup-try", "--remount-ro"} {
		if !strings.Contains(h, req) {
			return f, fmt.Errorf("%w: bubblewrap %s at %s lacks %s; install a newer bubblewrap (0.4 or later): %s", sandbox.ErrUnavailable, f.version, path, req, RemedyInstall)
		}
	}
	f.disableUserns = strings.Contains(h, "--disable-userns")
	f.bindFD = strings.Contains(h, "--ro-bind-fd")
	f.size = strings.Contains(h, "--size")
	f.perms = strings.Contains(h, "--perms")
	return f, nil
}

// probeUserNS runs bwrap once with a user namespace.
func probeUserNS(ctx context.Context, path string, feat features) error {
	args := []string{"--unshare-user", "--uid", fmt.Sprint(UID), "--gid", fmt.Sprint(GID), "--unshare-pid", "--unshare-net",
		"--die-with-parent", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"}
	args = append(args, systemLinks()...)
	args = append(args, "--", "/usr/bin/true")
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return bwrapError(path, err, string(out))
	}
	return nil
}

// bwrapError explains why bwrap failed to start a sandbox.
func bwrapError(path string, err error, stderr string) error {
	msg := strings.TrimSpace(stderr)
	if isUserNSError(msg) {
		return fmt.Errorf("%w: bubblewrap (%s) cannot create a user namespace: %s; %s", sandbox.ErrUnavailable, path, msg, RemedyUserNS)
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("bubblewrap (%s) failed: %s", path, msg)
}

func isUserNSError(msg string) bool {
	for _, s := range []string{
		"setting up uid map",
		"No permissions to creating new namespace",
		"No permissions to create new namespace",
		"Creating new namespace failed",
		"unshare failed",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
