package server

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// Limits of request bodies. A JSON string can take up to twice its bytes and more when escaped;
// the bodies leave room for that, and the decoded fields are then checked exactly.
const (
	maxTaskBody     = 2*queue.MaxPromptBytes + 64<<10
	maxSteerBody    = 2*queue.MaxSteerBytes + 4<<10
	maxDecisionBody = 4 << 10

	defaultTaskLimit  = 100
	maxTaskLimit      = 1000
	defaultEventLimit = 1000
	maxEventLimit     = 10000
	maxActorLen       = 64
)

// ActorHeader names who answers an approval, for the audit; without it the answer is "api"'s.
const ActorHeader = "X-Keepup-Actor"

//go:embed openapi.json
var openAPIDoc []byte

// Response bodies.
type (
	taskBody struct {
		Task *queue.TaskView `json:"task"`
	}
	tasksBody struct {
		Tasks []queue.TaskView `json:"tasks"`
	}
	scheduleBody struct {
		Schedule *queue.Schedule `json:"schedule"`
	}
	schedulesBody struct {
		Schedules []queue.Schedule `json:"schedules"`
	}
	eventsBody struct {
		Events []event.Event `json:"events"`
	}
	steerBody struct {
		Steer *queue.Steer `json:"steer"`
	}
	approvalBody struct {
		Approval *store.Approval `json:"approval"`
	}
	approvalsBody struct {
		Approvals []store.Approval `json:"approvals"`
	}
	healthBody struct {
		OK      bool   `json:"ok"`
		Version string `json:"version"`
	}
)

// Request bodies other than queue.TaskRequest.
type (
	// SteerRequest is the body of POST /api/tasks/{id}/steer.
	SteerRequest struct {
		Message string `json:"message"`
	}
	// DecisionRequest is the body of POST /api/approvals/{id}.
	DecisionRequest struct {
		Decision string `json:"decision"`        // approve | deny
		Scope    string `json:"scope,omitempty"` // call (default) | task
	}
)

func (s *Server) createTask(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	var req queue.TaskRequest
	if err := decodeBody(w, r, maxTaskBody, "prompt", &req); err != nil {
		return err
	}
	if len(req.Prompt) > queue.MaxPromptBytes {
		return tooLarge("prompt", "prompt: %d bytes, at most %d are allowed", len(req.Prompt), queue.MaxPromptBytes)
	}
	if req.Schedule != nil {
		sc, err := s.b.AddSchedule(r.Context(), req)
		if err != nil {
			return fromBackend(err, "", "", "")
		}
		writeJSON(w, http.StatusCreated, scheduleBody{sc})
		return nil
	}
	tv, err := s.b.Submit(r.Context(), req)
	if err != nil {
		return fromBackend(err, "", "", "")
	}
	w.Header().Set("Location", "/api/tasks/"+url.PathEscape(tv.ID))
	writeJSON(w, http.StatusCreated, taskBody{tv})
	return nil
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "status", "limit", "parent")
	if err != nil {
		return err
	}
	var f store.TaskFilter
	for _, v := range q["status"] {
		for st := range strings.SplitSeq(v, ",") {
			st = strings.TrimSpace(st)
			if st == "" {
				continue
			}
			if !task.State(st).Valid() {
				return badRequest("status", "status: %q is not a task state (one of %s)", st, states())
			}
			f.Status = append(f.Status, task.State(st))
		}
	}
	limit, err := intParam(q, "limit", defaultTaskLimit, 1, maxTaskLimit)
	if err != nil {
		return err
	}
	f.Limit = int(limit)
	if q.Has("parent") {
		p := q.Get("parent")
		f.Parent = &p
	}
	ts, err := s.b.Tasks(r.Context(), f)
	if err != nil {
		return fromBackend(err, "", "", "")
	}
	if ts == nil {
		ts = []queue.TaskView{}
	}
	writeJSON(w, http.StatusOK, tasksBody{ts})
	return nil
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	tv, err := s.b.Task(r.Context(), id)
	if err != nil {
		return fromBackend(err, "id", "task", id)
	}
	writeJSON(w, http.StatusOK, taskBody{tv})
	return nil
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "after", "limit", "stream")
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	after, err := intParam(q, "after", 0, 0, -1)
	if err != nil {
		return err
	}
	stream, err := boolParam(q, "stream")
	if err != nil {
		return err
	}
	if stream || acceptsEventStream(r) {
		if q.Has("limit") {
			return badRequest("limit", "limit: not taken by a stream (it ends after task.finished)")
		}
		if h := r.Header.Get("Last-Event-ID"); h != "" {
			n, err := strconv.ParseInt(strings.TrimSpace(h), 10, 64)
			if err != nil || n < 0 {
				return badRequest("Last-Event-ID", "Last-Event-ID: %q is not an event seq (a number from 0 up)", h)
			}
			after = n
		}
		return s.stream(w, r, id, after)
	}
	limit, err := intParam(q, "limit", defaultEventLimit, 1, maxEventLimit)
	if err != nil {
		return err
	}
	if _, err := s.b.Task(r.Context(), id); err != nil {
		return fromBackend(err, "id", "task", id)
	}
	evs, err := s.b.Events(r.Context(), id, after, int(limit))
	if err != nil {
		return fromBackend(err, "id", "task", id)
	}
	if evs == nil {
		evs = []event.Event{}
	}
	writeJSON(w, http.StatusOK, eventsBody{evs})
	return nil
}

func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}

func (s *Server) steer(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	var req SteerRequest
	if err := decodeBody(w, r, maxSteerBody, "message", &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Message) == "" {
		return badRequest("message", "message: empty; say what the task should do")
	}
	if len(req.Message) > queue.MaxSteerBytes {
		return tooLarge("message", "message: %d bytes, at most %d are allowed", len(req.Message), queue.MaxSteerBytes)
	}
	st, err := s.b.Steer(r.Context(), id, req.Message)
	if err != nil {
		return fromBackend(err, "id", "task", id)
	}
	writeJSON(w, http.StatusAccepted, steerBody{st})
	return nil
}

// control serves pause, resume and cancel: each asks the backend and answers with the task.
func (s *Server) control(op func(Backend, context.Context, string) (*queue.TaskView, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := query(r); err != nil {
			return err
		}
		id := r.PathValue("id")
		tv, err := op(s.b, r.Context(), id)
		if err != nil {
			return fromBackend(err, "id", "task", id)
		}
		writeJSON(w, http.StatusAccepted, taskBody{tv})
		return nil
	}
}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "task", "all")
	if err != nil {
		return err
	}
	all, err := boolParam(q, "all")
	if err != nil {
		return err
	}
	id := q.Get("task")
	if q.Has("task") {
		if id == "" {
			return badRequest("task", "task: empty; give a task id or leave the parameter out")
		}
		if _, err := s.b.Task(r.Context(), id); err != nil {
			return fromBackend(err, "task", "task", id)
		}
	}
	as, err := s.b.Approvals(r.Context(), id, !all)
	if err != nil {
		return fromBackend(err, "task", "task", id)
	}
	if as == nil {
		as = []store.Approval{}
	}
	writeJSON(w, http.StatusOK, approvalsBody{as})
	return nil
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	var req DecisionRequest
	if err := decodeBody(w, r, maxDecisionBody, "", &req); err != nil {
		return err
	}
	d := queue.Decision{By: "api"}
	switch req.Decision {
	case "approve":
		d.Approve = true
	case "deny":
	case "":
		return badRequest("decision", `decision: missing; "approve" or "deny"`)
	default:
		return badRequest("decision", `decision: %q is not "approve" or "deny"`, req.Decision)
	}
	switch req.Scope {
	case "", "call":
		d.Scope = "call"
	case "task":
		d.Scope = "task"
	default:
		return badRequest("scope", `scope: %q is not "call" (this call only) or "task" (the rest of the task)`, req.Scope)
	}
	if actor := r.Header.Get(ActorHeader); actor != "" {
		if err := checkActor(actor); err != nil {
			return err
		}
		d.By = actor
	}
	a, err := s.b.Resolve(r.Context(), id, d)
	if err != nil {
		return fromBackend(err, "id", "approval", id)
	}
	writeJSON(w, http.StatusOK, approvalBody{a})
	return nil
}

func checkActor(a string) error {
	if !utf8.ValidString(a) || utf8.RuneCountInString(a) > maxActorLen || strings.TrimSpace(a) != a {
		return badRequest(ActorHeader, "%s: at most %d characters of valid UTF-8, without leading or trailing space", ActorHeader, maxActorLen)
	}
	for _, c := range a {
		if !unicode.IsPrint(c) {
			return badRequest(ActorHeader, "%s: contains an unprintable character %U", ActorHeader, c)
		}
	}
	return nil
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	scs, err := s.b.Schedules(r.Context())
	if err != nil {
		return fromBackend(err, "", "", "")
	}
	if scs == nil {
		scs = []queue.Schedule{}
	}
	writeJSON(w, http.StatusOK, schedulesBody{scs})
	return nil
}

func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := s.b.DeleteSchedule(r.Context(), id); err != nil {
		return fromBackend(err, "id", "schedule", id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "task")
	if err != nil {
		return err
	}
	id := q.Get("task")
	if q.Has("task") {
		if id == "" {
			return badRequest("task", "task: empty; give a task id or leave the parameter out")
		}
		if _, err := s.b.Task(r.Context(), id); err != nil {
			return fromBackend(err, "task", "task", id)
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	cw := &countingWriter{w: w}
	if err := s.b.AuditExport(r.Context(), id, cw); err != nil {
		if cw.n == 0 {
			return fromBackend(err, "task", "task", id)
		}
		// Part of the export is out: cutting the connection is the only way left to tell the
		// client that it is incomplete.
		if r.Context().Err() == nil {
			s.log.Error("audit export failed midway", "task", id, "bytes", cw.n, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
	if cw.n == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, healthBody{OK: true, Version: s.version})
	return nil
}

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDoc)
	return nil
}

// query returns r's query parameters after checking that it names only allowed ones.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("", "query string: %v", err)
	}
	var unknown []string
	for k := range q {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		known := "none"
		if len(allowed) > 0 {
			known = strings.Join(allowed, ", ")
		}
		return nil, badRequest(unknown[0], "%s: unknown query parameter (known here: %s)", unknown[0], known)
	}
	return q, nil
}

// intParam parses an integer query parameter between lo and hi (hi < 0: no upper bound).
func intParam(q url.Values, name string, def, lo, hi int64) (int64, error) {
	if !q.Has(name) {
		return def, nil
	}
	v := q.Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange), err == nil && (n < lo || hi >= 0 && n > hi):
		if hi < 0 {
			return 0, badRequest(name, "%s: %s is out of range (%d or more)", name, v, lo)
		}
		return 0, badRequest(name, "%s: %s is out of range (%d to %d)", name, v, lo, hi)
	case err != nil:
		return 0, badRequest(name, "%s: %q is not an integer", name, v)
	}
	return n, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	switch v := q.Get(name); strings.ToLower(v) {
	case "", "0", "false", "no":
		return false, nil
	case "1", "true", "yes":
		return true, nil
	default:
		return false, badRequest(name, "%s: %q is not 1 or 0 (true or false)", name, v)
	}
}

func states() string {
	var s []string
	for _, st := range task.States {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}
