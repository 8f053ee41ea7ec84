package bwrap_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
)

// BenchmarkWarmRun runs `true` in a started session: the cost of one command.
func BenchmarkWarmRun(b *testing.B) {
	s := setup(b).start(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Run(ctx, sandbox.Command{Args: []string{"true"}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkColdRun starts a session, runs `true` and closes it.
func BenchmarkColdRun(b *testing.B) {
	tb := setup(b)
	ctx := context.Background()
	for b.Loop() {
		s, err := tb.backend.Start(ctx, tb.spec)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Run(ctx, sandbox.Command{Args: []string{"true"}}); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareBwrap runs /usr/bin/true under bwrap with the same namespaces and a minimal
// filesystem: the floor of a sandbox per command.
func BenchmarkBareBwrap(b *testing.B) {
	bw, err := exec.LookPath("bwrap")
	if err != nil {
		b.Skip(err)
	}
	args := []string{"--unshare-user", "--uid", "1000", "--gid", "1000", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
		"--unshare-net", "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
		"--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
		"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/usr/bin/true"}
	for b.Loop() {
		if err := exec.Command(bw, args...).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionLayoutBwrap runs /usr/bin/true under bwrap with a session's whole layout (the
// system folders, the generated /etc, the grants and the guards of their protected paths, the
// seccomp filter): what a cold start costs before any of keepup's processes run inside.
func BenchmarkSessionLayoutBwrap(b *testing.B) {
	tb := setup(b)
	args, files, err := bwrap.SessionBwrap(tb.backend, tb.spec, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	bw, err := exec.LookPath("bwrap")
	if err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		// bwrap reads the seccomp program and the files it copies in to their end: from the
		// start again (the folders' descriptors cannot seek, and need not).
		for _, f := range files[1:] {
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					b.Fatal(err)
				}
			}
		}
		cmd := exec.Command(bw, args...)
		cmd.ExtraFiles = files
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
}

// BenchmarkBareForkExec runs /usr/bin/true with os/exec: no sandbox at all.
func BenchmarkBareForkExec(b *testing.B) {
	if _, err := os.Stat("/usr/bin/true"); err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		if err := exec.Command("/usr/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParallelRun runs `true` from several goroutines at once in one session: commands
// that find no spare exec stub ready.
func BenchmarkParallelRun(b *testing.B) {
	s := setup(b).start(b)
	ctx := context.Background()
	b.SetParallelism(2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Run(ctx, sandbox.Command{Args: []string{"true"}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
