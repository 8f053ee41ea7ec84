package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/keepup/keepup/internal/client"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/guard"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/task"
)

// runRemote runs o through the daemon c instead of in-process. It queues the task; with detach
// it prints the task's id (with --json, {"task": TASK} on one line) and returns the task as
// queued, for the caller to exit 0. Otherwise it follows the task like an in-process run prints
// it (the progress, or --json events), asks approvals on the terminal when stdin is
// interactive and answers them through the daemon, and returns the task's final record for
// exitFor. Interrupting it (SIGINT, SIGTERM) cancels the task, as in-process.
func runRemote(st *State, c *client.Client, o runOptions, detach bool) (*task.Task, error) {
	req, err := remoteRequest(o)
	if err != nil {
		return nil, err
	}
	ctx, stop := st.Context()
	defer stop()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	tv, err := c.Submit(sctx, req)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, &exitError{code: ExitCancelled, msg: "interrupted while queueing the task (see 'keepup queue list')"}
		}
		return nil, remoteError(err)
	}
	if detach {
		if o.json {
			_ = json.NewEncoder(st.Stdout).Encode(map[string]any{"task": tv})
		} else {
			fmt.Fprintln(st.Stdout, tv.ID)
		}
		return &tv.Task, nil
	}
	print := eventPrinter(st, o.json)
	if o.onEvent != nil {
		print = o.onEvent
	}
	ap := &remoteApprover{st: st, c: c, hint: o.json || o.onEvent != nil}
	t, last, err := followTask(ctx, c, tv.ID, 0, print, ap)
	if err == nil {
		return t, nil
	}
	if ctx.Err() == nil {
		return nil, fmt.Errorf("task %s: %w", tv.ID, remoteError(err))
	}
	// Interrupted: cancel the task as an in-process run would, and see it end.
	fmt.Fprintf(st.Stderr, "\nkeepup: cancelling %s\n", tv.ID)
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer ccancel()
	var ae *client.APIError
	if _, err := c.Cancel(cctx, tv.ID); err != nil && !(errors.As(err, &ae) && ae.Status == http.StatusConflict) {
		return nil, fmt.Errorf("task %s: cancelling: %w", tv.ID, remoteError(err))
	}
	t, _, err = followTask(cctx, c, tv.ID, last, print, nil)
	if err != nil {
		return nil, &exitError{code: ExitCancelled, msg: fmt.Sprintf("task %s: cancel asked, and it has not ended yet (see 'keepup logs -f %s')", tv.ID, tv.ID)}
	}
	return t, nil
}

// followTask prints the events of task id after after until the task finishes, handing them
// to ap too when it is not nil, and returns the task's final record and the last seq printed.
func followTask(ctx context.Context, c *client.Client, id string, after int64, print func(event.Event), ap *remoteApprover) (*task.Task, int64, error) {
	last := after
	if ap != nil {
		ap.start(ctx)
		defer ap.stop()
	}
	err := c.Follow(ctx, id, after, func(e event.Event) error {
		print(e)
		last = e.Seq
		if ap != nil {
			ap.event(e)
		}
		return nil
	})
	if err != nil {
		return nil, last, err
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	tv, err := c.Task(qctx, id)
	if err != nil {
		return nil, last, err
	}
	return &tv.Task, last, nil
}

// approvalAsk is the data of an approval.requested event.
type approvalAsk struct {
	ID         string          `json:"approval_id"`
	Tool       string          `json:"tool"`
	Effect     string          `json:"effect"`
	Summary    string          `json:"summary"`
	Rule       string          `json:"rule"`
	Targets    []policy.Target `json:"targets"`
	Provenance guard.Label     `json:"provenance"`
	Guard      string          `json:"guard"`
}

// remoteApprover answers the approvals of a followed task. On an interactive terminal it asks
// them one at a time like terminalPerson does and resolves them through the daemon; a question
// answered elsewhere meanwhile (keepup approve, the API) is withdrawn. Otherwise it leaves them
// to 'keepup approve', saying so on stderr when the output has no line for it (hint).
type remoteApprover struct {
	st   *State
	c    *client.Client
	hint bool

	asks   chan approvalAsk
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	resolved  map[string]bool
	current   string             // the approval being asked
	withdraw  context.CancelFunc // ends the current question
	linesOnce sync.Once
	lines     chan string // lines of stdin, read by one goroutine
}

func (a *remoteApprover) start(ctx context.Context) {
	a.asks = make(chan approvalAsk, 64)
	a.resolved = map[string]bool{}
	a.done = make(chan struct{})
	ctx, a.cancel = context.WithCancel(ctx)
	go a.loop(ctx)
}

func (a *remoteApprover) stop() {
	a.cancel()
	<-a.done
}

func (a *remoteApprover) event(e event.Event) {
	switch e.Type {
	case event.ApprovalRequested:
		var ask approvalAsk
		if err := json.Unmarshal(e.Data, &ask); err != nil || ask.ID == "" {
			return
		}
		if !a.st.Interactive {
			if a.hint {
				fmt.Fprintf(a.st.Stderr, "keepup: task %s waits for approval %s: %s (answer with 'keepup approve %s' or 'keepup approve --deny %s')\n",
					e.Task, ask.ID, ask.Summary, ask.ID, ask.ID)
			}
			return
		}
		select {
		case a.asks <- ask:
		default:
			fmt.Fprintf(a.st.Stderr, "keepup: approval %s waits too (answer with 'keepup approve %s')\n", ask.ID, ask.ID)
		}
	case event.ApprovalResolved:
		var d struct {
			ID string `json:"approval_id"`
		}
		_ = json.Unmarshal(e.Data, &d)
		a.mu.Lock()
		a.resolved[d.ID] = true
		if a.current == d.ID && a.withdraw != nil {
			a.withdraw()
		}
		a.mu.Unlock()
	}
}

func (a *remoteApprover) loop(ctx context.Context) {
	defer close(a.done)
	out := a.st.Stderr
	for {
		var ask approvalAsk
		select {
		case <-ctx.Done():
			return
		case ask = <-a.asks:
		}
		a.mu.Lock()
		if a.resolved[ask.ID] {
			a.mu.Unlock()
			continue
		}
		qctx, withdraw := context.WithCancel(ctx)
		a.current, a.withdraw = ask.ID, withdraw
		a.mu.Unlock()

		d, err := a.ask(qctx, ask)
		withdraw()
		a.mu.Lock()
		a.current, a.withdraw = "", nil
		a.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintln(out, "(answered elsewhere)")
			}
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = a.c.Resolve(rctx, ask.ID, d)
		cancel()
		var ae *client.APIError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusConflict:
			fmt.Fprintln(out, "(answered elsewhere first)")
		case err != nil && ctx.Err() == nil:
			fmt.Fprintf(out, "keepup: answering approval %s: %s\n", ask.ID, oneLine(err.Error()))
		}
	}
}

// ask puts one approval to the person, as terminalPerson.Approve does. End of input refuses.
func (a *remoteApprover) ask(ctx context.Context, ask approvalAsk) (queue.Decision, error) {
	lines := a.stdinLines()
	for drained := false; !drained; { // a line typed before the question is no answer to it
		select {
		case _, ok := <-lines:
			drained = !ok
		default:
			drained = true
		}
	}
	out := a.st.Stderr
	fmt.Fprintf(out, "\nkeepup wants to: %s\n", ask.Summary)
	fmt.Fprintf(out, "  tool %s, effect %s, because of %s\n", ask.Tool, ask.Effect, ask.Rule)
	for _, t := range ask.Targets {
		fmt.Fprintf(out, "  path %s\n", t.Virtual)
	}
	if ask.Guard != "" {
		fmt.Fprintf(out, "  %s\n", strings.ReplaceAll(ask.Guard, "\n", "\n  "))
	}
	if src := ask.Provenance.UntrustedSources(); len(src) > 0 {
		fmt.Fprintf(out, "  this action follows content from files: %s\n", strings.Join(src, ", "))
	} else {
		fmt.Fprintf(out, "  this action follows your request only\n")
	}
	no := queue.Decision{Approve: false, Scope: "call", By: cliActor}
	for {
		fmt.Fprint(out, "Allow? [y]es / [n]o / [t] yes for this task: ")
		select {
		case <-ctx.Done():
			fmt.Fprintln(out)
			return queue.Decision{}, ctx.Err()
		case line, ok := <-lines:
			if !ok {
				fmt.Fprintln(out, "(no answer: refused)")
				return no, nil
			}
			switch strings.ToLower(strings.TrimSpace(line)) {
			case "y", "yes":
				return queue.Decision{Approve: true, Scope: "call", By: cliActor}, nil
			case "n", "no", "":
				return no, nil
			case "t", "task", "yes-for-this-task", "yes-task":
				return queue.Decision{Approve: true, Scope: "task", By: cliActor}, nil
			}
		}
	}
}

// stdinLines starts, once, the goroutine that reads stdin line by line. It ends at end of
// input, or when a line is read and nobody asks anymore.
func (a *remoteApprover) stdinLines() <-chan string {
	a.linesOnce.Do(func() {
		a.lines = make(chan string)
		done := a.done
		go func() {
			defer close(a.lines)
			rd := bufio.NewReader(a.st.Stdin)
			for {
				s, err := rd.ReadString('\n')
				if s != "" {
					select {
					case a.lines <- s:
					case <-done:
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	})
	return a.lines
}
