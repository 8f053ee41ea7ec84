package bwrap

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/keepup/keepup/internal/sandbox/inside"
	"golang.org/x/sys/unix"
)

// The guard stage (inside.GuardMain) makes the guards of protected paths, where it can, instead
// of bwrap: keepup starts itself in a user and mount namespace of its own, mounts the guards
// at their host paths there (nothing of it reaches the host's namespace), and execs bwrap, whose
// recursive bind of each read-write mount carries the guards into the sandbox. bwrap's own bind
// of a guard costs a walk of its destination and a read of the whole mount table, so that a
// session's start grew with the square of its guards: 13 at the top of each read-write folder
// and as many in each nested repository or project folder (4.6 s for a folder holding 100
// repositories). Inside bwrap's namespaces the guards are mounts of a more privileged user
// namespace: locked, so the sandbox could not even unmount or remount them with capabilities.
//
// Where keepup cannot make the namespaces (a security module that lets bwrap make user
// namespaces and nothing else, as Ubuntu's AppArmor can), New finds out once, and bwrap binds
// the guards as before.

// sandboxCommand returns the command that starts the sandbox of layout l: bwrap, or when l has
// guards for the guard stage, the stage, which makes them and execs bwrap. The stage's plan
// travels in a sealed memfd added to l.files, after bwrap's descriptors (the stage closes it).
func (b *Backend) sandboxCommand(l *layout) (*exec.Cmd, error) {
	if len(l.stage) == 0 {
		cmd := exec.Command(b.bwrap, l.args...)
		cmd.ExtraFiles = l.files
		return cmd, nil
	}
	plan := inside.GuardPlan{Bwrap: b.bwrap, Args: l.args}
	for _, g := range l.stage {
		plan.Guards = append(plan.Guards, g.GuardMount)
	}
	if b.planFault != nil {
		b.planFault(&plan)
	}
	cmd, f, err := guardStageCommand(b.cfg.Exe, plan, len(l.files))
	if err != nil {
		return nil, err
	}
	l.files = append(l.files, f)
	cmd.ExtraFiles = l.files
	return cmd, nil
}

// guardStageCommand returns the guard stage's command for plan, and the memfd holding the plan,
// which is to be passed to it as descriptor 3+at (after the at descriptors bwrap is given).
func guardStageCommand(exe string, plan inside.GuardPlan, at int) (*exec.Cmd, *os.File, error) {
	data, err := json.Marshal(plan)
	if err != nil {
		return nil, nil, err
	}
	f, err := sealedFile("keepup-guard-plan", data)
	if err != nil {
		return nil, nil, fmt.Errorf("bwrap: guard plan: %w", err)
	}
	cmd := exec.Command(exe, inside.GuardCommand, fmt.Sprint(3+at))
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
	}
	return cmd, f, nil
}

// probeGuardStage checks that the guard stage works here: it guards a file of a temporary
// folder with another's content, read-only, and bwrap (a user namespace again, below the
// stage's) must see that content through its bind of the folder.
func probeGuardStage(exe, bwrapPath string) error {
	dir, err := os.MkdirTemp("", "keepup-guard-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "src"), []byte("keepup guard\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "dst"), nil, 0o644); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "dst"), &st); err != nil {
		return err
	}
	args := []string{"--unshare-user", "--uid", fmt.Sprint(UID), "--gid", fmt.Sprint(GID), "--unshare-pid", "--unshare-net",
		"--die-with-parent", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"}
	args = append(args, systemLinks()...)
	args = append(args, "--ro-bind", dir, "/probe", "--", "/bin/sh", "-c", "grep -q 'keepup guard' /probe/dst && echo guarded")
	plan := inside.GuardPlan{Bwrap: bwrapPath, Args: args, Guards: []inside.GuardMount{
		{Root: dir, Rel: "dst", Src: filepath.Join(dir, "src"), RO: true, Dev: uint64(st.Dev), Ino: st.Ino}}}
	cmd, f, err := guardStageCommand(exe, plan, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "guarded\n" {
		return fmt.Errorf("guard stage: %v: %q", err, out)
	}
	return nil
}
