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

// cgroupControllers are what per-session limits need.
var cgroupControllers = []string{"pids", "memory", "cpu"}

// cgroupParent is a cgroup v2 folder sessions get their cgroups in.
type cgroupParent struct {
	dir string
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
	return &cgroupParent{dir: parent}, ""
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
	err := write("pids.max", strconv.Itoa(l.Pids))
	if err == nil {
		err = write("memory.max", strconv.FormatInt(l.MemoryBytes, 10))
	}
	if err == nil {
		if _, serr := os.Stat(filepath.Join(dir, "memory.swap.max")); serr == nil {
			err = write("memory.swap.max", "0")
		}
	}
	if err == nil && l.CPUPercent > 0 {
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
		time.Sleep(10 * time.Millisecond)
	}
}

// pidsV1Parent is a cgroup v1 pids hierarchy folder: the fallback that bounds the number of a
// session's processes when cgroup v2 is not usable. It matters when keepup runs as root:
// RLIMIT_NPROC does not bind processes whose user is root on the host, which the sandbox user
// then is.
type pidsV1Parent struct {
	dir string
}

// findPidsV1 finds keepup's own folder in a writable cgroup v1 pids hierarchy.
func findPidsV1() (*pidsV1Parent, string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, "cannot read /proc/self/mountinfo"
	}
	var mnt, root string
	for _, l := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || g[0] != "cgroup" || !slices.Contains(strings.Split(g[2], ","), "pids") {
			continue
		}
		root, mnt = f[3], f[4]
		break
	}
	if mnt == "" {
		return nil, "no cgroup v1 pids hierarchy either"
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, "cannot read /proc/self/cgroup"
	}
	rel := ""
	for _, l := range strings.Split(string(self), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), "pids") {
			rel = parts[2]
		}
	}
	rel = strings.TrimPrefix(rel, strings.TrimSuffix(root, "/"))
	dir := filepath.Join(mnt, rel)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil || unix.Access(dir, unix.W_OK) != nil {
		return nil, fmt.Sprintf("the cgroup v1 pids folder %s is not writable", dir)
	}
	return &pidsV1Parent{dir: dir}, ""
}

// pidsV1 is one session's cgroup v1 pids folder.
type pidsV1 struct {
	dir string
}

func (p *pidsV1Parent) create(name string, max int) (*pidsV1, error) {
	dir := filepath.Join(p.dir, "keepup-"+name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.Itoa(max)), 0); err != nil {
		unix.Rmdir(dir)
		return nil, fmt.Errorf("pids.max: %w", err)
	}
	return &pidsV1{dir: dir}, nil
}

// join moves the processes pids (the sandbox's, before it runs anything) into the folder;
// everything they start afterwards is born in it.
func (c *pidsV1) join(pids []int) error {
	for _, pid := range pids {
		if err := os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("move process %d into %s: %w", pid, c.dir, err)
		}
	}
	return nil
}

// destroy kills what is left in the folder and removes it.
func (c *pidsV1) destroy() error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Rmdir(c.dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", c.dir, err)
		}
		if procs, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(procs)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
