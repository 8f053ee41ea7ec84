package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/store"
)

// Backend is what the server serves; *queue.Queue implements it.
type Backend interface {
	Submit(ctx context.Context, req queue.TaskRequest) (*queue.TaskView, error)
	AddSchedule(ctx context.Context, req queue.TaskRequest) (*queue.Schedule, error)
	Schedules(ctx context.Context) ([]queue.Schedule, error)
	DeleteSchedule(ctx context.Context, id string) error
	Task(ctx context.Context, id string) (*queue.TaskView, error)
	Tasks(ctx context.Context, f store.TaskFilter) ([]queue.TaskView, error)
	Events(ctx context.Context, id string, after int64, limit int) ([]event.Event, error)
	// Subscribe returns a channel that receives a value (coalesced, buffered 1) after new events
	// of task id are committed; cancel releases it.
	Subscribe(id string) (notify <-chan struct{}, cancel func())
	Steer(ctx context.Context, id, message string) (*queue.Steer, error)
	Pause(ctx context.Context, id string) (*queue.TaskView, error)
	Resume(ctx context.Context, id string) (*queue.TaskView, error)
	Cancel(ctx context.Context, id string) (*queue.TaskView, error)
	Approvals(ctx context.Context, taskID string, pendingOnly bool) ([]store.Approval, error)
	Resolve(ctx context.Context, approvalID string, d queue.Decision) (*store.Approval, error)
	AuditExport(ctx context.Context, taskID string, w io.Writer) error
}

// Config configures a Server.
type Config struct {
	// Backend serves the requests. Required.
	Backend Backend
	// Token is the bearer token every request must carry. Required; at least 16 characters
	// (NewToken makes one).
	Token string
	// Logger receives failures the client cannot be told about (a stream cut short, a 500).
	// Default: slog.Default().
	Logger *slog.Logger
	// Version is reported by /api/health. Default: "unknown".
	Version string
}

func (c *Config) validate() error {
	if c.Backend == nil {
		return errors.New("server: Config.Backend: required")
	}
	if len(c.Token) < 16 {
		return fmt.Errorf("server: Config.Token: %d characters, at least 16 are needed (use NewToken)", len(c.Token))
	}
	return nil
}

// Server is keepup's HTTP API. It is an http.Handler; Serve runs it on listeners.
type Server struct {
	b       Backend
	token   [sha256.Size]byte
	log     *slog.Logger
	version string
	mux     *http.ServeMux
	routes  []route

	// keepAlive is the interval of SSE comment lines; finishGrace is how long a stream of a
	// task that has ended waits for its task.finished event before it closes.
	keepAlive   time.Duration
	finishGrace time.Duration

	stopOnce sync.Once
	stopping chan struct{} // closed when Serve begins to shut down: streams end
	served   sync.Once
}

// route is one endpoint: METHOD and a path pattern of net/http (also the OpenAPI path).
type route struct {
	method, path string
	h            func(http.ResponseWriter, *http.Request) error
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Version == "" {
		cfg.Version = "unknown"
	}
	s := &Server{
		b:           cfg.Backend,
		token:       sha256.Sum256([]byte(cfg.Token)),
		log:         cfg.Logger,
		version:     cfg.Version,
		mux:         http.NewServeMux(),
		keepAlive:   15 * time.Second,
		finishGrace: 2 * time.Second,
		stopping:    make(chan struct{}),
	}
	s.routes = []route{
		{"POST", "/api/tasks", s.createTask},
		{"GET", "/api/tasks", s.listTasks},
		{"GET", "/api/tasks/{id}", s.getTask},
		{"GET", "/api/tasks/{id}/events", s.events},
		{"POST", "/api/tasks/{id}/steer", s.steer},
		{"POST", "/api/tasks/{id}/pause", s.control(Backend.Pause)},
		{"POST", "/api/tasks/{id}/resume", s.control(Backend.Resume)},
		{"POST", "/api/tasks/{id}/cancel", s.control(Backend.Cancel)},
		{"GET", "/api/approvals", s.listApprovals},
		{"POST", "/api/approvals/{id}", s.resolve},
		{"GET", "/api/schedules", s.listSchedules},
		{"DELETE", "/api/schedules/{id}", s.deleteSchedule},
		{"GET", "/api/audit/export", s.auditExport},
		{"GET", "/api/health", s.health},
		{"GET", "/api/openapi.json", s.openAPI},
	}
	methods := map[string][]string{} // path -> methods, for 405's Allow
	var paths []string
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.path, s.handle(rt.h))
		if _, ok := methods[rt.path]; !ok {
			paths = append(paths, rt.path)
		}
		methods[rt.path] = append(methods[rt.path], rt.method)
		if rt.method == http.MethodGet {
			methods[rt.path] = append(methods[rt.path], http.MethodHead)
		}
	}
	// A path without its method is less specific than every METHOD path pattern, so it only
	// gets the requests with a method the path does not take.
	for _, p := range paths {
		allow := strings.Join(methods[p], ", ")
		s.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "", "%s %s: method not allowed; allowed: %s", r.Method, p, allow))
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, CodeNotFound, "", "%s %s: no such endpoint (see /api/openapi.json)", r.Method, r.URL.Path))
	})
	return s, nil
}

// handle turns a handler that returns an error into an http.Handler writing the error body.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		ae := fromBackend(err, "", "", "")
		if ae.status >= 500 {
			if r.Context().Err() != nil {
				return // the client went away; nobody reads the answer
			}
			s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeError(w, ae)
	})
}

// ServeHTTP checks the token, then routes the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v) // a response cut short on purpose: net/http closes the connection
			}
			s.log.Error("api handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
			writeError(w, errorf(http.StatusInternalServerError, CodeInternal, "", "internal error: %v", v))
		}
	}()
	if e := s.authorize(r); e != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keepup"`)
		writeError(w, e)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authorize checks the bearer token in constant time (hashes first, so the length leaks
// nothing either).
func (s *Server) authorize(r *http.Request) *apiError {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return errorf(http.StatusUnauthorized, CodeUnauthorized, "Authorization", "Authorization: a bearer token is required (Authorization: Bearer TOKEN; the token is in KEEPUP_HOME/daemon.json)")
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], s.token[:]) != 1 {
		return errorf(http.StatusUnauthorized, CodeUnauthorized, "Authorization", "Authorization: wrong token")
	}
	return nil
}

// Serve serves on every listener until ctx is done, then shuts down gracefully: event streams
// end, requests under way get up to 10 seconds to finish. It returns nil after a shutdown asked
// for by ctx, or the first listener's error. A Server serves once.
func (s *Server) Serve(ctx context.Context, listeners ...net.Listener) error {
	if len(listeners) == 0 {
		return errors.New("server: Serve: no listeners")
	}
	again := true
	s.served.Do(func() { again = false })
	if again {
		return errors.New("server: Serve: called twice")
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errc <- srv.Serve(l) }()
	}
	var err error
	pending := len(listeners)
	select {
	case <-ctx.Done():
	case err = <-errc:
		pending--
	}
	s.stopOnce.Do(func() { close(s.stopping) })
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	for ; pending > 0; pending-- {
		if e := <-errc; err == nil {
			err = e
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Routes returns "METHOD PATH" of every endpoint, for documentation and tests.
func (s *Server) Routes() []string {
	var out []string
	for _, rt := range s.routes {
		out = append(out, rt.method+" "+rt.path)
	}
	slices.Sort(out)
	return out
}
