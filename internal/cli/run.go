package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/keepup/keepup/internal/agent"
	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/store/sqlite"
	"github.com/keepup/keepup/internal/task"
	"github.com/keepup/keepup/internal/tool"
)

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// runOptions is one `keepup run`.
type runOptions struct {
	prompt    string
	grants    []string
	uploads   []string
	model     string
	approvals string
	json      bool
	maxTurns  int
	sandbox   string // "" (bubblewrap) or "none"
	// egress adjusts the session's proxy (keepup eval); nil: the configuration's alone.
	egress *egressOverrides
	// onEvent, when set, receives the events instead of the terminal or --json output.
	onEvent func(event.Event)
}

func cmdRun(st *State, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o runOptions
	var grants, uploads listFlag
	fs.Var(&grants, "grant", "folder to grant: [NAME=]PATH[:ro|:rw] (repeatable)")
	fs.Var(&uploads, "upload", "file to attach, read-only and untrusted (repeatable)")
	fs.StringVar(&o.model, "model", "", "model spec")
	fs.StringVar(&o.approvals, "approvals", "", "ask|deny|auto")
	fs.BoolVar(&o.json, "json", false, "print events as JSON lines")
	fs.IntVar(&o.maxTurns, "max-turns", 0, "maximum model turns")
	fs.StringVar(&o.sandbox, "sandbox", "", "sandbox backend: bwrap (default) or none (development only)")
	detach := fs.Bool("detach", false, "queue the task in the daemon and return its id")
	if err := fs.Parse(args); err != nil {
		return usagef("run: %v", err)
	}
	o.grants, o.uploads = grants, uploads
	o.prompt = strings.TrimSpace(strings.Join(fs.Args(), " "))
	if o.prompt == "" {
		return usagef("run: a PROMPT is needed: keepup run [flags] \"what to do\"")
	}
	if o.maxTurns < 0 {
		return usagef("run: --max-turns %d: must be positive", o.maxTurns)
	}
	// A running daemon runs the task (the daemon's sandbox choice applies, so --sandbox keeps
	// the run here).
	if o.sandbox == "" {
		c, err := daemonClient(st)
		if err != nil {
			return err
		}
		if c != nil {
			final, err := runRemote(st, c, o, *detach)
			if err != nil || *detach {
				return err
			}
			return exitFor(final)
		}
	}
	if *detach {
		return usagef("run --detach: %s", noDaemon)
	}
	res, err := runTask(st, o)
	if err != nil {
		return err
	}
	return exitFor(res)
}

// exitFor maps a task's end state to the exit code of DESIGN.md.
func exitFor(t *task.Task) error {
	switch t.Status {
	case task.Completed:
		return nil
	case task.Cancelled:
		return &exitError{code: ExitCancelled}
	default:
		return &exitError{code: ExitFailed}
	}
}

// runTask validates everything a run needs before it writes anything, then runs the task
// in-process and returns its final record.
func runTask(st *State, o runOptions) (*task.Task, error) {
	set, err := loadSettings(st)
	if err != nil {
		return nil, err
	}
	modeName := o.approvals
	if modeName == "" {
		modeName = set.defaultMode
	}
	mode, err := policy.ParseMode(modeName)
	if err != nil {
		return nil, usagef("--approvals: %v", err)
	}
	if err := set.policy.CheckMode(mode); err != nil {
		return nil, &exitError{code: ExitRefused, msg: oneLine(err.Error())}
	}
	var grants []scope.Grant
	for _, g := range o.grants {
		gr, err := scope.ParseGrant(g)
		if err != nil {
			return nil, usagef("--grant: %v", err)
		}
		grants = append(grants, gr)
	}
	spec := o.model
	if spec == "" {
		spec = defaultModelSpec(st.Getenv)
	}
	if spec == "" {
		return nil, usagef("no model: pass --model SPEC (anthropic:MODEL, openai:MODEL, ollama:MODEL or script:FILE), set KEEPUP_MODEL, or set ANTHROPIC_API_KEY; or try 'keepup demo'")
	}
	prov, window, err := openModel(spec, st.Getenv, set)
	if err != nil {
		return nil, usagef("%v", err)
	}

	backend, err := openBackend(st, set, o.sandbox)
	if err != nil {
		return nil, err
	}

	// Validate grants and uploads (scope.Open writes nothing until all are checked), then make
	// KEEPUP_HOME and the database.
	_, statErr := os.Stat(set.home)
	newHome := errors.Is(statErr, os.ErrNotExist)
	sid := scope.NewID()
	sess, err := scope.Open(scope.Config{
		ID:         sid,
		Grants:     grants,
		Outputs:    filepath.Join(set.home, "outputs", sid),
		Uploads:    o.uploads,
		UploadsDir: filepath.Join(set.home, "uploads", sid),
		Home:       set.home,
	})
	if err != nil {
		return nil, usagef("%v", err)
	}
	defer sess.Close()
	if newHome {
		// scope.Open made it on the way to the outputs folder: KEEPUP_HOME is private.
		_ = os.Chmod(set.home, 0o700)
	}
	if err := ensureHome(set.home); err != nil {
		return nil, err
	}
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(set.home, "keepup.db")})
	if err != nil {
		return nil, usagef("database %s: %v", filepath.Join(set.home, "keepup.db"), err)
	}
	defer db.Close()

	// The bash tool saves long output under outputs/.keepup/bash; made before the sandbox
	// starts, it is visible inside, read-only like every protected path.
	if err := os.MkdirAll(filepath.Join(sess.Mount(scope.OutputsName).Path, ".keepup", "bash"), 0o755); err != nil {
		return nil, err
	}
	taskID := queue.NewTaskID()
	eg, err := startEgress(set, db.Commit, taskID, sid, o.egress)
	if err != nil {
		return nil, usagef("%v", err)
	}
	defer eg.Close()
	ctx, stop := st.Context()
	defer stop()
	sbSpec := sandboxSpec(sess)
	sbSpec.Network = eg.network()
	sb, err := backend.Start(ctx, sbSpec)
	if err != nil {
		return nil, sandboxStartError("the task does not run", err)
	}
	defer sb.Close()

	reg, err := tool.NewRegistry(tool.Builtins()...)
	if err != nil {
		return nil, err
	}
	t := &task.Task{
		ID:        taskID,
		Session:   sid,
		Prompt:    o.prompt,
		Model:     spec,
		Approvals: string(mode),
		Outputs:   sess.Mount(scope.OutputsName).Path,
	}
	for _, m := range sess.Mounts {
		t.Grants = append(t.Grants, task.Grant{Name: m.Name, Path: m.Path, Mode: string(m.Mode)})
	}

	var onEvent func(event.Event)
	var onText func(string)
	if o.onEvent != nil {
		onEvent = o.onEvent
	} else if o.json {
		enc := json.NewEncoder(st.Stdout)
		onEvent = func(e event.Event) { _ = enc.Encode(e) }
	} else {
		prog := newProgress(st.Stdout, st.TTY)
		onEvent = prog.event
		onText = prog.text
	}
	person := &terminalPerson{in: bufio.NewReader(st.Stdin), out: st.Stderr, headless: mode == policy.ModeDeny}
	acfg := agent.Config{
		Store:             db,
		Provider:          prov,
		Tools:             reg,
		Decide:            func(a policy.Action) policy.Decision { return set.policy.Decide(a, mode) },
		Person:            person,
		Session:           sess,
		Sandbox:           sb,
		Web:               eg.client,
		Headless:          mode == policy.ModeDeny,
		ExecNetwork:       eg.allows,
		Task:              t,
		Budgets:           agent.Budgets{MaxTurns: o.maxTurns},
		ContextWindow:     window,
		AuditModelContent: set.auditModelContent,
		OnEvent:           onEvent,
		OnText:            onText,
		Limits:            agent.DefaultLimits,
	}
	ls := &localSpawner{base: acfg, set: set, st: st, backend: backend, eg: eg, parent: sess}
	// Subagents' events go to --json and to eval; the terminal shows them on the parent's plan.
	ls.base.OnEvent = nil
	if o.json || o.onEvent != nil {
		ls.base.OnEvent = onEvent
	}
	ls.base.Spawner = ls
	acfg.Spawner = ls
	r, err := agent.New(acfg)
	if err != nil {
		return nil, err
	}
	final, err := r.Run(ctx)
	if err != nil {
		return final, fmt.Errorf("task %s: %w", t.ID, err)
	}
	return final, nil
}
