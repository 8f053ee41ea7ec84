package bwrap

import (
	"context"
	"github.com/keepup/keepup/internal/sandbox/inside"
	"os"
	"os/exec"
	"slices"

	"github.com/keepup/keepup/internal/sandbox"
)

// SetMaxSessionWatches bounds the folders a session's protect watch watches; it returns the
// previous bound.
func SetMaxSessionWatches(n int) int {
	old := maxSessionWatches
	maxSessionWatches = n
	return old
}

// SetCgroupControllers sets the controllers a cgroup v2 parent must have for New to use it; it
// returns the previous list.
func SetCgroupControllers(list []string) []string {
	old := cgroupControllers
	cgroupControllers = list
	return old
}

// CgroupV2Mount is where the cgroup v2 hierarchy is mounted ("" when it is not).
var CgroupV2Mount = cgroup2Mount

// CgroupParents lists the folders b makes sessions' cgroups in (none when it uses no cgroup).
func CgroupParents(b *Backend) []string { return b.cgroupParents() }

// SessionCgroups lists the cgroup folders of a session of this backend.
func SessionCgroups(s sandbox.Session) []string {
	ss := s.(*Session)
	var dirs []string
	if ss.cg != nil {
		dirs = append(dirs, ss.cg.dir)
	}
	if ss.v1 != nil {
		dirs = append(dirs, ss.v1.dirs...)
	}
	return dirs
}

// JDKTools lists a JDK tool's executables on this machine (see jdkTools).
var JDKTools = jdkTools

// IsSessionCgroup reports whether the cgroup sweep takes a folder name for a session's.
var IsSessionCgroup = isSessionCgroup

// ProbeFile is the file in Config.StateDir that records New's checks of bwrap.
const ProbeFile = probeFile

// SystemCertsCache is the file in Config.StateDir that keeps the system CA bundle's
// certificates across processes.
const SystemCertsCache = systemCertsCache

// SessionSandbox returns what starts the sandbox of a session of spec (bwrap, or the guard
// stage that runs it), with /usr/bin/true in place of the helper: the sandbox's own cost,
// without keepup's processes in it. newCmd makes a fresh command each time; files are the
// descriptors it passes (from fd 3), to be closed by the caller. The state folder's files are
// written into stateDir, and the placeholders made as a session makes them.
func SessionSandbox(b *Backend, spec sandbox.Spec, stateDir string) (newCmd func() *exec.Cmd, files []*os.File, err error) {
	if err := writeStateFiles(stateDir); err != nil {
		return nil, nil, err
	}
	l, err := b.buildLayout(context.Background(), &spec, stateDir, "", true)
	if err != nil {
		if l != nil {
			l.closeFiles()
		}
		return nil, nil, err
	}
	l.args = append(l.args[:len(l.args)-3:len(l.args)-3], "/usr/bin/true")
	if l.files[0], err = os.Open(os.DevNull); err == nil {
		l.files[1], err = sealedFile("keepup-seccomp", b.seccomp)
	}
	if err == nil {
		err = createPlaceholders(l.stage)
	}
	var cmd *exec.Cmd
	if err == nil {
		cmd, err = b.sandboxCommand(l)
	}
	if err != nil {
		l.closeFiles()
		return nil, nil, err
	}
	return func() *exec.Cmd {
		c := exec.Command(cmd.Path, cmd.Args[1:]...)
		c.Env, c.ExtraFiles = []string{}, l.files
		if cmd.SysProcAttr != nil {
			attr := *cmd.SysProcAttr
			c.SysProcAttr = &attr
		}
		return c
	}, l.files, nil
}

// SetGuardStage makes b's sessions have their guards made by the guard stage whatever their
// number (on), or never, by bwrap only.
func SetGuardStage(b *Backend, on bool) {
	b.feat.guardStage = on
	b.stageFrom = 0
}

// SetWalkEntries bounds the entries the walk of a read-write mount lists; it returns the
// previous bound.
func SetWalkEntries(n int) int {
	old := walkEntries
	walkEntries = n
	return old
}

// WatchState says which folders of its first mount session s watches, which it knows it does
// not (past the watch limit), and whether it searches its mounts whole after each command.
func WatchState(s sandbox.Session) (watched, unwatched []string, blind bool) {
	w := s.(*Session).watch
	w.mu.Lock()
	defer w.mu.Unlock()
	for rel := range w.mounts[0].watched {
		watched = append(watched, rel)
	}
	slices.Sort(watched)
	return watched, sortedTrue(w.mounts[0].unwatched), w.blind
}

// SetOneCommandWatchFrom sets the number of files and folders from which a session of one
// command of b watches its mounts (inotify) instead of searching them when its command ends.
func SetOneCommandWatchFrom(b *Backend, n int) { b.watchFrom = n }

// Watches reports whether session s watches its mounts with inotify.
func Watches(s sandbox.Session) bool {
	w := s.(*Session).watch
	return w != nil && w.fd >= 0
}

// StagedGuards is the number of a session's guards the guard stage made.
func StagedGuards(s sandbox.Session) int { return s.(*Session).staged }

// SetGuardPlanFault has f change every guard plan of b's sessions before it goes to the stage.
func SetGuardPlanFault(b *Backend, f func(*inside.GuardPlan)) { b.planFault = f }
