package bwrap

import (
	"os"
	"time"

	"github.com/keepup/keepup/internal/sandbox"
)

// SetStaleAge lets tests clean up dead sessions' folders without waiting.
func SetStaleAge(d time.Duration) { staleAge.Store(max(int64(d), 1)) }

// SetMaxSessionWatches bounds the folders a session's protect watch watches; it returns the
// previous bound.
func SetMaxSessionWatches(n int) int {
	old := maxSessionWatches
	maxSessionWatches = n
	return old
}

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

// SessionBwrap returns the bwrap command line (and the descriptors it refers to, from fd 3) a
// session of spec starts, with /usr/bin/true in place of the helper: the sandbox's own cost,
// without keepup's processes in it. The state folder's files are written into stateDir.
func SessionBwrap(b *Backend, spec sandbox.Spec, stateDir string) ([]string, []*os.File, error) {
	if err := writeStateFiles(stateDir); err != nil {
		return nil, nil, err
	}
	l, err := b.buildLayout(&spec, stateDir, "")
	if err != nil {
		if l != nil {
			l.closeFiles()
		}
		return nil, nil, err
	}
	args := append(l.args[:len(l.args)-3:len(l.args)-3], "/usr/bin/true")
	if l.files[0], err = os.Open(os.DevNull); err == nil {
		l.files[1], err = sealedFile("keepup-seccomp", b.seccomp)
	}
	if err != nil {
		l.closeFiles()
		return nil, nil, err
	}
	return args, l.files, nil
}
