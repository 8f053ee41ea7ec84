package bwrap

import (
	"context"
	"fmt"
	"strings"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"

	"github.com/keepup/keepup/internal/sandbox/seccomp"
)

// Report is what `keepup doctor` shows about the bubblewrap backend on this machine.
type Report struct {
	Bwrap   string // the bwrap executable, "" if not found
	Version string // its version
	// UserNS says whether bwrap could create a user namespace (run a trivial sandbox).
	UserNS bool
	// Features lists the optional bwrap options in use: "disable-userns", "bind-fd",
	// "tmpfs-size".
	Features []string
	// Cgroup is the cgroup v2 folder sessions get their cgroup (pids.max, memory.max,
	// cpu.max) in; "" when limits fall back, for CgroupWhy, to cgroup v1 (CgroupV1 says which
	// hierarchies, "" if none) and per-command rlimits.
	Cgroup    string
	CgroupWhy string
	CgroupV1  string
	// LandlockABI is the kernel's Landlock ABI version (0: none; commands then run without
	// this layer).
	LandlockABI int
	// SeccompInstructions is the length of the seccomp filter (0 if it cannot be built).
	SeccompInstructions int
	// Err says why sessions cannot start here (it wraps sandbox.ErrUnavailable and carries the
	// remedy); nil when they can.
	Err error
}

// Probe checks the bubblewrap backend's requirements without starting a session: bwrap (Config
// default when bwrapPath is ""), user namespaces, cgroup v2 (cgroupParent as Config), Landlock
// and the seccomp filter.
func Probe(ctx context.Context, bwrapPath, cgroupParent string) Report {
	var r Report
	if v, err := ll.LandlockGetABIVersion(); err == nil && v > 0 {
		r.LandlockABI = v
	}
	prog, perr := seccomp.Program()
	r.SeccompInstructions = len(prog) / 8
	if cg, why := findCgroup(cgroupParent); cg != nil {
		r.Cgroup = cg.dir
	} else {
		r.CgroupWhy = why
		if v1, _ := findV1(); v1 != nil && cgroupParent == "" {
			r.CgroupV1 = v1.String()
		}
	}
	path, err := findBwrap(bwrapPath)
	if err != nil {
		r.Err = err
		return r
	}
	r.Bwrap = path
	feat, err := probeFeatures(path)
	r.Version = feat.version
	if err != nil {
		r.Err = err
		return r
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{feat.disableUserns, "disable-userns"}, {feat.bindFD, "bind-fd"}, {feat.size, "tmpfs-size"}} {
		if f.on {
			r.Features = append(r.Features, f.name)
		}
	}
	if err := probeUserNS(ctx, path, feat); err != nil {
		r.Err = err
		return r
	}
	r.UserNS = true
	if perr != nil {
		r.Err = fmt.Errorf("seccomp filter: %w", perr)
	}
	return r
}

// String is a one-line summary.
func (r Report) String() string {
	var b strings.Builder
	if r.Bwrap == "" {
		b.WriteString("bwrap: not found")
	} else {
		fmt.Fprintf(&b, "bwrap %s (%s)", r.Version, r.Bwrap)
	}
	fmt.Fprintf(&b, "; user namespaces: %v", r.UserNS)
	if r.Cgroup != "" {
		fmt.Fprintf(&b, "; limits: cgroup v2 at %s", r.Cgroup)
	} else if r.CgroupV1 != "" {
		fmt.Fprintf(&b, "; limits: %s and rlimits (%s)", r.CgroupV1, r.CgroupWhy)
	} else {
		fmt.Fprintf(&b, "; limits: rlimits (%s)", r.CgroupWhy)
	}
	fmt.Fprintf(&b, "; Landlock ABI %d; seccomp %d instructions", r.LandlockABI, r.SeccompInstructions)
	if r.Err != nil {
		fmt.Fprintf(&b, "; unavailable: %v", r.Err)
	}
	return b.String()
}
