// Package client owns the CLI's side of the daemon's HTTP API: finding a running daemon from
// KEEPUP_HOME/daemon.json, one method per endpoint, and following a task's event stream across
// dropped connections and daemon restarts. It speaks only the wire format of internal/server;
// it must never open the database or run anything itself.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/server"
	"github.com/keepup/keepup/internal/store"
)

// ErrNoDaemon is returned by Discover when no daemon runs for a KEEPUP_HOME.
var ErrNoDaemon = errors.New("no keepup daemon is running")

// APIError is an error answered by the daemon. Error() is its one-line message.
type APIError struct {
	Status  int    // HTTP status
	Code    string // bad_request, unauthorized, not_found, conflict, too_large, internal, ...
	Field   string // the request field to blame, when known
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Is lets errors.Is(err, queue.ErrNotFound) hold for a 404, as it does in-process.
func (e *APIError) Is(target error) bool {
	return target == queue.ErrNotFound && e.Status == http.StatusNotFound
}

// Config says how to reach a daemon.
type Config struct {
	// Socket is the daemon's Unix socket; used when set.
	Socket string
	// Addr is the daemon's TCP host:port; used when Socket is "".
	Addr string
	// Token is the daemon's bearer token. Required.
	Token string
}

// Timeouts.
const (
	// healthTimeout bounds Discover's check that the daemon answers.
	healthTimeout = 2 * time.Second
	// callTimeout bounds a call that has no deadline of its own (streams excepted).
	callTimeout = time.Minute
	// streamIdle is how long a stream may stay silent before it is taken for dead: the daemon
	// sends a comment every 15 seconds.
	streamIdle = 45 * time.Second
)

// Client calls one daemon. It is safe for concurrent use.
type Client struct {
	// ReconnectFor is how long Follow keeps trying to reach the daemon after its stream drops
	// (a daemon restart takes a few seconds). Default one minute.
	ReconnectFor time.Duration

	home string // set by Discover: reconnecting re-reads daemon.json, which a restart rewrites

	mu   sync.Mutex
	conn *conn
}

// conn is one way to the daemon.
type conn struct {
	hc    *http.Client
	base  string // http://host:port, or http://keepup for the socket
	token string
	where string // for messages: "unix socket PATH" or "ADDR"
	key   string // what daemon.json said, to notice a restart
}

func newConn(cfg Config) *conn {
	tr := &http.Transport{
		Proxy:               nil, // never send the token to a proxy
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
	}
	c := &conn{token: cfg.Token, key: cfg.Socket + "|" + cfg.Addr + "|" + cfg.Token}
	if cfg.Socket != "" {
		path := cfg.Socket
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}
		c.base, c.where = "http://keepup", "unix socket "+path
	} else {
		c.base, c.where = "http://"+cfg.Addr, cfg.Addr
	}
	c.hc = &http.Client{Transport: tr}
	return c
}

func (c *conn) close() { c.hc.CloseIdleConnections() }

// New returns a Client for cfg without contacting the daemon.
func New(cfg Config) (*Client, error) {
	if cfg.Token == "" {
		return nil, errors.New("client: Config.Token: required")
	}
	if cfg.Socket == "" && cfg.Addr == "" {
		return nil, errors.New("client: Config: Socket or Addr is required")
	}
	return &Client{conn: newConn(cfg)}, nil
}

// Discover finds the daemon of KEEPUP_HOME home: it reads home/daemon.json and checks that the
// daemon answers there (its Unix socket first, then its TCP address) with the token the file
// holds. It returns ErrNoDaemon (possibly wrapped) when the file is missing or unreadable, or
// when nothing answers — the file of a daemon that was killed stays behind.
func Discover(home string) (*Client, error) {
	c := &Client{home: home}
	ctx, cancel := context.WithTimeout(context.Background(), 2*healthTimeout)
	defer cancel()
	if err := c.rediscover(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// rediscover reads daemon.json and switches to the daemon it names if that one answers.
func (c *Client) rediscover(ctx context.Context) error {
	info, err := server.ReadDaemonInfo(c.home)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNoDaemon
	}
	if err != nil {
		return fmt.Errorf("%w (%v)", ErrNoDaemon, err)
	}
	var cfgs []Config
	if info.Socket != "" {
		cfgs = append(cfgs, Config{Socket: info.Socket, Token: info.Token})
	}
	if info.Addr != "" {
		cfgs = append(cfgs, Config{Addr: info.Addr, Token: info.Token})
	}
	c.mu.Lock()
	cur := c.conn
	c.mu.Unlock()
	for _, cfg := range cfgs {
		cn := newConn(cfg)
		if cur != nil && cn.key == cur.key {
			cn = cur
		}
		hctx, cancel := context.WithTimeout(ctx, healthTimeout)
		_, err := c.health(hctx, cn)
		cancel()
		if err == nil {
			c.mu.Lock()
			c.conn = cn
			c.mu.Unlock()
			if cur != nil && cur != cn {
				cur.close()
			}
			return nil
		}
		if cn != cur {
			cn.close()
		}
	}
	return ErrNoDaemon
}

func (c *Client) current() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// Where says where the daemon is reached: "unix socket PATH" or "HOST:PORT".
func (c *Client) Where() string { return c.current().where }

// Health returns the daemon's version.
func (c *Client) Health(ctx context.Context) (string, error) { return c.health(ctx, c.current()) }

func (c *Client) health(ctx context.Context, cn *conn) (string, error) {
	var out struct {
		OK      bool   `json:"ok"`
		Version string `json:"version"`
	}
	if err := c.call(ctx, cn, "GET", "/api/health", nil, nil, &out, nil); err != nil {
		return "", err
	}
	if !out.OK {
		return "", errors.New("the daemon says it is not ok")
	}
	return out.Version, nil
}

// request builds an authorized request on cn.
func (cn *conn) request(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := cn.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+cn.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// call sends a JSON request and decodes a JSON answer into out (unless nil).
func (c *Client) call(ctx context.Context, cn *conn, method, path string, q url.Values, in, out any, hdr http.Header) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, callTimeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := cn.request(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := cn.hc.Do(req)
	if err != nil {
		return cn.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return apiError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("keepup daemon at %s: reading the answer to %s %s: %v", cn.where, method, path, err)
	}
	return nil
}

func (cn *conn) transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("keepup daemon at %s: %w", cn.where, err)
}

// apiError reads an error response.
func apiError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb server.ErrorBody
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error.Message == "" {
		return &APIError{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode),
			Message: fmt.Sprintf("keepup daemon answered %s", resp.Status)}
	}
	return &APIError{Status: resp.StatusCode, Code: eb.Error.Code, Field: eb.Error.Field, Message: eb.Error.Message}
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	return c.call(ctx, c.current(), method, path, q, in, out, nil)
}

func taskPath(id string, rest ...string) string {
	return "/api/tasks/" + url.PathEscape(id) + strings.Join(rest, "")
}

// Submit queues a task. req.Schedule must be nil (see AddSchedule).
func (c *Client) Submit(ctx context.Context, req queue.TaskRequest) (*queue.TaskView, error) {
	if req.Schedule != nil {
		return nil, errors.New("client: Submit: the request has a schedule; use AddSchedule")
	}
	var out struct {
		Task *queue.TaskView `json:"task"`
	}
	if err := c.do(ctx, "POST", "/api/tasks", nil, req, &out); err != nil {
		return nil, err
	}
	return out.Task, nil
}

// AddSchedule adds a schedule: req.Schedule is required.
func (c *Client) AddSchedule(ctx context.Context, req queue.TaskRequest) (*queue.Schedule, error) {
	if req.Schedule == nil {
		return nil, errors.New("client: AddSchedule: the request has no schedule")
	}
	var out struct {
		Schedule *queue.Schedule `json:"schedule"`
	}
	if err := c.do(ctx, "POST", "/api/tasks", nil, req, &out); err != nil {
		return nil, err
	}
	return out.Schedule, nil
}

// Schedules lists the schedules.
func (c *Client) Schedules(ctx context.Context) ([]queue.Schedule, error) {
	var out struct {
		Schedules []queue.Schedule `json:"schedules"`
	}
	err := c.do(ctx, "GET", "/api/schedules", nil, nil, &out)
	return out.Schedules, err
}

// DeleteSchedule removes a schedule.
func (c *Client) DeleteSchedule(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/api/schedules/"+url.PathEscape(id), nil, nil, nil)
}

// Task returns one task.
func (c *Client) Task(ctx context.Context, id string) (*queue.TaskView, error) {
	var out struct {
		Task *queue.TaskView `json:"task"`
	}
	if err := c.do(ctx, "GET", taskPath(id), nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Task, nil
}

// Tasks lists tasks, newest first. f.Limit 0 takes the daemon's default (100); at most 1000.
func (c *Client) Tasks(ctx context.Context, f store.TaskFilter) ([]queue.TaskView, error) {
	q := url.Values{}
	if len(f.Status) > 0 {
		var ss []string
		for _, s := range f.Status {
			ss = append(ss, string(s))
		}
		q.Set("status", strings.Join(ss, ","))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Parent != nil {
		q.Set("parent", *f.Parent)
	}
	var out struct {
		Tasks []queue.TaskView `json:"tasks"`
	}
	err := c.do(ctx, "GET", "/api/tasks", q, nil, &out)
	return out.Tasks, err
}

// Events returns a task's events with Seq > after; limit 0 takes the daemon's default (1000).
func (c *Client) Events(ctx context.Context, id string, after int64, limit int) ([]event.Event, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Events []event.Event `json:"events"`
	}
	err := c.do(ctx, "GET", taskPath(id, "/events"), q, nil, &out)
	return out.Events, err
}

// Steer sends a message the task gets at its next turn boundary.
func (c *Client) Steer(ctx context.Context, id, message string) (*queue.Steer, error) {
	var out struct {
		Steer *queue.Steer `json:"steer"`
	}
	if err := c.do(ctx, "POST", taskPath(id, "/steer"), nil, server.SteerRequest{Message: message}, &out); err != nil {
		return nil, err
	}
	return out.Steer, nil
}

// Pause asks a task to pause at its next turn boundary.
func (c *Client) Pause(ctx context.Context, id string) (*queue.TaskView, error) {
	return c.control(ctx, id, "pause")
}

// Resume resumes a paused task.
func (c *Client) Resume(ctx context.Context, id string) (*queue.TaskView, error) {
	return c.control(ctx, id, "resume")
}

// Cancel cancels a task.
func (c *Client) Cancel(ctx context.Context, id string) (*queue.TaskView, error) {
	return c.control(ctx, id, "cancel")
}

func (c *Client) control(ctx context.Context, id, verb string) (*queue.TaskView, error) {
	var out struct {
		Task *queue.TaskView `json:"task"`
	}
	if err := c.do(ctx, "POST", taskPath(id, "/"+verb), nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Task, nil
}

// Approvals lists the approvals of a task ("" for every task), only pending ones if pendingOnly.
func (c *Client) Approvals(ctx context.Context, taskID string, pendingOnly bool) ([]store.Approval, error) {
	q := url.Values{}
	if taskID != "" {
		q.Set("task", taskID)
	}
	if !pendingOnly {
		q.Set("all", "1")
	}
	var out struct {
		Approvals []store.Approval `json:"approvals"`
	}
	err := c.do(ctx, "GET", "/api/approvals", q, nil, &out)
	return out.Approvals, err
}

// Resolve answers an approval. d.By, when set, names who answers (else the daemon records "api").
func (c *Client) Resolve(ctx context.Context, approvalID string, d queue.Decision) (*store.Approval, error) {
	req := server.DecisionRequest{Decision: "deny", Scope: d.Scope}
	if d.Approve {
		req.Decision = "approve"
	}
	var hdr http.Header
	if d.By != "" {
		hdr = http.Header{server.ActorHeader: {d.By}}
	}
	var out struct {
		Approval *store.Approval `json:"approval"`
	}
	if err := c.call(ctx, c.current(), "POST", "/api/approvals/"+url.PathEscape(approvalID), nil, req, &out, hdr); err != nil {
		return nil, err
	}
	return out.Approval, nil
}

// AuditExport copies the audit records (of one task, or all for "") to w as JSON lines. An
// export the daemon cuts short is an error.
func (c *Client) AuditExport(ctx context.Context, taskID string, w io.Writer) error {
	cn := c.current()
	q := url.Values{}
	if taskID != "" {
		q.Set("task", taskID)
	}
	req, err := cn.request(ctx, "GET", "/api/audit/export", q, nil)
	if err != nil {
		return err
	}
	resp, err := cn.hc.Do(req)
	if err != nil {
		return cn.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("audit export from the daemon at %s cut short: %w", cn.where, err)
	}
	return nil
}
