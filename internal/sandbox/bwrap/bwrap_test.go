package bwrap_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
)

type testBundle struct {
	backend *bwrap.Backend
	rw, ro  string // host folders granted read-write and read-only
	spec    sandbox.Spec
}

var protect = []string{".git/hooks/", ".git/config", ".gitmodules", ".bashrc", ".bash_profile", ".zshrc", ".zprofile",
	".profile", ".gitconfig", ".mcp.json", ".claude/", ".keepup/", ".vscode/", ".idea/"}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	tb := &testBundle{backend: b, rw: filepath.Join(tmp, "rw"), ro: filepath.Join(tmp, "ro")}
	for _, d := range []string{tb.rw, tb.ro} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	id := "test-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
	tb.spec = sandbox.Spec{
		SessionID: id,
		Mounts: []sandbox.Mount{
			{Host: tb.rw, Dest: "/sessions/" + id + "/mnt/rw", RW: true, Protect: protect},
			{Host: tb.ro, Dest: "/sessions/" + id + "/mnt/ro"},
		},
	}
	return tb
}

func (tb *testBundle) start(t *testing.T) sandbox.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := tb.backend.Start(ctx, tb.spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type runResult struct {
	sandbox.Result
	stdout, stderr string
}

func run(t *testing.T, s sandbox.Session, c sandbox.Command) runResult {
	t.Helper()
	var out, errb bytes.Buffer
	if c.Stdout == nil {
		c.Stdout = &out
	}
	if c.Stderr == nil {
		c.Stderr = &errb
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := s.Run(ctx, c)
	if err != nil {
		t.Fatalf("Run(%q): %v", c.Args, err)
	}
	return runResult{res, out.String(), errb.String()}
}

func sh(t *testing.T, s sandbox.Session, script string) runResult {
	t.Helper()
	return run(t, s, sandbox.Command{Args: []string{"sh", "-c", script}})
}

func TestEcho(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := tb.start(t)
	r := run(t, s, sandbox.Command{Args: []string{"echo", "hello", "world"}})
	if r.ExitCode != 0 || r.stdout != "hello world\n" {
		t.Fatalf("got %+v", r)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := tb.start(t)
	r := sh(t, s, `id -u; id -g; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; ls -la /proc/self/fd/; env; pwd; echo err >&2; exit 3`)
	t.Logf("%+v\nstdout:\n%s\nstderr:\n%s", r.Result, r.stdout, r.stderr)
}
