package tool

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/task"
)

// testBundle is a real session over temporary folders: "docs" (read-write, the default), "ref"
// (read-only), outputs and uploads (one file, brief.txt), plus a folder outside every grant.
type testBundle struct {
	s                       *scope.Session
	env                     *Env
	reg                     *Registry
	docs, ref, out, outside string
	plans                   []task.Plan
	questions               []string
}

const root = "/sessions/brave-loving-maxwell/mnt"

func setup(t *testing.T) *testBundle {
	t.Helper()
	dir := t.TempDir()
	b := &testBundle{
		docs:    filepath.Join(dir, "docs"),
		ref:     filepath.Join(dir, "ref"),
		out:     filepath.Join(dir, "outputs"),
		outside: filepath.Join(dir, "outside"),
	}
	for _, d := range []string{b.docs, b.ref, b.outside, filepath.Join(b.docs, "reports")} {
		mustMkdir(t, d)
	}
	writeFile(t, filepath.Join(b.docs, "notes.txt"), "alpha\nbeta\ngamma\n")
	writeFile(t, filepath.Join(b.docs, "reports", "q3.md"), "# Q3\nrevenue: 10\n")
	writeFile(t, filepath.Join(b.ref, "manual.md"), "read me\n")
	writeFile(t, filepath.Join(b.outside, "secret.txt"), "secret\n")
	up := filepath.Join(dir, "brief.txt")
	writeFile(t, up, "uploaded brief\n")
	s, err := scope.Open(scope.Config{
		ID:         "brave-loving-maxwell",
		Grants:     []scope.Grant{{Name: "docs", Path: b.docs, Mode: scope.RW}, {Name: "ref", Path: b.ref, Mode: scope.RO}},
		Outputs:    b.out,
		Uploads:    []string{up},
		UploadsDir: filepath.Join(dir, "uploads"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b.s = s
	b.env = &Env{
		Session: s,
		Task:    "t1",
		Plan: func(ctx context.Context, p task.Plan) error {
			b.plans = append(b.plans, p)
			return nil
		},
		Ask: func(ctx context.Context, q string) (string, error) {
			b.questions = append(b.questions, q)
			return "use the blue one", nil
		},
	}
	if b.reg, err = NewRegistry(Builtins()...); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMkdir(t *testing.T, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	mustMkdir(t, filepath.Dir(p))
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readHost(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// prepare decodes input through the registry, as the agent does, and prepares the call.
func (b *testBundle) prepare(t *testing.T, name, input string) (*Call, error) {
	t.Helper()
	tl, raw, err := b.reg.Decode(name, input)
	if err != nil {
		t.Fatalf("Decode(%s, %s): %v", name, input, err)
	}
	return tl.Prepare(context.Background(), b.env, raw)
}

func (b *testBundle) mustPrepare(t *testing.T, name, input string) *Call {
	t.Helper()
	c, err := b.prepare(t, name, input)
	if err != nil {
		t.Fatalf("Prepare(%s, %s): %v", name, input, err)
	}
	if c.Action.Tool != name || c.Action.Summary == "" || len(c.Action.Ops) == 0 {
		t.Fatalf("Prepare(%s): incomplete action %+v", name, c.Action)
	}
	if strings.Contains(c.Action.Summary, "\n") {
		t.Fatalf("summary is not one line: %q", c.Action.Summary)
	}
	return c
}

// mustRun runs a prepared call that must succeed.
func mustRun(t *testing.T, c *Call) *Result {
	t.Helper()
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.IsError {
		t.Fatalf("Run: error result: %s", res.Content)
	}
	return res
}

// runFails runs a prepared call that must fail with a message containing want.
func runFails(t *testing.T, c *Call, want string) *Result {
	t.Helper()
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !res.IsError || !strings.Contains(res.Content, want) {
		t.Fatalf("Run = %+v, want an error result containing %q", res, want)
	}
	return res
}

// assertRefusal fails unless err is a *Refusal containing want.
func assertRefusal(t *testing.T, err error, want string) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v (%T), want a *Refusal containing %q", err, err, want)
	}
	if !strings.Contains(r.Msg, want) {
		t.Fatalf("refusal %q does not contain %q", r.Msg, want)
	}
	if strings.Contains(r.Msg, os.TempDir()) {
		t.Fatalf("refusal %q leaks a host path", r.Msg)
	}
}

// op is a compact view of a policy op for comparisons.
func op(o policy.Op) string {
	if o.Target == nil {
		return string(o.Effect)
	}
	s := string(o.Effect) + " " + o.Target.Grant + ":" + o.Target.Rel
	if o.Target.Exists {
		s += " exists"
	}
	if o.Target.Protected {
		s += " protected"
	}
	return s
}

func ops(c *Call) string {
	var out []string
	for _, o := range c.Action.Ops {
		out = append(out, op(o))
	}
	return strings.Join(out, "; ")
}

func TestBuiltins(t *testing.T) {
	t.Parallel()
	reg, err := NewRegistry(Builtins()...)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range reg.Specs() {
		names = append(names, s.Name)
		if len(s.Description) < 100 {
			t.Errorf("%s: description too short: %q", s.Name, s.Description)
		}
		var schema map[string]any
		if err := json.Unmarshal(s.InputSchema, &schema); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if schema["additionalProperties"] != false || schema["type"] != "object" || schema["required"] == nil {
			t.Errorf("%s: schema is not strict: %s", s.Name, s.InputSchema)
		}
	}
	want := "list_dir read_file write_file edit_file delete_path move_path glob grep bash web_fetch update_plan ask_user spawn_subagents"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("Builtins() = %s, want %s", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	reg, err := NewRegistry(Builtins()...)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tool, input, want string
	}{
		{"list_dir", `{"path": "x", "depth": 2}`, "do not match its schema"},
		{"list_dir", `{}`, "do not match its schema"},
		{"list_dir", `{"path": 3}`, "do not match its schema"},
		{"list_dir", `{"path": "x"`, "not valid JSON"},
		{"read_file", `{"path": "x", "offset": 0}`, "do not match its schema"},
		{"read_file", `{"path": "x", "limit": "10"}`, "do not match its schema"},
		{"read_file", `{"path": "x", "offset": 1.5}`, "do not match its schema"},
		{"write_file", `{"path": "x"}`, "do not match its schema"},
		{"write_file", `{"path": "x", "content": null}`, "do not match its schema"},
		{"write_file", `{"path": "x", "content": "y", "mode": "0755"}`, "do not match its schema"},
		{"edit_file", `{"path": "x", "old": "", "new": "y"}`, "do not match its schema"},
		{"edit_file", `{"path": "x", "old": "a"}`, "do not match its schema"},
		{"edit_file", `{"path": "x", "old": "a", "new": "b", "replace_all": "yes"}`, "do not match its schema"},
		{"delete_path", `{"path": "x", "recursive": 1}`, "do not match its schema"},
		{"move_path", `{"from": "x"}`, "do not match its schema"},
		{"move_path", `["x", "y"]`, "do not match its schema"},
		{"glob", `{"pattern": ""}`, "do not match its schema"},
		{"grep", `{"path": "x"}`, "do not match its schema"},
		{"grep", `{"pattern": "x", "glob": 5}`, "do not match its schema"},
		{"update_plan", `{"items": []}`, "do not match its schema"},
		{"update_plan", `{"items": [{"id": "1", "title": "t", "status": "started"}]}`, "do not match its schema"},
		{"update_plan", `{"items": [{"id": "1", "title": "t", "status": "done", "owner": "me"}]}`, "do not match its schema"},
		{"ask_user", `{"question": ""}`, "do not match its schema"},
		{"ask_user", `not json`, "not valid JSON"},
		{"spawn_subagents", `{"tasks": []}`, "do not match its schema"},
		{"spawn_subagents", `{"tasks": [{"title": "a"}]}`, "do not match its schema"},
		{"rm_rf", `{}`, `unknown tool "rm_rf"`},
	}
	for _, tt := range tests {
		_, _, err := reg.Decode(tt.tool, tt.input)
		assertRefusal(t, err, tt.want)
	}
}

func TestPrepareWithoutSession(t *testing.T) {
	t.Parallel()
	_, err := ReadFile{}.Prepare(context.Background(), &Env{}, json.RawMessage(`{"path": "x"}`))
	assertRefusal(t, err, "no session")
}

// Paths out of the grants are refused by every path tool before anything runs.
func TestOutsideRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := os.Symlink(filepath.Join(b.outside, "secret.txt"), filepath.Join(b.docs, "leak.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(b.outside, filepath.Join(b.docs, "leakdir")); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(b.outside, "secret.txt")
	tests := []struct{ tool, input, want string }{
		{"list_dir", `{"path": "../outside"}`, "is outside the granted folders; granted: " + root + "/docs (read-write)"},
		{"list_dir", `{"path": "leakdir"}`, "outside the granted folder"},
		{"read_file", `{"path": "` + secret + `"}`, "is outside the granted folders"},
		{"read_file", `{"path": "leak.txt"}`, "outside the granted folders"},
		{"read_file", `{"path": "leakdir/secret.txt"}`, "outside the granted folder"},
		{"read_file", `{"path": "/sessions/other/mnt/docs/notes.txt"}`, "is outside the granted folders"},
		{"write_file", `{"path": "../x.txt", "content": "x"}`, "is outside the granted folders"},
		{"write_file", `{"path": "leak.txt", "content": "x"}`, "outside the granted folders"},
		{"write_file", `{"path": "leakdir/new.txt", "content": "x"}`, "outside the granted folder"},
		{"edit_file", `{"path": "leak.txt", "old": "secret", "new": "x"}`, "outside the granted folders"},
		{"delete_path", `{"path": "` + root + `/docs/../../x"}`, "is outside the granted folders"},
		{"delete_path", `{"path": "leakdir/secret.txt"}`, "outside the granted folder"},
		{"move_path", `{"from": "notes.txt", "to": "../notes.txt"}`, "is outside the granted folders"},
		{"move_path", `{"from": "leakdir/secret.txt", "to": "stolen.txt"}`, "outside the granted folder"},
		{"move_path", `{"from": "notes.txt", "to": "leakdir/notes.txt"}`, "outside the granted folder"},
		{"glob", `{"pattern": "../outside/*"}`, "is outside the granted folders"},
		{"glob", `{"pattern": "*", "path": "leakdir"}`, "outside the granted folder"},
		{"glob", `{"pattern": "/etc/*"}`, "is outside the granted folders"},
		{"grep", `{"pattern": "secret", "path": "leakdir"}`, "outside the granted folder"},
		{"grep", `{"pattern": "secret", "path": "/etc"}`, "is outside the granted folders"},
	}
	for _, tt := range tests {
		_, err := b.prepare(t, tt.tool, tt.input)
		var r *Refusal
		if !errors.As(err, &r) || !strings.Contains(r.Msg, tt.want) {
			t.Errorf("%s %s: got %v, want a refusal containing %q", tt.tool, tt.input, err, tt.want)
		}
	}
	if readHost(t, secret) != "secret\n" {
		t.Fatal("outside file changed")
	}
}

// Read-only grants and uploads refuse every write before anything runs.
func TestReadOnlyRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct{ tool, input, want string }{
		{"write_file", `{"path": "` + root + `/ref/manual.md", "content": "x"}`, "granted read-only"},
		{"write_file", `{"path": "` + root + `/ref/new.md", "content": "x"}`, "granted read-only"},
		{"edit_file", `{"path": "` + root + `/ref/manual.md", "old": "read", "new": "x"}`, "granted read-only"},
		{"delete_path", `{"path": "` + root + `/ref/manual.md"}`, "granted read-only"},
		{"move_path", `{"from": "` + root + `/ref/manual.md", "to": "m.md"}`, "granted read-only"},
		{"move_path", `{"from": "notes.txt", "to": "` + root + `/ref/notes.txt"}`, "granted read-only"},
		{"write_file", `{"path": "` + root + `/uploads/brief.txt", "content": "x"}`, "uploads are read-only; write a copy under " + root + "/outputs instead"},
		{"edit_file", `{"path": "` + root + `/uploads/brief.txt", "old": "brief", "new": "x"}`, "uploads are read-only"},
		{"delete_path", `{"path": "` + root + `/uploads/brief.txt"}`, "uploads are read-only"},
		{"move_path", `{"from": "` + root + `/uploads/brief.txt", "to": "` + root + `/outputs/brief.txt"}`, "uploads are read-only"},
		{"delete_path", `{"path": "."}`, "is a granted folder itself"},
		{"delete_path", `{"path": "` + root + `/outputs", "recursive": true}`, "is a granted folder itself"},
		{"write_file", `{"path": "` + root + `/docs", "content": "x"}`, "is a granted folder itself"},
		{"move_path", `{"from": ".", "to": "` + root + `/outputs/all"}`, "is a granted folder itself"},
	}
	for _, tt := range tests {
		_, err := b.prepare(t, tt.tool, tt.input)
		var r *Refusal
		if !errors.As(err, &r) || !strings.Contains(r.Msg, tt.want) {
			t.Errorf("%s %s: got %v, want a refusal containing %q", tt.tool, tt.input, err, tt.want)
		}
	}
	if readHost(t, filepath.Join(b.ref, "manual.md")) != "read me\n" {
		t.Fatal("read-only file changed")
	}
}
