package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/tool/shell"
)

//go:embed bash.md
var bashDescription string

// Bash is the bash tool: {command, timeout_s?, cwd?}. It runs a command line with /bin/bash -c
// in the session's sandbox (Env.Sandbox); Prepare classifies the line with package shell into
// one policy op per effect and target.
type Bash struct{}

// Limits of the bash tool.
const (
	// BashDefaultTimeout is a command's timeout when the call gives none.
	BashDefaultTimeout = 120 * time.Second
	// BashMaxTimeoutSeconds is the largest timeout_s.
	BashMaxTimeoutSeconds = 3600
	// MaxBashOutput is the most output the model gets: past it, the head and the tail of the
	// output (half each) around a marker naming the saved log.
	MaxBashOutput = 30 << 10
	// MaxBashCommand is the longest command line accepted.
	MaxBashCommand = 100_000
)

const bashSchema = `{
  "type": "object",
  "properties": {
    "command": {"type": "string", "minLength": 1, "maxLength": 100000, "description": "The bash command line to run (with /bin/bash -c)."},
    "timeout_s": {"type": "integer", "minimum": 1, "maximum": 3600, "description": "Seconds before the command is killed (default 120)."},
    "cwd": {"type": "string", "description": "Folder to run in: relative to the first granted folder, or absolute under /sessions/<id>/mnt/ (default: the first granted folder)."}
  },
  "required": ["command"],
  "additionalProperties": false
}`

func (Bash) Spec() model.ToolSpec { return spec("bash", bashDescription, bashSchema) }

func (Bash) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Command  string `json:"command"`
		TimeoutS *int   `json:"timeout_s"`
		Cwd      string `json:"cwd"`
	}
	if err := decode("bash", input, &in); err != nil {
		return nil, err
	}
	if env == nil || env.Session == nil {
		return nil, Refusef("no session: bash is unavailable")
	}
	if env.Sandbox == nil {
		return nil, Refusef("this session has no sandbox; bash is unavailable")
	}
	s := env.Session
	switch {
	case strings.TrimSpace(in.Command) == "":
		return nil, Refusef("command is empty")
	case len(in.Command) > MaxBashCommand:
		return nil, Refusef("command is %d bytes long; the most is %d: write a script to a file under %s/%s and run that", len(in.Command), MaxBashCommand, s.MountRoot(), scope.OutputsName)
	case strings.IndexByte(in.Command, 0) >= 0:
		return nil, Refusef("command contains a NUL byte")
	}
	timeout := BashDefaultTimeout
	if in.TimeoutS != nil {
		if *in.TimeoutS < 1 || *in.TimeoutS > BashMaxTimeoutSeconds {
			return nil, Refusef("timeout_s must be between 1 and %d", BashMaxTimeoutSeconds)
		}
		timeout = time.Duration(*in.TimeoutS) * time.Second
	}
	dir, err := bashDir(env, in.Cwd)
	if err != nil {
		return nil, err
	}
	cwd := dir.Virtual()
	cl := shell.Classify(in.Command, cwd)
	ops, targets := bashOps(s, cl, in.Command)
	readOnly := true
	for _, o := range ops {
		if o.Effect != policy.EffectRead {
			readOnly = false
		}
	}
	first := ""
	if len(cl.Commands) > 0 {
		first = cl.Commands[0]
	} else if f := strings.Fields(in.Command); len(f) > 0 {
		first = f[0]
	}
	return &Call{
		Action: policy.Action{
			Tool:    "bash",
			Ops:     ops,
			Summary: bashSummary(in.Command, ops, targets),
		},
		ReadOnly:   readOnly,
		Idempotent: readOnly,
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			return runBash(ctx, env, in.Command, cwd, timeout, first, ops)
		},
	}, nil
}

// bashDir resolves the working directory: an existing folder in a mount.
func bashDir(env *Env, cwd string) (scope.Path, error) {
	s := env.Session
	if cwd == "" {
		def := s.Default()
		if def == nil {
			return scope.Path{}, Refusef("no folder is granted in this session; bash has nowhere to run")
		}
		return scope.Path{Mount: def, Rel: "."}, nil
	}
	r, err := resolve(env, cwd, true)
	if err != nil {
		return scope.Path{}, err
	}
	fi, err := r.real.Stat()
	if err != nil {
		return scope.Path{}, refusal(err)
	}
	if !fi.IsDir() {
		return scope.Path{}, Refusef("cwd %s is not a folder", r.as.Virtual())
	}
	return r.real, nil
}

// bashTarget is what one op of a bash call is about, for the summary and the audit.
type bashTarget struct {
	label string     // how the summary names it
	path  scope.Path // for digests; Mount nil when none
	glob  bool
}

// bashOps turns a classification into policy ops: one per effect and target, in order, each
// with the whole command line as its Subject so that Bash(...) rules see it.
//
//   - Paths are resolved with the session (symbolic links evaluated: the last element too for
//     writes, not for deletes and moves, like the file tools); a path outside the grants keeps
//     its effect but has no target (the sandbox does not let the command reach it), except a
//     write, which becomes EffectExec (it can only write where nothing persists).
//   - A glob keeps its pattern as the target's Rel (Delete(*.log) matches `rm *.log`); it is
//     expanded here only to tell whether it matches anything and whether what it matches is
//     protected.
//   - A delete or move of a folder is protected if the folder holds a protected path, as
//     with delete_path and move_path; past maxTreeEntries entries it counts as protected.
//   - A write or truncating redirection onto a file that does not exist yet only creates it:
//     EffectCreate, as with write_file.
//   - A move is EffectMove when both ends resolve into the same mount, else EffectMoveOut, and
//     its destination is one more op, EffectOverwrite (EffectExec when it cannot be resolved):
//     an existing folder receives the source inside it.
func bashOps(s *scope.Session, cl shell.Classification, command string) ([]policy.Op, []bashTarget) {
	var ops []policy.Op
	var targets []bashTarget
	seen := map[string]bool{}
	add := func(e policy.Effect, t *policy.Target, bt bashTarget) {
		key := string(e)
		if t != nil {
			key += "\x00" + t.Grant + "\x00" + t.Rel
		} else if bt.label != "" {
			key += "\x00?" + bt.label
		}
		if seen[key] {
			return
		}
		seen[key] = true
		ops = append(ops, policy.Op{Effect: e, Target: t, Subject: command})
		targets = append(targets, bt)
	}
	unnamed := func(word string) bashTarget {
		if word == "" {
			return bashTarget{}
		}
		return bashTarget{label: quoteWord(word)}
	}
	budget := maxTreeEntries
	for _, o := range cl.Ops {
		switch o.Effect {
		case policy.EffectDelete:
			r, ok := resolveBashPath(s, o.Path, o.Glob, false, &budget, nil)
			if !ok {
				add(policy.EffectDelete, nil, unnamed(o.Word))
				continue
			}
			e := policy.EffectDelete
			if o.Truncate && !r.target.Exists {
				e = policy.EffectCreate
			}
			add(e, r.target, r.bt)
		case policy.EffectOverwrite:
			r, ok := resolveBashPath(s, o.Path, o.Glob, true, nil, nil)
			if !ok {
				add(policy.EffectExec, nil, bashTarget{})
				continue
			}
			e := policy.EffectOverwrite
			if !r.target.Exists {
				e = policy.EffectCreate // like write_file: a new file replaces nothing
			}
			add(e, r.target, r.bt)
		case policy.EffectMove, policy.EffectMoveOut:
			from, fromOK := resolveBashPath(s, o.Path, o.Glob, false, &budget, nil)
			to, toOK := resolveMoveDest(s, o, from, fromOK, &budget)
			e := policy.EffectMoveOut
			if fromOK && toOK && from.path.Mount == to.path.Mount {
				e = policy.EffectMove
			}
			src := unnamed(o.Word)
			if fromOK {
				src = from.bt
			}
			dst := unnamed(o.DestWord)
			if toOK {
				dst = to.bt
			}
			src.label += " -> " + orUnknown(dst.label)
			add(e, from.target, src)
			if toOK {
				add(policy.EffectOverwrite, to.target, to.bt)
			} else {
				add(policy.EffectExec, nil, bashTarget{})
			}
		default: // read, exec, unknown
			bt := bashTarget{}
			if o.Effect == policy.EffectUnknown {
				bt.label = strings.TrimSpace(o.Command + " " + o.Word)
			}
			add(o.Effect, nil, bt)
		}
	}
	return ops, targets
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// quoteWord shortens a word from the command line for a summary.
func quoteWord(w string) string {
	w = strings.Join(strings.Fields(w), " ")
	if utf8.RuneCountInString(w) > 40 {
		w = string([]rune(w)[:37]) + "..."
	}
	return w
}

type bashResolved struct {
	target *policy.Target
	path   scope.Path
	bt     bashTarget
}

// resolveBashPath resolves a path from the classification into a target. follow evaluates a
// final symbolic link (writes); budget, when set, bounds the entries walked to find protected
// paths inside folders (deletes and moves); mapTo, when set, also checks the paths a moved
// folder's entries would have under it.
func resolveBashPath(s *scope.Session, p string, glob, follow bool, budget *int, mapTo *scope.Path) (bashResolved, bool) {
	if p == "" {
		return bashResolved{}, false
	}
	as, err := s.Resolve(p)
	if err != nil {
		return bashResolved{}, false
	}
	var real scope.Path
	if follow && !glob {
		real, err = as.EvalSymlinks()
	} else {
		real, err = as.EvalDir()
	}
	if err != nil {
		return bashResolved{}, false
	}
	protected := scope.Protected(as.Rel) || scope.Protected(real.Rel)
	exists := false
	if glob {
		matches, complete := expandBashGlob(real)
		exists = len(matches) > 0
		protected = protected || !complete
		for _, m := range matches {
			protected = protected || scope.Protected(m.Rel) || treeProtected(m, budget, nil)
		}
	} else if fi, err := real.Lstat(); err == nil {
		exists = true
		if fi.IsDir() {
			protected = protected || treeProtected(real, budget, mapTo)
		}
	}
	label := quote(real.String())
	if as != real {
		label += " (via " + quote(as.String()) + ")"
	}
	return bashResolved{
		target: target(real, exists, protected),
		path:   real,
		bt:     bashTarget{label: label, path: real, glob: glob},
	}, true
}

// treeProtected reports whether the folder p holds a protected path (or would under mapTo),
// spending budget entries; with no budget it does not look. Past the budget it fails closed.
func treeProtected(p scope.Path, budget *int, mapTo *scope.Path) bool {
	if budget == nil {
		return false
	}
	fi, err := p.Lstat()
	if err != nil || !fi.IsDir() {
		return false
	}
	if *budget <= 0 {
		return true
	}
	t, err := walkTree(p, mapTo)
	if err != nil {
		return true
	}
	*budget -= t.files + t.dirs + t.others
	if mapTo != nil && t.anyProtectedTo() {
		return true
	}
	return t.anyProtected() || *budget < 0
}

// resolveMoveDest resolves a move's destination: an existing folder receives the source inside
// it. Its protection covers the paths the moved folder's entries would have there.
func resolveMoveDest(s *scope.Session, o shell.Op, from bashResolved, fromOK bool, budget *int) (bashResolved, bool) {
	if o.Dest == "" {
		return bashResolved{}, false
	}
	as, err := s.Resolve(o.Dest)
	if err != nil {
		return bashResolved{}, false
	}
	if real, err := as.EvalSymlinks(); err == nil {
		if fi, err := real.Stat(); err == nil && fi.IsDir() {
			base := path.Base(o.Path)
			if fromOK {
				base = path.Base(from.path.Rel)
			}
			as = as.Join(base)
		}
	}
	to, ok := resolveBashPath(s, as.Virtual(), o.Glob, false, nil, nil)
	if !ok {
		return bashResolved{}, false
	}
	if fromOK && !o.Glob && treeProtected(from.path, budget, &to.path) {
		to.target.Protected = true
	}
	return to, true
}

// maxGlobMatches bounds a glob's expansion; past it, it counts as protected (fail closed).
const maxGlobMatches = 1000

// expandBashGlob lists what a glob pattern (its Rel) matches, as bash would: `*` and `?` do
// not match a leading dot unless the pattern has it. complete is false past maxGlobMatches.
func expandBashGlob(p scope.Path) ([]scope.Path, bool) {
	cur := []scope.Path{{Mount: p.Mount, Rel: "."}}
	for _, seg := range strings.Split(p.Rel, "/") {
		if seg == "" || seg == "." {
			continue
		}
		var next []scope.Path
		if !hasGlobMeta(seg) {
			name := unescapeGlob(seg)
			for _, c := range cur {
				if ok, _ := c.Join(name).Exists(); ok {
					next = append(next, c.Join(name))
				}
			}
		} else {
			for _, c := range cur {
				ents, err := c.ReadDir()
				if err != nil {
					continue
				}
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), ".") && !strings.HasPrefix(seg, ".") {
						continue
					}
					if ok, _ := path.Match(seg, e.Name()); ok {
						next = append(next, c.Join(e.Name()))
						if len(next) > maxGlobMatches {
							return next, false
						}
					}
				}
			}
		}
		cur = next
		if len(cur) == 0 {
			return nil, true
		}
	}
	return cur, true
}

func hasGlobMeta(seg string) bool {
	for i := 0; i < len(seg); i++ {
		switch seg[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

func unescapeGlob(seg string) string {
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		if seg[i] == '\\' && i+1 < len(seg) {
			i++
		}
		b.WriteByte(seg[i])
	}
	return b.String()
}

// bashSummary is one short line: "run `rm -rf build` (delete docs/build)".
func bashSummary(command string, ops []policy.Op, targets []bashTarget) string {
	s := "run `" + shortCommand(command) + "`"
	type group struct {
		verb   string
		labels []string
		more   int
	}
	var order []policy.Effect
	groups := map[policy.Effect]*group{}
	readOnly := true
	for i, o := range ops {
		if o.Effect != policy.EffectRead {
			readOnly = false
		}
		verb := ""
		switch o.Effect {
		case policy.EffectDelete:
			verb = "delete"
		case policy.EffectMove:
			verb = "move"
		case policy.EffectMoveOut:
			verb = "move out"
		case policy.EffectOverwrite, policy.EffectCreate:
			verb = "write"
			if i > 0 && (ops[i-1].Effect == policy.EffectMove || ops[i-1].Effect == policy.EffectMoveOut) {
				continue // a move's destination, already in the move's label
			}
		case policy.EffectUnknown:
			verb = "unknown effect of"
		default:
			continue
		}
		g := groups[o.Effect]
		if g == nil {
			g = &group{verb: verb}
			groups[o.Effect] = g
			order = append(order, o.Effect)
		}
		label := targets[i].label
		switch {
		case label == "" && o.Effect != policy.EffectUnknown:
			label = "files not known before it runs"
		case label == "":
			continue
		}
		if len(g.labels) < 3 {
			if !containsString(g.labels, label) {
				g.labels = append(g.labels, label)
			}
		} else {
			g.more++
		}
	}
	var parts []string
	for _, e := range order {
		g := groups[e]
		p := strings.TrimSuffix(g.verb, " of")
		if len(g.labels) > 0 {
			p = g.verb + " " + strings.Join(g.labels, ", ")
		}
		if g.more > 0 {
			p += fmt.Sprintf(" and %d more", g.more)
		}
		parts = append(parts, p)
	}
	switch {
	case len(parts) > 0:
		s += " (" + strings.Join(parts, "; ") + ")"
	case readOnly:
		s += " (read-only)"
	}
	return s
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// shortCommand is a command line on one line, at most 80 characters.
func shortCommand(c string) string {
	c = strings.Join(strings.Fields(c), " ")
	if utf8.RuneCountInString(c) > 80 {
		c = string([]rune(c)[:77]) + "..."
	}
	return c
}

// runBash runs the command in the sandbox, streaming and collecting its output.
func runBash(ctx context.Context, env *Env, command, cwd string, timeout time.Duration, first string, ops []policy.Op) (*Result, error) {
	files := bashDigests(env.Session, ops, nil)
	out := newBashOutput(env.Output)
	res, err := env.Sandbox.Run(ctx, sandbox.Command{
		Args:    []string{"/bin/bash", "-c", command},
		Dir:     cwd,
		Stdout:  out.writer("stdout"),
		Stderr:  out.writer("stderr"),
		Timeout: timeout,
	})
	out.close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	sources := []string{"command:" + first}
	if err != nil {
		content := "the sandbox could not run the command: " + err.Error()
		if out.total > 0 {
			content += "\n" + out.modelText("")
		}
		return &Result{Content: content, IsError: true, Sources: sources, Untrusted: true}, nil
	}
	status := bashStatus(res, timeout)
	logNote := ""
	if out.capped() {
		logNote = saveBashLog(env.Session, command, cwd, status, out)
	}
	text := out.modelText(logNote)
	if text == "" {
		text = "(no output)\n"
	} else if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	if len(res.Quarantined) > 0 {
		text += "[keepup moved these protected paths, made in the session's folders, out of them: " +
			strings.Join(res.Quarantined, ", ") + ". Protected paths (.git hooks and config, shell rc files, " +
			"editor and agent settings) are never written without the user's approval.]\n"
	}
	return &Result{
		Content:   text + status,
		IsError:   res.ExitCode != 0 || res.TimedOut || res.Signal != "",
		Sources:   sources,
		Untrusted: true,
		Files:     bashDigests(env.Session, ops, files),
	}, nil
}

// bashStatus is the last line of the result: how the command ended.
func bashStatus(res sandbox.Result, timeout time.Duration) string {
	switch {
	case res.TimedOut:
		return fmt.Sprintf("[timed out after %s and killed; exit code %d]", formatSeconds(timeout), res.ExitCode)
	case res.Signal != "":
		return fmt.Sprintf("[killed by signal %s; exit code %d]", res.Signal, res.ExitCode)
	}
	return fmt.Sprintf("[exit code %d]", res.ExitCode)
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// maxDigestBytes bounds the files whose digests a bash call records for the audit.
const maxDigestBytes = 16 << 20

// bashDigests records, for the audit, the digests of the regular files the ops name (no globs,
// no folders). With before nil it takes the "before" digests; else it completes them with the
// "after" ones.
func bashDigests(s *scope.Session, ops []policy.Op, before []FileChange) []FileChange {
	if before != nil {
		for i := range before {
			p, err := s.Resolve(s.MountRoot() + "/" + before[i].Path)
			if err != nil {
				continue
			}
			before[i].After = digestSmall(p)
		}
		return before
	}
	var out []FileChange
	for _, o := range ops {
		t := o.Target
		if t == nil || o.Effect == policy.EffectRead || hasGlobMeta(t.Rel) || len(out) >= maxFileChanges {
			continue
		}
		p, err := s.Resolve(t.Virtual)
		if err != nil {
			continue
		}
		if fi, err := p.Lstat(); err == nil && fi.IsDir() {
			continue
		}
		name := p.String()
		dup := false
		for _, f := range out {
			dup = dup || f.Path == name
		}
		if !dup {
			out = append(out, FileChange{Path: name, Before: digestSmall(p)})
		}
	}
	if out == nil {
		out = []FileChange{}
	}
	return out
}

func digestSmall(p scope.Path) string {
	fi, err := p.Lstat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxDigestBytes {
		return ""
	}
	d, _, _ := p.Digest()
	return d
}

// bashLogDir is where capped output is saved, in the outputs mount.
const bashLogDir = ".keepup/bash"

// saveBashLog saves the whole output (as much as was kept) under outputs/.keepup/bash/<n>.log
// and returns the marker's note: the log's path, or why it could not be saved.
func saveBashLog(s *scope.Session, command, cwd, status string, out *bashOutput) string {
	m := s.Mount(scope.OutputsName)
	if m == nil {
		return "the full output could not be saved: this session has no outputs folder"
	}
	header := "# keepup bash in " + cwd + ": " + status + " $ " + oneLineCommand(command) + "\n"
	data := append([]byte(header), out.logBytes()...)
	bashLogMu.Lock()
	defer bashLogMu.Unlock()
	dir := scope.Path{Mount: m, Rel: bashLogDir}
	n := 1
	if ents, err := dir.ReadDir(); err == nil {
		for _, e := range ents {
			if k, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".log")); err == nil && k >= n {
				n = k + 1
			}
		}
	}
	for tries := 0; tries < 100; tries, n = tries+1, n+1 {
		p := dir.Join(strconv.Itoa(n) + ".log")
		_, _, _, err := p.WriteAtomicCheck(data, 0o644, func(_ string, exists bool) error {
			if exists {
				return fs.ErrExist
			}
			return nil
		})
		switch {
		case err == nil:
			return "full output: " + p.Virtual()
		case errors.Is(err, fs.ErrExist):
			continue
		default:
			return "the full output could not be saved: " + refusal(err).Error()
		}
	}
	return "the full output could not be saved: too many logs"
}

// oneLineCommand is the command on one line: quoted if it spans several.
func oneLineCommand(c string) string {
	if strings.ContainsAny(c, "\n\r") {
		return strconv.Quote(c)
	}
	return c
}
