package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/client"
	kevent "github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/server"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/store/sqlite"
	"github.com/keepup/keepup/internal/task"
)

// daemon is one `keepup serve` process of an env.
type daemon struct {
	e    *env
	cmd  *exec.Cmd
	pid  int
	log  *os.File
	args []string
}

// startDaemon starts `keepup serve args...` and waits until its API answers.
func (e *env) startDaemon(args ...string) *daemon {
	e.t.Helper()
	logf, err := os.OpenFile(filepath.Join(e.dir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	d := &daemon{e: e, log: logf, args: args}
	d.start()
	e.t.Cleanup(func() {
		d.kill()
		logf.Close()
	})
	return d
}

func (d *daemon) start() {
	d.e.t.Helper()
	old, _ := server.ReadDaemonInfo(d.e.home)
	cmd := exec.Command(keepupBin, append([]string{"serve"}, d.args...)...)
	cmd.Env = d.e.environ()
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		d.e.t.Fatal(err)
	}
	d.cmd, d.pid = cmd, cmd.Process.Pid
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := server.ReadDaemonInfo(d.e.home)
		if err == nil && info.PID == d.pid && (old == nil || info.Token != old.Token) {
			if _, err := client.Discover(d.e.home); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(d.log.Name())
			d.e.t.Fatalf("the daemon did not start in 30s; log:\n%s", data)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill SIGKILLs the daemon (no cleanup of any kind runs) and reaps it.
func (d *daemon) kill() {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	_ = d.cmd.Wait()
}

// stop asks the daemon to stop (SIGTERM) and waits.
func (d *daemon) stop() {
	d.e.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		d.kill()
		d.e.t.Fatal("the daemon did not stop in 40s after SIGTERM")
	}
}

func (e *env) client() *client.Client {
	e.t.Helper()
	c, err := client.Discover(e.home)
	if err != nil {
		e.t.Fatalf("no daemon: %v", err)
	}
	return c
}

func (e *env) openDB() *sqlite.DB {
	e.t.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(e.home, "keepup.db")})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	return db
}

// waitAll waits until every task in ids has ended, and returns them.
func waitAll(t *testing.T, db *sqlite.DB, ids []string, within time.Duration) map[string]*task.Task {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out := map[string]*task.Task{}
		for _, id := range ids {
			tk, err := db.Task(context.Background(), id)
			if err != nil {
				t.Fatalf("task %s: %v", id, err)
			}
			if tk.Status.Terminal() {
				out[id] = tk
			}
		}
		if len(out) == len(ids) {
			return out
		}
		if time.Now().After(deadline) {
			var open []string
			for _, id := range ids {
				if out[id] == nil {
					tk, _ := db.Task(context.Background(), id)
					open = append(open, id+":"+string(tk.Status))
				}
			}
			t.Fatalf("after %s, %d tasks have not ended: %v", within, len(open), open)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// chaosScript: every call has a side effect that shows if it ran twice. write_file makes a
// numbered file; bash appends a numbered line to the task's log (a second run would add the
// line again).
func chaosScript(e *env, steps int) string {
	turns := []map[string]any{turn("", "update_plan", planCall("write the numbered files"))}
	for i := range steps {
		turns = append(turns, map[string]any{"delay_ms": 60 + 20*(i%4), "tool_calls": []any{
			obj{"name": "write_file", "input": obj{"path": fmt.Sprintf("${task}/file-%02d.txt", i), "content": fmt.Sprintf("file %d of ${task}", i)}},
		}})
		if i%3 == 2 {
			turns = append(turns, map[string]any{"tool_calls": []any{
				obj{"name": "bash", "input": obj{"command": fmt.Sprintf("echo step-%02d >> ${task}/log.txt", i)}},
			}})
		}
	}
	turns = append(turns, turn("Wrote every numbered file."))
	return e.script(turns...)
}

// chaosSteps is how many numbered files each chaos task writes.
const chaosSteps = 12

// TestDaemonSurvivesSIGKILL runs 20 tasks while the daemon is killed with SIGKILL at random
// points at least 10 times and restarted each time: every task completes, every call with a
// side effect ran exactly once (its result journalled once, its effect on disk once; a call
// the kill left in doubt is journalled as unknown and ran at most once), and the audit chain
// verifies.
func TestDaemonSurvivesSIGKILL(t *testing.T) {
	e := newEnv(t)
	spec := chaosScript(e, chaosSteps)
	d := e.startDaemon("--max-running", "4", "--slice-turns", "2")
	c := e.client()
	const tasks = 20
	var ids []string
	for i := range tasks {
		v, err := c.Submit(t.Context(), queue.TaskRequest{Prompt: fmt.Sprintf("task %d: write the numbered files", i),
			Grants: []string{e.dir}, Model: spec, Approvals: "auto"})
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		if err := os.MkdirAll(filepath.Join(e.dir, v.ID), 0o755); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	db := e.openDB()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	kills := 0
	for kills < 12 {
		time.Sleep(time.Duration(80+rng.IntN(400)) * time.Millisecond)
		d.kill()
		kills++
		d.start()
		running, _ := db.Tasks(t.Context(), store.TaskFilter{Status: []task.State{task.Queued, task.Planning, task.Running, task.Summarizing}})
		if len(running) == 0 && kills >= 10 {
			break
		}
	}
	final := waitAll(t, db, ids, 3*time.Minute)
	t.Logf("%d SIGKILLs", kills)
	if kills < 10 {
		t.Fatalf("only %d kills happened before the tasks ended; the test needs at least 10", kills)
	}

	unknown := 0
	for _, id := range ids {
		tk := final[id]
		if tk.Status != task.Completed {
			t.Errorf("%s: %s (%s)", id, tk.Status, tk.Error)
			continue
		}
		calls, err := db.ToolCalls(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		logLines := map[string]store.CallStatus{}
		nWrites, nBash := 0, 0
		for _, cl := range calls {
			switch cl.Tool {
			case "write_file":
				nWrites++
			case "bash":
				nBash++
			}
		}
		if nWrites != chaosSteps || nBash != chaosSteps/3 {
			t.Errorf("%s: %d writes and %d commands journalled, want %d and %d", id, nWrites, nBash, chaosSteps, chaosSteps/3)
		}
		for _, cl := range calls {
			if seen[cl.ID] {
				t.Errorf("%s: call %s journalled twice", id, cl.ID)
			}
			seen[cl.ID] = true
			switch cl.Status {
			case store.CallOK:
			case store.CallUnknown:
				unknown++
			default:
				t.Errorf("%s: call %s (%s) ended %s: %s", id, cl.ID, cl.Tool, cl.Status, cl.Result)
			}
			switch cl.Tool {
			case "write_file":
				var n int
				fmt.Sscanf(cl.Input[strings.Index(cl.Input, "file-")+5:], "%02d", &n)
				data, err := os.ReadFile(filepath.Join(e.dir, id, fmt.Sprintf("file-%02d.txt", n)))
				if cl.Status == store.CallOK && (err != nil || string(data) != fmt.Sprintf("file %d of %s", n, id)) {
					t.Errorf("%s: write %d journalled ok but the file is %q (%v)", id, n, data, err)
				}
			case "bash":
				i := strings.Index(cl.Input, "step-")
				logLines[cl.Input[i:i+7]] = cl.Status
			}
		}
		data, _ := os.ReadFile(filepath.Join(e.dir, id, "log.txt"))
		count := map[string]int{}
		for line := range strings.Lines(string(data)) {
			count[strings.TrimSpace(line)]++
		}
		for line, n := range count {
			if n > 1 {
				t.Errorf("%s: %q appended %d times: a command ran twice", id, line, n)
			}
			if _, ok := logLines[line]; !ok {
				t.Errorf("%s: %q in the log but no call journalled for it", id, line)
			}
		}
		for line, st := range logLines {
			if st == store.CallOK && count[line] != 1 {
				t.Errorf("%s: %s journalled ok but appended %d times", id, line, count[line])
			}
		}
	}
	t.Logf("%d calls were left in doubt by a kill (told to the model as of unknown outcome)", unknown)
	d.stop()
	if r := e.run("", "audit", "verify"); r.code != 0 {
		t.Fatalf("audit verify after the chaos: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}

// TestDaemonDoneWhen is the "done when": start the daemon, queue several tasks from the
// CLI and the API, watch them run in parallel with subagents, steer one, approve another from
// a second terminal, kill the daemon, restart it, and see everything finish with nothing done
// twice.
func TestDaemonDoneWhen(t *testing.T) {
	e := newEnv(t)
	e.write("report.txt", "old report\n")
	d := e.startDaemon("--max-running", "4")
	c := e.client()

	slow := e.script(
		turn("", "update_plan", planCall("work slowly")),
		map[string]any{"delay_ms": 400, "tool_calls": []any{obj{"name": "write_file", "input": obj{"path": "steered-1.txt", "content": "a"}}}},
		map[string]any{"delay_ms": 400, "tool_calls": []any{obj{"name": "write_file", "input": obj{"path": "steered-2.txt", "content": "b"}}}},
		map[string]any{"delay_ms": 400, "tool_calls": []any{obj{"name": "write_file", "input": obj{"path": "steered-3.txt", "content": "c"}}}},
		turn("Done slowly."),
	)
	approval := e.script(
		turn("", "update_plan", planCall("rewrite the report")),
		map[string]any{"tool_calls": []any{obj{"name": "write_file", "input": obj{"path": "report.txt", "content": "new report\n"}}}},
		turn("Rewrote the report."),
	)
	fan := e.script(
		turn("", "update_plan", planCall("split")),
		map[string]any{"tool_calls": []any{obj{"name": "spawn_subagents", "input": obj{"tasks": []any{
			obj{"title": "one", "instructions": "write your file"},
			obj{"title": "two", "instructions": "write your file"},
			obj{"title": "three", "instructions": "write your file"},
		}}}}},
		map[string]any{"delay_ms": 300, "tool_calls": []any{obj{"name": "write_file", "input": obj{"path": "fan/${task}.txt", "content": "x"}}}},
		turn("Fanned out."),
	)
	e.write("fan/.keep", "")

	// From the CLI: one detached run, one queued task.
	r := e.run("", "run", "--detach", "--grant", e.dir, "--model", slow, "--approvals", "auto", "work slowly and listen")
	if r.code != 0 {
		t.Fatalf("run --detach: exit %d: %s", r.code, r.stderr)
	}
	steered := strings.TrimSpace(r.stdout)
	r = e.run("", "queue", "add", "--grant", e.dir, "--model", approval, "--approvals", "ask", "rewrite the report")
	if r.code != 0 {
		t.Fatalf("queue add: exit %d: %s", r.code, r.stderr)
	}
	asker := strings.TrimSpace(r.stdout)
	// From the API: a task with subagents.
	v, err := c.Submit(t.Context(), queue.TaskRequest{Prompt: "split the work", Grants: []string{e.dir}, Model: fan, Approvals: "auto", Priority: 1})
	if err != nil {
		t.Fatal(err)
	}
	fanID := v.ID

	// Steer the slow one while it runs.
	waitStatus(t, c, steered, task.Running)
	if r := e.run("", "steer", steered, "also mention the weather"); r.code != 0 {
		t.Fatalf("steer: exit %d: %s", r.code, r.stderr)
	}
	// Approve the other from a "second terminal".
	waitStatus(t, c, asker, task.AwaitingApproval)
	// Kill the daemon while all this is going on, then restart it.
	d.kill()
	d.start()
	if r := e.run("", "approve", asker); r.code != 0 {
		t.Fatalf("approve: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	// Follow the fan-out task to its end from the CLI.
	r = e.run("", "logs", "-f", fanID)
	if r.code != 0 {
		t.Fatalf("logs -f %s: exit %d: %s", fanID, r.code, r.stderr)
	}
	db := e.openDB()
	final := waitAll(t, db, []string{steered, asker, fanID}, 2*time.Minute)
	for id, tk := range final {
		if tk.Status != task.Completed {
			t.Errorf("%s ended %s: %s", id, tk.Status, tk.Error)
		}
	}
	if got := readFile(t, filepath.Join(e.dir, "report.txt")); got != "new report\n" {
		t.Errorf("report.txt = %q after approval", got)
	}
	evs, _ := db.Events(t.Context(), steered, 0, 0)
	var steers []string
	for _, ev := range evs {
		if ev.Type == "steer.received" {
			steers = append(steers, ev.Type)
		}
	}
	if len(steers) != 1 {
		t.Errorf("the steering message was delivered %d times, want once", len(steers))
	}
	kids, _ := db.Tasks(t.Context(), store.TaskFilter{Parent: &fanID})
	if len(kids) != 3 {
		t.Fatalf("%d subagents, want 3", len(kids))
	}
	files, _ := filepath.Glob(filepath.Join(e.dir, "fan", "*.txt"))
	// The subagents play the same script: each starts three of its own, which cannot go
	// further (depth 2). 1 + 3 + 9 files.
	if len(files) != 13 {
		t.Errorf("fan/ holds %d files, want 13 (the parent's, its 3 subagents' and their 9): %v", len(files), files)
	}
	for _, id := range []string{steered, asker, fanID} {
		calls, _ := db.ToolCalls(t.Context(), id)
		seen := map[string]int{}
		for _, cl := range calls {
			if cl.Tool == "write_file" && cl.Status == store.CallOK {
				seen[cl.Input]++
			}
		}
		for in, n := range seen {
			if n > 1 {
				t.Errorf("%s: %s done %d times", id, in, n)
			}
		}
	}
	d.stop()
	if r := e.run("", "audit", "verify"); r.code != 0 {
		t.Fatalf("audit verify: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
}

func waitStatus(t *testing.T, c *client.Client, id string, want task.State) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, err := c.Task(t.Context(), id)
		if err == nil && v.Status == want {
			return
		}
		if err == nil && v.Status.Terminal() {
			evs, _ := c.Events(t.Context(), id, 0, 0)
			for _, ev := range evs {
				t.Logf("%d %s %s %.200s", ev.Seq, ev.Time.Format("15:04:05.000"), ev.Type, ev.Data)
			}
			t.Fatalf("task %s ended %s (%s) while waiting for %s", id, v.Status, v.Error, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: still not %s after 60s (%v, %v)", id, want, v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDaemonAPIAuthAndSSEResume checks against the real daemon what servertest cannot: the
// token written to daemon.json (mode 0600) is the only way in, and an event stream resumed
// with Last-Event-ID after a daemon restart continues without gaps or repeats.
func TestDaemonAPIAuthAndSSEResume(t *testing.T) {
	e := newEnv(t)
	d := e.startDaemon()
	fi, err := os.Stat(filepath.Join(e.home, "daemon.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("daemon.json: %v, mode %v; want 0600", err, fi.Mode())
	}
	info, _ := server.ReadDaemonInfo(e.home)
	for _, tok := range []string{"", "wrong", info.Token} {
		req, _ := http.NewRequest("GET", "http://"+info.Addr+"/api/tasks", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusUnauthorized
		if tok == info.Token {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Fatalf("token %q: status %d, want %d", tok, resp.StatusCode, want)
		}
	}
	c := e.client()
	spec := e.script(turn("", "update_plan", planCall("count")),
		map[string]any{"delay_ms": 300, "tool_calls": []any{obj{"name": "write_file", "input": obj{"path": "a.txt", "content": "1"}}}},
		map[string]any{"delay_ms": 300, "tool_calls": []any{obj{"name": "write_file", "input": obj{"path": "b.txt", "content": "2"}}}},
		turn("Counted."))
	v, err := c.Submit(t.Context(), queue.TaskRequest{Prompt: "count", Grants: []string{e.dir}, Model: spec, Approvals: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	restarted := false
	err = c.Follow(ctx, v.ID, 0, func(ev kevent.Event) error {
		got = append(got, ev.Seq)
		if !restarted && ev.Type == "tool.result" {
			restarted = true
			d.kill()
			d.start()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("streamed seqs %v: want 1..n without gaps or repeats across the restart", got)
		}
	}
	if !restarted || len(got) < 10 {
		t.Fatalf("streamed %d events, restarted=%v", len(got), restarted)
	}
}

// TestRunSubagentsInProcess: without a daemon, `keepup run` runs subagents itself, in parallel,
// in the same session, and the parent's plan shows them.
func TestRunSubagentsInProcess(t *testing.T) {
	e := newEnv(t)
	e.write("docs/a.txt", "a\n")
	spec := e.script(
		turn("", "update_plan", planCall("split")),
		map[string]any{"tool_calls": []any{obj{"name": "spawn_subagents", "input": obj{"tasks": []any{
			obj{"title": "one", "instructions": "write your file", "grants": []any{"work:ro"}},
			obj{"title": "two", "instructions": "write your file"},
		}}}}},
		map[string]any{"tool_calls": []any{obj{"name": "write_file", "input": obj{"path": "out-${task}.txt", "content": "x"}}}},
		turn("Split."),
	)
	r := e.run("", "run", "--json", "--grant", "work="+e.dir, "--model", spec, "--approvals", "auto", "split the work")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	evs := events(t, r.stdout)
	root := evs[0].Task
	mine := 0
	for _, ev := range ofType(evs, "subtask.spawned") {
		if ev.Task == root {
			mine++
		}
	}
	// --json carries the subagents' events too (6 spawns in all: 2 by the parent, 2 by each child).
	if n := len(ofType(evs, "subtask.spawned")); mine != 2 || n != 6 {
		t.Fatalf("%d subtask.spawned events of the parent and %d in all, want 2 and 6", mine, n)
	}
	db := e.openDB()
	all, _ := db.Tasks(t.Context(), store.TaskFilter{})
	// The parent, its two children and their two children each (the same script; depth 2).
	if len(all) != 7 {
		t.Fatalf("%d tasks, want 7", len(all))
	}
	ro := 0
	for _, tk := range all {
		if tk.Status != task.Completed {
			t.Errorf("%s (depth %d) ended %s: %s", tk.ID, tk.Depth, tk.Status, tk.Error)
		}
		calls, _ := db.ToolCalls(t.Context(), tk.ID)
		for _, cl := range calls {
			if cl.Tool == "write_file" && cl.Status != store.CallOK {
				ro++
				if !strings.Contains(cl.Result, "read-only") {
					t.Errorf("%s: write refused for another reason: %s", tk.ID, cl.Result)
				}
			}
		}
	}
	// Every task briefed "one" (work:ro) and everything below one has work read-only: child
	// one, its two children, and child two's child one. Their writes are refused.
	if ro != 4 {
		t.Errorf("%d writes refused as read-only, want 4", ro)
	}
}

// TestDaemonGrantRoots: a daemon started with --grant-root refuses grants outside it with a 400
// naming the grant, and creates nothing.
func TestDaemonGrantRoots(t *testing.T) {
	e := newEnv(t)
	inside := filepath.Join(e.dir, "allowed")
	outside := t.TempDir()
	os.MkdirAll(inside, 0o755)
	e.startDaemon("--grant-root", inside)
	c := e.client()
	spec := e.script(turn("Nothing to do."))
	_, err := c.Submit(t.Context(), queue.TaskRequest{Prompt: "x", Grants: []string{inside, outside}, Model: spec})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Field != "grants[1]" || !strings.Contains(ae.Message, "outside the folders this daemon may grant") {
		t.Fatalf("grant outside the roots: %v", err)
	}
	if v, err := c.Submit(t.Context(), queue.TaskRequest{Prompt: "x", Grants: []string{inside}, Model: spec}); err != nil {
		t.Fatalf("grant inside the root: %v", err)
	} else {
		waitStatus(t, c, v.ID, task.Completed)
	}
	db := e.openDB()
	if all, _ := db.Tasks(t.Context(), store.TaskFilter{}); len(all) != 1 {
		t.Fatalf("%d tasks; the refused one must not be stored", len(all))
	}
}

// TestLogsWithoutDaemon: `keepup logs ID` prints a finished task's events from the database when
// no daemon runs, the same events `run --json` printed.
func TestLogsWithoutDaemon(t *testing.T) {
	e := newEnv(t)
	spec := e.script(turn("", "update_plan", planCall("nothing")), turn("Nothing to do."))
	r := e.run("", "run", "--json", "--grant", e.dir, "--model", spec, "--approvals", "auto", "do nothing")
	if r.code != 0 {
		t.Fatalf("run: exit %d: %s", r.code, r.stderr)
	}
	evs := events(t, r.stdout)
	l := e.run("", "logs", "--json", evs[0].Task)
	if l.code != 0 || l.stdout != r.stdout {
		t.Fatalf("logs --json: exit %d, stderr %q; output differs from run --json:\n%s\nvs\n%s", l.code, l.stderr, l.stdout, r.stdout)
	}
}
