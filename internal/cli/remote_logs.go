package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/keepup/keepup/internal/client"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/store"
)

func cmdLogs(st *State, args []string) error {
	fs := newFlags("logs")
	follow := fs.Bool("f", false, "follow: print events as they come until the task finishes")
	asJSON := fs.Bool("json", false, "print events as JSON lines")
	pos, err := parseAnywhere(fs, args)
	if err != nil || len(pos) != 1 {
		return usagef("usage: keepup logs [-f] [--json] ID")
	}
	id := pos[0]
	c, err := daemonClient(st)
	if err != nil {
		return err
	}
	if c == nil {
		if *follow {
			return usagef("logs -f: %s", noDaemon)
		}
		return localLogs(st, id, eventPrinter(st, *asJSON))
	}
	ctx, stop := st.Context()
	defer stop()
	if _, err := c.Task(ctx, id); err != nil {
		return remoteError(err)
	}
	print := eventPrinter(st, *asJSON)
	if !*follow {
		return remoteError(allEvents(ctx, c, id, 0, func(e event.Event) error { print(e); return nil }))
	}
	t, _, err := followTask(ctx, c, id, 0, print, nil)
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: ExitCancelled, msg: fmt.Sprintf("stopped following %s; it goes on in the daemon", id)}
		}
		return remoteError(err)
	}
	return exitFor(t)
}

// localLogs prints a task's events from the database when no daemon runs.
func localLogs(st *State, id string, print func(event.Event)) error {
	db, err := openStore(st)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Task(ctx, id); errors.Is(err, store.ErrNotFound) {
		return usagef("task %q: no such task (see 'keepup tasks')", id)
	} else if err != nil {
		return err
	}
	evs, err := db.Events(ctx, id, 0, 0)
	if err != nil {
		return err
	}
	for _, e := range evs {
		print(e)
	}
	return nil
}

// allEvents calls fn with every event of task id after after, a page at a time.
func allEvents(ctx context.Context, c *client.Client, id string, after int64, fn func(event.Event) error) error {
	const page = 1000
	for {
		evs, err := c.Events(ctx, id, after, page)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := fn(e); err != nil {
				return err
			}
			after = e.Seq
		}
		if len(evs) < page {
			return nil
		}
	}
}

// eventPrinter prints events from the daemon: as JSON lines (one event per line, nothing else
// on stdout), or for a person like a run in-process does.
func eventPrinter(st *State, asJSON bool) func(event.Event) {
	if asJSON {
		enc := json.NewEncoder(st.Stdout)
		return func(e event.Event) { _ = enc.Encode(e) }
	}
	return (&remoteProgress{p: newProgress(st.Stdout, st.TTY)}).event
}

// remoteProgress is the progress printer for events that come from the daemon: model text
// arrives as model.text events rather than streamed, and steering, approvals, pauses and
// subtasks get a line of their own.
type remoteProgress struct{ p *progress }

func (r *remoteProgress) event(e event.Event) {
	var d map[string]any
	_ = json.Unmarshal(e.Data, &d)
	str := func(k string) string { s, _ := d[k].(string); return s }
	line := func(format string, args ...any) {
		r.p.mu.Lock()
		defer r.p.mu.Unlock()
		r.p.printf(format, args...)
	}
	switch e.Type {
	case event.ModelText:
		if t := strings.TrimSpace(str("text")); t != "" {
			r.p.text(t)
		}
	case event.SteerReceived:
		line("  ↪ message from you: %s\n", short(str("message"), 100))
	case event.ApprovalRequested:
		line("  ? waiting for approval %s: %s (answer with 'keepup approve %s' or 'keepup approve --deny %s')\n",
			str("approval_id"), str("summary"), str("approval_id"), str("approval_id"))
	case event.ApprovalResolved:
		answer := "denied"
		if strings.HasPrefix(str("answer"), "yes") { // yes, yes-task
			answer = "approved"
		}
		by := str("by")
		if by == "" {
			by = "user"
		}
		if answer == "approved" && str("scope") == "task" {
			answer = "approved for the rest of the task"
		}
		line("  ✓ approval %s %s by %s\n", str("approval_id"), answer, by)
	case event.SubtaskSpawned:
		line("  ⇉ subtask %s: %s\n", str("child"), str("title"))
	case event.TaskStatus:
		switch {
		case str("to") == "paused":
			line("  (paused)\n")
		case str("from") == "paused":
			line("  (resumed)\n")
		}
	case event.TaskFinished:
		if str("status") == "" { // the shared printer needs it
			line("\nFinished\n")
			return
		}
		r.p.event(e)
	default:
		r.p.event(e)
	}
}
