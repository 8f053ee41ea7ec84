package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/server"
	"github.com/keepup/keepup/internal/server/servertest"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// syncBuffer is a bytes.Buffer that a command writes while the test reads it.
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

// remoteBundle is a KEEPUP_HOME with a daemon: a real server on a Unix socket (and loopback),
// its daemon.json, over an in-memory backend.
type remoteBundle struct {
	home string
	b    *servertest.Backend
}

func remoteSetup(t *testing.T) *remoteBundle {
	t.Helper()
	rb := &remoteBundle{home: t.TempDir(), b: servertest.New()}
	token := server.NewToken()
	srv, err := server.New(server.Config{Backend: rb.b, Token: token, Logger: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(rb.home, "keepup.sock")
	ls, err := server.Listen(server.ListenConfig{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	if err := server.WriteDaemonInfo(rb.home, server.Info{PID: os.Getpid(), Addr: ls[0].Addr().String(), Socket: sock, Token: token, Version: "test", Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ls...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return rb
}

// state returns a State in KEEPUP_HOME home reading stdin; its Context ends after 30 s.
func testState(home string, stdin io.Reader) (*State, *syncBuffer, *syncBuffer) {
	var out, errb syncBuffer
	return &State{
		Stdin:  stdin,
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(k string) string {
			if k == "KEEPUP_HOME" {
				return home
			}
			return ""
		},
		Context: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 30*time.Second)
		},
	}, &out, &errb
}

// run runs one command line and returns its exit code, stdout and stderr.
func (rb *remoteBundle) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	st, out, errb := testState(rb.home, strings.NewReader(""))
	code := Run(st, args)
	return code, out.String(), errb.String()
}

func (rb *remoteBundle) submit(t *testing.T, prompt string) queue.TaskView {
	t.Helper()
	tv, err := rb.b.Submit(context.Background(), queue.TaskRequest{Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	return *tv
}

func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%q never appeared in:\n%s", want, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRemoteCommandsNeedADaemon(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	// A daemon.json left by a daemon that was killed: nothing answers on its socket or port.
	server.WriteDaemonInfo(home, server.Info{PID: 1, Addr: "127.0.0.1:1", Socket: filepath.Join(home, "gone.sock"), Token: server.NewToken()})
	rb := &remoteBundle{home: home}
	for _, args := range [][]string{
		{"queue", "add", "do it"}, {"queue", "list"}, {"queue", "schedules"}, {"queue", "unschedule", "s"},
		{"logs", "-f", "t-1"}, {"steer", "t-1", "hi"}, {"approve", "a-1"}, {"approvals"},
		{"pause", "t-1"}, {"resume", "t-1"}, {"cancel", "t-1"},
	} {
		code, out, errOut := rb.run(t, args...)
		if code != ExitUsage || out != "" || !strings.Contains(errOut, noDaemon) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	// Without a daemon, logs (not following) reads the database.
	if code, _, errOut := rb.run(t, "logs", "t-1"); code != ExitUsage || !strings.Contains(errOut, `task "t-1": no such task`) {
		t.Errorf("logs t-1 without a daemon: exit %d, stderr %q", code, errOut)
	}
	st, _, _ := testState(home, nil)
	if c, err := daemonClient(st); c != nil || err != nil {
		t.Fatalf("daemonClient with a stale file: %v, %v; want none and no error", c, err)
	}
}

func TestQueueAdd(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	code, out, errOut := rb.run(t, "queue", "add", "--grant", "notes=.:ro", "--upload", "a.pdf", "--model", "script:s.json", "--priority", "1", "--max-turns", "7", "tidy", "the notes")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	tv, err := rb.b.Task(context.Background(), id)
	if err != nil {
		t.Fatalf("printed %q: %v", out, err)
	}
	wd, _ := os.Getwd()
	if tv.Prompt != "tidy the notes" || tv.Priority != 1 || tv.Model != "script:"+filepath.Join(wd, "s.json") ||
		len(tv.Grants) != 1 || tv.Grants[0].Path != "notes="+wd+":ro" {
		t.Fatalf("task %+v", tv)
	}

	code, out, errOut = rb.run(t, "queue", "add", "--cron", "0 9 * * 1-5", "--missed", "run_once", "report")
	if code != 0 || !strings.HasPrefix(out, "sch-") {
		t.Fatalf("--cron: exit %d, %q, %q", code, out, errOut)
	}
	code, out, errOut = rb.run(t, "queue", "add", "--cron", "at nine", "report")
	if code != ExitUsage || out != "" || !strings.Contains(errOut, "schedule.cron") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("bad cron: exit %d, %q, %q", code, out, errOut)
	}
	for _, args := range [][]string{
		{"queue", "add"},
		{"queue", "add", "--priority", "9", "x"},
		{"queue", "add", "--missed", "skip", "x"},
		{"queue", "add", "--cron", "@daily", "--missed", "all", "x"},
		{"queue", "add", "--grant", "x:rx", "x"},
		{"queue", "bogus"},
	} {
		if code, _, errOut := rb.run(t, args...); code != ExitUsage || errOut == "" {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
	if ts, _ := rb.b.Tasks(context.Background(), store.TaskFilter{}); len(ts) != 1 {
		t.Fatalf("%d tasks; bad input must queue nothing", len(ts))
	}
}

func TestQueueListAndSchedules(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	if code, out, _ := rb.run(t, "queue", "list"); code != 0 || !strings.Contains(out, "no queued or running tasks") {
		t.Fatalf("empty list: %d %q", code, out)
	}
	a, b := rb.submit(t, "first task"), rb.submit(t, "second task")
	rb.b.Finish(b.ID, task.Completed, "")
	code, out, _ := rb.run(t, "queue", "list")
	if code != 0 || !strings.Contains(out, a.ID) || strings.Contains(out, b.ID) {
		t.Fatalf("list: %d\n%s", code, out)
	}

	rb.run(t, "queue", "add", "--cron", "@hourly", "hourly check")
	scs, _ := rb.b.Schedules(context.Background())
	if len(scs) != 1 {
		t.Fatalf("schedules %+v", scs)
	}
	if code, out, _ := rb.run(t, "queue", "schedules"); code != 0 || !strings.Contains(out, scs[0].ID) || !strings.Contains(out, "hourly check") {
		t.Fatalf("schedules: %d\n%s", code, out)
	}
	if code, _, errOut := rb.run(t, "queue", "unschedule", scs[0].ID); code != 0 {
		t.Fatalf("unschedule: %d %s", code, errOut)
	}
	if code, _, errOut := rb.run(t, "queue", "unschedule", scs[0].ID); code != ExitUsage || !strings.Contains(errOut, scs[0].ID) {
		t.Fatalf("unschedule again: %d %s", code, errOut)
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	a := rb.submit(t, "a")
	rb.b.Emit(a.ID, event.PlanUpdated, map[string]any{"items": []map[string]any{{"id": "1", "title": "Read the notes", "status": "in_progress"}}})
	rb.b.Emit(a.ID, event.ModelText, map[string]any{"text": "Reading them now."})
	rb.b.Emit(a.ID, event.SteerReceived, map[string]any{"message": "be brief"})

	code, out, errOut := rb.run(t, "logs", a.ID)
	if code != 0 {
		t.Fatalf("logs: %d %s", code, errOut)
	}
	for _, want := range []string{"Task " + a.ID, "[>] Read the notes", "Reading them now.", "message from you: be brief"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = rb.run(t, "logs", a.ID, "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 {
		t.Fatalf("logs --json: %d\n%s", code, out)
	}
	for i, l := range lines {
		var e event.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Seq != int64(i+1) {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
	}
	if code, _, errOut := rb.run(t, "logs", "t-nope"); code != ExitUsage || !strings.Contains(errOut, "t-nope") {
		t.Fatalf("unknown task: %d %s", code, errOut)
	}
}

func TestLogsFollowExitCodes(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	for _, c := range []struct {
		end  task.State
		code int
	}{{task.Completed, ExitOK}, {task.Failed, ExitFailed}, {task.Cancelled, ExitCancelled}} {
		a := rb.submit(t, "a")
		st, out, errb := testState(rb.home, strings.NewReader(""))
		done := make(chan int, 1)
		go func() { done <- Run(st, []string{"logs", "-f", a.ID}) }()
		waitOutput(t, out, "Task "+a.ID)
		rb.b.Emit(a.ID, event.ToolStarted, map[string]any{"tool": "read_file", "summary": "read notes.md"})
		rb.b.Finish(a.ID, c.end, "it went "+string(c.end))
		select {
		case code := <-done:
			if code != c.code {
				t.Errorf("%s: exit %d, want %d; stderr %s", c.end, code, c.code, errb.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: logs -f did not end", c.end)
		}
		if !strings.Contains(out.String(), "→ read notes.md") {
			t.Errorf("%s: output lacks the tool line:\n%s", c.end, out.String())
		}
	}
}

func TestSteerAndControl(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	a := rb.submit(t, "a")
	rb.b.SetStatus(a.ID, task.Running)
	if code, _, errOut := rb.run(t, "steer", a.ID, "--", "use", "-metric", "units"); code != 0 {
		t.Fatalf("steer: %d %s", code, errOut)
	}
	if s := rb.b.Steers(a.ID); len(s) != 1 || s[0].Message != "use -metric units" {
		t.Fatalf("steers %+v", s)
	}
	if code, _, _ := rb.run(t, "steer", a.ID); code != ExitUsage {
		t.Fatalf("steer without a message: %d", code)
	}
	if code, _, errOut := rb.run(t, "steer", "t-nope", "x"); code != ExitUsage || !strings.Contains(errOut, "t-nope") {
		t.Fatalf("steer unknown: %d %s", code, errOut)
	}
	for _, c := range []struct{ verb, want string }{{"pause", "paused"}, {"resume", "running"}, {"cancel", "cancelled"}} {
		code, out, errOut := rb.run(t, c.verb, a.ID)
		if code != 0 || out != a.ID+": "+c.want+"\n" {
			t.Fatalf("%s: %d %q %s", c.verb, code, out, errOut)
		}
	}
	if code, _, errOut := rb.run(t, "pause", a.ID); code != ExitUsage || !strings.Contains(errOut, "cannot be paused") {
		t.Fatalf("pause a cancelled task: %d %s", code, errOut)
	}
}

func TestApprove(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	a, b := rb.submit(t, "a"), rb.submit(t, "b")
	apA := rb.b.Ask(a.ID, "write_file", "write report.md")
	apB1 := rb.b.Ask(b.ID, "bash", "run make")
	apB2 := rb.b.Ask(b.ID, "delete_path", "delete build/")

	code, out, _ := rb.run(t, "approvals")
	if code != 0 || !strings.Contains(out, apA.ID) || !strings.Contains(out, apB2.ID) {
		t.Fatalf("approvals: %d\n%s", code, out)
	}
	if code, out, _ := rb.run(t, "approvals", "--task", a.ID); code != 0 || strings.Contains(out, apB1.ID) || !strings.Contains(out, apA.ID) {
		t.Fatalf("approvals --task: %d\n%s", code, out)
	}

	// A task id with one pending approval names it; flags may follow the id.
	code, out, errOut := rb.run(t, "approve", a.ID, "--scope", "task")
	if got, _ := rb.b.Approval(apA.ID); code != 0 || got.Status != store.ApprovalApproved || got.Scope != "task" || got.By != cliActor {
		t.Fatalf("approve %s: %d %q %q; %+v", a.ID, code, out, errOut, got)
	}
	// Two pending: the person must choose.
	code, _, errOut = rb.run(t, "approve", b.ID)
	if code != ExitUsage || !strings.Contains(errOut, apB1.ID) || !strings.Contains(errOut, apB2.ID) {
		t.Fatalf("approve a task with two: %d %s", code, errOut)
	}
	if code, out, _ := rb.run(t, "approve", "--deny", apB2.ID); code != 0 || !strings.HasPrefix(out, "denied "+apB2.ID) {
		t.Fatalf("deny: %d %q", code, out)
	}
	if got, _ := rb.b.Approval(apB2.ID); got.Status != store.ApprovalDenied {
		t.Fatalf("denied approval: %+v", got)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"approve", apB2.ID}, "already"},
		{[]string{"approve", "nothing-like-it"}, "neither an approval nor a task"},
		{[]string{"approve", a.ID}, "no pending approval"},
		{[]string{"approve", "--scope", "forever", apB1.ID}, "--scope"},
		{[]string{"approve"}, "usage"},
	} {
		if code, _, errOut := rb.run(t, c.args...); code != ExitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: %d %q, want exit 2 saying %q", c.args, code, errOut, c.want)
		}
	}
	if got, _ := rb.b.Approval(apB1.ID); got.Status != store.ApprovalPending {
		t.Fatalf("%s changed by refused commands: %+v", apB1.ID, got)
	}
}

// drive plays a task on the backend once it is submitted: a plan, some text, an approval it
// waits for, then the end.
func drive(t *testing.T, b *servertest.Backend, end task.State) (approvals chan store.Approval) {
	approvals = make(chan store.Approval, 1)
	b.OnSubmit = func(id string) {
		go func() {
			b.SetStatus(id, task.Running)
			b.Emit(id, event.PlanUpdated, map[string]any{"items": []map[string]any{{"id": "1", "title": "Write the report", "status": "in_progress"}}})
			b.Emit(id, event.ModelText, map[string]any{"text": "Writing."})
			ap := b.Ask(id, "write_file", "write report.md")
			approvals <- ap
			deadline := time.Now().Add(20 * time.Second)
			for {
				got, _ := b.Approval(ap.ID)
				tv, _ := b.Task(context.Background(), id)
				if tv.Status.Terminal() {
					return // cancelled meanwhile
				}
				if got.Status != store.ApprovalPending {
					break
				}
				if time.Now().After(deadline) {
					t.Error("the approval was never answered")
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			b.Finish(id, end, "")
		}()
	}
	return approvals
}

func TestRunRemoteDetach(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	st, out, _ := testState(rb.home, strings.NewReader(""))
	c, err := daemonClient(st)
	if err != nil || c == nil {
		t.Fatalf("daemonClient: %v, %v", c, err)
	}
	tk, err := runRemote(st, c, runOptions{prompt: "p", grants: []string{"."}, approvals: "deny"}, true)
	if err != nil || tk.Status != task.Queued || strings.TrimSpace(out.String()) != tk.ID {
		t.Fatalf("detach: %+v, %v, %q", tk, err, out.String())
	}
	st, out, _ = testState(rb.home, strings.NewReader(""))
	tk, err = runRemote(st, c, runOptions{prompt: "p", json: true}, true)
	var body struct{ Task queue.TaskView }
	if err != nil || json.Unmarshal([]byte(out.String()), &body) != nil || body.Task.ID != tk.ID {
		t.Fatalf("detach --json: %v, %q", err, out.String())
	}
	// Bad input is the daemon's to judge, and a usage error here.
	_, err = runRemote(st, c, runOptions{prompt: "p", approvals: "sometimes"}, true)
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "approvals") {
		t.Fatalf("bad approvals: %v", err)
	}
}

// An interactive run: the approval is asked on the terminal, answered "y", resolved through
// the daemon by "cli", and the run returns the completed task.
func TestRunRemoteAsksApprovals(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	approvals := drive(t, rb.b, task.Completed)
	pr, pw := io.Pipe()
	defer pw.Close()
	st, out, errb := testState(rb.home, pr)
	st.Interactive = true
	c, _ := daemonClient(st)
	go func() {
		ap := <-approvals
		waitOutput(t, errb, "Allow? ")
		if !strings.Contains(errb.String(), "keepup wants to: "+ap.Summary) {
			t.Errorf("the question does not say what: %s", errb.String())
		}
		pw.Write([]byte("y\n"))
	}()
	tk, err := runRemote(st, c, runOptions{prompt: "write the report"}, false)
	if err != nil || tk.Status != task.Completed {
		t.Fatalf("runRemote: %+v, %v; stderr %s", tk, err, errb.String())
	}
	aps, _ := rb.b.Approvals(context.Background(), tk.ID, false)
	if len(aps) != 1 || aps[0].Status != store.ApprovalApproved || aps[0].By != cliActor || aps[0].Scope != "call" {
		t.Fatalf("approvals %+v", aps)
	}
	for _, want := range []string{"[>] Write the report", "Writing.", "approval " + aps[0].ID + " approved by cli", "Completed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// A question answered elsewhere (keepup approve in another terminal) is withdrawn.
func TestRunRemoteApprovalAnsweredElsewhere(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	approvals := drive(t, rb.b, task.Completed)
	pr, pw := io.Pipe() // nobody types
	defer pw.Close()
	st, out, errb := testState(rb.home, pr)
	st.Interactive = true
	st.TTY = false
	c, _ := daemonClient(st)
	go func() {
		ap := <-approvals
		waitOutput(t, errb, "Allow? ")
		if code, _, errOut := rb.run(t, "approve", "--deny", ap.ID); code != 0 {
			t.Errorf("approve elsewhere: %d %s", code, errOut)
		}
	}()
	tk, err := runRemote(st, c, runOptions{prompt: "p", json: true}, false)
	if err != nil || tk.Status != task.Completed {
		t.Fatalf("runRemote: %+v, %v", tk, err)
	}
	waitOutput(t, errb, "(answered elsewhere)")
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !json.Valid([]byte(l)) {
			t.Fatalf("--json: a line that is not an event: %q", l)
		}
	}
}

// Non-interactive with --json: the approval is left to 'keepup approve', said on stderr.
func TestRunRemoteNonInteractive(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	approvals := drive(t, rb.b, task.Failed)
	st, _, errb := testState(rb.home, strings.NewReader("y\n"))
	c, _ := daemonClient(st)
	go func() {
		ap := <-approvals
		waitOutput(t, errb, "keepup approve "+ap.ID)
		if _, err := rb.b.Resolve(context.Background(), ap.ID, queue.Decision{Approve: true, By: "api"}); err != nil {
			t.Error(err)
		}
	}()
	tk, err := runRemote(st, c, runOptions{prompt: "p", json: true}, false)
	if err != nil || tk.Status != task.Failed || exitFor(tk).(*exitError).code != ExitFailed {
		t.Fatalf("runRemote: %+v, %v", tk, err)
	}
}

// Interrupting a followed run cancels the task, as in-process.
func TestRunRemoteInterruptCancels(t *testing.T) {
	t.Parallel()
	rb := remoteSetup(t)
	approvals := drive(t, rb.b, task.Completed)
	st, out, errb := testState(rb.home, strings.NewReader(""))
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	st.Context = func() (context.Context, context.CancelFunc) { return ctx, func() {} }
	c, _ := daemonClient(st)
	go func() {
		<-approvals // the task is under way and waits
		waitOutput(t, out, "waiting for approval")
		interrupt()
	}()
	tk, err := runRemote(st, c, runOptions{prompt: "p"}, false)
	if err != nil || tk.Status != task.Cancelled {
		t.Fatalf("runRemote: %+v, %v; stderr %s", tk, err, errb.String())
	}
	if !strings.Contains(errb.String(), "cancelling "+tk.ID) {
		t.Fatalf("stderr %q", errb.String())
	}
}

func TestParseAnywhere(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		pos  string
		deny bool
	}{
		{[]string{"a1", "--deny"}, "a1", true},
		{[]string{"--deny", "a1"}, "a1", true},
		{[]string{"a1"}, "a1", false},
		{[]string{"--", "--deny"}, "--deny", false},
		{[]string{"a1", "--", "-x"}, "a1 -x", false},
	} {
		fs := newFlags("t")
		deny := fs.Bool("deny", false, "")
		pos, err := parseAnywhere(fs, c.args)
		if err != nil || strings.Join(pos, " ") != c.pos || *deny != c.deny {
			t.Errorf("%v: %v %v %v", c.args, pos, *deny, err)
		}
	}
}
