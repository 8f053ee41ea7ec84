// Package e2e runs the built keepup binary as a subprocess against real temporary folders, a
// real SQLite database and script models (or a loopback server speaking a provider's wire
// format), the way a person or a script would use it.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var keepupBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keepup-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keepupBin = filepath.Join(dir, "keepup")
	cmd := exec.Command("go", "build", "-o", keepupBin, "../cmd/keepup")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building keepup: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one isolated keepup installation: its home, a managed policy path and a work folder.
type env struct {
	t       testing.TB
	home    string
	managed string
	dir     string // scratch space for grants, scripts and outside files
	extra   []string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{t: t, home: filepath.Join(root, "home"), managed: filepath.Join(root, "managed-policy.json"), dir: filepath.Join(root, "work")}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

// result is one finished keepup run.
type result struct {
	code   int
	stdout string
	stderr string
}

func (e *env) environ() []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + e.dir,
		"KEEPUP_HOME=" + e.home,
	}
	// Point at the test's managed policy only once it exists: naming a missing file is an error.
	// Without it keepup reads the system default path, which is absent on test machines.
	if exists(e.managed) {
		env = append(env, "KEEPUP_MANAGED_POLICY="+e.managed)
	}
	return append(env, e.extra...)
}

// run runs keepup with args and stdin, and waits (at most two minutes).
func (e *env) run(stdin string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(keepupBin, args...)
	cmd.Env = e.environ()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		e.t.Fatalf("keepup %v did not finish in 2 minutes; stderr: %s", args, errb.String())
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// write creates a file under e.dir (or an absolute path) with content.
func (e *env) write(name, content string) string {
	e.t.Helper()
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(e.dir, name)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// script writes a script model file and returns its --model spec.
func (e *env) script(turns ...map[string]any) string {
	e.t.Helper()
	data, err := json.Marshal(map[string]any{"turns": turns})
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := os.CreateTemp(e.dir, "script-*.json")
	if err != nil {
		e.t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	return "script:" + f.Name()
}

// turn builds a script turn: text and tool calls as name, input pairs.
func turn(text string, calls ...any) map[string]any {
	t := map[string]any{}
	if text != "" {
		t["text"] = text
	}
	var cs []any
	for i := 0; i+1 < len(calls); i += 2 {
		cs = append(cs, map[string]any{"name": calls[i], "input": calls[i+1]})
	}
	if len(cs) > 0 {
		t["tool_calls"] = cs
	}
	return t
}

type obj = map[string]any

// planCall is an update_plan input with one item per title, all pending.
func planCall(titles ...string) obj {
	var items []obj
	for i, t := range titles {
		items = append(items, obj{"id": fmt.Sprint(i + 1), "title": t, "status": "pending"})
	}
	return obj{"items": items}
}

// event is one line of --json output.
type event struct {
	Seq     int64           `json:"seq"`
	Time    time.Time       `json:"time"`
	Task    string          `json:"task"`
	Session string          `json:"session"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
}

func (ev event) data() map[string]any {
	var m map[string]any
	json.Unmarshal(ev.Data, &m)
	return m
}

// events parses --json stdout, failing on any line that is not an event.
func events(t *testing.T, stdout string) []event {
	t.Helper()
	var out []event
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev event
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil || ev.Type == "" {
			t.Fatalf("stdout line is not an event: %q (%v)", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

func ofType(evs []event, typ string) []event {
	var out []event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func oneLine(t *testing.T, s string) {
	t.Helper()
	s = strings.TrimRight(s, "\n")
	if s == "" || strings.Contains(s, "\n") {
		t.Errorf("want a one-line error, got %q", s)
	}
}

var _ = syscall.SIGINT

// execKeepup returns an unstarted keepup command in e's environment.
func execKeepup(e *env, args ...string) *exec.Cmd {
	cmd := exec.Command(keepupBin, args...)
	cmd.Env = e.environ()
	return cmd
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
