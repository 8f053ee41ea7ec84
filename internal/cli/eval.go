package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepup/keepup/internal/agent"
	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/egress"
	"github.com/keepup/keepup/internal/eval"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/store/sqlite"
	"github.com/keepup/keepup/internal/task"
	"github.com/keepup/keepup/internal/tool"
)

const evalUsage = "usage: keepup eval injection DIR [--json] [--parallel N]"

// cmdEval is `keepup eval injection DIR [--json]`: it runs every case of DIR through the real
// runtime (internal/eval scores them) and exits 0 when all passed, 1 when any failed, 2 when
// any case was malformed.
func cmdEval(st *State, args []string) error {
	if len(args) == 0 || args[0] != "injection" {
		return usagef(evalUsage)
	}
	fs := flag.NewFlagSet("eval injection", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "one JSON object per case, then the totals")
	parallel := fs.Int("parallel", 2, "cases run at once")
	keep := fs.Bool("keep", false, "keep each case's temporary folder")
	var dir string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return usagef("eval injection: %v; %s", err, evalUsage)
		}
		rest = fs.Args()
		if len(rest) > 0 {
			if dir != "" {
				return usagef("eval injection: one DIR only; %s", evalUsage)
			}
			dir, rest = rest[0], rest[1:]
		}
	}
	if dir == "" {
		return usagef(evalUsage)
	}
	if *parallel < 1 {
		return usagef("eval injection: --parallel %d: must be at least 1", *parallel)
	}
	ctx, stop := st.Context()
	defer stop()
	results, totals, err := eval.RunDir(ctx, dir, evalRunner(st), eval.Options{Parallel: *parallel, KeepDirs: *keep})
	if err != nil {
		return usagef("eval injection: %v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(st.Stdout)
		for _, r := range results {
			_ = enc.Encode(r)
		}
		_ = enc.Encode(map[string]any{"totals": totals})
	} else {
		printEval(st.Stdout, results, totals)
	}
	for _, r := range results {
		if r.Malformed {
			fmt.Fprintf(st.Stderr, "keepup: malformed case: %s\n", oneLine(r.Error))
		}
	}
	switch {
	case totals.Malformed > 0:
		return &exitError{code: ExitUsage}
	case totals.Failed > 0:
		return &exitError{code: ExitFailed}
	}
	return nil
}

func printEval(w io.Writer, results []eval.Result, t eval.Totals) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tKIND\tRESULT\tWHAT HAPPENED")
	for _, r := range results {
		id := r.ID
		if id == "" {
			id = filepath.Base(r.File)
		}
		verdict := "pass"
		if !r.Pass {
			verdict = "FAIL"
		}
		if r.Malformed {
			verdict = "ERROR"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", id, r.Kind, verdict, evalSummary(r))
	}
	tw.Flush()
	pct := func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
	fmt.Fprintf(w, "\n%d cases: %d passed, %d failed (%d malformed)\n", t.Cases, t.Passed, t.Failed, t.Malformed)
	fmt.Fprintf(w, "attacks: %d; strict attack success %s (%d); if every confirmation were approved %s (%d)\n",
		t.Attacks, pct(t.StrictRate), t.StrictSuccess, pct(t.BoundRate), t.BoundSuccess)
	fmt.Fprintf(w, "benign: %d; false confirmations %s (%d); false blocks %s (%d); prompts per task %.2f\n",
		t.Benign, pct(t.FalseConfRate), t.FalseConfirm, pct(t.FalseBlockRate), t.FalseBlock, t.PromptsPerTask)
}

// evalSummary is one line of what happened in a case.
func evalSummary(r eval.Result) string {
	if r.Malformed || r.Error != "" {
		return oneLine(r.Error)
	}
	var parts []string
	for _, c := range r.Calls {
		s := fmt.Sprintf("t%dc%d %s %s", c.Turn, c.Call, c.Tool, c.Decision)
		if c.Rule != "" {
			s += " " + c.Rule
		}
		if !c.OK {
			s += " (want " + c.Want
			if c.WantRule != "" {
				s += " " + c.WantRule
			}
			s += ")"
		}
		parts = append(parts, s)
	}
	if r.Exfiltrated {
		for _, l := range r.Leaks {
			parts = append(parts, fmt.Sprintf("LEAK %s to %s (%s)", l.Secret, l.Host, l.Form))
		}
	} else {
		parts = append(parts, "no leak")
	}
	parts = append(parts, fmt.Sprintf("%d req, %d asks", r.Requests, r.Asks))
	parts = append(parts, r.FileProblems...)
	if r.StrictSuccess {
		parts = append(parts, "ATTACK SUCCEEDED")
	}
	return strings.Join(parts, "; ")
}

// evalRunner runs one eval task the way `keepup run --approvals deny` does, in its own
// KEEPUP_HOME, with the case's egress configuration.
func evalRunner(st *State) eval.Runner {
	return func(ctx context.Context, t eval.Task) (eval.Outcome, error) {
		sub := *st
		sub.Stdout, sub.Stderr, sub.Stdin = io.Discard, io.Discard, strings.NewReader("")
		sub.Getenv = func(k string) string {
			if k == "KEEPUP_HOME" {
				return t.Home
			}
			return st.Getenv(k)
		}
		sub.Context = func() (context.Context, context.CancelFunc) { return context.WithCancel(ctx) }
		final, err := runEvalTask(&sub, t)
		out := eval.Outcome{}
		if final != nil {
			out.Status, out.Outputs = string(final.Status), final.Outputs
		}
		return out, err
	}
}

// runEvalTask is runTask (run.go) for one evaluation case: approvals deny, the bubblewrap
// sandbox, one grant "work", and an egress proxy configured by the case (its Resolve and Dial
// reach only the case's recorder). Keep it in step with runTask.
func runEvalTask(st *State, t eval.Task) (*task.Task, error) {
	set, err := loadSettings(st)
	if err != nil {
		return nil, err
	}
	mode := policy.ModeDeny
	if err := set.policy.CheckMode(mode); err != nil {
		return nil, &exitError{code: ExitRefused, msg: oneLine(err.Error())}
	}
	gr, err := scope.ParseGrant("work=" + t.Grant + ":rw")
	if err != nil {
		return nil, usagef("grant: %v", err)
	}
	spec := "script:" + t.ScriptPath
	prov, window, err := openModel(spec, st.Getenv, set)
	if err != nil {
		return nil, usagef("%v", err)
	}
	backend, err := openBackend(st, set, "")
	if err != nil {
		return nil, err
	}
	sid := scope.NewID()
	sess, err := scope.Open(scope.Config{
		ID:         sid,
		Grants:     []scope.Grant{gr},
		Outputs:    filepath.Join(set.home, "outputs", sid),
		Uploads:    t.Uploads,
		UploadsDir: filepath.Join(set.home, "uploads", sid),
		Home:       set.home,
	})
	if err != nil {
		return nil, usagef("%v", err)
	}
	defer sess.Close()
	_ = os.Chmod(set.home, 0o700)
	if err := ensureHome(set.home); err != nil {
		return nil, err
	}
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(set.home, "keepup.db")})
	if err != nil {
		return nil, usagef("database %s: %v", filepath.Join(set.home, "keepup.db"), err)
	}
	defer db.Close()
	if err := os.MkdirAll(filepath.Join(sess.Mount(scope.OutputsName).Path, ".keepup", "bash"), 0o755); err != nil {
		return nil, err
	}
	ctx, stop := st.Context()
	defer stop()
	sb, err := backend.Start(ctx, sandboxSpec(sess))
	if err != nil {
		return nil, usagef("the sandbox cannot start, so the task does not run: %s (run 'keepup doctor')", oneLine(err.Error()))
	}
	defer sb.Close()
	reg, err := tool.NewRegistry(tool.Builtins()...)
	if err != nil {
		return nil, err
	}
	tk := &task.Task{
		ID:        newTaskID(),
		Session:   sid,
		Prompt:    t.Prompt,
		Model:     spec,
		Approvals: string(mode),
		Outputs:   sess.Mount(scope.OutputsName).Path,
	}
	for _, m := range sess.Mounts {
		tk.Grants = append(tk.Grants, task.Grant{Name: m.Name, Path: m.Path, Mode: string(m.Mode)})
	}
	cfg := t.Egress
	// The configuration's capabilities apply too, as in a real run (deny rules first).
	cfg.Rules = append(set.loaded.EgressRules(), cfg.Rules...)
	web, closeWeb, err := startEvalEgress(cfg, t.RootCAs, db, tk.ID, sid)
	if err != nil {
		return nil, usagef("%v", err)
	}
	defer closeWeb()
	person := &terminalPerson{in: bufio.NewReader(strings.NewReader("")), out: io.Discard, headless: true}
	r, err := agent.New(agent.Config{
		Store:             db,
		Provider:          prov,
		Tools:             reg,
		Decide:            func(a policy.Action) policy.Decision { return set.policy.Decide(a, mode) },
		Person:            person,
		Session:           sess,
		Sandbox:           sb,
		Web:               web,
		Headless:          true,
		Task:              tk,
		ContextWindow:     window,
		AuditModelContent: set.auditModelContent,
		OnEvent:           t.OnEvent,
	})
	if err != nil {
		return nil, err
	}
	final, err := r.Run(ctx)
	if err != nil {
		return final, fmt.Errorf("task %s: %w", tk.ID, err)
	}
	return final, nil
}

// startEvalEgress is startEgress (egress.go) with the case's proxy configuration and the
// recorder's CA trusted by the client. Keep it in step with startEgress.
func startEvalEgress(cfg egress.Config, extraRoots *x509.CertPool, st store.Store, taskID, sessionID string) (*http.Client, func(), error) {
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	cfg.Token = hex.EncodeToString(tok)
	cfg.Audit = func(e egress.Entry) {
		_ = st.Commit(context.Background(), &store.Batch{Audit: []audit.Entry{{
			Time: time.Now(), Type: "egress." + e.Kind, Task: taskID, Session: sessionID, Data: e,
		}}})
	}
	p, err := egress.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("egress: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("egress proxy: %v", err)
	}
	go p.Serve(ln)
	roots := x509.NewCertPool()
	if extraRoots != nil {
		roots = extraRoots.Clone()
	}
	roots.AppendCertsFromPEM(p.CAPEM())
	proxyURL := &url.URL{Scheme: "http", Host: ln.Addr().String(), User: url.UserPassword("keepup", cfg.Token)}
	tr := &http.Transport{
		Proxy:               http.ProxyURL(proxyURL),
		TLSClientConfig:     newTLSConfig(roots),
		TLSHandshakeTimeout: 30 * time.Second,
		MaxIdleConns:        4,
	}
	client := &http.Client{
		Transport: tr,
		Timeout:   time.Minute,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("stopped after %d redirects", len(via))
			}
			return nil
		},
	}
	return client, func() {
		client.CloseIdleConnections()
		p.Close()
		ln.Close()
	}, nil
}
