package bwrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepup/keepup/internal/sandbox"
)

// cgroupControllers are what per-session limits need: a cgroup v2 parent without them all is not
// used. (A variable for tests: where cgroup v1 holds the controllers, a test lists none to try
// the rest of cgroup v2 on the hierarchy that is left, the limits aside.)
var cgroupControllers = []string{"pids", "memory", "cpu"}

// cgroupParent is a cgroup v2 folder sessions get their cgroups in.
type cgroupParent struct {
	dir         string
	controllers []string // enabled for the sessions' cgroups: cgroupControllers
}

// findCgroup finds where session cgroups can be made: parent if given, else keepup's own
// cgroup in the cgroup v2 hierarchy. It returns nil and the reason when cgroups are not usable
// (no v2 hierarchy, controllers missing, not writable).
func findCgroup(parent string) (*cgroupParent, string) {
	if parent == "" {
		mnt := cgroup2Mount()
		if mnt == "" {
			return nil, "no cgroup v2 hierarchy is mounted"
		}
		self, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			return nil, "cannot read /proc/self/cgroup"
		}
		rel := ""
		for _, l := range strings.Split(string(self), "\n") {
			if p, ok := strings.CutPrefix(l, "0::"); ok {
				rel = p
			}
		}
		if rel == "" {
			return nil, "keepup is not in the cgroup v2 hierarchy"
		}
		parent = filepath.Join(mnt, rel)
	}
	ctrl, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Sprintf("%s is not a cgroup v2 folder", parent)
	}
	have := strings.Fields(string(ctrl))
	for _, c := range cgroupControllers {
		if !slices.Contains(have, c) {
			return nil, fmt.Sprintf("cgroup v2 at %s lacks the %s controller (has: %s)", parent, c, strings.Join(have, " "))
		}
	}
	if unix.Access(parent, unix.W_OK) != nil {
		return nil, fmt.Sprintf("cgroup v2 at %s is not writable (delegate one and set Config.CgroupParent)", parent)
	}
	sub, _ := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control"))
	for _, c := range cgroupControllers {
		if slices.Contains(strings.Fields(string(sub)), c) {
			continue
		}
		// Fails (EBUSY) when the parent holds processes itself, as keepup's own cgroup does
		// unless it is the root: then cgroups are not usable there.
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			return nil, fmt.Sprintf("cannot enable the %s controller below %s: %v", c, parent, err)
		}
	}
	return &cgroupParent{dir: parent, controllers: slices.Clone(cgroupControllers)}, ""
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo.
func cgroup2Mount() string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if f := strings.Fields(pre); len(f) >= 5 {
			return f[4]
		}
	}
	return ""
}

// cgroup is one session's cgroup.
type cgroup struct {
	dir string
	fd  *os.File // for SysProcAttr.CgroupFD: bwrap starts inside it
}

func (p *cgroupParent) create(name string, l sandbox.Limits) (*cgroup, error) {
	dir := filepath.Join(p.dir, "keepup-"+name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	c := &cgroup{dir: dir}
	write := func(file, v string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		return nil
	}
	has := func(c string) bool { return slices.Contains(p.controllers, c) }
	var err error
	if has("pids") {
		err = write("pids.max", strconv.Itoa(l.Pids))
	}
	if err == nil && has("memory") {
		err = write("memory.max", strconv.FormatInt(l.MemoryBytes, 10))
		if _, serr := os.Stat(filepath.Join(dir, "memory.swap.max")); serr == nil && err == nil {
			err = write("memory.swap.max", "0")
		}
	}
	if err == nil && has("cpu") && l.CPUPercent > 0 {
		const period = 100000
		err = write("cpu.max", fmt.Sprintf("%d %d", l.CPUPercent*period/100, period))
	}
	if err == nil {
		c.fd, err = os.Open(dir)
	}
	if err != nil {
		unix.Rmdir(dir)
		return nil, err
	}
	return c, nil
}

// destroy kills everything left in the cgroup and removes it.
func (c *cgroup) destroy() error {
	if c.fd != nil {
		c.fd.Close()
	}
	_ = os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0)
	deadline := time.Now().Add(2 * time.Second)
	var pause time.Duration
	for {
		err := unix.Rmdir(c.dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", c.dir, err)
		}
		// No cgroup.kill (before Linux 5.14): kill what is listed.
		if procs, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(procs)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
		pause = backoff(pause)
	}
}

// v1Parent holds keepup's own folders in the cgroup v1 pids and memory hierarchies: the
// fallback that bounds a session's processes and memory when cgroup v2 is not usable. It
// matters most when keepup runs as root: RLIMIT_NPROC does not bind processes whose user is
// root on the host (the sandbox user then is), and RLIMIT_AS bounds each process, not their
// sum. Either hierarchy may be missing; the parent is nil when both are.
type v1Parent struct {
	pids, memory string // "" when not usable
}

// findV1 finds keepup's own folders in writable cgroup v1 pids and memory hierarchies.
func findV1() (*v1Parent, string) {
	p := &v1Parent{pids: v1Dir("pids"), memory: v1Dir("memory")}
	if p.pids == "" && p.memory == "" {
		return nil, "no writable cgroup v1 pids or memory hierarchy either"
	}
	return p, ""
}

// v1Dir is keepup's folder in the cgroup v1 hierarchy of controller, if writable.
func v1Dir(controller string) string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	var mnt, root string
	for _, l := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) >= 3 && g[0] == "cgroup" && slices.Contains(strings.Split(g[2], ","), controller) {
			root, mnt = f[3], f[4]
			break
		}
	}
	if mnt == "" {
		return ""
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	rel := ""
	for _, l := range strings.Split(string(self), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), controller) {
			rel = parts[2]
		}
	}
	rel = strings.TrimPrefix(rel, strings.TrimSuffix(root, "/"))
	dir := filepath.Join(mnt, rel)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil || unix.Access(dir, unix.W_OK) != nil {
		return ""
	}
	return dir
}

func (p *v1Parent) String() string {
	var parts []string
	if p.pids != "" {
		parts = append(parts, "pids at "+p.pids)
	}
	if p.memory != "" {
		parts = append(parts, "memory at "+p.memory)
	}
	return "cgroup v1 " + strings.Join(parts, ", ")
}

// v1Cgroup is one session's cgroup v1 folders.
type v1Cgroup struct {
	dirs    []string
	parents []string // of each folder: keepup's own, where a thread that entered goes back
	pids    bool     // the number of processes is bounded
	memory  bool     // the memory is bounded
}

func (p *v1Parent) create(name string, l sandbox.Limits) (*v1Cgroup, error) {
	c := &v1Cgroup{}
	mk := func(parent string, limits ...[2]string) error {
		dir := filepath.Join(parent, "keepup-"+name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		c.dirs = append(c.dirs, dir)
		c.parents = append(c.parents, parent)
		for _, kv := range limits {
			if kv[0] == "memory.memsw.limit_in_bytes" {
				if _, err := os.Stat(filepath.Join(dir, kv[0])); err != nil {
					continue // no swap accounting
				}
			}
			if err := os.WriteFile(filepath.Join(dir, kv[0]), []byte(kv[1]), 0); err != nil {
				return fmt.Errorf("%s: %w", kv[0], err)
			}
		}
		return nil
	}
	if p.pids != "" {
		if err := mk(p.pids, [2]string{"pids.max", strconv.Itoa(l.Pids)}); err != nil {
			c.destroy()
			return nil, err
		}
		c.pids = true
	}
	if p.memory != "" {
		mem := strconv.FormatInt(l.MemoryBytes, 10)
		if err := mk(p.memory, [2]string{"memory.limit_in_bytes", mem}, [2]string{"memory.memsw.limit_in_bytes", mem}); err != nil {
			c.destroy()
			return nil, err
		}
		c.memory = true
	}
	return c, nil
}

// enter moves the calling thread, which must be locked to its OS thread, into the folders:
// what it starts until leave is born in them. cgroup v1 has no way to start a process inside a
// cgroup, and moving a process is slow: it write-locks the global lock that every fork
// read-locks, which waits out an RCU grace period (10 to 25 ms measured here). A thread that
// moves itself (writing 0 to the tasks file) takes only the cgroup mutex (Linux's
// cgroup_procs_write_start): about 0.1 ms. On error the thread is back where it was.
func (c *v1Cgroup) enter() error {
	for i, dir := range c.dirs {
		if err := os.WriteFile(filepath.Join(dir, "tasks"), []byte("0"), 0); err != nil {
			if lerr := c.leave(c.parents[:i]); lerr != nil {
				err = errors.Join(err, lerr)
			}
			return fmt.Errorf("move the starting thread into %s: %w", dir, err)
		}
	}
	return nil
}

// leave moves the calling thread from the folders back into parents (c.parents, or the first
// of them after a partial enter).
func (c *v1Cgroup) leave(parents []string) error {
	var errs []error
	for _, p := range parents {
		if err := os.WriteFile(filepath.Join(p, "tasks"), []byte("0"), 0); err != nil {
			errs = append(errs, fmt.Errorf("move the starting thread back into %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// holds checks that process pid is in every folder of c (/proc/PID/cgroup).
func (c *v1Cgroup) holds(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return err
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		for _, dir := range c.dirs {
			if len(parts) == 3 && parts[1] != "" && strings.HasSuffix(parts[2], "/"+filepath.Base(dir)) {
				n++
				break
			}
		}
	}
	if n < len(c.dirs) {
		return fmt.Errorf("process %d is in %d of the session's %d cgroups", pid, n, len(c.dirs))
	}
	return nil
}

// destroy kills what is left in the folders and removes them.
func (c *v1Cgroup) destroy() error {
	var errs []error
	for _, dir := range c.dirs {
		deadline := time.Now().Add(2 * time.Second)
		var pause time.Duration
		for {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
				break
			}
			if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(procs)) {
					// keepup is listed while the thread that started bwrap could not leave
					// (see enter): it goes with that thread, when bwrap has exited.
					if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
						_ = unix.Kill(pid, unix.SIGKILL)
					}
				}
			}
			pause = backoff(pause)
		}
	}
	return errors.Join(errs...)
}

// orphanAge is how old an empty session cgroup must be before sweepCgroups takes it for a dead
// session's. A live session's cgroup holds its sandbox from bwrap's start, so one that is
// empty this long after it was made belongs to a keepup that died. It is staleAge's default,
// but unlike staleAge tests never lower it: the parents are shared by every keepup on the
// machine, and a lowered age would take the cgroups of sessions other keepups are starting.
const orphanAge = time.Minute

// sweepCgroups removes from each parent the session cgroups (keepup-NAME, NAME a session
// folder's name) that are empty and older than orphanAge. They are those of keepups that were
// killed and whose state folder is gone too (a test's temporary folder, say), which
// cleanStale finds dead sessions' cgroups by; nothing else would ever remove them. A cgroup
// some process is in is never touched (and could not be removed: rmdir fails with EBUSY), so
// the live sessions of other keepups sharing a parent are safe; an empty one removed under a
// keepup that still means to use it is harmless (its destroy takes a missing cgroup for
// removed). Best effort: what cannot be removed now is tried again by the next New.
func sweepCgroups(parents []string) {
	for _, parent := range parents {
		ents, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() || !isSessionCgroup(e.Name()) {
				continue
			}
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < orphanAge {
				continue
			}
			dir := filepath.Join(parent, e.Name())
			procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			if err != nil || len(strings.TrimSpace(string(procs))) > 0 {
				continue
			}
			_ = unix.Rmdir(dir)
		}
	}
}

// isSessionCgroup reports whether name is that of a session's cgroup: "keepup-" and the name
// of a session folder (os.MkdirTemp's: the session id, '-', decimal digits).
func isSessionCgroup(name string) bool {
	rest, ok := strings.CutPrefix(name, "keepup-")
	i := strings.LastIndexByte(rest, '-')
	if !ok || i <= 0 || i == len(rest)-1 {
		return false
	}
	return strings.Trim(rest[i+1:], "0123456789") == ""
}

// backoff sleeps a little longer each time (from 100µs up to 10ms) and returns the next
// pause: a cgroup whose last processes are exiting is usually removable within a millisecond.
func backoff(pause time.Duration) time.Duration {
	pause = max(pause, 100*time.Microsecond)
	time.Sleep(pause)
	return min(2*pause, 10*time.Millisecond)
}
