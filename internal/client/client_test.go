package client_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/client"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/server"
	"github.com/keepup/keepup/internal/server/servertest"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// daemon is a real server on a loopback port and a Unix socket in home, with daemon.json
// written, over an in-memory backend.
type daemon struct {
	info   server.Info
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startDaemon(t *testing.T, b *servertest.Backend, home string) *daemon {
	t.Helper()
	token := server.NewToken()
	srv, err := server.New(server.Config{Backend: b, Token: token, Logger: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(home, "keepup.sock")
	ls, err := server.Listen(server.ListenConfig{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{done: make(chan error, 1)}
	d.info = server.Info{PID: os.Getpid(), Addr: ls[0].Addr().String(), Socket: sock, Token: token, Version: "test", Started: time.Now()}
	if err := server.WriteDaemonInfo(home, d.info); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- srv.Serve(ctx, ls...) }()
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	return d
}

// stop shuts the daemon down and waits for it; daemon.json stays, as after a crash.
func (d *daemon) stop() error {
	var err error
	d.once.Do(func() {
		d.cancel()
		select {
		case err = <-d.done:
		case <-time.After(15 * time.Second):
			err = errors.New("Serve did not return")
		}
	})
	return err
}

type testBundle struct {
	home string
	b    *servertest.Backend
	d    *daemon
	c    *client.Client
	ctx  context.Context
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	tb := &testBundle{home: t.TempDir(), b: servertest.New()}
	tb.d = startDaemon(t, tb.b, tb.home)
	var err error
	tb.c, err = client.Discover(tb.home)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	tb.ctx = ctx
	return tb
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	if c, err := client.Discover(home); c != nil || !errors.Is(err, client.ErrNoDaemon) {
		t.Fatalf("no daemon.json: %v, %v", c, err)
	}
	b := servertest.New()
	d := startDaemon(t, b, home)
	c, err := client.Discover(home)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Where(), "unix socket") {
		t.Fatalf("Discover chose %s; the socket is preferred", c.Where())
	}
	if v, err := c.Health(context.Background()); err != nil || v != "test" {
		t.Fatalf("health: %q, %v", v, err)
	}

	// Without the socket, the TCP address.
	info := d.info
	info.Socket = filepath.Join(home, "gone.sock")
	server.WriteDaemonInfo(home, info)
	if c, err = client.Discover(home); err != nil || c.Where() != info.Addr {
		t.Fatalf("socket gone: %v, %v", c, err)
	}
	// A token that does not open this daemon: not ours.
	info = d.info
	info.Token = server.NewToken()
	server.WriteDaemonInfo(home, info)
	if c, err := client.Discover(home); c != nil || !errors.Is(err, client.ErrNoDaemon) {
		t.Fatalf("wrong token: %v, %v", c, err)
	}
	// A corrupt file: no daemon to use, and the message says why.
	os.WriteFile(filepath.Join(home, server.DaemonInfoFile), []byte("{not json"), 0o600)
	if c, err := client.Discover(home); c != nil || !errors.Is(err, client.ErrNoDaemon) || !strings.Contains(err.Error(), server.DaemonInfoFile) {
		t.Fatalf("corrupt file: %v, %v", c, err)
	}
	// The file of a daemon that died: nothing answers.
	server.WriteDaemonInfo(home, d.info)
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if c, err := client.Discover(home); c != nil || !errors.Is(err, client.ErrNoDaemon) {
		t.Fatalf("stale file: %v, %v", c, err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("Discover took %v to find nothing", time.Since(start))
	}
}

func TestCalls(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	ctx := tb.ctx
	tv, err := tb.c.Submit(ctx, queue.TaskRequest{Prompt: "tidy", Grants: []string{"/tmp/a:ro"}, Priority: 3})
	if err != nil || tv.ID == "" || tv.Priority != 3 {
		t.Fatalf("Submit: %+v, %v", tv, err)
	}
	tv2, _ := tb.c.Submit(ctx, queue.TaskRequest{Prompt: "second"})
	tb.b.SetStatus(tv2.ID, task.Running)

	got, err := tb.c.Task(ctx, tv.ID)
	if err != nil || got.Prompt != "tidy" {
		t.Fatalf("Task: %+v, %v", got, err)
	}
	ts, err := tb.c.Tasks(ctx, store.TaskFilter{Status: []task.State{task.Running}, Limit: 5})
	if err != nil || len(ts) != 1 || ts[0].ID != tv2.ID {
		t.Fatalf("Tasks running: %+v, %v", ts, err)
	}
	root := ""
	if ts, err = tb.c.Tasks(ctx, store.TaskFilter{Parent: &root}); err != nil || len(ts) != 2 {
		t.Fatalf("Tasks top-level: %+v, %v", ts, err)
	}
	evs, err := tb.c.Events(ctx, tv2.ID, 1, 0)
	if err != nil || len(evs) != 1 || evs[0].Type != event.TaskStatus {
		t.Fatalf("Events after 1: %+v, %v", evs, err)
	}

	st, err := tb.c.Steer(ctx, tv2.ID, "shorter, please")
	if err != nil || st.Message != "shorter, please" || len(tb.b.Steers(tv2.ID)) != 1 {
		t.Fatalf("Steer: %+v, %v", st, err)
	}
	if tv, err := tb.c.Pause(ctx, tv2.ID); err != nil || tv.Status != task.Paused {
		t.Fatalf("Pause: %+v, %v", tv, err)
	}
	if tv, err := tb.c.Resume(ctx, tv2.ID); err != nil || tv.Status != task.Running {
		t.Fatalf("Resume: %+v, %v", tv, err)
	}

	ap := tb.b.Ask(tv2.ID, "write_file", "write a.md")
	aps, err := tb.c.Approvals(ctx, "", true)
	if err != nil || len(aps) != 1 || aps[0].ID != ap.ID {
		t.Fatalf("Approvals: %+v, %v", aps, err)
	}
	res, err := tb.c.Resolve(ctx, ap.ID, queue.Decision{Approve: true, Scope: "task", By: "cli"})
	if err != nil || res.Status != store.ApprovalApproved || res.By != "cli" || res.Scope != "task" {
		t.Fatalf("Resolve: %+v, %v", res, err)
	}
	if aps, _ := tb.c.Approvals(ctx, tv2.ID, true); len(aps) != 0 {
		t.Fatalf("pending after resolve: %+v", aps)
	}
	if aps, _ := tb.c.Approvals(ctx, tv2.ID, false); len(aps) != 1 {
		t.Fatalf("all after resolve: %+v", aps)
	}

	if tv, err := tb.c.Cancel(ctx, tv2.ID); err != nil || tv.Status != task.Cancelled {
		t.Fatalf("Cancel: %+v, %v", tv, err)
	}

	sc, err := tb.c.AddSchedule(ctx, queue.TaskRequest{Prompt: "nightly", Schedule: &queue.ScheduleSpec{Cron: "0 3 * * *"}})
	if err != nil || sc.Cron != "0 3 * * *" {
		t.Fatalf("AddSchedule: %+v, %v", sc, err)
	}
	if scs, err := tb.c.Schedules(ctx); err != nil || len(scs) != 1 {
		t.Fatalf("Schedules: %+v, %v", scs, err)
	}
	if err := tb.c.DeleteSchedule(ctx, sc.ID); err != nil {
		t.Fatal(err)
	}
	if scs, _ := tb.c.Schedules(ctx); len(scs) != 0 {
		t.Fatalf("after DeleteSchedule: %+v", scs)
	}

	var buf bytes.Buffer
	if err := tb.c.AuditExport(ctx, tv.ID, &buf); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), tv.ID) {
		t.Fatalf("AuditExport of %s: %q", tv.ID, buf.String())
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	_, err := tb.c.AddSchedule(tb.ctx, queue.TaskRequest{Prompt: "x", Schedule: &queue.ScheduleSpec{Cron: "tomorrow"}})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "bad_request" || ae.Field != "schedule.cron" || !strings.Contains(ae.Error(), "tomorrow") {
		t.Fatalf("bad cron: %#v", err)
	}
	_, err = tb.c.Task(tb.ctx, "t-nope")
	if !errors.As(err, &ae) || ae.Status != 404 || !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("unknown task: %#v", err)
	}
	if _, err := tb.c.Steer(tb.ctx, "t-nope", "x"); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("steer unknown: %v", err)
	}
	if err := tb.c.AuditExport(tb.ctx, "t-nope", &bytes.Buffer{}); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("export unknown: %v", err)
	}
	if err := tb.c.Follow(tb.ctx, "t-nope", 0, func(event.Event) error { return nil }); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("follow unknown: %v", err)
	}
	c, _ := client.New(client.Config{Addr: tb.d.info.Addr, Token: "wrong-token-wrong-token"})
	if _, err := c.Health(tb.ctx); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("wrong token: %v", err)
	}
}

// follow runs Follow in the background and returns what it delivered once it ends.
func follow(ctx context.Context, c *client.Client, id string, after int64) func() ([]int64, error) {
	var seqs []int64
	done := make(chan error, 1)
	go func() {
		done <- c.Follow(ctx, id, after, func(e event.Event) error {
			seqs = append(seqs, e.Seq)
			return nil
		})
	}()
	return func() ([]int64, error) {
		select {
		case err := <-done:
			return seqs, err
		case <-ctx.Done():
			return seqs, ctx.Err()
		}
	}
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestFollow(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tv, _ := tb.c.Submit(tb.ctx, queue.TaskRequest{Prompt: "x"}) // seq 1
	tb.b.Emit(tv.ID, event.ModelTurn, map[string]any{})          // seq 2
	wait := follow(tb.ctx, tb.c, tv.ID, 1)
	for range 10 {
		tb.b.Emit(tv.ID, event.ModelText, map[string]any{"text": "line\nline"})
	}
	tb.b.Finish(tv.ID, task.Completed, "") // seqs 13, 14
	got, err := wait()
	if err != nil || !slices.Equal(got, seqRange(2, 14)) {
		t.Fatalf("Follow: %v, %v; want 2..14", got, err)
	}

	// An error from fn ends Follow with it.
	stop := errors.New("enough")
	n := 0
	err = tb.c.Follow(tb.ctx, tv.ID, 0, func(event.Event) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("fn's error: %v after %d events", err, n)
	}
}

// A task that ended without a task.finished event (a journal cut short): Follow delivers what
// there is and returns instead of waiting forever.
func TestFollowEndedWithoutFinished(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tv, _ := tb.c.Submit(tb.ctx, queue.TaskRequest{Prompt: "x"})
	tb.b.SetStatus(tv.ID, task.Failed) // seq 2, no task.finished
	got, err := follow(tb.ctx, tb.c, tv.ID, 0)()
	if err != nil || !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("Follow: %v, %v", got, err)
	}
}

// The daemon goes down mid-stream and a new one (new token, new port, same socket path, same
// store) comes up: Follow reconnects through daemon.json and delivers every event once.
func TestFollowAcrossDaemonRestart(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.c.ReconnectFor = 20 * time.Second
	tv, _ := tb.c.Submit(tb.ctx, queue.TaskRequest{Prompt: "x"}) // seq 1
	var mu sync.Mutex
	var seqs []int64
	seen := make(chan int64, 100)
	done := make(chan error, 1)
	go func() {
		done <- tb.c.Follow(tb.ctx, tv.ID, 0, func(e event.Event) error {
			mu.Lock()
			seqs = append(seqs, e.Seq)
			mu.Unlock()
			seen <- e.Seq
			return nil
		})
	}()
	for range 4 {
		tb.b.Emit(tv.ID, event.ModelTurn, map[string]any{}) // seqs 2..5
	}
	waitFor(t, seen, 5)

	if err := tb.d.stop(); err != nil {
		t.Fatal(err)
	}
	// While it is down, the task goes on (as the queue would after a restart).
	for range 3 {
		tb.b.Emit(tv.ID, event.ModelTurn, map[string]any{}) // seqs 6..8
	}
	time.Sleep(300 * time.Millisecond) // let Follow fail to reconnect at least once
	startDaemon(t, tb.b, tb.home)
	waitFor(t, seen, 8)
	tb.b.Finish(tv.ID, task.Completed, "") // seqs 9, 10
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-tb.ctx.Done():
		t.Fatal("Follow did not end")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seqs, seqRange(1, 10)) {
		t.Fatalf("events %v, want 1..10 once each", seqs)
	}
}

func waitFor(t *testing.T, seen <-chan int64, seq int64) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case s := <-seen:
			if s >= seq {
				return
			}
		case <-timeout:
			t.Fatalf("event %d never came", seq)
		}
	}
}

// Without a daemon, Follow gives up after ReconnectFor with an error saying so.
func TestFollowGivesUp(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.c.ReconnectFor = 500 * time.Millisecond
	tv, _ := tb.c.Submit(tb.ctx, queue.TaskRequest{Prompt: "x"})
	wait := follow(tb.ctx, tb.c, tv.ID, 0)
	time.Sleep(100 * time.Millisecond)
	tb.d.stop()
	got, err := wait()
	if err == nil || !strings.Contains(err.Error(), "cannot be reached") || !slices.Equal(got, []int64{1}) {
		t.Fatalf("Follow: %v, %v", got, err)
	}
}
