package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nothingWritten fails if a refused run left a database, outputs or uploads behind.
func (e *env) nothingWritten(t *testing.T) {
	t.Helper()
	for _, p := range []string{"keepup.db", "outputs", "uploads"} {
		if exists(filepath.Join(e.home, p)) {
			t.Errorf("%s was written", p)
		}
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(e *env) []string // returns the args after "run"
		want  []string              // substrings of the one-line error
		code  int
	}{
		{"missing grant", func(e *env) []string { return []string{"--grant", filepath.Join(e.dir, "nope")} }, []string{"nope", "no such file"}, 2},
		{"grant is a file", func(e *env) []string { return []string{"--grant", e.write("f.txt", "x")} }, []string{"f.txt", "not a directory"}, 2},
		{"grant of /", func(e *env) []string { return []string{"--grant", "/"} }, []string{`"/"`}, 2},
		{"named grant of /", func(e *env) []string { return []string{"--grant", "root=/"} }, []string{"whole file system"}, 2},
		{"grant of KEEPUP_HOME", func(e *env) []string { os.MkdirAll(e.home, 0o700); return []string{"--grant", e.home} }, []string{"KEEPUP_HOME"}, 2},
		{"grant of a parent of KEEPUP_HOME", func(e *env) []string { return []string{"--grant", filepath.Dir(e.home)} }, []string{"KEEPUP_HOME"}, 2},
		{"grant inside KEEPUP_HOME", func(e *env) []string {
			os.MkdirAll(filepath.Join(e.home, "sub"), 0o700)
			return []string{"--grant", filepath.Join(e.home, "sub")}
		}, []string{"KEEPUP_HOME"}, 2},
		{"duplicate grant names", func(e *env) []string {
			os.MkdirAll(filepath.Join(e.dir, "a"), 0o755)
			os.MkdirAll(filepath.Join(e.dir, "b"), 0o755)
			return []string{"--grant", "x=" + filepath.Join(e.dir, "a"), "--grant", "x=" + filepath.Join(e.dir, "b")}
		}, []string{"x", "already used"}, 2},
		{"bad grant mode", func(e *env) []string { return []string{"--grant", filepath.Join(e.dir, "a") + ":rx"} }, []string{"rx"}, 2},
		{"unknown model provider", func(e *env) []string { return []string{"--model", "gpt:4"} }, []string{`"gpt"`, "anthropic:MODEL"}, 2},
		{"model spec without a colon", func(e *env) []string { return []string{"--model", "claude"} }, []string{`"claude"`}, 2},
		{"anthropic without a key", func(e *env) []string { return []string{"--model", "anthropic:claude-x"} }, []string{"ANTHROPIC_API_KEY"}, 2},
		{"missing script", func(e *env) []string { return []string{"--model", "script:" + filepath.Join(e.dir, "none.json")} }, []string{"none.json"}, 2},
		{"malformed script", func(e *env) []string {
			return []string{"--model", "script:" + e.write("s.json", `{"turns": [{"text": "a"}, {"tool_calls": [{"name": ""}]}]}`)}
		}, []string{"s.json", "turns[1].tool_calls[0].name"}, 2},
		{"malformed config", func(e *env) []string {
			e.write(filepath.Join(e.home, "config.json"), `{"permissions": {"deny": ["Delete(*)", "Nuke(*)"]}}`)
			return nil
		}, []string{"config.json", "permissions.deny[1]", "Nuke"}, 2},
		{"config with an unknown field", func(e *env) []string {
			e.write(filepath.Join(e.home, "config.json"), `{"aprovals": "auto"}`)
			return nil
		}, []string{"config.json", "aprovals"}, 2},
		{"malformed managed policy", func(e *env) []string {
			e.write(e.managed, `{"permissions": {"allow": ["Read(**"]}}`)
			return nil
		}, []string{"managed-policy.json", "permissions.allow[0]"}, 2},
		{"managed policy is not JSON", func(e *env) []string {
			e.write(e.managed, "{\n  \"permissions\": {,\n}")
			return nil
		}, []string{"managed-policy.json", "line 2"}, 2},
		{"KEEPUP_HOME not writable", func(e *env) []string {
			f := e.write("plainfile", "x")
			e.home = filepath.Join(f, "home")
			return nil
		}, []string{"KEEPUP_HOME", "not writable"}, 2},
		{"unknown approvals mode", func(e *env) []string { return []string{"--approvals", "maybe"} }, []string{"maybe"}, 2},
		{"mode forbidden by the managed policy", func(e *env) []string {
			e.write(e.managed, `{"approvals": {"allowed_modes": ["ask", "deny"]}}`)
			return []string{"--approvals", "auto"}
		}, []string{"auto", "managed"}, 4},
		{"upload missing", func(e *env) []string { return []string{"--upload", filepath.Join(e.dir, "gone.pdf")} }, []string{"gone.pdf"}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			args := append([]string{"run"}, c.setup(e)...)
			if !hasFlag(args, "--model") {
				args = append(args, "--model", e.script(turn("hi")))
			}
			args = append(args, "do something")
			r := e.run("", args...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, c.code, r.stderr)
			}
			oneLine(t, r.stderr)
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error %q lacks %q", r.stderr, w)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty: %q", r.stdout)
			}
			e.nothingWritten(t)
		})
	}
}

func TestNoModel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.run("", "run", "hello")
	if r.code != 2 || !strings.Contains(r.stderr, "keepup demo") || !strings.Contains(r.stderr, "ANTHROPIC_API_KEY") {
		t.Fatalf("exit %d: %q", r.code, r.stderr)
	}
	oneLine(t, r.stderr)
	e.nothingWritten(t)
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, args := range [][]string{{"frobnicate"}, {"run"}, {"run", "--max-turns", "x", "p"}, {"task"}, {"task", "show"}, {"audit"}, {"task", "show", "t-nosuch"}} {
		r := e.run("", args...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (%q)", args, r.code, r.stderr)
		}
	}
	if r := e.run("", "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "keepup ") {
		t.Errorf("version: %d %q", r.code, r.stdout)
	}
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if a == f {
			return true
		}
	}
	return false
}
