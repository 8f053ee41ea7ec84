package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDoctor: on this machine (bubblewrap installed by the test script) every check passes and
// the self-test inside a real sandbox finds no escape.
func TestDoctor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.run("", "doctor")
	if r.code != 0 {
		t.Fatalf("doctor exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"ok    bubblewrap", "ok    Landlock ABI", "ok    seccomp filter", "ok    a sandbox starts", "ok    self-test: runs as an unprivileged user", "ok    self-test: no network",
		"ok    self-test: a protected path made in a new folder is moved out"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "FAIL") {
		t.Errorf("a check failed:\n%s", r.stdout)
	}
}

// TestDoctorWithoutBubblewrap: with no bwrap in PATH, doctor and run say how to fix it and
// nothing runs unsandboxed.
func TestDoctorWithoutBubblewrap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bin := t.TempDir()
	for _, tool := range []string{"sh", "id", "true"} {
		if p, err := exec.LookPath(tool); err == nil {
			os.Symlink(p, filepath.Join(bin, tool))
		}
	}
	e.extra = append(e.extra, "PATH="+bin)
	r := e.run("", "doctor")
	if r.code != 1 || !strings.Contains(r.stdout, "apt-get install bubblewrap") {
		t.Errorf("doctor without bwrap: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	e.write("g/a.txt", "a")
	r = e.run("", "run", "--grant", filepath.Join(e.dir, "g"), "--model", e.script(turn("hi")), "hello")
	if r.code != 2 || !strings.Contains(r.stderr, "apt-get install bubblewrap") {
		t.Errorf("run without bwrap: exit %d %q", r.code, r.stderr)
	}
	oneLine(t, r.stderr)
	if exists(filepath.Join(e.home, "keepup.db")) {
		t.Error("a task was recorded although the sandbox could not start")
	}
}

// TestSandboxNone: the unconfined development mode is refused by the Cowork profile and by a
// managed policy that does not allow it, and warns on every run where it is allowed.
func TestSandboxNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write("g/a.txt", "a")
	args := func() []string {
		return []string{"run", "--sandbox", "none", "--grant", filepath.Join(e.dir, "g"), "--model", e.script(turn("hi")), "hello"}
	}
	r := e.run("", args()...)
	if r.code != 2 || !strings.Contains(r.stderr, "refused by the cowork profile") {
		t.Errorf("cowork: exit %d %q", r.code, r.stderr)
	}
	e.write(filepath.Join(e.home, "config.json"), `{"profile": "dev"}`)
	e.write(e.managed, `{"permissions": {}}`)
	r = e.run("", args()...)
	if r.code != 4 || !strings.Contains(r.stderr, "refused by the managed policy") {
		t.Errorf("managed: exit %d %q", r.code, r.stderr)
	}
	e.write(e.managed, `{"sandbox": {"allow_none": true}}`)
	r = e.run("", args()...)
	if r.code != 0 || !strings.Contains(r.stderr, "WARNING: --sandbox none") {
		t.Errorf("dev + allow_none: exit %d %q", r.code, r.stderr)
	}
}
