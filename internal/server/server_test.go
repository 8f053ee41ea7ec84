package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/server"
	"github.com/keepup/keepup/internal/server/servertest"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

var _ server.Backend = (*servertest.Backend)(nil)

// testBundle is one daemon on a loopback port and a Unix socket, serving an in-memory backend.
type testBundle struct {
	b      *servertest.Backend
	srv    *server.Server
	token  string
	base   string       // http://127.0.0.1:PORT
	socket string       // Unix socket path
	tcp    *http.Client // over the TCP address
	unix   *http.Client // over the socket
	stop   context.CancelFunc
	done   chan error
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	tb := &testBundle{b: servertest.New(), token: server.NewToken(), done: make(chan error, 1)}
	var err error
	tb.srv, err = server.New(server.Config{Backend: tb.b, Token: tb.token, Logger: slog.New(slog.DiscardHandler), Version: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	server.SetStreamTimings(tb.srv, time.Minute, 200*time.Millisecond)
	tb.socket = filepath.Join(t.TempDir(), "k.sock")
	ls, err := server.Listen(server.ListenConfig{Socket: tb.socket})
	if err != nil {
		t.Fatal(err)
	}
	tb.base = "http://" + ls[0].Addr().String()
	tb.tcp = &http.Client{Timeout: 10 * time.Second}
	tb.unix = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", tb.socket)
		},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	tb.stop = cancel
	go func() { tb.done <- tb.srv.Serve(ctx, ls...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-tb.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
		tb.tcp.CloseIdleConnections()
		tb.unix.CloseIdleConnections()
	})
	return tb
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with the token; hdr holds extra "Name: value" headers (an
// "Authorization: ..." replaces the token, "Authorization:" removes it).
func (tb *testBundle) do(t *testing.T, method, path, body string, hdr ...string) response {
	t.Helper()
	return tb.doWith(t, tb.tcp, method, path, body, hdr...)
}

func (tb *testBundle) doWith(t *testing.T, c *http.Client, method, path, body string, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, tb.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tb.token)
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		if v = strings.TrimSpace(v); v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, data}
}

// want checks the status and decodes the JSON body into v (if not nil).
func (r response) want(t *testing.T, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if v != nil {
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q, want application/json", ct)
		}
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("body %s: %v", r.body, err)
		}
	}
}

// wantError checks an error response: status, code, field, and that the message is one line
// naming the field.
func (r response) wantError(t *testing.T, status int, code, field string) server.ErrorDetail {
	t.Helper()
	var eb server.ErrorBody
	r.want(t, status, &eb)
	e := eb.Error
	if e.Code != code || e.Field != field {
		t.Fatalf("error %+v, want code %q field %q", e, code, field)
	}
	if e.Message == "" || strings.Contains(e.Message, "\n") {
		t.Fatalf("message %q: want one non-empty line", e.Message)
	}
	// A 404 names the id it could not find rather than where the id was.
	if field != "" && code != server.CodeNotFound && !strings.Contains(e.Message, field) {
		t.Fatalf("message %q does not name the field %q", e.Message, field)
	}
	return e
}

func (tb *testBundle) submit(t *testing.T, prompt string) queue.TaskView {
	t.Helper()
	var body struct{ Task queue.TaskView }
	tb.do(t, "POST", "/api/tasks", fmt.Sprintf(`{"prompt": %q}`, prompt)).want(t, 201, &body)
	return body.Task
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg   server.Config
		field string
	}{
		{server.Config{Token: server.NewToken()}, "Backend"},
		{server.Config{Backend: servertest.New()}, "Token"},
		{server.Config{Backend: servertest.New(), Token: "short"}, "Token"},
	} {
		if _, err := server.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("New(%+v): %v, want an error naming %s", c.cfg, err, c.field)
		}
	}
}

func TestEveryEndpointNeedsTheToken(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	routes := append(tb.srv.Routes(), "GET /api/no-such-route", "GET /elsewhere")
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt, " ")
		path = strings.ReplaceAll(path, "{id}", "x")
		for _, auth := range []string{"Authorization:", "Authorization: Bearer wrong", "Authorization: Bearer " + tb.token + "x",
			"Authorization: Basic " + tb.token, "Authorization: " + tb.token} {
			r := tb.do(t, method, path, "", auth)
			r.wantError(t, 401, server.CodeUnauthorized, "Authorization")
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s with %q: no WWW-Authenticate", rt, auth)
			}
		}
	}
	if tb.b.Subscribers("x") != 0 || len(tb.b.Steers("x")) != 0 {
		t.Fatal("an unauthorized request reached the backend")
	}
	// The scheme is case-insensitive.
	tb.do(t, "GET", "/api/health", "", "Authorization: bearer "+tb.token).want(t, 200, nil)
}

func TestHealthOverBothListeners(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	for _, c := range []*http.Client{tb.tcp, tb.unix} {
		var h struct {
			OK      bool
			Version string
		}
		tb.doWith(t, c, "GET", "/api/health", "").want(t, 200, &h)
		if !h.OK || h.Version != "test-1" {
			t.Fatalf("health %+v", h)
		}
	}
	fi, err := os.Stat(tb.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestCreateTask(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var body struct{ Task queue.TaskView }
	r := tb.do(t, "POST", "/api/tasks", `{"prompt": "tidy the notes", "grants": ["/tmp/notes:ro"], "priority": 1, "max_turns": 5}`)
	r.want(t, 201, &body)
	if body.Task.ID == "" || body.Task.Prompt != "tidy the notes" || body.Task.Priority != 1 || body.Task.Status != task.Queued {
		t.Fatalf("task %+v", body.Task)
	}
	if loc := r.header.Get("Location"); loc != "/api/tasks/"+body.Task.ID {
		t.Fatalf("Location %q", loc)
	}

	var sb struct{ Schedule queue.Schedule }
	tb.do(t, "POST", "/api/tasks", `{"prompt": "daily report", "schedule": {"cron": "0 9 * * 1-5", "missed": "run_once"}}`).want(t, 201, &sb)
	if sb.Schedule.ID == "" || sb.Schedule.Cron != "0 9 * * 1-5" || sb.Schedule.Missed != "run_once" || sb.Schedule.Request.Prompt != "daily report" {
		t.Fatalf("schedule %+v", sb.Schedule)
	}
}

func TestCreateTaskBadInput(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.b.GrantRoot = "/srv/allowed"
	big := strings.Repeat("a", queue.MaxPromptBytes+1)
	huge := strings.Repeat("a", 3*queue.MaxPromptBytes)
	for _, c := range []struct {
		name, body string
		status     int
		code       string
		field      string
		msg        string // a part of the message
	}{
		{"malformed", "{\n  \"prompt\": \"x\",\n  oops\n}", 400, server.CodeBadRequest, "", "line 3, column 3"},
		{"truncated", `{"prompt": "x"`, 400, server.CodeBadRequest, "", "ends in the middle"},
		{"empty body", ``, 400, server.CodeBadRequest, "", "empty"},
		{"trailing data", `{"prompt": "x"} {}`, 400, server.CodeBadRequest, "", "after the JSON object"},
		{"not an object", `["x"]`, 400, server.CodeBadRequest, "", "expected a JSON object"},
		{"unknown field", `{"prompt": "x", "promt": "y"}`, 400, server.CodeBadRequest, "promt", "unknown field"},
		{"unknown nested field", `{"prompt": "x", "schedule": {"cron": "@daily", "when": 1}}`, 400, server.CodeBadRequest, "when", "unknown field"},
		{"wrong type", `{"prompt": "x", "priority": "high"}`, 400, server.CodeBadRequest, "priority", "expected an integer"},
		{"wrong nested type", `{"prompt": "x", "schedule": {"cron": 5}}`, 400, server.CodeBadRequest, "schedule.cron", "expected a string"},
		{"empty prompt", `{"prompt": "  "}`, 400, server.CodeBadRequest, "prompt", "empty"},
		{"bad approvals", `{"prompt": "x", "approvals": "always"}`, 400, server.CodeBadRequest, "approvals", "always"},
		{"grant outside", `{"prompt": "x", "grants": ["/srv/allowed/a", "/etc"]}`, 400, server.CodeBadRequest, "grants[1]", "outside"},
		{"bad cron", `{"prompt": "x", "schedule": {"cron": "every day"}}`, 400, server.CodeBadRequest, "schedule.cron", "every day"},
		{"bad missed", `{"prompt": "x", "schedule": {"cron": "@daily", "missed": "all"}}`, 400, server.CodeBadRequest, "schedule.missed", "all"},
		{"oversized prompt", `{"prompt": "` + big + `"}`, 413, server.CodeTooLarge, "prompt", "at most"},
		{"oversized body", `{"prompt": "` + huge + `"}`, 413, server.CodeTooLarge, "prompt", "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := tb.do(t, "POST", "/api/tasks", c.body).wantError(t, c.status, c.code, c.field)
			if !strings.Contains(e.Message, c.msg) {
				t.Fatalf("message %q does not contain %q", e.Message, c.msg)
			}
		})
	}
	ts, _ := tb.b.Tasks(context.Background(), store.TaskFilter{})
	scs, _ := tb.b.Schedules(context.Background())
	if len(ts) != 0 || len(scs) != 0 {
		t.Fatalf("bad input changed something: %d tasks, %d schedules", len(ts), len(scs))
	}
}

func TestListTasks(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	a, b, c := tb.submit(t, "a"), tb.submit(t, "b"), tb.submit(t, "c")
	tb.b.SetStatus(b.ID, task.Running)
	tb.b.Finish(c.ID, task.Completed, "")
	list := func(q string) []string {
		t.Helper()
		var body struct{ Tasks []queue.TaskView }
		tb.do(t, "GET", "/api/tasks"+q, "").want(t, 200, &body)
		ids := []string{}
		for _, tv := range body.Tasks {
			ids = append(ids, tv.ID)
		}
		return ids
	}
	for q, want := range map[string][]string{
		"":                              {c.ID, b.ID, a.ID},
		"?status=running,queued":        {b.ID, a.ID},
		"?status=running&status=queued": {b.ID, a.ID},
		"?status=completed":             {c.ID},
		"?status=failed":                {},
		"?limit=2":                      {c.ID, b.ID},
		"?parent=" + a.ID:               {},
		"?parent=":                      {c.ID, b.ID, a.ID},
	} {
		if got := list(q); !slices.Equal(got, want) {
			t.Errorf("GET /api/tasks%s: %v, want %v", q, got, want)
		}
	}
	for q, field := range map[string]string{
		"?status=done":     "status",
		"?status=running,": "", // an empty item is skipped: no error
		"?limit=0":         "limit",
		"?limit=ten":       "limit",
		"?limit=100000":    "limit",
		"?statuss=running": "statuss",
		"?x=%zz":           "",
	} {
		r := tb.do(t, "GET", "/api/tasks"+q, "")
		if q == "?status=running," {
			r.want(t, 200, nil)
			continue
		}
		r.wantError(t, 400, server.CodeBadRequest, field)
	}
	tb.b.Fail("Tasks", errors.New("disk on fire\n  at line 3"))
	e := tb.do(t, "GET", "/api/tasks", "").wantError(t, 500, server.CodeInternal, "")
	if !strings.Contains(e.Message, "disk on fire") {
		t.Fatalf("message %q", e.Message)
	}
}

func TestGetTask(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	a := tb.submit(t, "a")
	var body struct{ Task queue.TaskView }
	tb.do(t, "GET", "/api/tasks/"+a.ID, "").want(t, 200, &body)
	if body.Task.ID != a.ID || body.Task.Prompt != "a" {
		t.Fatalf("task %+v", body.Task)
	}
	e := tb.do(t, "GET", "/api/tasks/t-nope", "").wantError(t, 404, server.CodeNotFound, "id")
	if !strings.Contains(e.Message, "t-nope") {
		t.Fatalf("message %q does not name the id", e.Message)
	}
}

func TestEventsJSON(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	a := tb.submit(t, "a") // seq 1: task.created
	for i := range 4 {
		tb.b.Emit(a.ID, event.ModelText, map[string]any{"text": strconv.Itoa(i)})
	}
	seqs := func(q string) []int64 {
		t.Helper()
		var body struct{ Events []event.Event }
		tb.do(t, "GET", "/api/tasks/"+a.ID+"/events"+q, "").want(t, 200, &body)
		out := []int64{}
		for _, e := range body.Events {
			out = append(out, e.Seq)
		}
		return out
	}
	if got := seqs(""); !slices.Equal(got, []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("all: %v", got)
	}
	if got := seqs("?after=2&limit=2"); !slices.Equal(got, []int64{3, 4}) {
		t.Fatalf("after=2&limit=2: %v", got)
	}
	if got := seqs("?after=9"); len(got) != 0 {
		t.Fatalf("after=9: %v", got)
	}
	tb.do(t, "GET", "/api/tasks/t-nope/events", "").wantError(t, 404, server.CodeNotFound, "id")
	tb.do(t, "GET", "/api/tasks/"+a.ID+"/events?after=-1", "").wantError(t, 400, server.CodeBadRequest, "after")
	tb.do(t, "GET", "/api/tasks/"+a.ID+"/events?limit=x", "").wantError(t, 400, server.CodeBadRequest, "limit")
	tb.do(t, "GET", "/api/tasks/"+a.ID+"/events?stream=maybe", "").wantError(t, 400, server.CodeBadRequest, "stream")
}

// sse is a minimal reader of an event stream, for checking the server's wire format.
type sse struct {
	resp *http.Response
	rd   *bufio.Reader
}

type sseEvent struct {
	id, typ, data string
	comment       bool
}

func (tb *testBundle) openStream(t *testing.T, ctx context.Context, path string, hdr ...string) *sse {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", tb.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+tb.token)
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: status %d, Content-Type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return &sse{resp: resp, rd: bufio.NewReader(resp.Body)}
}

// next returns the next event or comment; io.EOF when the server closed the stream.
func (s *sse) next() (sseEvent, error) {
	var ev sseEvent
	seen := false
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if seen {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
			return sseEvent{comment: true, data: line}, nil
		case strings.HasPrefix(line, "id: "):
			ev.id, seen = line[4:], true
		case strings.HasPrefix(line, "event: "):
			ev.typ, seen = line[7:], true
		case strings.HasPrefix(line, "data: "):
			ev.data, seen = line[6:], true
		case strings.HasPrefix(line, "retry: "):
		default:
			return ev, fmt.Errorf("unexpected line %q", line)
		}
	}
}

// collect reads events until the stream ends, checking each against its data.
func collect(t *testing.T, s *sse, until func(sseEvent) bool) []int64 {
	t.Helper()
	var seqs []int64
	for {
		ev, err := s.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return seqs
			}
			t.Fatalf("stream: %v", err)
		}
		if ev.comment {
			continue
		}
		var e event.Event
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
			t.Fatalf("data %q: %v", ev.data, err)
		}
		if ev.id != strconv.FormatInt(e.Seq, 10) || ev.typ != e.Type {
			t.Fatalf("id %q event %q for %+v", ev.id, ev.typ, e)
		}
		seqs = append(seqs, e.Seq)
		if until != nil && until(ev) {
			return seqs
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

func TestEventStreamResumesAfterLastEventID(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	a := tb.submit(t, "a") // seq 1
	for range 4 {
		tb.b.Emit(a.ID, event.ModelTurn, map[string]any{}) // seqs 2..5
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	s := tb.openStream(t, ctx, "/api/tasks/"+a.ID+"/events", "Accept: text/event-stream", "Last-Event-ID: 3")
	got := collect(t, s, func(ev sseEvent) bool { return ev.id == "5" })
	if !slices.Equal(got, []int64{4, 5}) {
		t.Fatalf("resumed after 3: %v, want [4 5]", got)
	}
	// Events committed while the stream is open arrive as they come, then task.finished ends it.
	go func() {
		for i := range 20 {
			tb.b.Emit(a.ID, event.ToolOutput, map[string]any{"chunk": strconv.Itoa(i) + "\nline two"})
		}
		tb.b.Finish(a.ID, task.Completed, "") // seqs 26 (status), 27 (finished)
	}()
	got = collect(t, s, nil)
	if !slices.Equal(got, seqRange(6, 27)) {
		t.Fatalf("live events: %v, want 6..27 once each, in order", got)
	}

	// ?stream=1&after= works like the header, and the header wins over after.
	s = tb.openStream(t, ctx, "/api/tasks/"+a.ID+"/events?stream=1&after=20")
	if got := collect(t, s, nil); !slices.Equal(got, seqRange(21, 27)) {
		t.Fatalf("after=20: %v", got)
	}
	s = tb.openStream(t, ctx, "/api/tasks/"+a.ID+"/events?stream=1&after=2", "Last-Event-ID: 25")
	if got := collect(t, s, nil); !slices.Equal(got, []int64{26, 27}) {
		t.Fatalf("Last-Event-ID 25 over after=2: %v", got)
	}
	// Resuming after the end: nothing to send; the stream ends instead of hanging.
	s = tb.openStream(t, ctx, "/api/tasks/"+a.ID+"/events?stream=1", "Last-Event-ID: 27")
	if got := collect(t, s, nil); len(got) != 0 {
		t.Fatalf("after the end: %v", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tb.b.Subscribers(a.ID) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a stream's subscription was not released")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEventStreamErrors(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	a := tb.submit(t, "a")
	tb.do(t, "GET", "/api/tasks/t-nope/events?stream=1", "").wantError(t, 404, server.CodeNotFound, "id")
	tb.do(t, "GET", "/api/tasks/t-nope/events", "", "Accept: text/event-stream").wantError(t, 404, server.CodeNotFound, "id")
	tb.do(t, "GET", "/api/tasks/"+a.ID+"/events?stream=1", "", "Last-Event-ID: seven").wantError(t, 400, server.CodeBadRequest, "Last-Event-ID")
	tb.do(t, "GET", "/api/tasks/"+a.ID+"/events?stream=1&limit=3", "").wantError(t, 400, server.CodeBadRequest, "limit")
	if n := tb.b.Subscribers(a.ID); n != 0 {
		t.Fatalf("%d subscriptions left by refused streams", n)
	}
}

func TestEventStreamKeepAliveAndShutdown(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	server.SetStreamTimings(tb.srv, 30*time.Millisecond, time.Second)
	a := tb.submit(t, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := tb.openStream(t, ctx, "/api/tasks/"+a.ID+"/events?stream=1&after=1")
	ev, err := s.next()
	if err != nil || !ev.comment || ev.data != ": keepalive" {
		t.Fatalf("first thing on an idle stream: %+v, %v; want a keepalive comment", ev, err)
	}
	// Shutting the daemon down ends the stream (the client sees EOF) and Serve returns.
	tb.stop()
	for {
		if _, err := s.next(); err != nil {
			break
		}
	}
	select {
	case err := <-tb.done:
		if err != nil {
			t.Fatal(err)
		}
		tb.done <- nil // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return with a stream open")
	}
}

func TestSteer(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	a := tb.submit(t, "a")
	var body struct{ Steer queue.Steer }
	tb.do(t, "POST", "/api/tasks/"+a.ID+"/steer", `{"message": "use British spelling"}`).want(t, 202, &body)
	if body.Steer.Task != a.ID || body.Steer.Message != "use British spelling" {
		t.Fatalf("steer %+v", body.Steer)
	}
	long := strings.Repeat("x", queue.MaxSteerBytes+1)
	tb.do(t, "POST", "/api/tasks/"+a.ID+"/steer", `{"message": ""}`).wantError(t, 400, server.CodeBadRequest, "message")
	tb.do(t, "POST", "/api/tasks/"+a.ID+"/steer", `{}`).wantError(t, 400, server.CodeBadRequest, "message")
	tb.do(t, "POST", "/api/tasks/"+a.ID+"/steer", `{"message": "`+long+`"}`).wantError(t, 413, server.CodeTooLarge, "message")
	tb.do(t, "POST", "/api/tasks/"+a.ID+"/steer", `{"message": "`+long+long+long+`"}`).wantError(t, 413, server.CodeTooLarge, "message")
	tb.do(t, "POST", "/api/tasks/"+a.ID+"/steer", `{"msg": "x"}`).wantError(t, 400, server.CodeBadRequest, "msg")
	tb.do(t, "POST", "/api/tasks/"+a.ID+"/steer", `{"message": "x"`).wantError(t, 400, server.CodeBadRequest, "")
	tb.do(t, "POST", "/api/tasks/t-nope/steer", `{"message": "x"}`).wantError(t, 404, server.CodeNotFound, "id")
	tb.b.Finish(a.ID, task.Completed, "")
	tb.do(t, "POST", "/api/tasks/"+a.ID+"/steer", `{"message": "x"}`).wantError(t, 409, server.CodeConflict, "")
	if got := tb.b.Steers(a.ID); len(got) != 1 {
		t.Fatalf("stored %d steers, want 1 (bad input must change nothing)", len(got))
	}
}

func TestPauseResumeCancel(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	a := tb.submit(t, "a")
	tb.b.SetStatus(a.ID, task.Running)
	for _, c := range []struct {
		verb string
		want task.State
	}{{"pause", task.Paused}, {"resume", task.Running}, {"cancel", task.Cancelled}} {
		var body struct{ Task queue.TaskView }
		tb.do(t, "POST", "/api/tasks/"+a.ID+"/"+c.verb, "").want(t, 202, &body)
		if body.Task.Status != c.want {
			t.Fatalf("%s: status %s, want %s", c.verb, body.Task.Status, c.want)
		}
	}
	for _, verb := range []string{"pause", "resume", "cancel"} {
		tb.do(t, "POST", "/api/tasks/"+a.ID+"/"+verb, "").wantError(t, 409, server.CodeConflict, "")
		tb.do(t, "POST", "/api/tasks/t-nope/"+verb, "").wantError(t, 404, server.CodeNotFound, "id")
		tb.do(t, "POST", "/api/tasks/"+a.ID+"/"+verb+"?now=1", "").wantError(t, 400, server.CodeBadRequest, "now")
	}
}

func TestApprovals(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	a, b := tb.submit(t, "a"), tb.submit(t, "b")
	ap1 := tb.b.Ask(a.ID, "write_file", "write notes.md")
	ap2 := tb.b.Ask(b.ID, "delete_path", "delete old/")
	ap3 := tb.b.Ask(b.ID, "bash", "run make")
	list := func(q string) []string {
		t.Helper()
		var body struct{ Approvals []store.Approval }
		tb.do(t, "GET", "/api/approvals"+q, "").want(t, 200, &body)
		ids := []string{}
		for _, ap := range body.Approvals {
			ids = append(ids, ap.ID)
		}
		return ids
	}
	if got := list(""); !slices.Equal(got, []string{ap1.ID, ap2.ID, ap3.ID}) {
		t.Fatalf("pending: %v", got)
	}

	var body struct{ Approval store.Approval }
	tb.do(t, "POST", "/api/approvals/"+ap2.ID, `{"decision": "approve", "scope": "task"}`, "X-Keepup-Actor: alice").want(t, 200, &body)
	if body.Approval.Status != store.ApprovalApproved || body.Approval.Scope != "task" || body.Approval.By != "alice" {
		t.Fatalf("approved: %+v", body.Approval)
	}
	tb.do(t, "POST", "/api/approvals/"+ap3.ID, `{"decision": "deny"}`).want(t, 200, &body)
	if body.Approval.Status != store.ApprovalDenied || body.Approval.Scope != "call" || body.Approval.By != "api" {
		t.Fatalf("denied: %+v", body.Approval)
	}

	if got := list(""); !slices.Equal(got, []string{ap1.ID}) {
		t.Fatalf("pending after two answers: %v", got)
	}
	if got := list("?task=" + b.ID + "&all=1"); !slices.Equal(got, []string{ap2.ID, ap3.ID}) {
		t.Fatalf("all of b: %v", got)
	}
	if got := list("?task=" + b.ID); len(got) != 0 {
		t.Fatalf("pending of b: %v", got)
	}
	tb.do(t, "GET", "/api/approvals?task=t-nope", "").wantError(t, 404, server.CodeNotFound, "task")
	tb.do(t, "GET", "/api/approvals?task=", "").wantError(t, 400, server.CodeBadRequest, "task")
	tb.do(t, "GET", "/api/approvals?all=maybe", "").wantError(t, 400, server.CodeBadRequest, "all")

	for _, c := range []struct{ body, field string }{
		{`{"decision": "yes"}`, "decision"},
		{`{}`, "decision"},
		{`{"decision": "approve", "scope": "forever"}`, "scope"},
		{`{"decision": "approve", "why": "x"}`, "why"},
		{`{"decision": "approve"`, ""},
	} {
		tb.do(t, "POST", "/api/approvals/"+ap1.ID, c.body).wantError(t, 400, server.CodeBadRequest, c.field)
	}
	tb.do(t, "POST", "/api/approvals/"+ap1.ID, `{"decision": "approve"}`, "X-Keepup-Actor: "+strings.Repeat("a", 65)).
		wantError(t, 400, server.CodeBadRequest, "X-Keepup-Actor")
	tb.do(t, "POST", "/api/approvals/nope", `{"decision": "approve"}`).wantError(t, 404, server.CodeNotFound, "id")
	tb.do(t, "POST", "/api/approvals/"+ap2.ID, `{"decision": "deny"}`).wantError(t, 409, server.CodeConflict, "")
	if got, _ := tb.b.Approval(ap1.ID); got.Status != store.ApprovalPending {
		t.Fatalf("bad input resolved %s: %+v", ap1.ID, got)
	}
}

func TestSchedules(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	var sb struct{ Schedule queue.Schedule }
	tb.do(t, "POST", "/api/tasks", `{"prompt": "p", "schedule": {"cron": "@hourly"}}`).want(t, 201, &sb)
	var list struct{ Schedules []queue.Schedule }
	tb.do(t, "GET", "/api/schedules", "").want(t, 200, &list)
	if len(list.Schedules) != 1 || list.Schedules[0].ID != sb.Schedule.ID || list.Schedules[0].Missed != "skip" {
		t.Fatalf("schedules %+v", list.Schedules)
	}
	r := tb.do(t, "DELETE", "/api/schedules/"+sb.Schedule.ID, "")
	if r.status != 204 || len(r.body) != 0 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	tb.do(t, "GET", "/api/schedules", "").want(t, 200, &list)
	if len(list.Schedules) != 0 || !strings.Contains(string(tb.do(t, "GET", "/api/schedules", "").body), `"schedules":[]`) {
		t.Fatalf("after delete: %+v", list.Schedules)
	}
	tb.do(t, "DELETE", "/api/schedules/"+sb.Schedule.ID, "").wantError(t, 404, server.CodeNotFound, "id")
}

func TestAuditExport(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	a, b := tb.submit(t, "a"), tb.submit(t, "b")
	tb.b.Emit(b.ID, event.ModelTurn, map[string]any{})
	lines := func(q string) []map[string]any {
		t.Helper()
		r := tb.do(t, "GET", "/api/audit/export"+q, "")
		if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("export: %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
		}
		var out []map[string]any
		for l := range strings.SplitSeq(strings.TrimSpace(string(r.body)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			out = append(out, m)
		}
		return out
	}
	if got := lines(""); len(got) != 3 {
		t.Fatalf("all: %v", got)
	}
	if got := lines("?task=" + b.ID); len(got) != 2 || got[0]["task"] != b.ID {
		t.Fatalf("task b: %v", got)
	}
	_ = a
	tb.do(t, "GET", "/api/audit/export?task=t-nope", "").wantError(t, 404, server.CodeNotFound, "task")
	tb.do(t, "GET", "/api/audit/export?task=", "").wantError(t, 400, server.CodeBadRequest, "task")
	tb.b.Fail("AuditExport", errors.New("chain unreadable"))
	tb.do(t, "GET", "/api/audit/export", "").wantError(t, 500, server.CodeInternal, "")
}

func TestUnknownRouteAndWrongMethod(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.do(t, "GET", "/api/nope", "").wantError(t, 404, server.CodeNotFound, "")
	tb.do(t, "GET", "/", "").wantError(t, 404, server.CodeNotFound, "")
	tb.do(t, "GET", "/api/tasks/a/b/c", "").wantError(t, 404, server.CodeNotFound, "")
	r := tb.do(t, "DELETE", "/api/tasks", "")
	r.wantError(t, 405, server.CodeMethodNotAllowed, "")
	if allow := r.header.Get("Allow"); allow != "POST, GET, HEAD" {
		t.Fatalf("Allow %q", allow)
	}
	tb.do(t, "GET", "/api/tasks/x/steer", "").wantError(t, 405, server.CodeMethodNotAllowed, "")
	tb.do(t, "PUT", "/api/health", "").wantError(t, 405, server.CodeMethodNotAllowed, "")
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	r := tb.do(t, "GET", "/api/openapi.json", "")
	var doc map[string]any
	r.want(t, 200, &doc)
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi %v", doc["openapi"])
	}
	var documented []string
	for path, item := range doc["paths"].(map[string]any) {
		for method := range item.(map[string]any) {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(documented)
	if routes := tb.srv.Routes(); !slices.Equal(routes, documented) {
		t.Fatalf("routes and OpenAPI paths differ:\nroutes:     %v\ndocumented: %v", routes, documented)
	}
	// Every $ref points at something.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				var target any = doc
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := target.(map[string]any)
					target = m[part]
				}
				if target == nil {
					t.Errorf("dangling $ref %s", ref)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
}

func TestListenRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.10:7777", "example.com:80"} {
		ls, err := server.Listen(server.ListenConfig{Addr: addr})
		if err == nil {
			for _, l := range ls {
				l.Close()
			}
			t.Errorf("Listen(%q) succeeded", addr)
			continue
		}
		if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Listen(%q): %v; want an error naming the address", addr, err)
		}
	}
	for _, addr := range []string{"", "127.0.0.1:0", "localhost:0"} {
		ls, err := server.Listen(server.ListenConfig{Addr: addr})
		if err != nil {
			t.Errorf("Listen(%q): %v", addr, err)
			continue
		}
		if ip := ls[0].Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
			t.Errorf("Listen(%q) listens on %v", addr, ip)
		}
		ls[0].Close()
	}
	ls, err := server.Listen(server.ListenConfig{Addr: "0.0.0.0:0", AllowNonLoopback: true})
	if err != nil {
		t.Fatalf("allowed non-loopback: %v", err)
	}
	ls[0].Close()
}

func TestListenSocket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := filepath.Join(dir, "k.sock")

	// A live socket is left alone.
	ls, err := server.Listen(server.ListenConfig{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Listen(server.ListenConfig{Socket: sock}); err == nil || !strings.Contains(err.Error(), "listening") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	// A stale one (its listener gone, the file left) is replaced.
	ul := ls[1].(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	ls[0].Close()
	ls[1].Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the stale socket should still be there: %v", err)
	}
	ls, err = server.Listen(server.ListenConfig{Socket: sock})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	for _, l := range ls {
		l.Close()
	}
	// A file that is not a socket is never removed.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := server.Listen(server.ListenConfig{Socket: file}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen on a regular file: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal("the regular file was removed")
	}
	long := filepath.Join(dir, strings.Repeat("s", 120))
	if _, err := server.Listen(server.ListenConfig{Socket: long}); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Fatalf("Listen on a long path: %v", err)
	}
}

func TestDaemonInfo(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	if _, err := server.ReadDaemonInfo(home); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	in := server.Info{PID: os.Getpid(), Addr: "127.0.0.1:1234", Socket: "/x.sock", Token: server.NewToken(), Version: "v", Started: time.Now().UTC().Truncate(time.Second)}
	if err := server.WriteDaemonInfo(home, in); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(home, server.DaemonInfoFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("daemon.json: %v, %v; want mode 0600", fi.Mode(), err)
	}
	out, err := server.ReadDaemonInfo(home)
	if err != nil || *out != in {
		t.Fatalf("read back %+v, %v; want %+v", out, err, in)
	}
	entries, _ := os.ReadDir(home)
	if len(entries) != 1 {
		t.Fatalf("files left in home: %v", entries)
	}
	// Another process's file stays; ours goes.
	other := in
	other.PID = os.Getpid() + 1
	server.WriteDaemonInfo(home, other)
	if err := server.RemoveDaemonInfo(home); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ReadDaemonInfo(home); err != nil {
		t.Fatalf("another daemon's file was removed: %v", err)
	}
	server.WriteDaemonInfo(home, in)
	if err := server.RemoveDaemonInfo(home); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ReadDaemonInfo(home); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after remove: %v", err)
	}
	if err := server.RemoveDaemonInfo(home); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
	os.WriteFile(filepath.Join(home, server.DaemonInfoFile), []byte("{"), 0o600)
	if _, err := server.ReadDaemonInfo(home); err == nil || !strings.Contains(err.Error(), server.DaemonInfoFile) {
		t.Fatalf("malformed file: %v", err)
	}
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	a, b := server.NewToken(), server.NewToken()
	if len(a) != 64 || strings.Trim(a, "0123456789abcdef") != "" || a == b {
		t.Fatalf("tokens %q %q", a, b)
	}
}

// The in-memory backend is for tests only: no program may serve it.
func TestServertestOnlyInTests(t *testing.T) {
	t.Parallel()
	const pkg = `"github.com/keepup/keepup/internal/server/servertest"`
	n := 0
	err := filepath.WalkDir("../..", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		n++
		data, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(data), pkg) {
			t.Errorf("%s imports servertest", p)
		}
		return err
	})
	if err != nil || n < 50 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}

// TestOpenAPITaskSchema: the Task schema names every field a task has on the wire (it forbids
// any other), so the document does not drift from queue.TaskView.
func TestOpenAPITaskSchema(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]any `json:"properties"`
				Required   []string       `json:"required"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	schema := doc.Components.Schemas["Task"]
	now := time.Now()
	full := queue.TaskView{Task: task.Task{ID: "t", Session: "s", Parent: "p", Prompt: "x", Status: task.Running, Plan: task.Plan{{ID: "1", Title: "a", Status: task.Pending}},
		Summary: "s", Error: "e", Model: "m", Approvals: "ask", Grants: []task.Grant{{Name: "w", Path: "/w", Mode: "rw"}}, Outputs: "/o", Turns: 1,
		CreatedAt: now, UpdatedAt: now, Options: task.Options{Priority: 1, MaxTurns: 2, Depth: 1, Tools: []string{"read_file"}, Call: "c", Title: "t",
			Held: true, Schedule: "s-1", Slot: now}}, Children: []string{"t.1"}}
	raw, _ := json.Marshal(full)
	var wire map[string]any
	json.Unmarshal(raw, &wire)
	for k := range wire {
		if _, ok := schema.Properties[k]; !ok {
			t.Errorf("a task's field %q is not in the Task schema", k)
		}
	}
	raw, _ = json.Marshal(queue.TaskView{Task: task.Task{ID: "t", Status: task.Queued}})
	var bare map[string]any
	json.Unmarshal(raw, &bare)
	for _, k := range schema.Required {
		if _, ok := bare[k]; !ok {
			t.Errorf("the Task schema requires %q, which a task without it omits", k)
		}
	}
}
