package tool

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
	"github.com/keepup/keepup/internal/sandbox/inside"
	"github.com/keepup/keepup/internal/scope"
)

// TestMain lets the test binary stand in for keepup inside the bubblewrap sandbox: the backend
// runs Config.Exe (this binary) as the helper and the exec stub.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case inside.HelperCommand:
			os.Exit(inside.HelperMain(os.Args[2:]))
		case inside.ExecCommand:
			os.Exit(inside.ExecMain(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// withBash is tools with the bash tool, added unless it is there already.
func withBash(tools []Tool) []Tool {
	for _, t := range tools {
		if _, ok := t.(Bash); ok {
			return tools
		}
	}
	return append(tools, Bash{})
}

// bashSetup is setup with the bash tool registered and a real bubblewrap sandbox over the
// session (as the CLI builds it: every mount at its path, protected paths of read-write mounts
// kept read-only), plus a few more files: a folder "build", two logs, a repository's
// .git/config and hooks, a nested repository, and a link to .git/config.
func bashSetup(t *testing.T) *testBundle {
	t.Helper()
	b := setup(t)
	reg, err := NewRegistry(withBash(Builtins())...)
	if err != nil {
		t.Fatal(err)
	}
	b.reg = reg
	writeFile(t, filepath.Join(b.docs, "build", "out.bin"), "bin")
	writeFile(t, filepath.Join(b.docs, "a.log"), "a")
	writeFile(t, filepath.Join(b.docs, "b.log"), "b")
	writeFile(t, filepath.Join(b.docs, ".git", "config"), "[core]\n")
	mustMkdir(t, filepath.Join(b.docs, ".git", "hooks"))
	writeFile(t, filepath.Join(b.docs, "repo", ".git", "config"), "[core]\n")
	writeFile(t, filepath.Join(b.docs, "repo", "main.go"), "package main\n")
	if err := os.Symlink(".git/config", filepath.Join(b.docs, "innocent")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(b.docs, "cfg", "config"), "x")
	mustMkdir(t, filepath.Join(b.docs, "sub"))
	// The folder of bash logs exists before the sandbox starts, so that the read-only bind
	// guarding outputs/.keepup is the folder itself and logs saved later show inside.
	mustMkdir(t, filepath.Join(b.out, ".keepup", "bash"))
	backend, err := bwrap.New(bwrap.Config{Exe: os.Args[0], StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("the bubblewrap backend cannot start (bash needs it): %v", err)
	}
	spec := sandbox.Spec{SessionID: b.s.ID, Workdir: b.s.Default().Virtual()}
	for _, m := range b.s.Mounts {
		sm := sandbox.Mount{Host: m.Path, Dest: m.Virtual(), RW: m.Mode == scope.RW}
		if sm.RW {
			sm.Protect = scope.ProtectedRoots()
		}
		spec.Mounts = append(spec.Mounts, sm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := backend.Start(ctx, spec)
	if err != nil {
		t.Fatalf("start sandbox: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	b.env.Sandbox = sb
	return b
}

func bashJSON(command string) string {
	return `{"command": ` + jsonString(command) + `}`
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func TestBashSpec(t *testing.T) {
	t.Parallel()
	s := Bash{}.Spec()
	var schema map[string]any
	if err := json.Unmarshal(s.InputSchema, &schema); err != nil {
		t.Fatal(err)
	}
	if s.Name != "bash" || len(s.Description) < 100 || schema["additionalProperties"] != false || schema["type"] != "object" {
		t.Errorf("spec %s: %s", s.Name, s.InputSchema)
	}
	if _, err := NewRegistry(withBash(Builtins())...); err != nil {
		t.Fatal(err)
	}
}

func TestBashPrepare(t *testing.T) {
	t.Parallel()
	b := bashSetup(t)
	tests := []struct{ command, ops, summary string }{
		{"ls -la", "read", "run `ls -la` (read-only)"},
		{"cat notes.txt | grep -c a", "read", "run `cat notes.txt | grep -c a` (read-only)"},
		{"rm -rf build", "delete docs:build exists", "run `rm -rf build` (delete docs/build)"},
		{"rm *.log", "delete docs:*.log exists", "run `rm *.log` (delete docs/*.log)"},
		{"rm reports/*.tmp", "delete docs:reports/*.tmp", ""},
		{"rm a b c d e", "delete docs:a; delete docs:b; delete docs:c; delete docs:d; delete docs:e",
			"run `rm a b c d e` (delete docs/a, docs/b, docs/c and 2 more)"},
		{"rm \"$F\"", "delete", "run `rm \"$F\"` (delete \"$F\")"},
		{"rm /etc/passwd", "delete", "run `rm /etc/passwd` (delete /etc/passwd)"},
		{"xargs rm < list", "delete", "run `xargs rm < list` (delete files not known before it runs)"},
		{"rm " + root + "/outputs/old.txt", "delete outputs:old.txt", ""},
		{"find . -name '*.o' -delete", "delete docs:. exists protected", ""}, // docs holds .git/config
		// Truncating redirections delete an existing file's content; a new file is only created.
		{"echo hi > notes.txt", "delete docs:notes.txt exists; read", "run `echo hi > notes.txt` (delete docs/notes.txt)"},
		{"echo hi > new.txt", "create docs:new.txt; read", "run `echo hi > new.txt` (write docs/new.txt)"},
		{"echo hi >> notes.txt", "overwrite docs:notes.txt exists; read", ""},
		{"ls > /dev/null 2>&1", "read", "run `ls > /dev/null 2>&1` (read-only)"},
		// Writes outside the grants run code where nothing persists.
		{"cp notes.txt /tmp/x", "exec", "run `cp notes.txt /tmp/x`"},
		{"cp notes.txt copy.txt", "create docs:copy.txt", "run `cp notes.txt copy.txt` (write docs/copy.txt)"},
		// Moves: within a mount, out of it, to nowhere known.
		{"mv notes.txt reports/", "move docs:notes.txt exists; overwrite docs:reports/notes.txt",
			"run `mv notes.txt reports/` (move docs/notes.txt -> docs/reports/notes.txt)"},
		{"mv notes.txt " + root + "/outputs/n.txt", "move_out docs:notes.txt exists; overwrite outputs:n.txt",
			"run `mv notes.txt " + root + "/outputs/n.txt` (move out docs/notes.txt -> outputs/n.txt)"},
		{"mv notes.txt /tmp/n", "move_out docs:notes.txt exists; exec", "run `mv notes.txt /tmp/n` (move out docs/notes.txt -> /tmp/n)"},
		{"mv a.log b.log", "move docs:a.log exists; overwrite docs:b.log exists", ""},
		// Exec and unknown.
		{"go build ./...", "exec", "run `go build ./...`"},
		{"make && rm -f build/out.bin", "exec; delete docs:build/out.bin exists", "run `make && rm -f build/out.bin` (delete docs/build/out.bin)"},
		{"eval \"$X\"", "unknown", "run `eval \"$X\"` (unknown effect of eval \"$X\")"},
		{"curl -s x | sh", "exec; unknown", "run `curl -s x | sh` (unknown effect of sh commands from standard input)"},
		{"rm 'unterminated", "unknown", "run `rm 'unterminated` (unknown effect of rm 'unterminated)"},
		// Protected paths, by name, through a link, inside a folder, matched by a glob.
		{"echo x > .git/config", "delete docs:.git/config exists protected; read", ""},
		{"echo x >> innocent", "overwrite docs:.git/config exists protected; read", "run `echo x >> innocent` (write docs/.git/config (via docs/innocent))"},
		{"rm innocent", "delete docs:innocent exists", ""}, // the link itself
		{"rm -rf repo", "delete docs:repo exists protected", ""},
		{"rm -rf reports", "delete docs:reports exists", ""},
		// .bashrc exists: the sandbox guards it with a placeholder while it runs.
		{"sed -i 's/a/b/' .bashrc sub/.vscode/settings.json", "overwrite docs:.bashrc exists protected; create docs:sub/.vscode/settings.json protected", ""},
		{"touch .git/hooks/pre-commit", "create docs:.git/hooks/pre-commit protected", ""},
		{"rm -rf .*", "delete docs:.* exists protected", ""},
		{"rm -rf *", "delete docs:* exists protected", ""}, // repo/.git/config
		{"mv repo/main.go .claude/", "move docs:repo/main.go exists; overwrite docs:.claude/main.go protected", ""},
		{"mkdir .claude && mv notes.txt .claude/", "overwrite docs:.claude exists protected; move docs:notes.txt exists; overwrite docs:.claude/notes.txt protected", ""},
		{"mv reports .git", "move docs:reports exists; overwrite docs:.git/reports", ""},
		// A folder moved where its entries become protected paths.
		{"mv cfg sub/.git", "move docs:cfg exists; overwrite docs:sub/.git protected", ""},
		{"git config user.name me", "overwrite docs:.git/config exists protected", ""},
		{"cd repo && git clean -fdx", "read; delete docs:repo exists protected", ""},
	}
	for _, tt := range tests {
		c := b.mustPrepare(t, "bash", bashJSON(tt.command))
		if got := ops(c); got != tt.ops {
			t.Errorf("bash %q: ops %s, want %s", tt.command, got, tt.ops)
		}
		if tt.summary != "" && c.Action.Summary != tt.summary {
			t.Errorf("bash %q: summary %q, want %q", tt.command, c.Action.Summary, tt.summary)
		}
		readOnly := true
		for _, o := range c.Action.Ops {
			readOnly = readOnly && o.Effect == policy.EffectRead
			if o.Subject != tt.command {
				t.Errorf("bash %q: op subject %q", tt.command, o.Subject)
			}
		}
		if c.ReadOnly != readOnly || c.Idempotent != readOnly {
			t.Errorf("bash %q: read-only %v idempotent %v", tt.command, c.ReadOnly, c.Idempotent)
		}
	}
	// A long command line is shortened in the summary.
	long := "echo " + strings.Repeat("x", 200)
	if c := b.mustPrepare(t, "bash", bashJSON(long)); len(c.Action.Summary) > 120 || !strings.Contains(c.Action.Summary, "...") {
		t.Errorf("long summary %q", c.Action.Summary)
	}
	// A multi-line script is summarized on one line (mustPrepare checks).
	b.mustPrepare(t, "bash", bashJSON("set -e\nrm -f a.log\necho done"))
}

func TestBashCwd(t *testing.T) {
	t.Parallel()
	b := bashSetup(t)
	c := b.mustPrepare(t, "bash", `{"command": "rm x", "cwd": "reports"}`)
	if ops(c) != "delete docs:reports/x" {
		t.Errorf("relative cwd: %s", ops(c))
	}
	c = b.mustPrepare(t, "bash", `{"command": "rm manual.md", "cwd": "`+root+`/ref"}`)
	if ops(c) != "delete ref:manual.md exists" {
		t.Errorf("cwd in another grant: %s", ops(c))
	}
	for _, tt := range []struct{ cwd, want string }{
		{"/etc", "outside the granted folders"},
		{"..", "outside the granted folders"},
		{root + "/nope", `no folder named "nope" is granted`},
		{"notes.txt", "is not a folder"},
		{"missing", "no such file or directory"},
	} {
		_, err := b.prepare(t, "bash", `{"command": "ls", "cwd": "`+tt.cwd+`"}`)
		assertRefusal(t, err, tt.want)
	}
}

func TestBashRefusals(t *testing.T) {
	t.Parallel()
	b := bashSetup(t)
	for _, input := range []string{
		`{}`,
		`{"command": ""}`,
		`{"command": 5}`,
		`{"command": "ls", "timeout_s": 0}`,
		`{"command": "ls", "timeout_s": 3601}`,
		`{"command": "ls", "timeout_s": 1.5}`,
		`{"command": "ls", "timeout_s": "5"}`,
		`{"command": "ls", "cwd": 3}`,
		`{"command": "ls", "shell": "zsh"}`,
		`{"command": "` + strings.Repeat("x", MaxBashCommand+1) + `"}`,
	} {
		if _, _, err := b.reg.Decode("bash", input); err == nil {
			t.Errorf("Decode(bash, %.80s) accepted", input)
		} else {
			assertRefusal(t, err, "arguments for bash")
		}
	}
	_, err := b.prepare(t, "bash", `{"command": "   "}`)
	assertRefusal(t, err, "command is empty")

	// Prepared without a sandbox, or without a session.
	env := *b.env
	env.Sandbox = nil
	_, err = Bash{}.Prepare(context.Background(), &env, []byte(`{"command": "ls"}`))
	assertRefusal(t, err, "this session has no sandbox; bash is unavailable")
	_, err = Bash{}.Prepare(context.Background(), &Env{}, []byte(`{"command": "ls"}`))
	assertRefusal(t, err, "no session")
	_, err = Bash{}.Prepare(context.Background(), b.env, []byte(`{"command": "ls", "timeout_s": 0}`))
	assertRefusal(t, err, "timeout_s must be between 1 and 3600")
}

// outputs records what a call streamed.
type outputs struct {
	mu     sync.Mutex
	chunks map[string][]string
	delay  time.Duration
}

func (o *outputs) record(stream, chunk string) {
	if o.delay > 0 {
		time.Sleep(o.delay)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.chunks == nil {
		o.chunks = map[string][]string{}
	}
	o.chunks[stream] = append(o.chunks[stream], chunk)
}

func (o *outputs) text(stream string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.chunks[stream], "")
}

func (b *testBundle) runBash(t *testing.T, input string) (*Result, *outputs) {
	t.Helper()
	out := &outputs{}
	env := *b.env
	env.Output = out.record
	tl, raw, err := b.reg.Decode("bash", input)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tl.Prepare(context.Background(), &env, raw)
	if err != nil {
		t.Fatalf("Prepare(%s): %v", input, err)
	}
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatalf("Run(%s): %v", input, err)
	}
	return res, out
}

func TestBashRun(t *testing.T) {
	t.Parallel()
	b := bashSetup(t)

	// Output streams to Output as stdout and stderr, and comes back interleaved with the exit
	// code; it is untrusted, named after the command.
	res, out := b.runBash(t, bashJSON("echo one; sleep 0.5; echo two >&2; sleep 0.5; printf three"))
	if res.Content != "one\ntwo\nthree\n[exit code 0]" || res.IsError {
		t.Errorf("content %q", res.Content)
	}
	if !res.Untrusted || len(res.Sources) != 1 || res.Sources[0] != "command:echo" {
		t.Errorf("provenance %v %v", res.Untrusted, res.Sources)
	}
	if out.text("stdout") != "one\nthree" || out.text("stderr") != "two\n" {
		t.Errorf("streamed stdout %q stderr %q", out.text("stdout"), out.text("stderr"))
	}

	// Many small writes are coalesced into few chunks.
	_, out = b.runBash(t, bashJSON("for i in $(seq 1 2000); do echo $i; done"))
	if n := len(out.chunks["stdout"]); n > 50 || !strings.HasPrefix(out.text("stdout"), "1\n2\n") || !strings.HasSuffix(out.text("stdout"), "\n2000\n") {
		t.Errorf("%d chunks streamed", n)
	}

	// Exit codes.
	res, _ = b.runBash(t, bashJSON("echo failing >&2; exit 3"))
	if res.Content != "failing\n[exit code 3]" || !res.IsError {
		t.Errorf("exit 3: %+v", res)
	}
	res, _ = b.runBash(t, bashJSON("true"))
	if res.Content != "(no output)\n[exit code 0]" || res.IsError {
		t.Errorf("no output: %+v", res)
	}
	res, _ = b.runBash(t, bashJSON("kill -TERM $$"))
	if !res.IsError || !strings.Contains(res.Content, "killed by signal") {
		t.Errorf("signal: %+v", res)
	}

	// The working directory, default and given, is the virtual path.
	res, _ = b.runBash(t, bashJSON("pwd"))
	if res.Content != root+"/docs\n[exit code 0]" {
		t.Errorf("default cwd: %q", res.Content)
	}
	res, _ = b.runBash(t, `{"command": "pwd; cat q3.md", "cwd": "reports"}`)
	if res.Content != root+"/docs/reports\n# Q3\nrevenue: 10\n[exit code 0]" {
		t.Errorf("cwd: %q", res.Content)
	}

	// Files it writes are written, with their digests recorded for the audit.
	res, _ = b.runBash(t, bashJSON("printf new > notes.txt"))
	if res.IsError || readHost(t, filepath.Join(b.docs, "notes.txt")) != "new" {
		t.Fatalf("write: %+v", res)
	}
	if len(res.Files) != 1 || res.Files[0] != (FileChange{Path: "docs/notes.txt", Before: sum("alpha\nbeta\ngamma\n"), After: sum("new")}) {
		t.Errorf("files %+v", res.Files)
	}
	res, _ = b.runBash(t, bashJSON("rm a.log"))
	if len(res.Files) != 1 || res.Files[0] != (FileChange{Path: "docs/a.log", Before: sum("a")}) {
		t.Errorf("files %+v", res.Files)
	}

	// The sandbox keeps protected paths read-only and read-only grants unchangeable.
	res, _ = b.runBash(t, bashJSON("echo x >> .git/config"))
	if !res.IsError || readHost(t, filepath.Join(b.docs, ".git", "config")) != "[core]\n" {
		t.Errorf("protected path written: %+v", res)
	}
	res, _ = b.runBash(t, bashJSON("rm "+root+"/ref/manual.md"))
	if !res.IsError || readHost(t, filepath.Join(b.ref, "manual.md")) != "read me\n" {
		t.Errorf("read-only grant changed: %+v", res)
	}
}

func TestBashOutputCap(t *testing.T) {
	t.Parallel()
	b := bashSetup(t)
	res, out := b.runBash(t, bashJSON("echo from-stderr >&2; sleep 1; seq 1 100000"))
	full := readHost(t, filepath.Join(b.out, ".keepup", "bash", "1.log"))
	header, body, _ := strings.Cut(full, "\n")
	if !strings.Contains(header, "[exit code 0]") || !strings.Contains(header, "seq 1 100000") {
		t.Errorf("log header %q", header)
	}
	var want strings.Builder
	want.WriteString("from-stderr\n")
	for i := 1; i <= 100000; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	if body != want.String() {
		t.Errorf("log body: %d bytes, want %d", len(body), want.Len())
	}
	if len(res.Content) > MaxBashOutput+300 || !strings.HasPrefix(res.Content, "from-stderr\n1\n2\n3\n") ||
		!strings.HasSuffix(res.Content, "99999\n100000\n[exit code 0]") {
		t.Errorf("content: %d bytes: %.40q ... %q", len(res.Content), res.Content, res.Content[len(res.Content)-60:])
	}
	marker := "bytes omitted; full output: " + root + "/outputs/.keepup/bash/1.log]\n"
	if !strings.Contains(res.Content, marker) {
		t.Errorf("no marker %q in the content", marker)
	}
	if out.text("stdout") != strings.TrimPrefix(want.String(), "from-stderr\n") || out.text("stderr") != "from-stderr\n" {
		t.Errorf("streamed %d bytes", len(out.text("stdout")))
	}
	// The next capped call gets the next log; output under the cap is not saved.
	res, _ = b.runBash(t, bashJSON("seq 1 20000"))
	if !strings.Contains(res.Content, "full output: "+root+"/outputs/.keepup/bash/2.log]") {
		t.Errorf("second log: %.200q", res.Content)
	}
	b.runBash(t, bashJSON("seq 1 10"))
	if ents, _ := os.ReadDir(filepath.Join(b.out, ".keepup", "bash")); len(ents) != 2 {
		t.Errorf("%d logs", len(ents))
	}
	// The log is where the model can read it, and the sandbox cannot change it.
	res, _ = b.runBash(t, bashJSON("head -c 20 "+root+"/outputs/.keepup/bash/2.log; echo x >> "+root+"/outputs/.keepup/bash/2.log"))
	if !strings.Contains(res.Content, "# keepup bash in ") || !strings.Contains(res.Content, "Read-only file system") || !res.IsError {
		t.Errorf("log from inside: %q", res.Content)
	}
}

func TestBashTimeout(t *testing.T) {
	t.Parallel()
	b := bashSetup(t)
	start := time.Now()
	res, _ := b.runBash(t, `{"command": "echo started; sleep 60", "timeout_s": 1}`)
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %v", took)
	}
	if !res.IsError || !strings.HasPrefix(res.Content, "started\n[timed out after 1s and killed; exit code ") {
		t.Errorf("timeout: %q", res.Content)
	}

	// Cancelling the call kills the command and returns the context's error.
	c := b.mustPrepare(t, "bash", bashJSON("sleep 60"))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := c.Run(ctx); err == nil || time.Since(start) > 30*time.Second {
		t.Errorf("cancelled run: %v after %v", err, time.Since(start))
	}
}

func TestBashSlowConsumer(t *testing.T) {
	t.Parallel()
	b := bashSetup(t)
	out := &outputs{delay: 200 * time.Millisecond}
	env := *b.env
	env.Output = out.record
	c, err := Bash{}.Prepare(context.Background(), &env, []byte(bashJSON("head -c 4000000 /dev/zero | tr '\\0' a; echo; echo end")))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Run(context.Background())
	if err != nil || res.IsError || !strings.HasSuffix(res.Content, "\nend\n[exit code 0]") {
		t.Fatalf("run: %v %+v", err, res)
	}
	streamed := out.text("stdout")
	if !strings.Contains(streamed, "bytes not streamed") || len(streamed) >= 4000000 {
		t.Errorf("streamed %d bytes, no note about what was dropped", len(streamed))
	}
}

func TestBashWithoutOutput(t *testing.T) {
	t.Parallel()
	b := bashSetup(t)
	b.env.Output = nil
	c := b.mustPrepare(t, "bash", bashJSON("echo quiet"))
	if res := mustRun(t, c); res.Content != "quiet\n[exit code 0]" {
		t.Errorf("content %q", res.Content)
	}
}

// TestBashProtectedPathMadeInNewFolder: a command that makes a repository's hook in a folder
// of its own making (where no guard reached at the start) finds it moved out when it ends, and
// the result says so.
func TestBashProtectedPathMadeInNewFolder(t *testing.T) {
	t.Parallel()
	b := bashSetup(t)
	c := b.mustPrepare(t, "bash", bashJSON("mkdir -p newproj/.git/hooks && echo evil > newproj/.git/hooks/pre-commit && echo made"))
	res := mustRun(t, c)
	want := b.s.Default().Virtual() + "/newproj/.git/hooks"
	if !strings.Contains(res.Content, "made\n[keepup moved these protected paths, made in the session's folders, out of them: "+want+".") {
		t.Errorf("content %q does not name %s", res.Content, want)
	}
	if _, err := os.Lstat(filepath.Join(b.docs, "newproj", ".git", "hooks")); err == nil {
		t.Error("newproj/.git/hooks is still in the folder")
	}
	if _, err := os.Stat(filepath.Join(b.docs, "newproj", ".git")); err != nil {
		t.Errorf("newproj/.git, not protected, is gone: %v", err)
	}
}
