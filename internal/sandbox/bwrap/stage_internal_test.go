package bwrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepup/keepup/internal/sandbox/inside"
	"golang.org/x/sys/unix"
)

// TestGuardStageRefusesAReplacedPath: the guard stage guards only the inode the backend
// planned; a path replaced since (here: removed and made again, a new inode under the same
// name) stops the start, and bwrap never runs.
func TestGuardStageRefusesAReplacedPath(t *testing.T) {
	bw, err := exec.LookPath("bwrap")
	if err != nil {
		t.Skip(err)
	}
	if probeGuardStage(os.Args[0], bw) != nil {
		t.Skip("the guard stage cannot run here")
	}
	dir := t.TempDir()
	dst, src := filepath.Join(dir, "dst"), filepath.Join(dir, "src")
	for _, p := range []string{dst, src} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	g := inside.GuardMount{Root: dir, Rel: "dst", Src: src, RO: true, Dev: uint64(st.Dev), Ino: st.Ino}
	run := func() (string, error) {
		args := append(append([]string{"--unshare-user", "--ro-bind", "/usr", "/usr"}, systemLinks()...), "--", "/usr/bin/true")
		plan := inside.GuardPlan{Bwrap: bw, Args: args, Guards: []inside.GuardMount{g}}
		cmd, f, err := guardStageCommand(os.Args[0], plan, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.ExtraFiles = []*os.File{f}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(); err != nil {
		t.Fatalf("the planned path: %v: %s", err, out)
	}
	// Another file takes the name: a new inode (the old one lives on as keep, so that its
	// number is not reused).
	if err := os.Link(dst, filepath.Join(dir, "keep")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dst); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run()
	if err == nil || !strings.Contains(out, "replaced since the session was planned") {
		t.Fatalf("a replaced path: %v: %s", err, out)
	}
}
