package bwrap_test

import (
	"context"
	"encoding/pem"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/benchtest"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
	"golang.org/x/sys/unix"
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

// BenchmarkFirstRun times the first command (`true`) of a fresh session, which its exec stub,
// started with the session, may not be ready for yet: the part of a cold start after the
// sandbox is up. The session's start and end are not timed.
func BenchmarkFirstRun(b *testing.B) {
	tb := setup(b)
	ctx := context.Background()
	var ds []time.Duration
	for b.Loop() {
		b.StopTimer()
		s, err := tb.backend.Start(ctx, tb.spec)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if _, err := s.Run(ctx, sandbox.Command{Args: []string{"true"}}); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	benchtest.Report(b, ds)
}

// BenchmarkBareBwrap runs /usr/bin/true under bwrap with the same namespaces and a minimal
// filesystem: the floor of a sandbox per command.
func BenchmarkBareBwrap(b *testing.B) {
	bw, err := exec.LookPath("bwrap")
	if err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		if err := exec.Command(bw, bareBwrapArgs...).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// bareBwrapArgs run /usr/bin/true with a session's namespaces and a minimal filesystem.
var bareBwrapArgs = []string{"--unshare-user", "--uid", "1000", "--gid", "1000", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
	"--unshare-net", "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
	"--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
	"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/usr/bin/true"}

// BenchmarkSessionLayoutBwrap runs /usr/bin/true under bwrap, side by side in one run (p50 and
// p95): with the namespaces and a minimal filesystem (bare, as BenchmarkBareBwrap), and with a
// session's whole layout (the system folders, the generated /etc, the seccomp filter, the
// mounts and the guards of their protected paths): of one read-write and one read-only grant
// without network ("one-grant"), and as `keepup sandbox exec --grant DIR` makes it: the grant
// and the outputs folder, both read-write with their guards, and the proxy's trust stores
// ("sandbox-exec"); and that layout over a folder of ten repositories, with the guards made by
// the guard stage and by bwrap. What a cold start costs before any of keepup's processes run
// inside.
func BenchmarkSessionLayoutBwrap(b *testing.B) {
	bw, err := exec.LookPath("bwrap")
	if err != nil {
		b.Skip(err)
	}
	b.Run("bare", func(b *testing.B) {
		benchtest.Latency(b, func() {
			if err := exec.Command(bw, bareBwrapArgs...).Run(); err != nil {
				b.Fatal(err)
			}
		})
	})
	tb := setup(b)
	b.Run("one-grant", func(b *testing.B) { layoutLatency(b, tb.backend, tb.spec) })
	// Fresh folders: bwrap leaves the placeholders it makes in one-grant's (no session
	// removes them here).
	exec := tb.spec
	exec.Mounts = []sandbox.Mount{{Host: b.TempDir(), Dest: tb.rwDest(), RW: true, Protect: protect},
		{Host: b.TempDir(), Dest: "/sessions/" + exec.SessionID + "/mnt/outputs", RW: true, Protect: protect}}
	exec.Network = sandbox.Network{Serve: func(net.Listener) error { return nil }, ProxyToken: proxyToken, ProxyCA: caPEM(b)}
	b.Run("sandbox-exec", func(b *testing.B) { layoutLatency(b, tb.backend, exec) })
	// A grant holding ten repositories (some 180 guards): made by the guard stage, as they are
	// past stageMinGuards, and by bwrap's binds alone, as where the stage cannot run.
	repos := func(b *testing.B) sandbox.Spec {
		spec := exec
		spec.Mounts = []sandbox.Mount{{Host: withRepositories(b, 10), Dest: tb.rwDest(), RW: true, Protect: protect},
			{Host: b.TempDir(), Dest: "/sessions/" + exec.SessionID + "/mnt/outputs", RW: true, Protect: protect}}
		return spec
	}
	if tb.backend.GuardStage() {
		b.Run("ten-repositories-stage", func(b *testing.B) { layoutLatency(b, tb.backend, repos(b)) })
	}
	bwrap.SetGuardStage(tb.backend, false)
	b.Run("ten-repositories-bwrap", func(b *testing.B) { layoutLatency(b, tb.backend, repos(b)) })
}

// withRepositories returns a new folder holding n git repositories (a .git with config and a
// sample hook, and a file).
func withRepositories(b *testing.B, n int) string {
	dir := b.TempDir()
	for i := range n {
		for rel, content := range map[string]string{".git/config": "[core]\n", ".git/hooks/pre-commit.sample": "#!/bin/sh\n", "README": "r\n"} {
			p := filepath.Join(dir, "r"+strconv.Itoa(i), rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	return dir
}

// caPEM is a CA certificate in PEM, as the proxy's.
func caPEM(b *testing.B) []byte {
	c, _ := selfSigned(b, "keepup session CA")
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
}

// layoutLatency times the start of a sandbox of spec (bwrap, or the guard stage that runs it)
// running /usr/bin/true.
func layoutLatency(b *testing.B, backend *bwrap.Backend, spec sandbox.Spec) {
	newCmd, files, err := bwrap.SessionSandbox(backend, spec, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	benchtest.Latency(b, func() {
		// bwrap reads the seccomp program and the files it copies in to their end, and the
		// guard stage its plan: from the start again (the descriptors bound by path, O_PATH,
		// cannot seek, and need not).
		for _, f := range files[1:] {
			if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_PATH != 0 {
				continue
			}
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					b.Fatal(err)
				}
			}
		}
		if out, err := newCmd().CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	})
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

// BenchmarkLargeFolder starts sessions on a read-write folder of about 200,000 files and
// folders (ten repositories of 1,000 folders of 19 files), on the disk the temporary folder is
// on: what walking it to find what to guard, and watching or searching it, costs.
//   - one-command: a session of one command (`keepup sandbox exec`) that runs `true`;
//   - session: a long-lived session started and closed, no command;
//   - warm-command: `true` in a long-lived session on it;
//   - warm-command-past-watch-limit: the same when not every folder can be watched.
func BenchmarkLargeFolder(b *testing.B) {
	tb := setup(b)
	n := 0
	for r := range 10 {
		repo := filepath.Join(tb.rw, "repo"+strconv.Itoa(r))
		if err := os.MkdirAll(filepath.Join(repo, ".git", "hooks"), 0o755); err != nil {
			b.Fatal(err)
		}
		for d := range 1000 {
			dir := filepath.Join(repo, "d"+strconv.Itoa(d/50), strconv.Itoa(d))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			for f := range 19 {
				if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(f)+".txt"), nil, 0o644); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
	}
	ctx := context.Background()
	b.Logf("%d files in 10,210 folders", n)
	start := func(b *testing.B, one bool) sandbox.Session {
		spec := tb.spec
		spec.OneCommand = one
		s, err := tb.backend.Start(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	runTrue := func(b *testing.B, s sandbox.Session) {
		if r, err := s.Run(ctx, sandbox.Command{Args: []string{"true"}}); err != nil || r.ExitCode != 0 {
			b.Fatal(r, err)
		}
	}
	b.Run("one-command", func(b *testing.B) {
		benchtest.Latency(b, func() {
			s := start(b, true)
			runTrue(b, s)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("session", func(b *testing.B) {
		benchtest.Latency(b, func() {
			if err := start(b, false).Close(); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("warm-command", func(b *testing.B) {
		s := start(b, false)
		defer s.Close()
		benchtest.Latency(b, func() { runTrue(b, s) })
	})
	// Past the watch limit (lowered to 8,192 folders of the 10,210), the folders not watched are
	// searched before and after each command.
	b.Run("warm-command-past-watch-limit", func(b *testing.B) {
		old := bwrap.SetMaxSessionWatches(8192)
		defer bwrap.SetMaxSessionWatches(old)
		s := start(b, false)
		defer s.Close()
		benchtest.Latency(b, func() { runTrue(b, s) })
	})
}
