package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepup/keepup/internal/client"
	"github.com/keepup/keepup/internal/config"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// The commands in remote*.go talk to a running daemon (keepup serve) through its HTTP API.

// noDaemon is the message of a command that needs a daemon when none runs.
const noDaemon = "no keepup daemon is running; start one with 'keepup serve'"

// cliActor is who answers approvals from the command line, in the audit.
const cliActor = "cli"

// daemonClient returns a client of the daemon of KEEPUP_HOME, or nil (and no error) when none
// runs: then a command that can runs in-process.
func daemonClient(st *State) (*client.Client, error) {
	home, err := config.Home(st.Getenv)
	if err != nil {
		return nil, usagef("%v", err)
	}
	c, err := client.Discover(home)
	if errors.Is(err, client.ErrNoDaemon) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// needDaemon is daemonClient for the commands that only work through a daemon.
func needDaemon(st *State) (*client.Client, error) {
	c, err := daemonClient(st)
	if err == nil && c == nil {
		return nil, usagef(noDaemon)
	}
	return c, err
}

// remoteError turns an error of the daemon's API into the CLI's: a request the daemon refuses
// (bad input, an unknown id, a conflict with the task's state) is a usage error, exit code 2;
// the daemon failing is exit code 1.
func remoteError(err error) error {
	var ae *client.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case ae.Status == http.StatusNotFound && strings.Contains(ae.Message, "no such task"):
		return usagef("%s (see 'keepup tasks')", ae.Message)
	case ae.Status == http.StatusUnauthorized:
		return usagef("the daemon refused the token of daemon.json (%s); is it another KEEPUP_HOME's daemon?", ae.Message)
	case ae.Status >= 400 && ae.Status < 500:
		return usagef("%s", ae.Message)
	}
	return fmt.Errorf("the daemon failed: %s", ae.Message)
}

// callCtx bounds a single API call of a command.
func callCtx(st *State) (context.Context, context.CancelFunc) {
	ctx, stop := st.Context()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	return ctx, func() { cancel(); stop() }
}

// remoteRequest turns run's options into a request to the daemon. Paths are made absolute: the
// daemon does not run in this directory.
func remoteRequest(o runOptions) (queue.TaskRequest, error) {
	req := queue.TaskRequest{Prompt: o.prompt, Model: o.model, Approvals: o.approvals, MaxTurns: o.maxTurns}
	for _, g := range o.grants {
		gr, err := scope.ParseGrant(g) // resolves the path against this directory
		if err != nil {
			return req, usagef("--grant: %v", err)
		}
		req.Grants = append(req.Grants, gr.Name+"="+gr.Path+":"+string(gr.Mode))
	}
	for _, u := range o.uploads {
		abs, err := filepath.Abs(u)
		if err != nil {
			return req, usagef("--upload %s: %v", u, err)
		}
		req.Uploads = append(req.Uploads, abs)
	}
	if file, ok := strings.CutPrefix(o.model, "script:"); ok && file != "" {
		abs, err := filepath.Abs(file)
		if err != nil {
			return req, usagef("--model %s: %v", o.model, err)
		}
		req.Model = "script:" + abs
	}
	return req, nil
}

// parseAnywhere parses flags that may come before or after the positional arguments
// ("keepup approve ID --deny"); after "--" everything is positional.
func parseAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

const queueUsage = "usage: keepup queue add [flags] PROMPT | keepup queue list | keepup queue schedules | keepup queue unschedule ID"

func cmdQueue(st *State, args []string) error {
	if len(args) == 0 {
		return usagef(queueUsage)
	}
	switch args[0] {
	case "add":
		return cmdQueueAdd(st, args[1:])
	case "list":
		return cmdQueueList(st, args[1:])
	case "schedules":
		return cmdQueueSchedules(st, args[1:])
	case "unschedule":
		return cmdQueueUnschedule(st, args[1:])
	}
	return usagef("queue %s: unknown; %s", args[0], queueUsage)
}

func cmdQueueAdd(st *State, args []string) error {
	fs := newFlags("queue add")
	var o runOptions
	var grants, uploads listFlag
	var priority int
	var cron, missed string
	fs.Var(&grants, "grant", "folder to grant: [NAME=]PATH[:ro|:rw] (repeatable)")
	fs.Var(&uploads, "upload", "file to attach, read-only and untrusted (repeatable)")
	fs.StringVar(&o.model, "model", "", "model spec")
	fs.StringVar(&o.approvals, "approvals", "", "ask|deny|auto")
	fs.IntVar(&o.maxTurns, "max-turns", 0, "maximum model turns")
	fs.IntVar(&priority, "priority", 0, "1 (highest) to 4 (lowest); default 2")
	fs.StringVar(&cron, "cron", "", "cron expression: queue one task per slot instead of one now")
	fs.StringVar(&missed, "missed", "", "slots missed while the daemon was down: skip or run_once")
	if err := fs.Parse(args); err != nil {
		return usagef("queue add: %v", err)
	}
	o.grants, o.uploads = grants, uploads
	o.prompt = strings.TrimSpace(strings.Join(fs.Args(), " "))
	switch {
	case o.prompt == "":
		return usagef("queue add: a PROMPT is needed: keepup queue add [flags] \"what to do\"")
	case o.maxTurns < 0:
		return usagef("queue add: --max-turns %d: must be positive", o.maxTurns)
	case priority < 0 || priority > 4:
		return usagef("queue add: --priority %d: must be 1 (highest) to 4 (lowest)", priority)
	case missed != "" && cron == "":
		return usagef("queue add: --missed needs --cron")
	case missed != "" && missed != "skip" && missed != "run_once":
		return usagef("queue add: --missed %q: must be skip or run_once", missed)
	}
	req, err := remoteRequest(o)
	if err != nil {
		return err
	}
	req.Priority = priority
	c, err := needDaemon(st)
	if err != nil {
		return err
	}
	ctx, cancel := callCtx(st)
	defer cancel()
	if cron != "" {
		req.Schedule = &queue.ScheduleSpec{Cron: cron, Missed: missed}
		sc, err := c.AddSchedule(ctx, req)
		if err != nil {
			return remoteError(err)
		}
		fmt.Fprintln(st.Stdout, sc.ID)
		return nil
	}
	tv, err := c.Submit(ctx, req)
	if err != nil {
		return remoteError(err)
	}
	fmt.Fprintln(st.Stdout, tv.ID)
	return nil
}

// unfinished are the states of tasks that are queued or under way.
var unfinished = []task.State{task.Queued, task.Planning, task.Running, task.AwaitingApproval, task.Paused, task.Summarizing}

func cmdQueueList(st *State, args []string) error {
	fs := newFlags("queue list")
	limit := fs.Int("n", 100, "how many tasks")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return usagef("usage: keepup queue list [-n N]")
	}
	c, err := needDaemon(st)
	if err != nil {
		return err
	}
	ctx, cancel := callCtx(st)
	defer cancel()
	ts, err := c.Tasks(ctx, store.TaskFilter{Status: unfinished, Limit: *limit})
	if err != nil {
		return remoteError(err)
	}
	if len(ts) == 0 {
		fmt.Fprintln(st.Stdout, "no queued or running tasks")
		return nil
	}
	plain := make([]task.Task, len(ts))
	for i := range ts {
		plain[i] = ts[i].Task
	}
	return printTasks(st.Stdout, plain, true)
}

func cmdQueueSchedules(st *State, args []string) error {
	if len(args) > 0 {
		return usagef("usage: keepup queue schedules")
	}
	c, err := needDaemon(st)
	if err != nil {
		return err
	}
	ctx, cancel := callCtx(st)
	defer cancel()
	scs, err := c.Schedules(ctx)
	if err != nil {
		return remoteError(err)
	}
	if len(scs) == 0 {
		fmt.Fprintln(st.Stdout, "no schedules; add one with 'keepup queue add --cron EXPR PROMPT'")
		return nil
	}
	tw := tabwriter.NewWriter(st.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCRON\tMISSED\tNEXT\tLAST TASK\tPROMPT")
	for _, s := range scs {
		last := s.LastTask
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Cron, s.Missed, s.Next.Local().Format(time.DateTime), last, short(s.Request.Prompt, 50))
	}
	return tw.Flush()
}

func cmdQueueUnschedule(st *State, args []string) error {
	if len(args) != 1 {
		return usagef("usage: keepup queue unschedule ID (see 'keepup queue schedules')")
	}
	c, err := needDaemon(st)
	if err != nil {
		return err
	}
	ctx, cancel := callCtx(st)
	defer cancel()
	if err := c.DeleteSchedule(ctx, args[0]); err != nil {
		return remoteError(err)
	}
	fmt.Fprintf(st.Stdout, "schedule %s removed\n", args[0])
	return nil
}

func cmdSteer(st *State, args []string) error {
	if len(args) > 1 && args[1] == "--" {
		args = append(args[:1:1], args[2:]...)
	}
	if len(args) < 2 {
		return usagef("usage: keepup steer ID MESSAGE")
	}
	id, msg := args[0], strings.TrimSpace(strings.Join(args[1:], " "))
	if msg == "" {
		return usagef("steer: the MESSAGE is empty")
	}
	c, err := needDaemon(st)
	if err != nil {
		return err
	}
	ctx, cancel := callCtx(st)
	defer cancel()
	if _, err := c.Steer(ctx, id, msg); err != nil {
		return remoteError(err)
	}
	fmt.Fprintf(st.Stdout, "%s: message queued; the task gets it at its next turn\n", id)
	return nil
}

// cmdTaskControl is keepup pause|resume|cancel ID.
func cmdTaskControl(st *State, verb string, args []string) error {
	if len(args) != 1 {
		return usagef("usage: keepup %s ID", verb)
	}
	c, err := needDaemon(st)
	if err != nil {
		return err
	}
	ctx, cancel := callCtx(st)
	defer cancel()
	op := map[string]func(context.Context, string) (*queue.TaskView, error){
		"pause": c.Pause, "resume": c.Resume, "cancel": c.Cancel,
	}[verb]
	tv, err := op(ctx, args[0])
	if err != nil {
		return remoteError(err)
	}
	fmt.Fprintf(st.Stdout, "%s: %s\n", tv.ID, tv.Status)
	return nil
}

func cmdApprovals(st *State, args []string) error {
	fs := newFlags("approvals")
	taskID := fs.String("task", "", "only this task's approvals")
	all := fs.Bool("all", false, "resolved approvals too")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return usagef("usage: keepup approvals [--task ID] [--all]")
	}
	c, err := needDaemon(st)
	if err != nil {
		return err
	}
	ctx, cancel := callCtx(st)
	defer cancel()
	aps, err := c.Approvals(ctx, *taskID, !*all)
	if err != nil {
		return remoteError(err)
	}
	if len(aps) == 0 {
		fmt.Fprintln(st.Stdout, "no pending approvals")
		return nil
	}
	tw := tabwriter.NewWriter(st.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTASK\tSTATUS\tTOOL\tEFFECT\tASKED\tSUMMARY")
	for _, a := range aps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Task, a.Status, a.Tool, a.Effect, a.CreatedAt.Local().Format(time.DateTime), short(a.Summary, 60))
	}
	return tw.Flush()
}

func cmdApprove(st *State, args []string) error {
	fs := newFlags("approve")
	deny := fs.Bool("deny", false, "refuse instead")
	scopeFlag := fs.String("scope", "call", "call: this call only; task: the same effect for the rest of the task")
	pos, err := parseAnywhere(fs, args)
	if err != nil || len(pos) != 1 {
		return usagef("usage: keepup approve ID [--deny] [--scope call|task] (ID: an approval, or a task with one pending approval)")
	}
	if *scopeFlag != "call" && *scopeFlag != "task" {
		return usagef("approve: --scope %q: must be call (this call only) or task (the rest of the task)", *scopeFlag)
	}
	c, err := needDaemon(st)
	if err != nil {
		return err
	}
	ctx, cancel := callCtx(st)
	defer cancel()
	id := pos[0]
	d := queue.Decision{Approve: !*deny, Scope: *scopeFlag, By: cliActor}
	a, err := c.Resolve(ctx, id, d)
	if errors.Is(err, queue.ErrNotFound) {
		// Not an approval id: a task with exactly one pending approval will do.
		aps, terr := c.Approvals(ctx, id, true)
		switch {
		case errors.Is(terr, queue.ErrNotFound):
			return usagef("approve: %q is neither an approval nor a task (see 'keepup approvals')", id)
		case terr != nil:
			return remoteError(terr)
		case len(aps) == 0:
			return usagef("approve: task %s has no pending approval", id)
		case len(aps) > 1:
			var ids []string
			for _, a := range aps {
				ids = append(ids, a.ID)
			}
			return usagef("approve: task %s has %d pending approvals (%s); name one", id, len(aps), strings.Join(ids, ", "))
		}
		a, err = c.Resolve(ctx, aps[0].ID, d)
	}
	if err != nil {
		return remoteError(err)
	}
	verb := "approved"
	if a.Status == store.ApprovalDenied {
		verb = "denied"
	}
	suffix := ""
	if a.Status == store.ApprovalApproved && a.Scope == "task" {
		suffix = " (and the same for the rest of the task)"
	}
	fmt.Fprintf(st.Stdout, "%s %s: %s%s\n", verb, a.ID, a.Summary, suffix)
	return nil
}
