package cli

import (
	"errors"
	"fmt"
	"strings"

	_ "github.com/keepup/keepup/internal/sandbox/inside" // its init runs the sandbox helper and exec stub
)

// Exit codes (DESIGN.md).
const (
	ExitOK        = 0
	ExitFailed    = 1
	ExitUsage     = 2
	ExitCancelled = 3
	ExitRefused   = 4
)

// usageError is a usage or configuration error: one line, exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitError carries an exit code with an optional message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

const usage = `keepup — an agent runtime that works on the folders you grant it

Usage:
  keepup run [--grant [NAME=]PATH[:ro|:rw]]... [--upload FILE]... [--model SPEC]
             [--approvals ask|deny|auto] [--json] [--max-turns N] PROMPT
             [--detach]      (through the daemon when one runs; --detach returns at once)
  keepup demo                 run a scripted demo task on sample files
  keepup serve [--addr HOST:PORT] [--socket PATH] [--max-running N] [--slice-turns N]
                              run the daemon: queued tasks, HTTP API and event stream
  keepup queue add [run's flags] [--priority 1-4] [--cron EXPR [--missed skip|run_once]] PROMPT
  keepup queue list | schedules | unschedule ID
  keepup logs [-f] [--json] ID  a task's events (-f: follow until it ends)
  keepup steer ID MESSAGE     tell a running task something; it reads it at its next turn
  keepup approvals [--task ID] [--all]
  keepup approve ID [--deny] [--scope call|task]   answer an approval (or a task's only one)
  keepup pause|resume|cancel ID
  keepup tasks                list tasks
  keepup task show ID         show a task, its plan and summary
  keepup audit verify         check the audit chain
  keepup audit export [--task ID]
  keepup sandbox exec [--grant [NAME=]PATH[:ro|:rw]]... [--timeout S] -- CMD ARGS...
  keepup doctor               check that the sandbox can run here
  keepup eval injection DIR [--json]   run prompt-injection evaluation cases
  keepup version

Model SPEC: anthropic:MODEL, openai:MODEL, ollama:MODEL, script:FILE
Environment: KEEPUP_HOME, KEEPUP_MODEL, KEEPUP_MANAGED_POLICY, ANTHROPIC_API_KEY, OPENAI_API_KEY, OPENAI_BASE_URL
`

// Main runs keepup with os.Args-style arguments taken from st and returns the exit code.
func Main(st *State) int { return Run(st, osArgs()) }

// Run runs one command line (without the program name) and returns the exit code.
func Run(st *State, args []string) int {
	err := dispatch(st, args)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(st.Stderr, "keepup: "+ee.msg)
		}
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(st.Stderr, "keepup: "+oneLine(ue.msg))
		return ExitUsage
	}
	fmt.Fprintln(st.Stderr, "keepup: "+oneLine(err.Error()))
	return ExitFailed
}

func dispatch(st *State, args []string) error {
	// Hidden commands keepup runs inside its own sandbox. The helper and the exec stub
	// (__sandbox-helper, __sandbox-exec) never get here: package inside runs them from its
	// init, before the rest of keepup initializes.
	if len(args) > 0 && args[0] == "__sandbox-selftest" {
		return exitCode(cmdSelfTest(st, args[1:]))
	}
	if len(args) == 0 {
		fmt.Fprint(st.Stderr, usage)
		return &exitError{code: ExitUsage}
	}
	switch args[0] {
	case "run":
		return cmdRun(st, args[1:])
	case "demo":
		return cmdDemo(st, args[1:])
	case "tasks":
		return cmdTasks(st, args[1:])
	case "task":
		if len(args) >= 2 && args[1] == "show" {
			return cmdTaskShow(st, args[2:])
		}
		return usagef("usage: keepup task show ID")
	case "audit":
		if len(args) >= 2 {
			switch args[1] {
			case "verify":
				return cmdAuditVerify(st, args[2:])
			case "export":
				return cmdAuditExport(st, args[2:])
			}
		}
		return usagef("usage: keepup audit verify | keepup audit export [--task ID]")
	case "serve":
		return cmdServe(st, args[1:])
	case "queue":
		return cmdQueue(st, args[1:])
	case "logs":
		return cmdLogs(st, args[1:])
	case "steer":
		return cmdSteer(st, args[1:])
	case "approve":
		return cmdApprove(st, args[1:])
	case "approvals":
		return cmdApprovals(st, args[1:])
	case "pause", "resume", "cancel":
		return cmdTaskControl(st, args[0], args[1:])
	case "doctor":
		return cmdDoctor(st, args[1:])
	case "eval":
		return cmdEval(st, args[1:])
	case "sandbox":
		if len(args) >= 2 && args[1] == "exec" {
			return cmdSandboxExec(st, args[2:])
		}
		return usagef("usage: keepup sandbox exec [--grant [NAME=]PATH[:ro|:rw]]... [--timeout S] -- CMD ARGS...")
	case "version", "--version":
		return cmdVersion(st, args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(st.Stdout, usage)
		return nil
	}
	return usagef("unknown command %q; run 'keepup help' for the list", args[0])
}

// exitCode turns a plain exit code into the error Run expects.
func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
