package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/keepup/keepup/internal/eval"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/task"
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

// runEvalTask runs one evaluation case through runTask: approvals deny, the bubblewrap
// sandbox, one grant "work", and the session's egress proxy adjusted by the case (its resolver
// and dialer reach only the case's recorder, whose CA the web client trusts).
func runEvalTask(st *State, t eval.Task) (*task.Task, error) {
	return runTask(st, runOptions{
		prompt:    t.Prompt,
		grants:    []string{"work=" + t.Grant + ":rw"},
		uploads:   t.Uploads,
		model:     "script:" + t.ScriptPath,
		approvals: string(policy.ModeDeny),
		egress:    &egressOverrides{proxy: t.Egress, roots: t.RootCAs},
		onEvent:   t.OnEvent,
	})
}
