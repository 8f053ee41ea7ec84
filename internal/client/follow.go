package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/keepup/keepup/internal/event"
)

// maxSSELine bounds one line of the event stream (an event's JSON).
const maxSSELine = 16 << 20

// callbackError carries an error returned by Follow's fn, which ends Follow as it is.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// Follow calls fn with each event of task id with Seq > after, in order and once each, as the
// daemon commits them, and returns nil after task.finished. When the stream drops (the daemon
// restarts, a connection breaks) it reconnects with Last-Event-ID, re-reading daemon.json if the
// Client came from Discover, and gives up after ReconnectFor without reaching the daemon. An
// error from fn ends Follow with that error; so does an API error such as an unknown task.
func (c *Client) Follow(ctx context.Context, id string, after int64, fn func(event.Event) error) error {
	reconnectFor := c.ReconnectFor
	if reconnectFor <= 0 {
		reconnectFor = time.Minute
	}
	last := after
	var failingSince time.Time
	backoff := 100 * time.Millisecond
	for {
		progressed := false
		finished, err := c.stream(ctx, id, &last, &progressed, fn)
		if finished {
			return nil
		}
		var cbe *callbackError
		if errors.As(err, &cbe) {
			return cbe.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized && ae.Status < 500 {
			return err
		}
		if err == nil {
			// The daemon ended the stream without task.finished: the task ended without one, or
			// the daemon is going down (then reconnect).
			if done, ferr := c.drainEnded(ctx, id, &last, fn); done || ferr != nil {
				return ferr
			}
		}
		if progressed || failingSince.IsZero() {
			failingSince, backoff = time.Now(), 100*time.Millisecond
		}
		if time.Since(failingSince) > reconnectFor {
			if err == nil {
				err = errors.New("the stream keeps ending")
			}
			return fmt.Errorf("following task %s: the daemon cannot be reached: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
		if c.home != "" {
			_ = c.rediscover(ctx) // a restarted daemon has a new token and address
		}
	}
}

// drainEnded checks whether task id has ended; if so it delivers the events after *last that
// the stream did not and reports done.
func (c *Client) drainEnded(ctx context.Context, id string, last *int64, fn func(event.Event) error) (bool, error) {
	tv, err := c.Task(ctx, id)
	if err != nil || !tv.Status.Terminal() {
		return false, nil
	}
	for {
		evs, err := c.Events(ctx, id, *last, 0)
		if err != nil {
			return false, nil
		}
		if len(evs) == 0 {
			return true, nil
		}
		for _, e := range evs {
			if e.Seq <= *last {
				continue
			}
			if err := fn(e); err != nil {
				return true, err
			}
			*last = e.Seq
			if e.Type == event.TaskFinished {
				return true, nil
			}
		}
	}
}

// stream reads one connection's worth of events. It reports whether task.finished came; a nil
// error without it means the daemon ended the stream.
func (c *Client) stream(ctx context.Context, id string, last *int64, progressed *bool, fn func(event.Event) error) (bool, error) {
	cn := c.current()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := cn.request(ctx, "GET", taskPath(id, "/events"), nil, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", strconv.FormatInt(*last, 10))
	resp, err := cn.hc.Do(req)
	if err != nil {
		return false, cn.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, apiError(resp)
	}
	// A stream silent for longer than three keepalives is dead (a half-open connection).
	idle := time.AfterFunc(streamIdle, cancel)
	defer idle.Stop()

	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	var typ string
	var data bytes.Buffer
	for {
		line, err := readLine(rd)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, cn.transportError(err) // Follow tells its own ctx from the idle cut
		}
		idle.Reset(streamIdle)
		if len(line) > 0 {
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "event":
				typ = string(value)
			case "data":
				if data.Len() > 0 {
					data.WriteByte('\n')
				}
				data.Write(value)
			}
			continue
		}
		// A blank line dispatches the event (id: is in the data as seq).
		if data.Len() == 0 {
			typ = ""
			continue
		}
		payload := data.Bytes()
		data.Reset()
		if typ == "error" {
			var eb struct {
				Error struct{ Message string } `json:"error"`
			}
			_ = json.Unmarshal(payload, &eb)
			return false, fmt.Errorf("keepup daemon at %s: %s", cn.where, eb.Error.Message)
		}
		typ = ""
		var e event.Event
		if err := json.Unmarshal(payload, &e); err != nil {
			return false, fmt.Errorf("keepup daemon at %s: an event that is not JSON: %v", cn.where, err)
		}
		if e.Seq <= *last {
			continue
		}
		if err := fn(e); err != nil {
			return false, &callbackError{err}
		}
		*last = e.Seq
		*progressed = true
		if e.Type == event.TaskFinished {
			return true, nil
		}
	}
}

// readLine reads one line without its line ending, refusing lines over maxSSELine.
func readLine(rd *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := rd.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxSSELine {
			return nil, fmt.Errorf("an event stream line over %d bytes", maxSSELine)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if len(line) > 0 && errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}
