package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keepup/keepup/internal/event"
)

// sseBatch is how many events one read of the journal fetches for a stream.
const sseBatch = 500

// stream sends the events of task id with Seq > after as server-sent events, as they are
// committed, and ends after task.finished. Each event is
//
//	id: SEQ
//	event: TYPE
//	data: {the event as one line of JSON}
//
// so that a client that reconnects with Last-Event-ID gets every event after the last one it
// saw, in order, none twice.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, id string, after int64) error {
	ctx := r.Context()
	if _, err := s.b.Task(ctx, id); err != nil {
		return fromBackend(err, "id", "task", id)
	}
	// Subscribe before the first read: an event committed between the read and the wait still
	// leaves its wake-up in the channel.
	notify, cancel := s.b.Subscribe(id)
	defer cancel()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return nil
	}
	if rc.Flush() != nil {
		return nil
	}
	keepAlive := time.NewTicker(s.keepAlive)
	defer keepAlive.Stop()

	last := after
	var grace <-chan time.Time // set once the task has ended without a task.finished after last
	var buf bytes.Buffer
	for {
		evs, err := s.b.Events(ctx, id, last, sseBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("event stream: reading events failed", "task", id, "after", last, "err", err)
				writeSSEError(w, err)
				_ = rc.Flush()
			}
			return nil
		}
		if len(evs) > 0 {
			buf.Reset()
			for _, e := range evs {
				if e.Seq <= last {
					continue // never send an event twice, whatever the backend returns
				}
				if err := encodeSSE(&buf, e); err != nil {
					s.log.Error("event stream: encoding an event failed", "task", id, "seq", e.Seq, "err", err)
					return nil
				}
				last = e.Seq
				if e.Type == event.TaskFinished {
					_, _ = w.Write(buf.Bytes())
					_ = rc.Flush()
					return nil
				}
			}
			if _, err := w.Write(buf.Bytes()); err != nil {
				return nil
			}
			if rc.Flush() != nil {
				return nil
			}
			keepAlive.Reset(s.keepAlive)
			continue // read again until there is nothing new, then wait
		}
		if grace == nil {
			// Nothing new. A task that has ended writes nothing more but its task.finished: wait
			// a little for that, then end the stream (the client had it already, or it was
			// never written).
			tv, err := s.b.Task(ctx, id)
			if err == nil && tv.Status.Terminal() {
				t := time.NewTimer(s.finishGrace)
				defer t.Stop()
				grace = t.C
			}
		}
		select {
		case <-notify:
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return nil
			}
			if rc.Flush() != nil {
				return nil
			}
		case <-grace:
			return nil
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		}
	}
}

// encodeSSE appends one event in the text/event-stream format.
func encodeSSE(buf *bytes.Buffer, e event.Event) error {
	data, err := json.Marshal(e) // compact: no newline can end the data line early
	if err != nil {
		return err
	}
	fmt.Fprintf(buf, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, sseField(e.Type), data)
	return nil
}

// writeSSEError tells a client why the stream ends early; it reconnects with Last-Event-ID.
func writeSSEError(w http.ResponseWriter, err error) {
	data, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: CodeInternal, Message: oneLine("reading events: " + err.Error())}})
	fmt.Fprintf(w, "event: error\ndata: %s\n\n", data)
}

func sseField(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }
