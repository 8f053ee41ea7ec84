package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// escapeEnv is a grant with an outside folder next to it that nothing may touch.
type escapeEnv struct {
	*env
	grant, outside, secret string
}

func newEscapeEnv(t *testing.T) *escapeEnv {
	e := &escapeEnv{env: newEnv(t)}
	e.grant = filepath.Join(e.dir, "grant")
	e.outside = filepath.Join(e.dir, "outside")
	e.secret = e.write("outside/secret.txt", "SECRET")
	e.write("grant/ok.txt", "fine")
	return e
}

// untouched fails if anything in the outside folder changed or appeared.
func (e *escapeEnv) untouched(t *testing.T) {
	t.Helper()
	if got := readFile(t, e.secret); got != "SECRET" {
		t.Errorf("outside file changed: %q", got)
	}
	ents, _ := os.ReadDir(e.outside)
	if len(ents) != 1 {
		var names []string
		for _, en := range ents {
			names = append(names, en.Name())
		}
		t.Errorf("outside folder now holds %v", names)
	}
}

// refusedCalls returns the ids of calls whose result was refused or an error, with the message.
func refusedCalls(t *testing.T, stdout string) map[string]string {
	out := map[string]string{}
	for _, ev := range ofType(events(t, stdout), "tool.result") {
		d := ev.data()
		if s := d["status"]; s == "refused" || s == "error" {
			msg, _ := d["error"].(string)
			if msg == "" {
				msg, _ = d["content"].(string)
			}
			out[d["tool_call_id"].(string)] = msg
		}
	}
	return out
}

func TestFileToolEscapesAreRefused(t *testing.T) {
	t.Parallel()
	e := newEscapeEnv(t)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(e.outside, filepath.Join(e.grant, "dirlink")))
	must(os.Symlink(e.secret, filepath.Join(e.grant, "filelink")))
	must(os.Link(e.secret, filepath.Join(e.grant, "hardlink")))
	must(syscall.Mkfifo(filepath.Join(e.grant, "fifo"), 0o644))
	haveDev := syscall.Mknod(filepath.Join(e.grant, "null"), syscall.S_IFCHR|0o666, 1<<8|3) == nil
	ro := e.write("ro/readonly.txt", "ro")
	upload := e.write("attach.txt", "uploaded")

	rel := "../outside/secret.txt"
	cases := []struct {
		name  string
		tool  string
		input obj
	}{
		{"dotdot read", "read_file", obj{"path": rel}},
		{"dotdot write", "write_file", obj{"path": rel, "content": "x"}},
		{"dotdot delete", "delete_path", obj{"path": rel}},
		{"dotdot new file", "write_file", obj{"path": "../outside/new.txt", "content": "x"}},
		{"absolute read", "read_file", obj{"path": e.secret}},
		{"absolute write", "write_file", obj{"path": e.secret, "content": "x"}},
		{"absolute list", "list_dir", obj{"path": e.outside}},
		{"move out by dotdot", "move_path", obj{"from": "ok.txt", "to": "../outside/moved.txt"}},
		{"move in from outside", "move_path", obj{"from": rel, "to": "stolen.txt"}},
		{"dir symlink read", "read_file", obj{"path": "dirlink/secret.txt"}},
		{"dir symlink write", "write_file", obj{"path": "dirlink/secret.txt", "content": "x"}},
		{"dir symlink new file", "write_file", obj{"path": "dirlink/new.txt", "content": "x"}},
		{"dir symlink list", "list_dir", obj{"path": "dirlink"}},
		{"file symlink read", "read_file", obj{"path": "filelink"}},
		{"file symlink write", "write_file", obj{"path": "filelink", "content": "x"}},
		{"file symlink edit", "edit_file", obj{"path": "filelink", "old": "SECRET", "new": "x"}},
		{"hard link write", "write_file", obj{"path": "hardlink", "content": "x"}},
		{"hard link edit", "edit_file", obj{"path": "hardlink", "old": "SECRET", "new": "x"}},
		{"fifo read", "read_file", obj{"path": "fifo"}},
		{"fifo write", "write_file", obj{"path": "fifo", "content": "x"}},
		{"ro grant write", "write_file", obj{"path": "/sessions/${session}/mnt/ro/readonly.txt", "content": "x"}},
		{"ro grant new file", "write_file", obj{"path": "/sessions/${session}/mnt/ro/new.txt", "content": "x"}},
		{"ro grant delete", "delete_path", obj{"path": "/sessions/${session}/mnt/ro/readonly.txt"}},
		{"uploads write", "write_file", obj{"path": "/sessions/${session}/mnt/uploads/attach.txt", "content": "x"}},
		{"uploads delete", "delete_path", obj{"path": "/sessions/${session}/mnt/uploads/attach.txt"}},
		{"other session", "read_file", obj{"path": "/sessions/other-session/mnt/grant/ok.txt"}},
	}
	if haveDev {
		cases = append(cases,
			struct {
				name  string
				tool  string
				input obj
			}{"device read", "read_file", obj{"path": "null"}},
			struct {
				name  string
				tool  string
				input obj
			}{"device write", "write_file", obj{"path": "null", "content": "x"}})
	} else {
		t.Log("mknod not permitted here: device node cases skipped")
	}
	turns := []map[string]any{turn("", "update_plan", planCall("try"))}
	for _, c := range cases {
		turns = append(turns, turn("", c.tool, c.input))
	}
	turns = append(turns, turn("done"))
	r := e.run("", "run", "--json", "--approvals", "auto", "--grant", e.grant, "--grant", "ro="+filepath.Dir(ro)+":ro",
		"--upload", upload, "--model", e.script(turns...), "escape")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	refused := refusedCalls(t, r.stdout)
	for i, c := range cases {
		id := "script_" + itoa(i+1) + "_0"
		if _, ok := refused[id]; !ok {
			t.Errorf("%s (%s): not refused", c.name, id)
		}
	}
	e.untouched(t)
	if readFile(t, ro) != "ro" || readFile(t, upload) != "uploaded" {
		t.Error("a read-only file changed")
	}
	if !exists(filepath.Join(e.grant, "ok.txt")) {
		t.Error("ok.txt was moved out")
	}
	// The messages tell the model what to do instead.
	if msg := refused["script_1_0"]; !strings.Contains(msg, "outside") {
		t.Errorf("dotdot refusal says %q", msg)
	}
}

// TestSymlinkSwappedMidTask: a folder checked in one turn is replaced by a symlink to the
// outside before the next turn writes through it.
func TestSymlinkSwappedMidTask(t *testing.T) {
	t.Parallel()
	e := newEscapeEnv(t)
	e.write("grant/sub/a.txt", "inside")
	spec := e.script(
		turn("", "update_plan", planCall("swap")),
		turn("", "read_file", obj{"path": "sub/a.txt"}),
		map[string]any{"delay_ms": 1500, "tool_calls": []any{
			obj{"name": "write_file", "input": obj{"path": "sub/secret.txt", "content": "PWNED"}},
			obj{"name": "read_file", "input": obj{"path": "sub/secret.txt"}},
		}},
		turn("done"),
	)
	cmd := exec.Command(keepupBin, "run", "--json", "--approvals", "auto", "--grant", e.grant, "--model", spec, "swap")
	cmd.Env = e.environ()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	sc := bufio.NewScanner(stdout)
	swapped := false
	for sc.Scan() {
		line := sc.Text()
		all.WriteString(line + "\n")
		if !swapped && strings.Contains(line, `"type":"tool.result"`) && strings.Contains(line, "script_1_0") {
			sub := filepath.Join(e.grant, "sub")
			if err := os.RemoveAll(sub); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(e.outside, sub); err != nil {
				t.Fatal(err)
			}
			swapped = true
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("keepup: %v; %s", err, stderr.String())
	}
	if !swapped {
		t.Fatal("never saw the first read's result")
	}
	refused := refusedCalls(t, all.String())
	for _, id := range []string{"script_2_0", "script_2_1"} {
		if _, ok := refused[id]; !ok {
			t.Errorf("%s went through the swapped symlink", id)
		}
	}
	e.untouched(t)
}

func itoa(i int) string { return strconv.Itoa(i) }
