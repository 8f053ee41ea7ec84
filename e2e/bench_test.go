package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/keepup/keepup/internal/benchtest"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
	"github.com/keepup/keepup/internal/sandbox/inside"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/tool"
)

// BenchmarkSandboxLatency runs `true` four ways, side by side in one run: through
// `keepup sandbox exec` (a cold sandbox per command, the whole CLI included; also with its
// folders on tmpfs), through the bash tool in a warm session sandbox, through a bare bwrap with
// the same namespaces, and with a bare fork/exec; and times `keepup version` alone, and a keepup
// process's start up to where the sandbox's helper and exec stubs begin.
func BenchmarkSandboxLatency(b *testing.B) {
	bw, err := exec.LookPath("bwrap")
	if err != nil {
		b.Skip("bubblewrap is not installed")
	}
	home := b.TempDir()
	grant := filepath.Join(home, "work")
	os.MkdirAll(grant, 0o755)

	cold := func(home, grant string) func(b *testing.B) {
		return func(b *testing.B) {
			benchtest.Latency(b, func() {
				cmd := exec.Command(keepupBin, "sandbox", "exec", "--grant", grant, "--", "true")
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KEEPUP_HOME=" + filepath.Join(home, "kh"), "HOME=" + home}
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
			})
		}
	}
	b.Run("cold-sandbox-exec", cold(home, grant))
	// The same with keepup's home and the grant on tmpfs: each run makes and removes some 57
	// files (the 26 placeholders of two read-write folders, their registry entries, the state
	// and outputs folders), and ext4 makes a file slower the more were removed near it lately,
	// which a loop of runs measures.
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "keepup-bench-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(shm)
		os.MkdirAll(filepath.Join(shm, "work"), 0o755)
		b.Run("cold-sandbox-exec-tmpfs", cold(shm, filepath.Join(shm, "work")))
	}

	b.Run("warm-bash-tool", func(b *testing.B) {
		sess, err := scope.Open(scope.Config{Grants: []scope.Grant{{Name: "work", Path: grant, Mode: scope.RW}}, Outputs: filepath.Join(home, "out")})
		if err != nil {
			b.Fatal(err)
		}
		defer sess.Close()
		backend, err := bwrap.New(bwrap.Config{Exe: keepupBin, StateDir: filepath.Join(home, "state")})
		if err != nil {
			b.Fatal(err)
		}
		spec := sandbox.Spec{SessionID: sess.ID, Workdir: sess.Default().Virtual()}
		for _, m := range sess.Mounts {
			spec.Mounts = append(spec.Mounts, sandbox.Mount{Host: m.Path, Dest: m.Virtual(), RW: m.Mode == scope.RW})
		}
		sb, err := backend.Start(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		defer sb.Close()
		env := &tool.Env{Session: sess, Sandbox: sb, Output: func(string, string) {}}
		input, _ := json.Marshal(map[string]any{"command": "true"})
		benchtest.Latency(b, func() {
			call, err := tool.Bash{}.Prepare(context.Background(), env, input)
			if err != nil {
				b.Fatal(err)
			}
			res, err := call.Run(context.Background())
			if err != nil || res.IsError {
				b.Fatalf("%v %+v", err, res)
			}
		})
	})

	b.Run("bare-bwrap", func(b *testing.B) {
		args := []string{"--unshare-user", "--uid", "1000", "--gid", "1000", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
			"--unshare-net", "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
			"--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
			"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/usr/bin/true"}
		benchtest.Latency(b, func() {
			if err := exec.Command(bw, args...).Run(); err != nil {
				b.Fatal(err)
			}
		})
	})

	// keepup's own start (the Go runtime and every package's initialization, nothing of the
	// sandbox): part of every cold start, and on its own near a bare bwrap's whole run.
	b.Run("keepup-version", func(b *testing.B) {
		benchtest.Latency(b, func() {
			if err := exec.Command(keepupBin, "version").Run(); err != nil {
				b.Fatal(err)
			}
		})
	})

	// A keepup process's start up to package inside's early init, where the sandbox's helper
	// and each exec stub begin: without the socket a stub is given it stops there, exit 126.
	b.Run("keepup-inside-start", func(b *testing.B) {
		benchtest.Latency(b, func() {
			err := exec.Command(keepupBin, inside.ExecCommand).Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 126 {
				b.Fatalf("keepup %s without its socket: %v, want exit 126", inside.ExecCommand, err)
			}
		})
	})

	b.Run("bare-fork-exec", func(b *testing.B) {
		benchtest.Latency(b, func() {
			if err := exec.Command("/usr/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		})
	})
}
