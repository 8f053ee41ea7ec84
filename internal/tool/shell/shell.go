// Package shell owns classifying shell command lines by effect: it parses a bash command line
// (mvdan.cc/sh/v3/syntax), walks every command the line could run — in pipelines, lists,
// subshells, command and process substitutions, functions, loops, if/case, `sh -c` strings,
// here-documents fed to a shell, and behind wrappers such as env, sudo, nice, timeout, nohup and
// xargs — and says for each what it would do: read, delete, move, write, run code, or something
// it cannot tell (policy.EffectUnknown, the most dangerous class), with the words and paths
// each effect comes from. It never runs anything and never touches the file system: relative
// paths are joined lexically with the working directory, and the caller (the bash tool)
// resolves them against the session's grants.
//
// The classification is a convenience for approvals, not a barrier: the sandbox is. It errs
// towards the more dangerous class when unsure: an unknown command runs code, a command name
// that is not a literal word, eval, source and unparseable lines are unknown.
package shell

import (
	"path"
	"slices"
	"strings"

	"github.com/keepup/keepup/internal/policy"
	"mvdan.cc/sh/v3/syntax"
)

// Op is one effect of a command line.
//
// Effects and the classes they stand for:
//   - EffectRead: a known read-only command (ls, cat, grep, git status, ...). No path.
//   - EffectDelete: rm, rmdir, unlink, shred, truncate, find -delete (or -exec rm), git clean,
//     git rm, rsync --delete, and truncating output redirections (`>`, `>|`, `&>`, `>&` to a
//     file other than /dev/null and the like; Truncate is set): they can wipe a file.
//   - EffectMove, EffectMoveOut: mv and git mv, one op per source (the source disappears);
//     Dest is the destination. EffectMoveOut when the destination is not lexically in the
//     source's mount (/sessions/<id>/mnt/<name>) or either path is not known.
//   - EffectOverwrite: commands that write the files they name (cp, touch, mkdir, tee, ln,
//     chmod, chown, install, dd of=, sed -i, tar -x, unzip, git checkout -- paths, `>>`, ...).
//     A write whose target is not a literal path is EffectExec instead.
//   - EffectExec: everything else that runs: interpreters, builds, scripts, unknown commands,
//     writes to places that cannot be named, awk or sed programs that run commands.
//   - EffectUnknown: the line does not parse, a command name is not a literal word ($CMD, "$(...)"),
//     eval, source or `.`, a shell reading commands from standard input, or an assignment to a
//     variable whose value the shell runs as code (BASH_ENV, PS4, PROMPT_COMMAND, ...).
type Op struct {
	Effect policy.Effect `json:"effect"`
	// Command names what the effect comes from: a command ("rm", "git clean", "sed -i",
	// "find -delete"), a redirection operator (">", ">>"), or an assignment ("PATH=").
	Command string `json:"command,omitempty"`
	// Word is the argument the effect is about, as written ("" for an effect of the command as
	// a whole).
	Word string `json:"word,omitempty"`
	// Path is Word as an absolute clean path, joined with the working directory when relative.
	// It is "" when Word is not a literal path: it holds an expansion ($X, $(...), ~), or the
	// working directory is not known at that point (after `cd "$X"`). A path outside
	// /sessions/<id>/mnt is kept as it is; the caller decides what it means.
	Path string `json:"path,omitempty"`
	// Glob reports that Path holds an unexpanded glob pattern (rm *.log): the last elements of
	// Path are the pattern as written (quoted metacharacters escaped with `\`), so that policy
	// path rules such as Delete(*.log) match it as text. The caller may expand it to judge what
	// it matches.
	Glob bool `json:"glob,omitempty"`
	// DestWord and Dest are, for a move, the destination as written and as a path ("" when not
	// a literal path). An existing folder at Dest receives the source inside it.
	DestWord string `json:"dest_word,omitempty"`
	Dest     string `json:"dest,omitempty"`
	// Truncate marks a truncating output redirection: classified as a delete because it empties
	// an existing file; a file that does not exist yet is only created.
	Truncate bool `json:"truncate,omitempty"`
}

// Classification is what a command line would do.
type Classification struct {
	// Ops are the line's effects in the order they were found, without duplicates. There is
	// always at least one (a line that runs nothing is one EffectRead op).
	Ops []Op
	// Commands are the names of the commands the line runs, in order, without duplicates
	// (wrappers included: "sudo", "rm").
	Commands []string
	// Err is the parse error of a line that could not be parsed; Ops is then one
	// EffectUnknown op.
	Err error
}

// ReadOnly reports whether every op only reads.
func (c Classification) ReadOnly() bool {
	for _, o := range c.Ops {
		if o.Effect != policy.EffectRead {
			return false
		}
	}
	return len(c.Ops) > 0
}

// Effects lists the distinct effects of the ops, in order.
func (c Classification) Effects() []policy.Effect {
	var out []policy.Effect
	for _, o := range c.Ops {
		if !slices.Contains(out, o.Effect) {
			out = append(out, o.Effect)
		}
	}
	return out
}

// maxDepth bounds nested command strings (sh -c 'sh -c ...'); deeper ones are unknown.
const maxDepth = 6

// maxSteps bounds the statements walked (loops that change the working directory are walked
// twice, so nesting them multiplies); past it, the line is unknown.
const maxSteps = 20000

// Classify classifies a bash command line run in cwd, an absolute path as the command sees it
// (/sessions/<id>/mnt/<grant>/...). With an empty or relative cwd, relative paths get no Path.
//
// The working directory follows literal `cd DIR` (and pushd, git -C, env -C) in order; after a
// construct where it may or may not have changed (a branch of if or case, a loop, `||`), or a
// cd to something not literal, it is unknown. A cd that fails is not foreseen.
func Classify(command, cwd string) Classification {
	w := &walker{}
	st := &state{cwd: cleanDir(cwd)}
	if err := w.parse(command, st); err != nil {
		return Classification{Ops: []Op{{Effect: policy.EffectUnknown, Word: oneLine(command)}}, Err: err}
	}
	if len(w.ops) == 0 {
		w.ops = []Op{{Effect: policy.EffectRead}}
	}
	return Classification{Ops: w.ops, Commands: w.cmds}
}

func cleanDir(d string) string {
	if !path.IsAbs(d) {
		return ""
	}
	return path.Clean(d)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

type walker struct {
	ops   []Op
	cmds  []string
	src   string          // the source being walked (positions refer to it)
	funcs map[string]bool // functions declared in the line: their bodies are walked where declared
	depth int
	steps int
}

// state is what changes as a script runs.
type state struct {
	cwd string // "" when not known
}

func (w *walker) add(o Op) {
	if !slices.Contains(w.ops, o) {
		w.ops = append(w.ops, o)
	}
}

func (w *walker) addCommand(name string) {
	if name != "" && !slices.Contains(w.cmds, name) {
		w.cmds = append(w.cmds, name)
	}
}

func parser() *syntax.Parser { return syntax.NewParser(syntax.Variant(syntax.LangBash)) }

// parse parses src and walks it in st.
func (w *walker) parse(src string, st *state) error {
	f, err := parser().Parse(strings.NewReader(src), "")
	if err != nil {
		return err
	}
	savedSrc, savedFuncs := w.src, w.funcs
	defer func() { w.src, w.funcs = savedSrc, savedFuncs }()
	w.src = src
	w.funcs = map[string]bool{}
	for k := range savedFuncs {
		w.funcs[k] = true // exported functions reach child shells
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		if fd, ok := n.(*syntax.FuncDecl); ok && fd.Name != nil {
			w.funcs[fd.Name.Value] = true
		}
		return true
	})
	w.stmts(f.Stmts, st)
	return nil
}

// nested classifies a command string a command runs (sh -c, trap, watch, here-documents fed to
// a shell), in a copy of st: a child shell's cd does not leak out.
func (w *walker) nested(label, src string, st *state) {
	if w.depth >= maxDepth {
		w.add(Op{Effect: policy.EffectUnknown, Command: label, Word: oneLine(src)})
		return
	}
	w.depth++
	defer func() { w.depth-- }()
	sub := *st
	if err := w.parse(src, &sub); err != nil {
		w.add(Op{Effect: policy.EffectUnknown, Command: label, Word: oneLine(src)})
	}
}

// text is a node's source text.
func (w *walker) text(n syntax.Node) string {
	s, e := int(n.Pos().Offset()), int(n.End().Offset())
	if s < 0 || e > len(w.src) || s > e {
		return ""
	}
	return w.src[s:e]
}

func (w *walker) stmts(list []*syntax.Stmt, st *state) {
	for _, s := range list {
		w.stmt(s, st)
	}
}

func (w *walker) stmt(s *syntax.Stmt, st *state) {
	w.steps++
	if w.steps > maxSteps {
		if w.steps == maxSteps+1 {
			w.add(Op{Effect: policy.EffectUnknown, Word: "too complex to classify"})
		}
		return
	}
	if s.Background || s.Coprocess {
		sub := *st // runs asynchronously, in a subshell
		st = &sub
	}
	for _, r := range s.Redirs {
		w.redirect(r, st)
	}
	w.command(s.Cmd, st, s.Redirs)
}

// alternatives walks code that may or may not run, each alternative from the same state;
// afterwards the working directory is known only if no alternative changed it.
func (w *walker) alternatives(st *state, alts ...func(*state)) {
	changed := false
	for _, alt := range alts {
		sub := *st
		alt(&sub)
		if sub.cwd != st.cwd {
			changed = true
		}
	}
	if changed {
		st.cwd = ""
	}
}

// loop walks a loop's code; if one pass changes the working directory, the next pass runs
// elsewhere, so it is walked again from an unknown directory.
func (w *walker) loop(st *state, body func(*state)) {
	sub := *st
	body(&sub)
	if sub.cwd != st.cwd {
		st.cwd = ""
		again := *st
		body(&again)
	}
}

func (w *walker) command(cmd syntax.Command, st *state, redirs []*syntax.Redirect) {
	switch c := cmd.(type) {
	case nil:
		// Redirections alone (`> file`).
	case *syntax.CallExpr:
		w.call(c, st, redirs)
	case *syntax.Block:
		w.stmts(c.Stmts, st)
	case *syntax.Subshell:
		sub := *st
		w.stmts(c.Stmts, &sub)
	case *syntax.BinaryCmd:
		switch c.Op {
		case syntax.AndStmt:
			w.stmt(c.X, st)
			w.stmt(c.Y, st)
		case syntax.OrStmt:
			w.stmt(c.X, st)
			w.alternatives(st, func(s *state) { w.stmt(c.Y, s) })
		default: // pipelines: every part runs in a subshell
			x, y := *st, *st
			w.stmt(c.X, &x)
			w.stmt(c.Y, &y)
		}
	case *syntax.IfClause:
		w.ifClause(c, st)
	case *syntax.WhileClause:
		w.loop(st, func(s *state) {
			w.stmts(c.Cond, s)
			w.stmts(c.Do, s)
		})
	case *syntax.ForClause:
		switch l := c.Loop.(type) {
		case *syntax.WordIter:
			for _, it := range l.Items {
				w.scan(it, st)
			}
		case *syntax.CStyleLoop:
			for _, x := range []syntax.ArithmExpr{l.Init, l.Cond, l.Post} {
				if x != nil {
					w.scan(x, st)
				}
			}
		}
		w.loop(st, func(s *state) { w.stmts(c.Do, s) })
	case *syntax.CaseClause:
		w.scan(c.Word, st)
		var alts []func(*state)
		for _, it := range c.Items {
			for _, p := range it.Patterns {
				w.scan(p, st)
			}
			alts = append(alts, func(s *state) { w.stmts(it.Stmts, s) })
		}
		w.alternatives(st, alts...)
	case *syntax.FuncDecl:
		// The body runs wherever the function is called; it is classified here, once.
		sub := *st
		w.stmt(c.Body, &sub)
	case *syntax.ArithmCmd:
		w.scan(c.X, st)
	case *syntax.TestClause:
		w.scan(c.X, st)
	case *syntax.LetClause:
		for _, x := range c.Exprs {
			w.scan(x, st)
		}
	case *syntax.DeclClause:
		w.decl(c, st)
	case *syntax.TimeClause:
		if c.Stmt != nil {
			w.stmt(c.Stmt, st)
		}
	case *syntax.CoprocClause:
		sub := *st
		w.stmt(c.Stmt, &sub)
	case *syntax.TestDecl:
		sub := *st
		w.stmt(c.Body, &sub)
	default:
		w.add(Op{Effect: policy.EffectUnknown, Word: oneLine(w.text(cmd))})
	}
}

func (w *walker) ifClause(c *syntax.IfClause, st *state) {
	w.stmts(c.Cond, st)
	alts := []func(*state){func(s *state) { w.stmts(c.Then, s) }}
	if c.Else != nil {
		alts = append(alts, func(s *state) {
			if len(c.Else.Cond) == 0 { // else
				w.stmts(c.Else.Then, s)
				return
			}
			w.ifClause(c.Else, s) // elif
		})
	}
	w.alternatives(st, alts...)
}

// scan classifies the command and process substitutions inside a node (a word, an arithmetic
// or test expression); they run in subshells.
func (w *walker) scan(n syntax.Node, st *state) {
	if n == nil {
		return
	}
	syntax.Walk(n, func(n syntax.Node) bool {
		switch x := n.(type) {
		case *syntax.CmdSubst:
			sub := *st
			w.stmts(x.Stmts, &sub)
			return false
		case *syntax.ProcSubst:
			sub := *st
			w.stmts(x.Stmts, &sub)
			return false
		}
		return true
	})
}

// nullDevices are files a redirection or a write may name without touching any file.
var nullDevices = []string{"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/stdin", "/dev/tty", "/dev/zero"}

func isNullDevice(p string) bool {
	return slices.Contains(nullDevices, p) || strings.HasPrefix(p, "/dev/fd/") || strings.HasPrefix(p, "/proc/self/fd/")
}

// redirect classifies one redirection of a statement.
func (w *walker) redirect(r *syntax.Redirect, st *state) {
	if r.Word != nil {
		w.scan(r.Word, st)
	}
	if r.Hdoc != nil {
		w.scan(r.Hdoc, st)
	}
	label := r.Op.String()
	switch r.Op {
	case syntax.RdrOut, syntax.RdrClob, syntax.RdrAll, syntax.RdrAllClob:
		w.target(label, r.Word, st, true)
	case syntax.DplOut:
		if v, ok := literal(r.Word); ok && (v == "-" || isDigits(v)) {
			return // 2>&1, >&-
		}
		w.target(label, r.Word, st, true)
	case syntax.AppOut, syntax.AppAll, syntax.AppClob, syntax.AppAllClob, syntax.RdrInOut:
		w.target(label, r.Word, st, false)
	}
}

// target adds the op of an output redirection to word: a delete (truncate) or a write.
func (w *walker) target(label string, word *syntax.Word, st *state, truncate bool) {
	if word == nil {
		return
	}
	if len(word.Parts) == 1 {
		if _, ok := word.Parts[0].(*syntax.ProcSubst); ok {
			return // > >(cmd): a pipe to a command, classified by scan
		}
	}
	a := w.arg(word)
	p, glob := pathOf(a, st)
	if isNullDevice(p) {
		return
	}
	o := Op{Effect: policy.EffectOverwrite, Command: label, Word: a.text, Path: p, Glob: glob}
	if truncate {
		o.Effect, o.Truncate = policy.EffectDelete, true
	} else if p == "" {
		o.Effect = policy.EffectExec
	}
	w.add(o)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// call classifies a simple command.
func (w *walker) call(c *syntax.CallExpr, st *state, redirs []*syntax.Redirect) {
	w.scan(c, st)
	for _, a := range c.Assigns {
		if a.Name != nil {
			w.assign(a.Name.Value, w.text(a))
		}
	}
	if len(c.Args) == 0 {
		return
	}
	w.run(w.args(c.Args), st, redirs)
}

// decl classifies declare, local, export, readonly, typeset and nameref.
func (w *walker) decl(c *syntax.DeclClause, st *state) {
	w.scan(c, st)
	for _, a := range c.Args {
		switch {
		case a.Name != nil && !a.Naked:
			w.assign(a.Name.Value, w.text(a))
		case a.Name == nil && a.Value != nil:
			// An option (-x), or a word that may expand to NAME=value.
			v, ok := literal(a.Value)
			switch {
			case !ok:
				w.add(Op{Effect: policy.EffectExec, Command: c.Variant.Value, Word: w.text(a.Value)})
			case strings.Contains(v, "="):
				name, _, _ := strings.Cut(v, "=")
				w.assign(name, v)
			}
		}
	}
}

// shellCodeVars hold shell code the shell itself runs (at startup, before a prompt, on xtrace):
// setting one is like eval.
var shellCodeVars = []string{"BASH_ENV", "ENV", "PS4", "PS1", "PS0", "PROMPT_COMMAND", "SHELLOPTS", "BASHOPTS"}

// codeVars change which program a command name runs, or make read-only commands run another
// program (pagers, editors, git's helpers, less's preprocessors, ripgrep's config).
var codeVars = []string{"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PAGER", "MANPAGER",
	"EDITOR", "VISUAL", "LESSOPEN", "LESSCLOSE", "RIPGREP_CONFIG_PATH", "HOME", "XDG_CONFIG_HOME",
	"TAR_OPTIONS", "GREP_OPTIONS", "BASH_LOADABLES_PATH", "CDPATH"}

// assign classifies setting the variable name ("NAME=value" as written in text).
func (w *walker) assign(name, text string) {
	switch {
	case slices.Contains(shellCodeVars, name) || strings.HasPrefix(name, "BASH_FUNC_"):
		w.add(Op{Effect: policy.EffectUnknown, Command: name + "=", Word: text})
	case slices.Contains(codeVars, name) || strings.HasPrefix(name, "GIT_"):
		w.add(Op{Effect: policy.EffectExec, Command: name + "=", Word: text})
	}
}

// mountOf is the mount part of a session path: /sessions/<id>/mnt/<name>, or "".
func mountOf(p string) string {
	parts := strings.SplitN(p, "/", 6)
	if len(parts) < 5 || parts[0] != "" || parts[1] != "sessions" || parts[3] != "mnt" || parts[2] == "" || parts[4] == "" {
		return ""
	}
	return strings.Join(parts[:5], "/")
}
