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
