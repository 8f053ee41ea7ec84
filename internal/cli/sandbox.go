package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keepup/keepup/internal/config"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
	"github.com/keepup/keepup/internal/sandbox/none"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/store/sqlite"
)

// sandboxStartError says that a session's sandbox could not start, so what was asked does not
// run. It points at `keepup doctor` for what may be the machine's problem, not for a granted
// folder's (too large to guard, a protected path that is a symlink), which doctor does not see.
func sandboxStartError(what string, err error) error {
	hint := " (run 'keepup doctor')"
	if errors.Is(err, bwrap.ErrTooLarge) || errors.Is(err, bwrap.ErrSymlinkProtected) {
		hint = ""
	}
	return usagef("the sandbox cannot start, so %s: %s%s", what, oneLine(err.Error()), hint)
}

// openBackend returns the sandbox backend a run uses: bubblewrap, or with --sandbox none (for
// developing keepup only) no isolation at all — refused by the Cowork profile and by a managed
// policy that does not allow it, and announced with a warning on every run. A backend that
// cannot start is an error: there is never a silent fallback to running unsandboxed.
func openBackend(st *State, set *settings, choice string) (sandbox.Backend, error) {
	switch choice {
	case "", "bwrap", "bubblewrap":
		b, err := bwrap.New(bwrap.Config{Exe: st.Executable, StateDir: filepath.Join(set.home, "sandboxes")})
		if err != nil {
			return nil, usagef("the sandbox cannot start, so nothing runs: %v (run 'keepup doctor')", err)
		}
		return b, nil
	case "none":
		if p := set.loaded.User.Profile; p == "" || p == config.ProfileCowork {
			return nil, usagef("--sandbox none is refused by the cowork profile: commands must run in a sandbox (set \"profile\": \"dev\" in %s to develop keepup without one)", filepath.Join(set.home, config.ConfigFile))
		}
		if m := set.loaded.Managed; m != nil && !m.Sandbox.AllowNone {
			return nil, &exitError{code: ExitRefused, msg: fmt.Sprintf("--sandbox none is refused by the managed policy %s (sandbox.allow_none is not set)", m.Source)}
		}
		fmt.Fprintln(st.Stderr, "keepup: WARNING: --sandbox none: commands run UNCONFINED on this machine, with your privileges and network. For developing keepup only.")
		return none.Backend{}, nil
	}
	return nil, usagef("--sandbox %q: want bwrap or none", choice)
}

// sandboxSpec describes a scope session to a sandbox backend: every mount at its path inside,
// the protected paths of read-write mounts kept read-only, commands starting in the first
// folder.
func sandboxSpec(sess *scope.Session) sandbox.Spec {
	spec := sandbox.Spec{SessionID: sess.ID, Workdir: sess.Default().Virtual()}
	for _, m := range sess.Mounts {
		sm := sandbox.Mount{Host: m.Path, Dest: m.Virtual(), RW: m.Mode == scope.RW}
		// Protected paths are guarded in every read-write mount, outputs included, as the
		// file tools refuse them everywhere (one answer).
		if sm.RW {
			sm.Protect = scope.ProtectedRoots()
		}
		spec.Mounts = append(spec.Mounts, sm)
	}
	return spec
}

// cmdSandboxExec runs one command in a fresh session sandbox, exactly as the bash tool would,
// and exits with its exit code.
func cmdSandboxExec(st *State, args []string) error {
	fs := flag.NewFlagSet("sandbox exec", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var grants listFlag
	fs.Var(&grants, "grant", "folder to grant: [NAME=]PATH[:ro|:rw] (repeatable)")
	timeout := fs.String("timeout", "", "seconds before the command and its children are killed")
	const use = "usage: keepup sandbox exec [--grant [NAME=]PATH[:ro|:rw]]... [--timeout S] -- CMD ARGS..."
	if err := fs.Parse(args); err != nil {
		return usagef("sandbox exec: %v; %s", err, use)
	}
	cmdArgs := fs.Args()
	if len(cmdArgs) == 0 {
		return usagef(use)
	}
	var d time.Duration
	if *timeout != "" {
		secs, err := strconv.ParseFloat(*timeout, 64)
		if err != nil || secs <= 0 {
			return usagef("sandbox exec: --timeout %q: want a positive number of seconds", *timeout)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	set, err := loadSettings(st)
	if err != nil {
		return err
	}
	var gs []scope.Grant
	for _, g := range grants {
		gr, err := scope.ParseGrant(g)
		if err != nil {
			return usagef("--grant: %v", err)
		}
		gs = append(gs, gr)
	}
	backend, err := openBackend(st, set, "")
	if err != nil {
		return err
	}
	sid := scope.NewID()
	outputs := filepath.Join(set.home, "outputs", sid)
	sess, err := scope.Open(scope.Config{ID: sid, Grants: gs, Outputs: outputs, Home: set.home})
	if err != nil {
		return usagef("%v", err)
	}
	// Once the sandbox is gone: an outputs folder the command left empty goes (one run would
	// otherwise leave one behind each time); one it wrote to stays, and is named.
	defer func() {
		if err := os.Remove(outputs); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(st.Stderr, "keepup: the command's outputs are in %s\n", outputs)
		}
	}()
	defer sess.Close()
	// The session's egress proxy, as for a task. Its audit entries (of no task) go to the
	// database, opened only if the command uses the network: most never do, and opening it
	// would slow every cold exec.
	var (
		dbOnce sync.Once
		db     *sqlite.DB
		dbErr  error
		dbMu   sync.Mutex
	)
	commit := func(ctx context.Context, b *store.Batch) error {
		dbOnce.Do(func() {
			db, dbErr = sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(set.home, "keepup.db")})
		})
		if dbErr != nil {
			return dbErr
		}
		dbMu.Lock()
		defer dbMu.Unlock()
		return db.Commit(ctx, b)
	}
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	// The system's roots are for the session's web client (web_fetch), which a sandbox exec
	// does not have: it trusts no root at all, and the ~10 ms their loading takes are saved.
	eg, err := startEgress(set, commit, "", sid, &egressOverrides{roots: x509.NewCertPool()})
	if err != nil {
		return usagef("%v", err)
	}
	defer eg.Close()
	ctx, stop := st.Context()
	defer stop()
	spec := sandboxSpec(sess)
	spec.Network = eg.network()
	spec.OneCommand = true
	sb, err := backend.Start(ctx, spec)
	if err != nil {
		return sandboxStartError("nothing runs", err)
	}
	defer sb.Close()
	res, err := sb.Run(ctx, sandbox.Command{Args: cmdArgs, Stdin: st.Stdin, Stdout: st.Stdout, Stderr: st.Stderr, Timeout: d})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &exitError{code: 130}
		}
		return fmt.Errorf("sandbox: %v", err)
	}
	if res.TimedOut {
		fmt.Fprintf(st.Stderr, "keepup: %s timed out after %s and was killed with its children\n", strings.Join(cmdArgs, " "), d)
	}
	for _, q := range res.Quarantined {
		fmt.Fprintf(st.Stderr, "keepup: moved the protected path %s, which the command made, out of the folder (to %s/%s in it)\n", q, bwrap.QuarantineDir, sid)
	}
	if res.ExitCode != 0 {
		return &exitError{code: res.ExitCode}
	}
	return nil
}
