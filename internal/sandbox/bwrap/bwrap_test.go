package bwrap_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
	"golang.org/x/sys/unix"
)

type testBundle struct {
	backend *bwrap.Backend
	state   string // Config.StateDir
	rw, ro  string // host folders granted read-write and read-only
	spec    sandbox.Spec
}

// protect is the protected list of DESIGN.md, as the CLI passes it.
var protect = []string{".git/hooks/", ".git/config", ".gitmodules", ".bashrc", ".bash_profile", ".zshrc", ".zprofile",
	".profile", ".gitconfig", ".mcp.json", ".claude/", ".keepup/", ".vscode/", ".idea/"}

var sessionSeq atomic.Int64

func setup(t testing.TB) *testBundle {
	t.Helper()
	state := t.TempDir()
	b, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	tb := &testBundle{backend: b, state: state, rw: filepath.Join(tmp, "rw"), ro: filepath.Join(tmp, "ro")}
	for _, d := range []string{tb.rw, tb.ro} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	id := fmt.Sprintf("test-%d", sessionSeq.Add(1))
	tb.spec = sandbox.Spec{
		SessionID: id,
		Mounts: []sandbox.Mount{
			{Host: tb.rw, Dest: "/sessions/" + id + "/mnt/rw", RW: true, Protect: protect},
			{Host: tb.ro, Dest: "/sessions/" + id + "/mnt/ro"},
		},
	}
	return tb
}

func (tb *testBundle) rwDest() string { return tb.spec.Mounts[0].Dest }
func (tb *testBundle) roDest() string { return tb.spec.Mounts[1].Dest }

func (tb *testBundle) start(t testing.TB) sandbox.Session {
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

func run(t testing.TB, s sandbox.Session, c sandbox.Command) runResult {
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

func sh(t testing.TB, s sandbox.Session, script string) runResult {
	t.Helper()
	return run(t, s, sandbox.Command{Args: []string{"sh", "-c", script}})
}

// notWritable fails the test if a command can write to, make writable or remove the file p.
func notWritable(t *testing.T, s sandbox.Session, p string) {
	t.Helper()
	for _, c := range []string{"(: >> " + p + ")", "chmod u+w " + p, "rm -f " + p + " && ! test -e " + p} {
		if r := sh(t, s, c+" 2>/dev/null"); r.ExitCode == 0 {
			t.Errorf("inside, %s succeeds", c)
		}
	}
}

// mustSh runs script and fails the test unless it exits 0.
func mustSh(t testing.TB, s sandbox.Session, script string) string {
	t.Helper()
	r := sh(t, s, script)
	if r.ExitCode != 0 {
		t.Fatalf("sh -c %q: exit %d\nstdout: %s\nstderr: %s", script, r.ExitCode, r.stdout, r.stderr)
	}
	return r.stdout
}

// uniqueSleep returns a sleep duration no other test uses, to find the process on the host.
func uniqueSleep() string {
	return strconv.Itoa(100000 + int(sessionSeq.Add(1))*7)
}

// hostProcs lists the host processes whose command line is exactly argv.
func hostProcs(argv ...string) []int {
	want := strings.Join(argv, "\x00") + "\x00"
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && string(b) == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitHostProcs waits until n processes run argv on the host.
func waitHostProcs(t testing.TB, n int, argv ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(hostProcs(argv...)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q never started", argv)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noHostProcs fails if a process runs argv on the host (after a short grace for the kernel
// to finish tearing down what was killed).
func noHostProcs(t testing.TB, argv ...string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		pids := hostProcs(argv...)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q still running on the host: pids %v", argv, pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEcho(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	r := run(t, s, sandbox.Command{Args: []string{"echo", "hello", "world"}})
	if r.ExitCode != 0 || r.stdout != "hello world\n" || r.stderr != "" || r.Signal != "" || r.TimedOut {
		t.Fatalf("got %+v", r)
	}
}

func TestStdinStreamsToStdout(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	// More than a pipe buffer each way, so both directions must stream concurrently.
	in := make([]byte, 1<<20)
	rand.Read(in)
	var out bytes.Buffer
	r := run(t, s, sandbox.Command{Args: []string{"cat"}, Stdin: bytes.NewReader(in), Stdout: &out})
	if r.ExitCode != 0 || !bytes.Equal(out.Bytes(), in) {
		t.Fatalf("exit %d, %d bytes back of %d", r.ExitCode, out.Len(), len(in))
	}
	// No stdin at all reads as end of file.
	if r := run(t, s, sandbox.Command{Args: []string{"wc", "-c"}}); strings.TrimSpace(r.stdout) != "0" {
		t.Fatalf("wc -c of no stdin: %q", r.stdout)
	}
}

func TestStderrAndExitCodes(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	r := sh(t, s, "echo out; echo err >&2; exit 3")
	if r.ExitCode != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Fatalf("got %+v", r)
	}
	r = run(t, s, sandbox.Command{Args: []string{"no-such-command-here"}})
	if r.ExitCode != 127 || !strings.Contains(r.stderr, "command not found") {
		t.Fatalf("missing command: %+v", r)
	}
	r = run(t, s, sandbox.Command{Args: []string{"/etc/hosts"}})
	if r.ExitCode != 126 {
		t.Fatalf("not executable: %+v", r)
	}
	// One writer for both: one pipe, order kept.
	var both bytes.Buffer
	r = run(t, s, sandbox.Command{Args: []string{"sh", "-c", "echo 1; echo 2 >&2; echo 3; echo 4 >&2"}, Stdout: &both, Stderr: &both})
	if both.String() != "1\n2\n3\n4\n" {
		t.Fatalf("combined output %q", both.String())
	}
}

func TestKilledBySignal(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	r := sh(t, s, "kill -9 $$")
	if r.ExitCode != 137 || r.Signal != "SIGKILL" || r.TimedOut {
		t.Fatalf("got %+v", r)
	}
	r = sh(t, s, "kill -TERM $$")
	if r.ExitCode != 143 || r.Signal != "SIGTERM" {
		t.Fatalf("got %+v", r)
	}
}

func TestWorkingDirectory(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	if err := os.Mkdir(filepath.Join(tb.rw, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := tb.start(t)
	if got := strings.TrimSpace(mustSh(t, s, "pwd")); got != tb.rwDest() {
		t.Fatalf("default dir %q, want the first mount %q", got, tb.rwDest())
	}
	r := run(t, s, sandbox.Command{Args: []string{"pwd"}, Dir: tb.roDest()})
	if strings.TrimSpace(r.stdout) != tb.roDest() {
		t.Fatalf("Dir: %q", r.stdout)
	}
	r = run(t, s, sandbox.Command{Args: []string{"pwd"}, Dir: "sub"})
	if strings.TrimSpace(r.stdout) != tb.rwDest()+"/sub" {
		t.Fatalf("relative Dir: %q", r.stdout)
	}
	r = run(t, s, sandbox.Command{Args: []string{"pwd"}, Dir: "/no/such/dir"})
	if r.ExitCode != 126 || !strings.Contains(r.stderr, "/no/such/dir") {
		t.Fatalf("missing Dir: %+v", r)
	}
}

func TestTmpAndHomeLastOneSession(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := tb.start(t)
	mustSh(t, s, `echo a > /tmp/a && echo h > "$HOME/h" && test "$HOME" = /home/keepup`)
	if got := mustSh(t, s, `cat /tmp/a "$HOME/h"`); got != "a\nh\n" {
		t.Fatalf("second command sees %q", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	tb.spec.SessionID += "-2"
	s2 := tb.start(t)
	if r := sh(t, s2, `ls -A /tmp "$HOME"`); r.ExitCode != 0 || strings.Contains(r.stdout, "a") || strings.Contains(r.stdout, "h\n") {
		t.Fatalf("a new session sees the old one's files: %+v", r)
	}
}

func TestGrants(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	if err := os.WriteFile(filepath.Join(tb.ro, "keep.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := tb.start(t)
	mustSh(t, s, "echo written > new.txt && mkdir -p d/e && mv new.txt d/e/moved.txt && ln -s d/e/moved.txt link")
	if b, err := os.ReadFile(filepath.Join(tb.rw, "d/e/moved.txt")); err != nil || string(b) != "written\n" {
		t.Fatalf("rw grant on the host: %q, %v", b, err)
	}
	ro := tb.roDest()
	if got := mustSh(t, s, "cat "+ro+"/keep.txt"); got != "keep" {
		t.Fatalf("ro grant read %q", got)
	}
	for _, script := range []string{
		"echo x > " + ro + "/keep.txt",
		"echo x > " + ro + "/new.txt",
		"rm " + ro + "/keep.txt",
		"mv " + ro + "/keep.txt " + ro + "/k2",
		"mkdir " + ro + "/d",
	} {
		r := sh(t, s, script)
		if r.ExitCode == 0 || !strings.Contains(r.stderr, "Read-only file system") {
			t.Errorf("%s: exit %d, %q (want EROFS)", script, r.ExitCode, r.stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(tb.ro, "keep.txt")); string(b) != "keep" {
		t.Fatalf("ro grant changed on the host: %q", b)
	}
	if _, err := os.Stat(filepath.Join(tb.ro, "new.txt")); err == nil {
		t.Fatal("file created in the ro grant")
	}
}

// TestProtectedPaths runs with the guards made by bwrap and by the guard stage.
func TestProtectedPaths(t *testing.T) {
	t.Parallel()
	forGuardMakers(t, testProtectedPaths)
}

// forGuardMakers runs test in parallel subtests: "bwrap", with every guard made by bwrap, and
// "stage", with every guard made by the guard stage.
func forGuardMakers(t *testing.T, test func(*testing.T, *testBundle)) {
	for _, stage := range []bool{false, true} {
		t.Run(map[bool]string{false: "bwrap", true: "stage"}[stage], func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			if stage {
				requireGuardStage(t, tb.backend)
			}
			bwrap.SetGuardStage(tb.backend, stage)
			test(t, tb)
		})
	}
}

// requireGuardStage skips t when the guard stage cannot run because this machine lets no
// unprivileged process make a user namespace and mount in it (a security module's
// restriction), and fails it when the machine does but New's probe found the stage broken.
func requireGuardStage(t *testing.T, b *bwrap.Backend) {
	t.Helper()
	if b.GuardStage() {
		return
	}
	if out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "mount", "--bind", "/", "/mnt").CombinedOutput(); err != nil {
		t.Skipf("no user and mount namespace can be made here, so no guard stage: %v: %s", err, out)
	}
	t.Fatal("the machine lets a process make a user and mount namespace, but New found the guard stage broken")
}

func testProtectedPaths(t *testing.T, tb *testBundle) {
	write := func(rel, content string) {
		p := filepath.Join(tb.rw, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A repository without hooks; a nested one with them; ordinary files.
	write(".git/config", "[core]\n")
	write(".git/HEAD", "ref: refs/heads/main\n")
	write("nested/repo/.git/config", "[nested]\n")
	write("nested/repo/.git/hooks/pre-commit.sample", "#!/bin/sh\n")
	write("nested/.vscode/settings.json", "{}")
	write("notes.txt", "notes\n")
	s := tb.start(t)

	// While the session runs, the placeholders exist on the host.
	for _, p := range []string{".git/hooks", ".claude", ".bashrc", ".gitmodules"} {
		if _, err := os.Lstat(filepath.Join(tb.rw, p)); err != nil {
			t.Errorf("placeholder %s: %v", p, err)
		}
	}
	for _, script := range []string{
		"echo evil >> .git/config",
		"echo evil > .git/config",
		"rm -f .git/config",
		"mv .git/config x",
		"echo evil > .git/hooks/pre-commit",
		"mv .git/hooks hooks-aside",
		"rmdir .git/hooks",
		"mv .git git-aside",
		"mkdir -p .claude && echo '{}' > .claude/settings.json",
		"mv .claude claude-aside",
		"echo evil > .bashrc",
		"mv .bashrc b",
		"ln -s /tmp/x .gitmodules",
		"echo evil >> nested/repo/.git/config",
		"echo evil > nested/repo/.git/hooks/pre-commit",
		"mv nested/repo/.git/hooks h",
		"mv nested/repo r2",
		"mv nested n2",
		"echo evil > nested/.vscode/settings.json",
		"mv nested/.vscode v",
		// A folder holding a protected name is a project root: the rest of the list is guarded
		// there too, existing or not.
		"echo evil > nested/repo/.bashrc",
		"mkdir -p nested/repo/.claude && echo '{}' > nested/repo/.claude/settings.json",
		"echo '{}' > nested/.mcp.json",
	} {
		if r := sh(t, s, script); r.ExitCode == 0 {
			t.Errorf("%q succeeded", script)
		}
	}
	// Everything else in the grant stays writable, also inside .git.
	mustSh(t, s, "echo more >> notes.txt && echo x > .git/index && mkdir -p .git/refs/heads && echo y > nested/repo/.git/FETCH_HEAD && mv notes.txt .git/")
	// Removing the repository removes what is not protected; the protected paths stay.
	mustSh(t, s, "rm -rf .git 2>/dev/null; test -f .git/config && test -d .git/hooks && test ! -e .git/index")
	mustSh(t, s, "rm -rf nested 2>/dev/null; test -f nested/repo/.git/config && test -d nested/repo/.git/hooks")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Placeholders are gone; what existed is untouched.
	for _, p := range []string{".git/hooks", ".claude", ".bashrc", ".gitmodules", ".mcp.json", ".vscode", ".idea", ".profile"} {
		if _, err := os.Lstat(filepath.Join(tb.rw, p)); err == nil {
			t.Errorf("placeholder %s left on the host", p)
		}
	}
	// "mv nested/repo r2" failed to rename the pinned folder, and copied it instead: its
	// protected paths, made in a new folder, went to the quarantine, the only thing left in
	// .keepup.
	if _, err := os.Lstat(filepath.Join(tb.rw, "r2/.git/config")); err == nil {
		t.Error("r2/.git/config, a copy mv made, is in the folder")
	}
	if b, err := os.ReadFile(filepath.Join(tb.rw, bwrap.QuarantineDir, tb.spec.SessionID, "r2/.git/config")); err != nil || string(b) != "[nested]\n" {
		t.Errorf("quarantined r2/.git/config: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(tb.rw, ".keepup")); len(ents) != 1 || ents[0].Name() != "quarantine" {
		t.Errorf(".keepup holds %v, want the quarantine only", ents)
	}
	for rel, want := range map[string]string{
		".git/config":                              "[core]\n",
		"nested/repo/.git/config":                  "[nested]\n",
		"nested/repo/.git/hooks/pre-commit.sample": "#!/bin/sh\n",
		"nested/.vscode/settings.json":             "{}",
	} {
		if b, err := os.ReadFile(filepath.Join(tb.rw, rel)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", rel, b, err, want)
		}
	}
	for _, p := range []string{"nested/repo/.git/hooks/pre-commit", "nested/repo/.bashrc", "nested/repo/.claude", "nested/.mcp.json", "nested/.git"} {
		if _, err := os.Lstat(filepath.Join(tb.rw, p)); err == nil {
			t.Errorf("%s exists on the host after the session", p)
		}
	}
}

// TestProtectedPathsMadeLater: protected paths a command makes below the top of a read-write
// mount, in folders that held none when the session started (where no bind reaches), are moved
// to the mount's quarantine when the command ends, and reported with its result; so are those
// made elsewhere and moved in. What else the command made stays, and nothing of the
// quarantine is reachable inside.
func TestProtectedPathsMadeLater(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	if err := os.MkdirAll(filepath.Join(tb.rw, "old/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := tb.start(t)
	r := sh(t, s, `set -e
mkdir -p proj && cd proj && mkdir -p .git/hooks && echo evil > .git/hooks/pre-commit && echo '[x]' > .git/config && echo keep > .git/HEAD && cd ..
mkdir -p old/sub/.vscode && echo '{}' > old/sub/.vscode/tasks.json
echo evil > old/.bashrc
mkdir -p stage/hooks && echo evil > stage/hooks/post-checkout && mkdir -p repo2 && mv stage repo2/.git
mkdir -p deep/a/b/c/.claude && echo '{}' > deep/a/b/c/.claude/settings.json
echo fine > old/sub/notes.txt`)
	if r.ExitCode != 0 {
		t.Fatalf("exit %d: %s", r.ExitCode, r.stderr)
	}
	want := []string{"proj/.git/hooks", "proj/.git/config", "old/sub/.vscode", "old/.bashrc", "repo2/.git/hooks", "deep/a/b/c/.claude"}
	var got []string
	for _, q := range r.Quarantined {
		got = append(got, strings.TrimPrefix(q, tb.rwDest()+"/"))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("quarantined %q, want %q", got, want)
	}
	for _, rel := range want {
		if _, err := os.Lstat(filepath.Join(tb.rw, rel)); err == nil {
			t.Errorf("%s is still in the folder", rel)
		}
	}
	q := filepath.Join(tb.rw, bwrap.QuarantineDir, tb.spec.SessionID)
	if b, err := os.ReadFile(filepath.Join(q, "proj/.git/hooks/pre-commit")); err != nil || string(b) != "evil\n" {
		t.Errorf("the hook in quarantine: %q, %v", b, err)
	}
	for rel, content := range map[string]string{"proj/.git/HEAD": "keep\n", "old/sub/notes.txt": "fine\n"} {
		if b, err := os.ReadFile(filepath.Join(tb.rw, rel)); err != nil || string(b) != content {
			t.Errorf("%s: %q, %v; want it kept", rel, b, err)
		}
	}
	// The next command finds them gone, cannot reach the quarantine, and is told of nothing new.
	r = sh(t, s, "test ! -e proj/.git/hooks && test ! -e old/.bashrc && ! ls .keepup/quarantine 2>/dev/null | grep -q . && echo OK")
	if r.stdout != "OK\n" || len(r.Quarantined) != 0 {
		t.Errorf("next command: %q %q %v", r.stdout, r.stderr, r.Quarantined)
	}
	// Made and removed again within a command: nothing to move, nothing said.
	if r := sh(t, s, "mkdir old/sub/.vscode && rmdir old/sub/.vscode"); len(r.Quarantined) != 0 {
		t.Errorf("made and removed: quarantined %v", r.Quarantined)
	}
	// Made again, moved again, under another name.
	r = sh(t, s, "mkdir -p proj/.git/hooks && echo again > proj/.git/hooks/pre-commit")
	if len(r.Quarantined) != 1 {
		t.Errorf("made again: quarantined %v", r.Quarantined)
	}
	if b, err := os.ReadFile(filepath.Join(q, "proj/.git/hooks~1/pre-commit")); err != nil || string(b) != "again\n" {
		t.Errorf("the second hook in quarantine: %q, %v", b, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The quarantine outlives the session, in the folder's .keepup.
	if _, err := os.Stat(filepath.Join(q, "deep/a/b/c/.claude/settings.json")); err != nil {
		t.Errorf("quarantine after the session: %v", err)
	}
}

// TestProtectedPathsMadeLaterWithoutKeepup: a mount whose protected list lacks .keepup (where
// the quarantine would be in the sandbox's reach) has what commands make removed instead.
func TestProtectedPathsMadeLaterWithoutKeepup(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.spec.Mounts[0].Protect = slices.DeleteFunc(slices.Clone(tb.spec.Mounts[0].Protect), func(p string) bool { return strings.HasPrefix(p, ".keepup") })
	s := tb.start(t)
	r := sh(t, s, "mkdir -p a/.vscode && echo '{}' > a/.vscode/tasks.json")
	if want := []string{tb.rwDest() + "/a/.vscode"}; !slices.Equal(r.Quarantined, want) {
		t.Errorf("quarantined %v, want %v", r.Quarantined, want)
	}
	for _, rel := range []string{"a/.vscode", ".keepup"} {
		if _, err := os.Lstat(filepath.Join(tb.rw, rel)); err == nil {
			t.Errorf("%s exists", rel)
		}
	}
}

// TestProtectedPathsOneCommand: a session of one command (keepup sandbox exec) finds what its
// command made: in mounts of usual size by searching them when it ends, without inotify; in
// large ones (here: from one entry on) by watching them.
func TestProtectedPathsOneCommand(t *testing.T) {
	t.Parallel()
	for _, watched := range []bool{false, true} {
		t.Run(fmt.Sprintf("watched=%v", watched), func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			tb.spec.OneCommand = true
			if err := os.WriteFile(filepath.Join(tb.rw, "a.txt"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if watched {
				bwrap.SetOneCommandWatchFrom(tb.backend, 1)
			}
			s := tb.start(t)
			if got := bwrap.Watches(s); got != watched {
				t.Fatalf("the session watches with inotify: %v, want %v", got, watched)
			}
			r := sh(t, s, "mkdir -p p/q/.git/hooks && echo evil > p/q/.git/hooks/pre-commit && mkdir -p .github/x/.vscode")
			if want := []string{tb.rwDest() + "/.github/x/.vscode", tb.rwDest() + "/p/q/.git/hooks"}; !slices.Equal(slices.Sorted(slices.Values(r.Quarantined)), want) {
				t.Errorf("quarantined %v, want %v", r.Quarantined, want)
			}
			for _, rel := range []string{"p/q/.git/hooks", ".github/x/.vscode"} {
				if _, err := os.Lstat(filepath.Join(tb.rw, rel)); err == nil {
					t.Errorf("%s is still in the folder", rel)
				}
			}
			// Never reopened, it keeps no baseline for a reopening.
			if ents, _ := os.ReadDir(filepath.Join(tb.state, "baselines")); len(ents) != 0 {
				t.Errorf("baselines of a one-command session: %v", ents)
			}
		})
	}
}

// TestProtectedPathsMadeOnTheHost: what the user makes in the folder on the host between
// commands (no process of the sandbox outlives its command, so nothing else can) is the
// user's, and stays: a new repository's hooks, a folder's .vscode.
func TestProtectedPathsMadeOnTheHost(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := tb.start(t)
	mustSh(t, s, "mkdir -p proj && echo x > proj/a.txt")
	for rel, content := range map[string]string{"proj/.git/hooks/pre-commit": "#!/bin/sh\n", "proj/.git/config": "[core]\n", "other/.vscode/settings.json": "{}"} {
		p := filepath.Join(tb.rw, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := sh(t, s, "cat proj/.git/config && echo made > proj/b.txt")
	if r.ExitCode != 0 || r.stdout != "[core]\n" || len(r.Quarantined) != 0 {
		t.Errorf("next command: exit %d %q, quarantined %v", r.ExitCode, r.stdout, r.Quarantined)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"proj/.git/hooks/pre-commit", "proj/.git/config", "other/.vscode/settings.json"} {
		if _, err := os.Stat(filepath.Join(tb.rw, rel)); err != nil {
			t.Errorf("%s, made on the host, is gone: %v", rel, err)
		}
	}
}

// TestProtectedPathsWithoutWatches: a session that cannot watch every folder (the watch limit,
// here lowered to one folder) searches the folders it does not watch after each command, and
// finds protected paths made in them.
func TestProtectedPathsWithoutWatches(t *testing.T) {
	// Not parallel: the bound is the package's.
	old := bwrap.SetMaxSessionWatches(1)
	defer bwrap.SetMaxSessionWatches(old)
	tb := setup(t)
	if err := os.MkdirAll(filepath.Join(tb.rw, "a/b/c"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := tb.start(t)
	r := run(t, s, sandbox.Command{Args: []string{"sh", "-c", "echo evil > a/b/c/.bashrc && mkdir -p a/b/.claude && echo ok"}, Dir: tb.rwDest()})
	got := slices.Clone(r.Quarantined)
	slices.Sort(got)
	if want := []string{tb.rwDest() + "/a/b/.claude", tb.rwDest() + "/a/b/c/.bashrc"}; r.stdout != "ok\n" || !slices.Equal(got, want) {
		t.Errorf("%q: quarantined %v, want %v", r.stdout, got, want)
	}
}

// TestProtectedPathsPastTheWatchLimit: a session watches what folders it can (here 20 of some
// 60) and searches the others after each command, not the whole mount. Protected paths made
// anywhere are found: in watched and unwatched folders, in folders made in either, and in a
// folder moved from one part to the other; and what the host made between commands stays.
func TestProtectedPathsPastTheWatchLimit(t *testing.T) {
	// Not parallel: the bound is the package's.
	old := bwrap.SetMaxSessionWatches(20)
	defer bwrap.SetMaxSessionWatches(old)
	tb := setup(t)
	var dirs []string
	for i := range 6 {
		for j := range 9 {
			dirs = append(dirs, fmt.Sprintf("d%d/e%d", i, j))
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(tb.rw, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := tb.start(t)
	watched, unwatched, blind := bwrap.WatchState(s)
	if len(watched) != 20 || len(unwatched) == 0 || blind {
		t.Fatalf("watched %d, unwatched %d, blind %v; want 20 watched, some unwatched, not blind", len(watched), len(unwatched), blind)
	}
	// In every folder, a protected file; in every folder, a new folder with a protected folder.
	var script strings.Builder
	var want []string
	for _, d := range dirs {
		fmt.Fprintf(&script, "echo x > %s/.bashrc && mkdir -p %s/new/.vscode && ", d, d)
		want = append(want, tb.rwDest()+"/"+d+"/.bashrc", tb.rwDest()+"/"+d+"/new/.vscode")
	}
	script.WriteString("mv d0/e0 d5/e8/moved && mkdir -p d5/e8/moved/.idea && echo ok")
	want = append(want, tb.rwDest()+"/d5/e8/moved/.idea", tb.rwDest()+"/d0/e0/.bashrc", tb.rwDest()+"/d0/e0/new/.vscode")
	r := run(t, s, sandbox.Command{Args: []string{"sh", "-c", script.String()}, Dir: tb.rwDest(), Timeout: time.Minute})
	if r.stdout != "ok\n" {
		t.Fatalf("%+v", r)
	}
	got := slices.Sorted(slices.Values(r.Quarantined))
	// The folder moved before the command ended: what was made in it is found where it went.
	want = slices.DeleteFunc(want, func(p string) bool { return strings.Contains(p, "/d0/e0/") })
	want = append(want, tb.rwDest()+"/d5/e8/moved/.bashrc", tb.rwDest()+"/d5/e8/moved/new/.vscode")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("quarantined:\n got %v\nwant %v", got, want)
	}
	if _, _, blind := bwrap.WatchState(s); blind {
		t.Error("the watch went blind")
	}
	// Made on the host between commands, in an unwatched folder and a watched one: it stays.
	for _, d := range []string{dirs[len(dirs)-1], "d1"} {
		if err := os.MkdirAll(filepath.Join(tb.rw, d, ".claude"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if r := sh(t, s, "true"); len(r.Quarantined) != 0 {
		t.Errorf("made on the host, moved out: %v", r.Quarantined)
	}
	for _, d := range []string{dirs[len(dirs)-1], "d1"} {
		if !exists(filepath.Join(tb.rw, d, ".claude")) {
			t.Errorf("%s/.claude, made on the host, is gone", d)
		}
	}

	// A watched folder moved into an unwatched one, then moved on, and a folder made under
	// the name it had there: that is another folder, searched, not taken for the watched one.
	watched, unwatched, _ = bwrap.WatchState(s)
	var u, w string
	for _, d := range unwatched {
		if strings.HasPrefix(d, "d") && strings.Count(d, "/") == 1 {
			u = d
		}
	}
	for _, d := range watched {
		if strings.Count(d, "/") == 1 && !strings.HasPrefix(u, path.Dir(d)+"/") {
			w = d
		}
	}
	if u == "" || w == "" {
		t.Fatalf("no unwatched folder and watched folder apart: watched %v, unwatched %v", watched, unwatched)
	}
	if r := sh(t, s, "mv "+w+" "+u+"/x"); r.ExitCode != 0 || len(r.Quarantined) != 0 {
		t.Fatalf("%+v", r)
	}
	r = sh(t, s, "mv "+u+"/x "+u+"/y && mkdir -p "+u+"/x/.git/hooks && echo evil > "+u+"/x/.git/hooks/pre-commit")
	if want := []string{tb.rwDest() + "/" + u + "/x/.git/hooks"}; r.ExitCode != 0 || !slices.Equal(r.Quarantined, want) {
		t.Errorf("exit %d, quarantined %v, want %v", r.ExitCode, r.Quarantined, want)
	}
	// A watched folder renamed in a watched one, at the limit, keeps its watch under its new
	// name: what a later command makes in it is found.
	watched, _, _ = bwrap.WatchState(s)
	w = ""
	for _, d := range watched {
		if strings.Count(d, "/") == 1 && slices.Contains(watched, path.Dir(d)) {
			w = d
		}
	}
	if w == "" {
		t.Fatalf("no watched folder in a watched one: %v", watched)
	}
	if r := sh(t, s, "mv "+w+" "+w+"-renamed"); r.ExitCode != 0 || len(r.Quarantined) != 0 {
		t.Fatalf("%+v", r)
	}
	r = sh(t, s, "echo evil > "+w+"-renamed/.bashrc")
	if want := []string{tb.rwDest() + "/" + w + "-renamed/.bashrc"}; r.ExitCode != 0 || !slices.Equal(r.Quarantined, want) {
		t.Errorf("exit %d, quarantined %v, want %v", r.ExitCode, r.Quarantined, want)
	}
}

// TestSessionAtTheWalkBound: a read-write folder of exactly as many entries as the walk takes
// starts (the placeholders made for the session, which its watch then sees, do not count), in a
// session of one command and in a long-lived one; one more entry is refused, naming the bound.
func TestSessionAtTheWalkBound(t *testing.T) {
	// Not parallel: the bound is the package's.
	old := bwrap.SetWalkEntries(30)
	defer bwrap.SetWalkEntries(old)
	for _, one := range []bool{true, false} {
		tb := setup(t)
		tb.spec.OneCommand = one
		for i := range 30 {
			if err := os.WriteFile(filepath.Join(tb.rw, fmt.Sprint(i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s := tb.start(t)
		if r := sh(t, s, "echo ok"); r.stdout != "ok\n" {
			t.Fatalf("one command %v: %+v", one, r)
		}
		s.Close()
		if err := os.WriteFile(filepath.Join(tb.rw, "one-more"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := tb.backend.Start(t.Context(), tb.spec)
		if !errors.Is(err, bwrap.ErrTooLarge) || !strings.Contains(err.Error(), "more than 30 files and folders") {
			t.Errorf("one command %v: 31 entries with a bound of 30: %v", one, err)
		}
	}
}

// TestProtectWatchClosed: a session's inotify descriptor is closed after the session ends (in
// the background, see protectWatch.close), so a long-lived keepup does not collect them.
func TestProtectWatchClosed(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var st unix.Stat_t
	if err := unix.Stat(tb.rw, &st); err != nil {
		t.Fatal(err)
	}
	// The session's inotify descriptor is the one that watches the granted folder: the kernel
	// lists each watch's inode and device (in its own encoding) in /proc/self/fdinfo. Descriptor
	// numbers alone do not tell: one that another session closed may be given to this one.
	watch := fmt.Sprintf(" ino:%x sdev:%x ", st.Ino, unix.Major(st.Dev)<<20|unix.Minor(st.Dev))
	watching := func() []string {
		ents, _ := os.ReadDir("/proc/self/fd")
		var fds []string
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || l != "anon_inode:inotify" {
				continue
			}
			if info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name()); err == nil && strings.Contains(string(info), watch) {
				fds = append(fds, e.Name())
			}
		}
		return fds
	}
	s := tb.start(t)
	if fds := watching(); len(fds) != 1 {
		t.Fatalf("inotify descriptors watching the granted folder: %v, want one", fds)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fds := watching(); len(fds) > 0; fds = watching() {
		if time.Now().After(deadline) {
			t.Fatalf("inotify descriptor %v still watches the granted folder after the session's end", fds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProtectedPathsAfterLostEvents: when a command makes more names than the kernel queues
// events for (fs.inotify.max_queued_events), the events after that are lost; the watch then
// searches the whole mount, and still finds a protected path made after the flood.
func TestProtectedPathsAfterLostEvents(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skip(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n > 100_000 {
		t.Skipf("max_queued_events %q: too many names to make", b)
	}
	tb := setup(t)
	s := tb.start(t)
	// The flood is made in the mount's top, a folder watched from the start.
	r := run(t, s, sandbox.Command{Args: []string{"sh", "-c", "seq -f 'f%g' " + strconv.Itoa(n+100) +
		" | xargs touch && mkdir -p late/.vscode && echo '{}' > late/.vscode/tasks.json"}, Dir: tb.rwDest(), Timeout: 2 * time.Minute})
	if r.ExitCode != 0 {
		t.Fatalf("exit %d: %s", r.ExitCode, r.stderr)
	}
	if want := tb.rwDest() + "/late/.vscode"; !slices.Equal(r.Quarantined, []string{want}) {
		t.Errorf("quarantined %v, want %s", r.Quarantined, want)
	}
	if _, err := os.Lstat(filepath.Join(tb.rw, "late/.vscode")); err == nil {
		t.Error("late/.vscode is still in the folder")
	}
}

func TestPlaceholderKeptWhenSomeoneFilledIt(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := tb.start(t)
	// The host (not the sandbox) puts something into a placeholder's folder during the session.
	if err := os.WriteFile(filepath.Join(tb.rw, ".claude", "mine.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tb.rw, ".claude", "mine.json")); err != nil {
		t.Fatalf("the host's file was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tb.rw, ".idea")); err == nil {
		t.Fatal("an empty placeholder stayed")
	}
}

func TestProtectedSymlinkRefused(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	if err := os.Symlink("/root", filepath.Join(tb.rw, ".claude")); err != nil {
		t.Fatal(err)
	}
	_, err := tb.backend.Start(context.Background(), tb.spec)
	if !errors.Is(err, bwrap.ErrSymlinkProtected) {
		t.Fatalf("Start: %v, want ErrSymlinkProtected", err)
	}
}

func TestEnvironmentIsAllowlisted(t *testing.T) {
	// Not parallel: it sets the test process's environment.
	t.Setenv("KEEPUP_CANARY_SECRET", "leak")
	t.Setenv("ANTHROPIC_API_KEY", "sk-canary")
	tb := setup(t)
	tb.spec.Env = map[string]string{"SESSION_VAR": "s", "KEEPUP_HOME": "/x"}
	s := tb.start(t)
	r := run(t, s, sandbox.Command{Args: []string{"env"}, Env: []string{"CMD_VAR=c", "KEEPUP_MODEL=x", "malformed", "LANG=en_US.UTF-8"}})
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	want := map[string]string{
		"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/keepup", "USER": "keepup", "LOGNAME": "keepup",
		"SHELL": "/bin/bash", "LANG": "en_US.UTF-8", "TERM": "dumb", "TMPDIR": "/tmp",
		"SESSION_VAR": "s", "CMD_VAR": "c",
	}
	if len(got) != len(want) {
		t.Errorf("environment %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	if strings.Contains(r.stdout, "leak") || strings.Contains(r.stdout, "canary") {
		t.Errorf("host environment leaked: %s", r.stdout)
	}
}

// TestConfinement runs with the guards made by bwrap and by the guard stage (bwrap is then
// started by keepup, in a user namespace of keepup's own).
func TestConfinement(t *testing.T) {
	t.Parallel()
	forGuardMakers(t, testConfinement)
}

func testConfinement(t *testing.T, tb *testBundle) {
	s := tb.start(t)
	status := mustSh(t, s, "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status")
	for _, want := range []string{"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
		"CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	if got := mustSh(t, s, "id -u; id -g; id -un; hostname"); got != "1000\n1000\nkeepup\nkeepup\n" {
		t.Errorf("identity %q", got)
	}
	home, _ := os.UserHomeDir()
	for _, p := range []string{"/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root", home, "/home/" + filepath.Base(home), "/var/run/docker.sock", "/run", "/sys", "/etc/bash.bashrc", "/etc/profile", "/etc/resolv.conf"} {
		if r := sh(t, s, "test -e "+p); r.ExitCode == 0 && p != "/home/keepup" {
			t.Errorf("%s exists inside", p)
		}
	}
	if got := mustSh(t, s, "ls -A /home"); got != "keepup\n" {
		t.Errorf("/home lists %q", got)
	}
	if got := mustSh(t, s, "cat /etc/passwd"); strings.Count(got, "\n") != 2 || !strings.Contains(got, "keepup:x:1000:1000") {
		t.Errorf("/etc/passwd %q", got)
	}
	// The host's /etc files: copied (or, a link into /usr, linked) as on the host, read-only.
	for _, e := range []string{"ld.so.cache", "protocols", "services", "mime.types", "os-release", "localtime", "timezone", "ca-certificates.conf"} {
		want, err := os.ReadFile("/etc/" + e)
		if err != nil {
			continue
		}
		if got := mustSh(t, s, "cat /etc/"+e); got != string(want) {
			t.Errorf("/etc/%s inside: %d bytes, unlike the host's %d", e, len(got), len(want))
		}
		notWritable(t, s, "/etc/"+e)
	}
	for _, e := range []string{"passwd", "group", "hosts", "hostname", "nsswitch.conf"} {
		if r := sh(t, s, "test -s /etc/"+e); r.ExitCode != 0 {
			t.Errorf("/etc/%s is missing or empty inside", e)
		}
		notWritable(t, s, "/etc/"+e)
	}
	// Network: loopback only.
	if got := mustSh(t, s, "ls /sys/class/net 2>/dev/null || cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"); strings.TrimSpace(got) != "lo" {
		t.Errorf("interfaces %q", got)
	}
	// The root and system folders are read-only.
	for _, p := range []string{"/x", "/usr/x", "/etc/x", "/sessions/x", "/.keepup/x", "/dev/x", "/proc/x"} {
		if r := sh(t, s, "touch "+p); r.ExitCode == 0 {
			t.Errorf("created %s", p)
		}
	}
	mustSh(t, s, "echo x > /dev/null && echo x > /dev/shm/x && head -c 1 /dev/urandom > /dev/null")
	// Namespaces and mounts stay as they are.
	for _, script := range []string{"unshare -U true", "unshare -r true", "mount -t tmpfs none /tmp", "umount /tmp"} {
		if r := sh(t, s, script); r.ExitCode == 0 {
			t.Errorf("%s succeeded", script)
		}
	}
	// No descriptor but stdio reaches the command.
	if fds := mustSh(t, s, "ls /proc/self/fd | tr '\\n' ' '; readlink /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2"); !strings.HasPrefix(fds, "0 1 2 3 pipe:") || strings.Count(fds, "pipe:") != 3 {
		t.Errorf("descriptors of ls: %q (want stdio and its own)", fds)
	}
	// Resource limits: per-process rlimits for what no cgroup bounds.
	lim := tb.backend.Limiter()
	as, nproc := "4194304", "1024"
	if strings.Contains(lim, "cgroup v2") || strings.Contains(lim, "memory at") {
		as = "unlimited"
	}
	if strings.Contains(lim, "cgroup v2") || strings.Contains(lim, "pids at") {
		nproc = ""
	}
	got := strings.Split(mustSh(t, s, "bash -c 'ulimit -c; ulimit -n; ulimit -Hn; ulimit -v; ulimit -f; ulimit -u'"), "\n")
	if want := []string{"0", "8192", "8192", as, "8388608"}; !slices.Equal(got[:5], want) || nproc != "" && got[5] != nproc {
		t.Errorf("ulimits %q, want %q and nproc %q (%s)", got, want, nproc, lim)
	}
}

func TestLandlock(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := tb.start(t)
	abi := s.(*bwrap.Session).LandlockABI()
	if abi == 0 {
		t.Skip("no Landlock in this kernel")
	}
	// Writable without Landlock (a process may rename itself), but /proc is outside the
	// ruleset's writable paths.
	if r := sh(t, s, "echo renamed > /proc/self/comm"); r.ExitCode == 0 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("writing /proc/self/comm: %+v", r)
	}
	// The rules still allow what commands need.
	mustSh(t, s, "echo x > /tmp/f && echo x > $HOME/f && echo x > /dev/null && echo x > /dev/shm/f && mkdir -p a/b && mv /tmp/f a/b/ && mv a/b/f ./f2")
	if abi >= 6 {
		// Signal scoping: the command cannot signal the stub that supervises it ($PPID) or the
		// helper, though they run as the same user.
		if r := sh(t, s, "kill -0 $PPID 2>&1"); r.ExitCode == 0 {
			t.Errorf("the command could signal its supervisor: %+v", r)
		}
		mustSh(t, s, "sleep 5 & kill $!")
	}
}

func TestTimeoutKillsTheTree(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	n := uniqueSleep()
	start := time.Now()
	r := run(t, s, sandbox.Command{Args: []string{"sh", "-c", "sleep " + n + " & sleep " + n + "; echo never"}, Timeout: 300 * time.Millisecond})
	if !r.TimedOut || r.ExitCode != 137 || r.Signal != "SIGKILL" || strings.Contains(r.stdout, "never") {
		t.Fatalf("got %+v", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	noHostProcs(t, "sleep", n)
}

// TestStoppedStubIsNotReused: a command SIGSTOPs the exec stub that runs it, as a command
// running as the same user can: every thread of it it may signal (without Landlock's signal
// scoping all of them; with it, the thread the stub started the command from, which shares the
// command's Landlock domain), or everything it may signal but itself. The command still ends
// at its timeout, or when its context ends, with everything it started; and the session's next
// command runs, on another stub, well within its own timeout.
func TestStoppedStubIsNotReused(t *testing.T) {
	t.Parallel()
	for name, stop := range map[string]string{
		"its stub":   `for t in /proc/$PPID/task/*; do kill -STOP ${t##*/} 2>/dev/null; done`,
		"everything": `for t in /proc/[0-9]*/task/*; do t=${t##*/}; [ "$t" = $$ ] || kill -STOP $t 2>/dev/null; done`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := setup(t).start(t)
			if name == "everything" && s.(*bwrap.Session).LandlockABI() < 6 {
				t.Skip("without Landlock's signal scoping a command can stop the helper too")
			}
			n := uniqueSleep()
			attack := "setsid sleep " + n + " & sleep " + n + " & " + stop + "; grep State /proc/$PPID/status"
			r := run(t, s, sandbox.Command{Args: []string{"sh", "-c", attack}, Timeout: 2 * time.Second})
			stopped := strings.Contains(r.stdout, "stopped")
			t.Logf("the stub after the attack: %s", strings.TrimSpace(r.stdout))
			if stopped && (!r.TimedOut || r.ExitCode != 137) {
				t.Errorf("a command that stopped its stub: %+v, want timed out", r)
			}
			noHostProcs(t, "sleep", n)

			// No timeout: ending the context kills it (not the session).
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			res, err := s.Run(ctx, sandbox.Command{Args: []string{"sh", "-c", "sleep " + n + " & " + stop + "; wait"}})
			if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "closed") || res.ExitCode != 137 {
				t.Errorf("a command that stopped its stub, at the end of its context: %+v, %v", res, err)
			}
			noHostProcs(t, "sleep", n)

			r = run(t, s, sandbox.Command{Args: []string{"echo", "ok"}, Timeout: 20 * time.Second})
			if r.TimedOut || r.ExitCode != 0 || r.stdout != "ok\n" {
				t.Fatalf("the next command: %+v", r)
			}
		})
	}
}

func TestBackgroundProcessesDieWithTheirCommand(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	a, b, c, d := uniqueSleep(), uniqueSleep(), uniqueSleep(), uniqueSleep()
	start := time.Now()
	r := sh(t, s, "setsid sleep "+a+" & nohup sleep "+b+" >/dev/null 2>&1 & (sleep "+c+" &) ; (setsid sh -c 'sleep "+d+" & exit' &) ; echo started")
	if r.ExitCode != 0 || r.stdout != "started\n" {
		t.Fatalf("got %+v", r)
	}
	if dt := time.Since(start); dt > 5*time.Second {
		t.Fatalf("Run waited %v for background processes", dt)
	}
	for _, n := range []string{a, b, c, d} {
		noHostProcs(t, "sleep", n)
	}
	// The session still works.
	mustSh(t, s, "true")
}

func TestContextCancelKills(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	n := uniqueSleep()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitHostProcs(t, 2, "sleep", n)
		cancel()
	}()
	res, err := s.Run(ctx, sandbox.Command{Args: []string{"sh", "-c", "sleep " + n + " & sleep " + n}})
	if !errors.Is(err, context.Canceled) || res.ExitCode != 137 {
		t.Fatalf("Run: %+v, %v", res, err)
	}
	noHostProcs(t, "sleep", n)
	mustSh(t, s, "true")
}

func TestCloseKillsRunningCommands(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	n := uniqueSleep()
	errc := make(chan error, 1)
	go func() {
		_, err := s.Run(context.Background(), sandbox.Command{Args: []string{"sh", "-c", "sleep " + n + " & setsid sleep " + n}})
		errc <- err
	}()
	waitHostProcs(t, 2, "sleep", n)
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("Run of a command killed by Close returned no error")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
	noHostProcs(t, "sleep", n)
	if _, err := s.Run(context.Background(), sandbox.Command{Args: []string{"true"}}); err == nil {
		t.Fatal("Run after Close returned no error")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	const n = 8
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			r := sh(t, s, fmt.Sprintf("sleep 2; echo %d; echo e%d >&2; exit %d", i, i, i))
			if r.stdout != fmt.Sprintf("%d\n", i) || r.stderr != fmt.Sprintf("e%d\n", i) || r.ExitCode != i {
				t.Errorf("command %d: %+v", i, r)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d > n*2*time.Second/2 {
		t.Errorf("%d two-second commands took %v: not concurrent", n, d)
	}
}

func TestBwrapDiesRunFails(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := tb.start(t)
	// Find this session's bwrap: a child of this process whose arguments name the session.
	var pid int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), tb.rwDest()+"\x00") && strings.Contains(string(b), "bwrap") {
			stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
			f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
			if f[1] == strconv.Itoa(os.Getpid()) {
				pid, _ = strconv.Atoi(e.Name())
			}
		}
	}
	if pid == 0 {
		t.Fatal("bwrap process not found")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_, err := s.Run(context.Background(), sandbox.Command{Args: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "bwrap") {
		t.Fatalf("Run in a dead sandbox: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	for name, mod := range map[string]func(*sandbox.Spec){
		"bad id":          func(s *sandbox.Spec) { s.SessionID = "../x" },
		"relative host":   func(s *sandbox.Spec) { s.Mounts[0].Host = "rel" },
		"missing host":    func(s *sandbox.Spec) { s.Mounts[0].Host = "/no/such/folder" },
		"dest over /usr":  func(s *sandbox.Spec) { s.Mounts[0].Dest = "/usr/lib" },
		"dest over /etc":  func(s *sandbox.Spec) { s.Mounts[0].Dest = "/etc" },
		"unclean dest":    func(s *sandbox.Spec) { s.Mounts[0].Dest = "/sessions/../etc" },
		"protect escapes": func(s *sandbox.Spec) { s.Mounts[0].Protect = []string{"../x"} },
		"token, no proxy": func(s *sandbox.Spec) { s.Network.ProxyToken = "t" },
		"spaced token": func(s *sandbox.Spec) {
			s.Network.Serve, s.Network.ProxyToken = func(net.Listener) error { return nil }, "a b"
		},
	} {
		spec := tb.spec
		spec.Mounts = append([]sandbox.Mount(nil), tb.spec.Mounts...)
		mod(&spec)
		if s, err := tb.backend.Start(context.Background(), spec); err == nil {
			s.Close()
			t.Errorf("%s: Start succeeded", name)
		}
	}
	// Nothing was left behind.
	if ents := stateEntries(tb.state); len(ents) != 0 {
		t.Errorf("state folder holds %v after failed starts", ents)
	}
}

func TestBwrapMissing(t *testing.T) {
	t.Parallel()
	_, err := bwrap.New(bwrap.Config{Bwrap: "/nonexistent/bwrap", Exe: os.Args[0], StateDir: t.TempDir()})
	if !errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), "apt-get install bubblewrap") {
		t.Fatalf("New: %v", err)
	}
	r := bwrap.Probe(context.Background(), "/nonexistent/bwrap", "")
	if r.Err == nil || r.Bwrap != "" {
		t.Fatalf("Probe: %+v", r)
	}
}

func TestUserNamespaceRefused(t *testing.T) {
	t.Parallel()
	// A bwrap that answers --version and --help but cannot create a user namespace, as under
	// Ubuntu's AppArmor restriction.
	real, err := exec.LookPath("bwrap")
	if err != nil {
		t.Skip(err)
	}
	fake := filepath.Join(t.TempDir(), "bwrap")
	script := "#!/bin/sh\ncase \"$1\" in --version|--help) exec " + real + " \"$@\";; esac\n" +
		"echo 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = bwrap.New(bwrap.Config{Bwrap: fake, Exe: os.Args[0], StateDir: t.TempDir()})
	if !errors.Is(err, sandbox.ErrUnavailable) {
		t.Fatalf("New: %v", err)
	}
	for _, want := range []string{"setting up uid map", "kernel.apparmor_restrict_unprivileged_userns=0", "kernel.unprivileged_userns_clone=1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestProbe(t *testing.T) {
	t.Parallel()
	r := bwrap.Probe(context.Background(), "", "")
	if r.Err != nil || !r.UserNS || r.Version == "" || r.SeccompInstructions == 0 {
		t.Fatalf("Probe: %+v", r)
	}
	t.Log(r)
}

func TestProcessLimit(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.spec.Limits.Pids = 64
	t.Log(tb.backend.Limiter())
	if os.Getuid() == 0 && !strings.Contains(tb.backend.Limiter(), "cgroup") {
		t.Skip("as root, only a cgroup bounds processes, and none is usable here")
	}
	s := tb.start(t)
	n := uniqueSleep()
	r := run(t, s, sandbox.Command{Args: []string{"sh", "-c", "i=0; while [ $i -lt 200 ]; do sleep " + n + " & i=$((i+1)); done; echo $i"}, Timeout: 20 * time.Second})
	if got := len(hostProcs("sleep", n)); got != 0 {
		t.Errorf("%d sleeps left after the command", got)
	}
	if !strings.Contains(r.stderr, "fork") {
		t.Fatalf("200 processes started under a limit of 64: %+v", r)
	}
}

// TestSessionCgroupsHoldTheSandboxOnly: the session's cgroups hold the sandbox from its start
// (its commands are born in them: the process limit binds them), and nothing of keepup's
// (with cgroup v1, the thread that started bwrap entered them, and left).
func TestSessionCgroupsHoldTheSandboxOnly(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := tb.start(t)
	dirs := bwrap.SessionCgroups(s)
	if len(dirs) == 0 {
		t.Skip("no cgroup is used here: " + tb.backend.Limiter())
	}
	n := uniqueSleep()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, sandbox.Command{Args: []string{"sleep", n}, Timeout: 20 * time.Second})
	}()
	defer func() { cancel(); <-done }()
	waitHostProcs(t, 1, "sleep", n)
	sleeps := hostProcs("sleep", n)
	ours := map[string]bool{strconv.Itoa(os.Getpid()): true}
	threads, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range threads {
		ours[e.Name()] = true
	}
	for _, d := range dirs {
		for _, f := range []string{"cgroup.procs", "tasks"} {
			b, err := os.ReadFile(filepath.Join(d, f))
			if errors.Is(err, fs.ErrNotExist) && f == "tasks" {
				continue // cgroup v2
			}
			if err != nil {
				t.Fatal(err)
			}
			ids := strings.Fields(string(b))
			for _, id := range ids {
				if ours[id] {
					t.Errorf("%s/%s lists %s, of this process", d, f, id)
				}
			}
			if f == "cgroup.procs" && !slices.Contains(ids, strconv.Itoa(sleeps[0])) {
				t.Errorf("%s/%s does not list the command (%d): %v", d, f, sleeps[0], ids)
			}
		}
	}
}

// TestCgroupV2Session: with a cgroup v2 parent, bwrap (or the guard stage, started in a user and
// mount namespace of its own: clone3 with CLONE_INTO_CGROUP and CLONE_NEWUSER) is born in the
// session's cgroup, and so is everything the sandbox runs; the session's end kills what a
// command left running and removes the cgroup. This machine's cgroup v2 hierarchy may have no
// controllers (cgroup v1 holds them, as here): the parent is then used without them, and the
// limits themselves are tested where cgroup v2 has them (TestForkBomb and the others, through
// keepup's own cgroup).
func TestCgroupV2Session(t *testing.T) {
	// Not parallel: the controllers New requires are the package's.
	mnt := bwrap.CgroupV2Mount()
	if mnt == "" {
		t.Skip("no cgroup v2 hierarchy is mounted")
	}
	parent := filepath.Join(mnt, "keepuptest-"+strconv.Itoa(os.Getpid())+"-"+uniqueSleep())
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Skipf("cgroup v2 is not writable here: %v", err)
	}
	t.Cleanup(func() { syscall.Rmdir(parent) })
	// The limits' controllers the parent can have: those the hierarchy's top enables for its
	// children (none where cgroup v1 holds them, as on the machine this was written on).
	var ctrls []string
	have, _ := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	for _, c := range []string{"pids", "memory", "cpu"} {
		if slices.Contains(strings.Fields(string(have)), c) {
			ctrls = append(ctrls, c)
		}
	}
	t.Logf("controllers: %v", ctrls)
	old := bwrap.SetCgroupControllers(ctrls)
	b, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: t.TempDir(), CgroupParent: parent})
	bwrap.SetCgroupControllers(old)
	if err != nil {
		t.Fatal(err)
	}
	if want := "cgroup v2 at " + parent; b.Limiter() != want {
		t.Fatalf("limiter %q, want %q", b.Limiter(), want)
	}
	t.Run("limits", func(t *testing.T) {
		if len(ctrls) == 0 {
			t.Skip("the cgroup v2 hierarchy has none of the pids, memory and cpu controllers")
		}
		id := fmt.Sprintf("test-%d", sessionSeq.Add(1))
		s, err := b.Start(t.Context(), sandbox.Spec{SessionID: id, Limits: sandbox.Limits{Pids: 32, MemoryBytes: 256 << 20, CPUPercent: 50}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		dir := bwrap.SessionCgroups(s)[0]
		for c, want := range map[string]string{"pids": "32", "memory": strconv.Itoa(256 << 20), "cpu": "50000 100000"} {
			if !slices.Contains(ctrls, c) {
				continue
			}
			file := map[string]string{"pids": "pids.max", "memory": "memory.max", "cpu": "cpu.max"}[c]
			if got, err := os.ReadFile(filepath.Join(dir, file)); err != nil || strings.TrimSpace(string(got)) != want {
				t.Errorf("%s: %q, %v; want %q", file, got, err, want)
			}
		}
		if slices.Contains(ctrls, "pids") {
			n := uniqueSleep()
			r := run(t, s, sandbox.Command{Args: []string{"sh", "-c", "i=0; while [ $i -lt 100 ]; do sleep " + n + " & i=$((i+1)); done; echo $i"}, Timeout: 20 * time.Second})
			if !strings.Contains(r.stderr, "fork") {
				t.Errorf("100 processes started under pids.max 32: %+v", r)
			}
			if got := len(hostProcs("sleep", n)); got != 0 {
				t.Errorf("%d sleeps left after the command", got)
			}
		}
		if slices.Contains(ctrls, "memory") {
			// A 512 MiB string, built by doubling (bounded: some 1.5 GiB at most without a limit).
			r := run(t, s, sandbox.Command{Args: []string{"awk", "BEGIN { s = \"x\"; for (i = 0; i < 29; i++) s = s s; print length(s) }"}, Timeout: 60 * time.Second})
			if r.ExitCode == 0 {
				t.Errorf("512 MiB held under memory.max 256 MiB: %+v", r)
			}
		}
	})
	for _, stage := range []bool{false, true} {
		t.Run(fmt.Sprintf("stage=%v", stage), func(t *testing.T) {
			if stage {
				requireGuardStage(t, b)
				bwrap.SetGuardStage(b, true)
			}
			grant := t.TempDir()
			id := fmt.Sprintf("test-%d", sessionSeq.Add(1))
			s, err := b.Start(t.Context(), sandbox.Spec{SessionID: id, Mounts: []sandbox.Mount{
				{Host: grant, Dest: "/sessions/" + id + "/mnt/g", RW: true, Protect: protect},
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := bwrap.StagedGuards(s) > 0; got != stage {
				t.Fatalf("guards made by the stage: %v, want %v", got, stage)
			}
			dirs := bwrap.SessionCgroups(s)
			if len(dirs) != 1 || filepath.Dir(dirs[0]) != parent {
				t.Fatalf("session cgroups %v, want one in %s", dirs, parent)
			}
			// A command runs while the session ends: the sandbox's processes are all in the
			// cgroup, and die with it.
			n := uniqueSleep()
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.Run(t.Context(), sandbox.Command{Args: []string{"sleep", n}, Timeout: 20 * time.Second})
			}()
			defer func() { <-done }()
			waitHostProcs(t, 1, "sleep", n)
			procs, err := os.ReadFile(filepath.Join(dirs[0], "cgroup.procs"))
			if err != nil {
				t.Fatal(err)
			}
			ids := strings.Fields(string(procs))
			if len(ids) < 3 { // bwrap, the helper, the command at least
				t.Errorf("%s holds %v", dirs[0], ids)
			}
			for _, id := range ids {
				if id == strconv.Itoa(os.Getpid()) {
					t.Errorf("%s holds this process", dirs[0])
				}
			}
			if pid := strconv.Itoa(hostProcs("sleep", n)[0]); !slices.Contains(ids, pid) {
				t.Errorf("the command (%s) is not in %s: %v", pid, dirs[0], ids)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			noHostProcs(t, "sleep", n)
			if exists(dirs[0]) {
				t.Errorf("%s is still there after the session", dirs[0])
			}
		})
	}
}

// TestCrashedKeepupLeavesNothing: keepup is killed while a session runs. bwrap and everything
// in the sandbox die with it, and the next New removes the placeholders it left on the host.
func TestCrashedKeepupLeavesNothing(t *testing.T) {
	if os.Getenv("BWRAP_TEST_CRASH_STATE") != "" {
		return // the child's half runs in TestCrashChild
	}
	t.Parallel()
	state, grant := t.TempDir(), t.TempDir()
	n := uniqueSleep()
	child := startCrashChild(t, "BWRAP_TEST_CRASH_STATE="+state, "BWRAP_TEST_CRASH_GRANT="+grant, "BWRAP_TEST_CRASH_SLEEP="+n)
	waitHostProcs(t, 1, "sleep", n)
	if _, err := os.Lstat(filepath.Join(grant, ".claude")); err != nil {
		t.Fatalf("no placeholder while the session runs: %v", err)
	}
	child.Process.Kill()
	child.Wait()
	noHostProcs(t, "sleep", n)

	// At once: the dead session's folder is young, but its lock is free.
	if _, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: state}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(grant); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("left in the grant: %v", names)
	}
	if b, _ := os.ReadFile("/proc/self/cgroup"); strings.Contains(string(b), "crash") {
		t.Errorf("this process is in a session's cgroup: %s", b)
	}
	for _, dir := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "keepup-crash-") {
				t.Errorf("cgroup left behind: %s", p)
			}
			return nil
		})
	}
	if ents, _ := os.ReadDir(filepath.Join(state, "placeholders")); len(ents) != 0 {
		t.Errorf("placeholder registry holds %d entries", len(ents))
	}
	// Besides the registry: the session's protect-watch baseline, kept for when it is reopened
	// (TestReopenAfterCrash).
	if ents := stateEntries(state); !slices.Equal(ents, []string{"baselines", "placeholders"}) {
		t.Errorf("state folder holds %v, want the registry and the baselines", ents)
	}
	if ents, _ := os.ReadDir(filepath.Join(state, "baselines")); len(ents) != 1 || ents[0].Name() != "crash.json" {
		t.Errorf("baselines: %v, want the killed session's only", ents)
	}
}

// TestOldBaselinesRemoved: New removes the baselines of dead keepups' sessions not reopened
// within 30 days, and keeps younger ones.
func TestOldBaselinesRemoved(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	dir := filepath.Join(state, "baselines")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"old.json", "young.json"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-31 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "old.json"), past, past); err != nil {
		t.Fatal(err)
	}
	if _, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: state}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old.json")); err == nil {
		t.Error("a 31-day-old baseline was kept")
	}
	if _, err := os.Stat(filepath.Join(dir, "young.json")); err != nil {
		t.Errorf("a young baseline was removed: %v", err)
	}
}

// TestReopenAfterCrash: keepup is killed while a command runs, after the command made a
// protected path where no guard reaches (its watch never got to it). When the session is
// reopened, its baseline shows the path is new: it is moved out, and reported with the first
// command's result; the baseline goes with the session's normal end.
func TestReopenAfterCrash(t *testing.T) {
	if os.Getenv("BWRAP_TEST_CRASH_STATE") != "" {
		return
	}
	t.Parallel()
	state, grant := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(grant, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := uniqueSleep()
	child := startCrashChild(t, "BWRAP_TEST_CRASH_STATE="+state, "BWRAP_TEST_CRASH_GRANT="+grant, "BWRAP_TEST_CRASH_SLEEP="+n, "BWRAP_TEST_CRASH_ID=reopen")
	waitHostProcs(t, 1, "sleep", n)
	// As the command would have: a hook in a folder of its making.
	hook := filepath.Join(grant, "old", "proj", ".git", "hooks", "pre-commit")
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hook, []byte("evil"), 0o755); err != nil {
		t.Fatal(err)
	}
	child.Process.Kill()
	child.Wait()
	noHostProcs(t, "sleep", n)

	b, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	dest := "/sessions/reopen/mnt/g"
	s, err := b.Start(context.Background(), sandbox.Spec{SessionID: "reopen", Mounts: []sandbox.Mount{{Host: grant, Dest: dest, RW: true, Protect: protect}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := run(t, s, sandbox.Command{Args: []string{"true"}})
	if want := []string{dest + "/old/proj/.git/hooks"}; !slices.Equal(r.Quarantined, want) {
		t.Errorf("first command after the reopen: quarantined %v, want %v", r.Quarantined, want)
	}
	if _, err := os.Lstat(hook); err == nil {
		t.Error("the hook is still in the folder")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, "baselines", "reopen.json")); err == nil {
		t.Error("the baseline outlived the session's end")
	}
}

// stateEntries lists what sessions left in a state folder: all but the backend's own records,
// of its checks of bwrap and of the system CA bundle's certificates.
func stateEntries(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if e.Name() != bwrap.ProbeFile && e.Name() != bwrap.SystemCertsCache {
			names = append(names, e.Name())
		}
	}
	return names
}

// startCrashChild starts this test binary as TestCrashChild with env added, and returns once
// it says its session is ready.
func startCrashChild(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	child.Env = append(os.Environ(), env...)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "ready\n" {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("child: %q, %v", buf, err)
	}
	return child
}

// TestCrashChild is the keepup that crashes, run by TestCrashedKeepupLeavesNothing.
func TestCrashChild(t *testing.T) {
	state := os.Getenv("BWRAP_TEST_CRASH_STATE")
	if state == "" {
		t.Skip("run by TestCrashedKeepupLeavesNothing")
	}
	b, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	grant := os.Getenv("BWRAP_TEST_CRASH_GRANT")
	id := cmp.Or(os.Getenv("BWRAP_TEST_CRASH_ID"), "crash")
	s, err := b.Start(context.Background(), sandbox.Spec{SessionID: id, Mounts: []sandbox.Mount{
		{Host: grant, Dest: "/sessions/" + id + "/mnt/g", RW: true, Protect: protect},
	}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Run(context.Background(), sandbox.Command{Args: []string{"sleep", os.Getenv("BWRAP_TEST_CRASH_SLEEP")}})
	os.Stdout.WriteString("ready\n")
	select {}
}

// TestOrphanedCgroupsAreSwept: keepup is killed and its state folder deleted after it (as a
// test's temporary folder is), so no later New can tell its sessions by their folders. A later
// New removes their cgroups all the same once they are old enough, and leaves young ones and
// those a live session is in.
func TestOrphanedCgroupsAreSwept(t *testing.T) {
	if os.Getenv("BWRAP_TEST_CRASH_STATE") != "" {
		return // the child's half runs in TestCrashChild
	}
	t.Parallel()
	tb := setup(t)
	parents := bwrap.CgroupParents(tb.backend)
	if len(parents) == 0 {
		t.Skip("no cgroup is used here: " + tb.backend.Limiter())
	}
	state, grant := t.TempDir(), t.TempDir()
	n := uniqueSleep()
	id := "orphan-" + n
	child := startCrashChild(t, "BWRAP_TEST_CRASH_STATE="+state, "BWRAP_TEST_CRASH_GRANT="+grant,
		"BWRAP_TEST_CRASH_SLEEP="+n, "BWRAP_TEST_CRASH_ID="+id)
	waitHostProcs(t, 1, "sleep", n)
	child.Process.Kill()
	child.Wait()
	noHostProcs(t, "sleep", n)

	// The dead session's cgroups are named after its folder; then the folder goes.
	var orphans []string
	for _, name := range stateEntries(state) {
		if !strings.HasPrefix(name, id+"-") {
			continue
		}
		for _, p := range parents {
			if dir := filepath.Join(p, "keepup-"+name); exists(dir) {
				orphans = append(orphans, dir)
			}
		}
	}
	if len(orphans) == 0 {
		t.Fatalf("the killed keepup's session has no cgroup in %v (state folder: %v)", parents, stateEntries(state))
	}
	t.Cleanup(func() {
		for _, d := range orphans {
			syscall.Rmdir(d)
		}
	})
	// What was in them dies with the keepup, not at once.
	deadline := time.Now().Add(10 * time.Second)
	for _, d := range orphans {
		for {
			procs, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err == nil && len(procs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after its keepup was killed: %q, %v", d, procs, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	live := tb.start(t)
	liveDirs := bwrap.SessionCgroups(live)
	if len(liveDirs) == 0 {
		t.Fatal("a live session without cgroups")
	}

	newBackend := func() {
		t.Helper()
		if _, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
	}
	// Young: they may be a session's that is being started.
	newBackend()
	for _, d := range orphans {
		if !exists(d) {
			t.Errorf("%s removed though made less than a minute ago", d)
		}
	}
	// Old: the orphans go; the live session's stay, and it goes on working.
	old := time.Now().Add(-2 * time.Minute)
	for _, d := range append(orphans, liveDirs...) {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
	newBackend()
	for _, d := range orphans {
		if exists(d) {
			t.Errorf("orphaned cgroup %s left behind", d)
		}
	}
	for _, d := range liveDirs {
		if !exists(d) {
			t.Errorf("a live session's cgroup %s was removed", d)
		}
	}
	if got := mustSh(t, live, "echo ok"); got != "ok\n" {
		t.Errorf("the live session after the sweep: %q", got)
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range liveDirs {
		if exists(d) {
			t.Errorf("%s left after its session closed", d)
		}
	}
}

// TestSessionCgroupNames: the sweep only ever takes cgroups named as sessions' are.
func TestSessionCgroupNames(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"keepup-brave-loving-maxwell-2614293455": true,
		"keepup-test-12-7":                       true,
		"keepup-crash-1":                         true,
		"keepup-daemon":                          false,
		"keepup-daemon.service":                  false,
		"keepup-x-":                              false,
		"keepup--123":                            false,
		"keepup-123":                             false,
		"other-brave-loving-maxwell-2614293455":  false,
		"system.slice":                           false,
	} {
		if got := bwrap.IsSessionCgroup(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestConcurrentSessionsShareGuards: a second session on a folder finds the first one's
// placeholders and guards them; when the first ends it leaves them to the second, which
// removes them at its end.
func TestConcurrentSessionsShareGuards(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	first := tb.start(t)
	// Another keepup with the same state folder (a second Backend stands in for it).
	other, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: tb.state})
	if err != nil {
		t.Fatal(err)
	}
	spec := tb.spec
	spec.SessionID += "-second"
	second, err := other.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".bashrc", ".claude", ".git"} {
		if _, err := os.Lstat(filepath.Join(tb.rw, p)); err != nil {
			t.Errorf("placeholder %s removed while the second session guards it: %v", p, err)
		}
	}
	for _, script := range []string{"echo evil > .bashrc", "mkdir -p .claude && echo x > .claude/settings.json",
		"mkdir -p .git/hooks && echo x > .git/hooks/pre-commit", "echo x > .mcp.json"} {
		if r := sh(t, second, script); r.ExitCode == 0 {
			t.Errorf("%q succeeded after the first session ended", script)
		}
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(tb.rw); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("left in the grant after both sessions: %v", names)
	}
}

// TestHardLinkIntoGrant: a hard link placed in the grant (before the session) to a file
// outside it cannot be written through.
func TestHardLinkIntoGrant(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	outside := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(outside, []byte("SECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(tb.rw, "hardlink")); err != nil {
		t.Fatal(err)
	}
	s := tb.start(t)
	if got := mustSh(t, s, "cat hardlink"); got != "SECRET" {
		t.Fatalf("read %q", got)
	}
	for _, script := range []string{"echo x > hardlink", "echo x >> hardlink", "truncate -s 0 hardlink"} {
		if r := sh(t, s, script); r.ExitCode == 0 {
			t.Errorf("%q succeeded", script)
		}
	}
	// A link made inside to a protected or read-only file is refused outright.
	if r := sh(t, s, "ln "+tb.roDest()+"/x y"); r.ExitCode == 0 {
		t.Error("hard link across mounts succeeded")
	}
	if b, _ := os.ReadFile(outside); string(b) != "SECRET" {
		t.Fatalf("the outside file changed: %q", b)
	}
}

func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.spec.Limits.MemoryBytes = 256 << 20
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no python3 to allocate with")
	}
	s := tb.start(t)
	// One process, and several that each stay under the limit but not together.
	r := sh(t, s, `python3 -c 'b = bytearray(400 << 20); b[::4096] = b"x" * len(b[::4096]); print("held")'`)
	if r.ExitCode == 0 || strings.Contains(r.stdout, "held") {
		t.Errorf("400 MB under a 256 MB limit: %+v", r)
	}
	if strings.Contains(tb.backend.Limiter(), "memory at") || strings.Contains(tb.backend.Limiter(), "cgroup v2") {
		// Each prints "survived" only after holding its 100 MB while the others hold theirs
		// (a process can print "held" and be killed afterwards, when the next one allocates).
		script := `for i in 1 2 3 4; do python3 -c 'import time; b = bytearray(100 << 20); b[::4096] = b"x" * len(b[::4096]); print("held", flush=True); time.sleep(3); b[::4096] = b"y" * len(b[::4096]); print("survived", flush=True)' & done; wait`
		if r := sh(t, s, script); strings.Count(r.stdout, "survived") == 4 {
			t.Errorf("4 x 100 MB held at once under a 256 MB session limit: %+v", r)
		}
	}
	mustSh(t, s, "true") // the session survives
}

// TestGitWorkflow: everyday git in a read-write grant works though .git/config and the hooks
// are read-only.
func TestGitWorkflow(t *testing.T) {
	t.Parallel()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip(err)
	}
	tb := setup(t)
	if out, err := exec.Command(git, "init", "-q", "-b", "main", tb.rw).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	s := tb.start(t)
	mustSh(t, s, `set -e
g() { git -c user.name=agent -c user.email=agent@keepup.invalid "$@"; }
echo hello > a.txt && g add a.txt && g commit -q -m first
g checkout -q -b feature && echo more >> a.txt && g commit -q -am second
g checkout -q main && g merge -q --no-edit feature && g log --oneline | wc -l | grep -qx 2
g stash list && g status --short && g gc -q`)
	if r := sh(t, s, "git config user.name agent"); r.ExitCode == 0 {
		t.Error("git config wrote .git/config")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(git, "-C", tb.rw, "log", "--oneline").CombinedOutput()
	if err != nil || strings.Count(string(out), "\n") != 2 {
		t.Fatalf("git log on the host: %v\n%s", err, out)
	}
}

// TestKilledStubLeavesNothing: a command starts processes that leave its process group (a
// setsid one and a double-forked one), then SIGKILLs the exec stub that runs it, as a command
// running as the same user can (through the thread the stub started it from, which shares the
// command's Landlock domain). Its orphans are no longer the stub's to kill; the helper, their
// subreaper now, kills them before it replies, and spares a command running beside it; the
// session's next command runs.
func TestKilledStubLeavesNothing(t *testing.T) {
	t.Parallel()
	s := setup(t).start(t)
	a, b, c := uniqueSleep(), uniqueSleep(), uniqueSleep()
	besideCtx, stopBeside := context.WithCancel(context.Background())
	defer stopBeside()
	beside := make(chan error, 1)
	go func() {
		_, err := s.Run(besideCtx, sandbox.Command{Args: []string{"sleep", c}})
		beside <- err
	}()
	waitHostProcs(t, 1, "sleep", c)
	// Each background process leaves a mark before it becomes the sleep, so the stub is killed
	// only once both have started.
	script := `m=/tmp/marks-$$; mkdir $m
setsid sh -c "touch $m/a; exec sleep ` + a + `" &
sh -c "(sh -c 'touch $m/b; exec sleep ` + b + `' &)"
until [ -e $m/a ] && [ -e $m/b ]; do sleep 0.01; done
for t in /proc/$PPID/task/*; do kill -KILL ${t##*/} 2>/dev/null; done
sleep 5; echo survived`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	res, err := s.Run(ctx, sandbox.Command{Args: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out})
	// Checked at once: dead by the reply, not some time after it.
	left := append(hostProcs("sleep", a), hostProcs("sleep", b)...)
	if err == nil || !strings.Contains(err.Error(), "exec stub ended without a result") || res.ExitCode != 126 || strings.Contains(out.String(), "survived") {
		t.Errorf("a command that killed its stub: %+v, %v, output %q", res, err, out.String())
	}
	if len(left) > 0 {
		t.Errorf("the command's orphans outlived its reply: pids %v", left)
	}
	noHostProcs(t, "sleep", a)
	noHostProcs(t, "sleep", b)
	if len(hostProcs("sleep", c)) != 1 {
		t.Errorf("the command running beside it was killed too")
	}
	stopBeside()
	if err := <-beside; !errors.Is(err, context.Canceled) {
		t.Errorf("the command beside it, canceled: %v", err)
	}

	r := run(t, s, sandbox.Command{Args: []string{"echo", "ok"}, Timeout: 20 * time.Second})
	if r.TimedOut || r.ExitCode != 0 || r.stdout != "ok\n" {
		t.Fatalf("the next command: %+v", r)
	}
}
