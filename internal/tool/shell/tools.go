package shell

import (
	"slices"
	"strings"

	"github.com/keepup/keepup/internal/policy"
)

// ---- find ----

func isFindExpr(v string) bool {
	return (strings.HasPrefix(v, "-") && v != "-") || v == "(" || v == "!" || v == ")" || v == ","
}

// find reads, unless it deletes (-delete), runs a command (-exec and the like: classified, with
// {} standing for the starting points) or writes a file (-fprint and the like).
func (c *cmd) find() {
	args := c.args
	i := 0
	for i < len(args) && args[i].lit {
		v := args[i].value
		if v == "-H" || v == "-L" || v == "-P" || strings.HasPrefix(v, "-O") {
			i++
			continue
		}
		if v == "-D" {
			i += 2
			continue
		}
		break
	}
	var starts []arg
	for i < len(args) && !(args[i].lit && isFindExpr(args[i].value)) {
		starts = append(starts, args[i])
		i++
	}
	if len(starts) == 0 {
		starts = []arg{litArg(".")}
	}
	acted := false
	for ; i < len(args); i++ {
		a := args[i]
		if !a.lit {
			continue
		}
		switch v := a.value; v {
		case "-delete":
			acted = true
			c.label = "find -delete"
			c.each(policy.EffectDelete, starts)
		case "-exec", "-execdir", "-ok", "-okdir":
			j := i + 1
			for j < len(args) && !(args[j].lit && (args[j].value == ";" || args[j].value == "+")) {
				j++
			}
			acted = true
			c.findExec(v, args[i+1:min(j, len(args))], starts)
			i = j
		case "-fprint", "-fprint0", "-fls", "-fprintf":
			if i+1 < len(args) {
				acted = true
				c.label = "find " + v
				c.op(policy.EffectOverwrite, &args[i+1])
				i++
				if v == "-fprintf" {
					i++
				}
			}
		}
	}
	if !acted {
		c.label = "find"
		c.read()
	}
}

// findExec classifies the command of -exec; what it does to {} it does to the files under the
// starting points.
func (c *cmd) findExec(action string, inner, starts []arg) {
	if len(inner) == 0 {
		return
	}
	from := len(c.w.ops)
	c.w.run(inner, c.st, nil)
	added := slices.Clone(c.w.ops[from:])
	c.w.ops = c.w.ops[:from]
	for _, o := range added {
		o.Command = "find " + action + " " + o.Command
		if o.DestWord != "" && strings.Contains(o.DestWord, "{}") {
			o.Dest = ""
			if o.Effect == policy.EffectMove {
				o.Effect = policy.EffectMoveOut
			}
		}
		if !strings.Contains(o.Word, "{}") {
			c.w.add(o)
			continue
		}
		for _, s := range starts {
			o2 := o
			o2.Word = s.text
			o2.Path, o2.Glob = pathOf(s, c.st)
			switch {
			case o2.Effect == policy.EffectOverwrite && o2.Path == "":
				o2.Effect = policy.EffectExec
			case o2.Effect == policy.EffectMove && (o2.Path == "" || mountOf(o2.Path) == "" || mountOf(o2.Path) != mountOf(o2.Dest)):
				o2.Effect = policy.EffectMoveOut
			}
			c.w.add(o2)
		}
	}
}

// ---- git ----

// gitRead are git subcommands that only read (given no --output).
var gitRead = []string{"status", "log", "diff", "show", "ls-files", "rev-parse", "blame", "grep",
	"ls-tree", "cat-file", "describe", "shortlog", "rev-list", "show-ref", "for-each-ref",
	"name-rev", "merge-base", "whatchanged", "count-objects", "version", "help", "var",
	"check-ignore", "check-attr", "diff-tree", "diff-files", "diff-index", "annotate",
	"show-branch", "range-diff", "cherry", "ls-remote"}

func (c *cmd) git() {
	args := c.args
	st := *c.st // -C applies to this git only
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if !a.lit {
			c.op(policy.EffectExec, nil)
			return
		}
		v := a.value
		if !strings.HasPrefix(v, "-") {
			break
		}
		switch {
		case v == "-C":
			if i+1 < len(args) {
				i++
				st.cwd, _ = pathOf(args[i], &st)
			}
		case v == "-c":
			// Configuration given on the command line can name programs to run (core.pager,
			// diff.external, alias.x=!cmd).
			c.label = "git -c"
			if i+1 < len(args) {
				i++
				c.op(policy.EffectExec, &args[i])
			}
		case v == "--config-env" || strings.HasPrefix(v, "--config-env=") || strings.HasPrefix(v, "--exec-path="):
			c.label = "git " + v
			c.op(policy.EffectExec, nil)
			if v == "--config-env" {
				i++
			}
		case v == "--git-dir" || v == "--work-tree" || v == "--namespace" || v == "--super-prefix":
			i++
		case v == "--version" || v == "--help" || v == "-h":
			c.read()
			return
		}
	}
	if i >= len(args) {
		c.read()
		return
	}
	sub := args[i]
	g := &cmd{w: c.w, st: &st, name: "git", label: "git " + sub.value, args: args[i+1:], redirs: c.redirs}
	switch s := sub.value; {
	case slices.Contains(gitRead, s):
		g.gitRead()
	case s == "branch":
		g.gitList([]string{"-d", "-D", "-m", "-M", "-c", "-C", "-f", "-u", "--delete", "--move",
			"--copy", "--force", "--set-upstream-to", "--unset-upstream", "--edit-description",
			"--track", "--no-track", "--create-reflog"},
			[]string{"--contains", "--no-contains", "--merged", "--no-merged", "--points-at", "--sort", "--format"})
	case s == "tag":
		g.gitList([]string{"-d", "--delete", "-a", "--annotate", "-s", "--sign", "-u", "--local-user",
			"-m", "--message", "-F", "--file", "-f", "--force", "-e", "--edit"},
			[]string{"--contains", "--no-contains", "--merged", "--no-merged", "--points-at", "--sort", "--format", "-n"})
	case s == "remote":
		g.gitFirst(true, "show", "get-url", "-v", "--verbose")
	case s == "stash":
		g.gitFirst(false, "list", "show")
	case s == "worktree":
		g.gitFirst(false, "list")
	case s == "reflog":
		g.gitFirst(true, "show")
	case s == "notes":
		g.gitFirst(true, "list", "show")
	case s == "submodule":
		g.gitFirst(true, "status", "summary")
	case s == "config":
		g.gitConfig()
	case s == "clean":
		g.gitClean()
	case s == "rm":
		fl, ops := g.parse(spec{long: []string{"--pathspec-from-file"}})
		switch {
		case fl.has("-n", "--dry-run"):
			g.read()
		case fl.has("--cached"):
			g.op(policy.EffectExec, nil) // the index only
		default:
			g.each(policy.EffectDelete, ops)
		}
	case s == "mv":
		fl, ops := g.parse(spec{})
		if fl.has("-n", "--dry-run") {
			g.read()
			return
		}
		dest := arg{}
		if len(ops) >= 2 {
			dest, ops = ops[len(ops)-1], ops[:len(ops)-1]
		}
		g.moves(ops, dest)
	case s == "checkout":
		g.gitCheckout()
	case s == "restore":
		_, ops := g.parse(spec{short: "s", long: []string{"--source", "--pathspec-from-file"}})
		g.each(policy.EffectOverwrite, ops)
	case s == "reset":
		fl, _ := g.parse(spec{long: []string{"--pathspec-from-file"}})
		if fl.has("--hard", "--merge", "--keep") {
			g.label = "git reset --hard"
			dot := litArg(".")
			g.op(policy.EffectOverwrite, &dot) // discards changes in the working tree
			return
		}
		g.op(policy.EffectExec, nil)
	case s == "switch":
		fl, _ := g.parse(spec{short: "cC", long: []string{"--create", "--force-create", "--orphan"}})
		if fl.has("-f", "--force", "--discard-changes") {
			dot := litArg(".")
			g.op(policy.EffectOverwrite, &dot)
			return
		}
		g.op(policy.EffectExec, nil)
	default: // add, commit, merge, rebase, pull, push, apply, init, clone, aliases, ...
		g.op(policy.EffectExec, nil)
	}
}

// gitRead: a reading subcommand, unless --output writes a file or -O runs a pager.
func (c *cmd) gitRead() {
	for i, a := range c.args {
		switch {
		case a.lit && a.value == "--output" && i+1 < len(c.args):
			c.op(policy.EffectOverwrite, &c.args[i+1])
			return
		case a.lit && strings.HasPrefix(a.value, "--output="):
			o := litArg(strings.TrimPrefix(a.value, "--output="))
			c.op(policy.EffectOverwrite, &o)
			return
		case c.label == "git grep" && a.lit && (a.value == "-O" || strings.HasPrefix(a.value, "-O") || strings.HasPrefix(a.value, "--open-files-in-pager")):
			c.op(policy.EffectExec, nil)
			return
		}
	}
	c.read()
}

// gitList: branch and tag list unless an option or a name changes something.
func (c *cmd) gitList(changing, valued []string) {
	list := false
	for i := 0; i < len(c.args); i++ {
		a := c.args[i]
		name, _, hasVal := strings.Cut(a.value, "=")
		switch {
		case !a.lit:
			if !list {
				c.op(policy.EffectExec, nil)
				return
			}
		case slices.Contains(changing, name):
			c.op(policy.EffectExec, nil)
			return
		case name == "-l" || name == "--list":
			list = true
		case slices.Contains(valued, name):
			if !hasVal {
				i++
			}
		case strings.HasPrefix(a.value, "-"):
		default:
			if !list {
				c.op(policy.EffectExec, nil) // creates a branch or tag
				return
			}
		}
	}
	c.read()
}

// gitFirst: the subcommand only reads when its first argument is one of these, or, if
// bare reads, when it has none.
func (c *cmd) gitFirst(bare bool, reading ...string) {
	if (len(c.args) == 0 && bare) || (len(c.args) > 0 && c.args[0].lit && slices.Contains(reading, c.args[0].value)) {
		c.read()
		return
	}
	c.op(policy.EffectExec, nil)
}

// gitConfig reads with --get, --list and the like, or with only a key; otherwise it writes the
// repository's .git/config (a protected path), the file named with -f, or the user's or the
// system's (exec: outside the grants).
func (c *cmd) gitConfig() {
	fl, ops := c.parse(spec{short: "f", long: []string{"--file", "--blob", "--type", "--default", "--comment", "--value"}})
	reading := len(ops) <= 1 && !fl.has("--unset", "--unset-all", "--add", "--replace-all",
		"--rename-section", "--remove-section", "-e", "--edit")
	for _, o := range fl {
		if strings.HasPrefix(o.name, "--get") || o.name == "-l" || o.name == "--list" {
			reading = true
		}
	}
	if len(ops) > 0 && ops[0].lit && slices.Contains([]string{"get", "list"}, ops[0].value) {
		reading = true
	}
	switch {
	case reading:
		c.read()
	case fl.has("--global", "--system"):
		c.op(policy.EffectExec, nil)
	default:
		if f, ok := fl.val("-f", "--file"); ok {
			c.op(policy.EffectOverwrite, &f)
			return
		}
		cfg := litArg(".git/config")
		c.op(policy.EffectOverwrite, &cfg)
	}
}

func (c *cmd) gitClean() {
	fl, ops := c.parse(spec{short: "e", long: []string{"--exclude"}})
	if fl.has("-n", "--dry-run") {
		c.read()
		return
	}
	if len(ops) == 0 {
		ops = []arg{litArg(".")}
	}
	c.each(policy.EffectDelete, ops)
}

// gitCheckout overwrites the paths it names (after --, or after a tree-ish), and with -f or
// `.` discards changes in the working tree; switching branches runs code (hooks) and keeps
// local changes.
func (c *cmd) gitCheckout() {
	for i, a := range c.args {
		if a.lit && a.value == "--" {
			c.each(policy.EffectOverwrite, c.args[i+1:])
			return
		}
	}
	fl, ops := c.parse(spec{short: "bBt", long: []string{"--orphan", "--conflict", "--pathspec-from-file"}})
	switch {
	case fl.has("-b", "-B", "--orphan"):
		c.op(policy.EffectExec, nil)
	case fl.has("-f", "--force"):
		dot := litArg(".")
		c.op(policy.EffectOverwrite, &dot)
	case len(ops) == 1 && ops[0].lit && ops[0].value == ".":
		c.op(policy.EffectOverwrite, &ops[0])
	case len(ops) >= 2:
		c.each(policy.EffectOverwrite, ops[1:])
	default:
		c.op(policy.EffectExec, nil)
	}
}

// ---- sed and awk ----

// sed reads, writes its files with -i, and runs code when its script may run a command or
// write a file (the e command, the e and w flags of s, w and W) or is not literal.
func (c *cmd) sed() {
	inPlace, sandbox, scriptFile := false, false, false
	var scripts, ops []arg
	args := c.args
	for i := 0; i < len(args); i++ {
		a := args[i]
		v := a.value
		switch {
		case !a.lit || v == "-" || !strings.HasPrefix(v, "-"):
			ops = append(ops, a)
		case v == "--":
			ops = append(ops, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(v, "--"):
			name, val, hasVal := strings.Cut(v, "=")
			next := func() *arg {
				if hasVal {
					va := litArg(val)
					return &va
				}
				if i+1 < len(args) {
					i++
					return &args[i]
				}
				return nil
			}
			switch name {
			case "--in-place":
				inPlace = true
			case "--sandbox":
				sandbox = true
			case "--expression":
				if s := next(); s != nil {
					scripts = append(scripts, *s)
				}
			case "--file":
				scriptFile = true
				next()
			case "--line-length":
				next()
			}
		default:
			for j := 1; j < len(v); j++ {
				ch := v[j]
				if ch == 'i' {
					inPlace = true
					break // the rest is a backup suffix
				}
				if ch == 'e' || ch == 'f' || ch == 'l' {
					var val *arg
					if j+1 < len(v) {
						va := litArg(v[j+1:])
						val = &va
					} else if i+1 < len(args) {
						i++
						val = &args[i]
					}
					switch {
					case ch == 'e' && val != nil:
						scripts = append(scripts, *val)
					case ch == 'f':
						scriptFile = true
					}
					break
				}
			}
		}
	}
	if len(scripts) == 0 && !scriptFile && len(ops) > 0 {
		scripts, ops = ops[:1], ops[1:]
	}
	runs := scriptFile
	for _, s := range scripts {
		if !s.lit || sedRuns(s.value) {
			runs = true
		}
	}
	if runs && !sandbox {
		c.label = "sed"
		c.w.add(Op{Effect: policy.EffectExec, Command: "sed", Word: joinText(scripts)})
	}
	if inPlace {
		c.label = "sed -i"
		c.each(policy.EffectOverwrite, ops)
		return
	}
	if !runs || sandbox {
		c.read()
	}
}

// sedRuns reports whether a sed script may run a command or write a file: the e command, the e
// or w flag of s, the w and W commands. Anything it cannot follow counts as running.
func sedRuns(s string) bool {
	n := len(s)
	i := 0
	space := func() {
		for i < n && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	toEOL := func() {
		for i < n && s[i] != '\n' {
			if s[i] == '\\' {
				i++
			}
			i++
		}
	}
	for {
		for i < n && strings.IndexByte(" \t\n;", s[i]) >= 0 {
			i++
		}
		if i >= n {
			return false
		}
		if !sedAddr(s, &i) {
			return true
		}
		space()
		if i < n && s[i] == ',' {
			i++
			space()
			if !sedAddr(s, &i) {
				return true
			}
		}
		space()
		for i < n && s[i] == '!' {
			i++
			space()
		}
		if i >= n {
			return true
		}
		ch := s[i]
		i++
		switch ch {
		case '{':
			continue // a block: commands follow
		case '}', '=', 'd', 'D', 'g', 'G', 'h', 'H', 'n', 'N', 'p', 'P', 'x', 'z', 'F', 'l', 'L', 'q', 'Q':
			space()
			for i < n && s[i] >= '0' && s[i] <= '9' {
				i++
			}
		case '#', 'a', 'i', 'c', 'r', 'R':
			toEOL() // a comment, text, or a file to read
		case ':', 'b', 't', 'T':
			for i < n && s[i] != '\n' && s[i] != ';' {
				i++
			}
		case 's':
			if !sedDelimited(s, &i, true) {
				return true
			}
			for i < n && strings.IndexByte("gpiImM0123456789", s[i]) >= 0 {
				i++
			}
		case 'y':
			if !sedDelimited(s, &i, false) {
				return true
			}
		default: // e, w, W, and what is not understood
			return true
		}
		space()
		if i < n && strings.IndexByte(";\n}#", s[i]) < 0 {
			return true
		}
	}
}

// sedAddr skips an address at s[*i] (a line number, $, /re/, \cREc, first~step, +N, ~N);
// false if a regular expression is not terminated.
func sedAddr(s string, i *int) bool {
	n := len(s)
	if *i >= n {
		return true
	}
	digits := func() {
		for *i < n && s[*i] >= '0' && s[*i] <= '9' {
			*i++
		}
	}
	flags := func() {
		for *i < n && (s[*i] == 'I' || s[*i] == 'M') {
			*i++
		}
	}
	switch c := s[*i]; {
	case c >= '0' && c <= '9':
		digits()
		if *i < n && s[*i] == '~' {
			*i++
			digits()
		}
	case c == '$':
		*i++
	case c == '+' || c == '~':
		*i++
		digits()
	case c == '/':
		*i++
		if !sedUntil(s, i, '/', true) {
			return false
		}
		flags()
	case c == '\\':
		*i++
		if *i >= n {
			return false
		}
		d := s[*i]
		*i++
		if !sedUntil(s, i, d, true) {
			return false
		}
		flags()
	}
	return true
}

// sedUntil moves past the next unescaped d, outside bracket expressions when regex is set;
// false if there is none.
func sedUntil(s string, i *int, d byte, regex bool) bool {
	for *i < len(s) {
		c := s[*i]
		*i++
		switch {
		case c == '\\':
			*i++
		case c == d:
			return true
		case c == '[' && regex:
			if !sedBracket(s, i) {
				return false
			}
		}
	}
	return false
}

// sedBracket moves past a bracket expression whose '[' is just before s[*i].
func sedBracket(s string, i *int) bool {
	j := *i
	if j < len(s) && s[j] == '^' {
		j++
	}
	if j < len(s) && s[j] == ']' {
		j++
	}
	for j < len(s) {
		switch {
		case s[j] == ']':
			*i = j + 1
			return true
		case s[j] == '[' && j+1 < len(s) && strings.IndexByte(":=.", s[j+1]) >= 0:
			end := strings.Index(s[j+2:], string(s[j+1])+"]")
			if end < 0 {
				return false
			}
			j += 2 + end + 2
		default:
			j++
		}
	}
	return false
}

// sedDelimited skips the parts of s/re/repl/ (regex: the first part is a regular
// expression) or y/src/dst/ after the command letter.
func sedDelimited(s string, i *int, regex bool) bool {
	if *i >= len(s) {
		return false
	}
	d := s[*i]
	if d == '\\' || d == '\n' {
		return false
	}
	*i++
	return sedUntil(s, i, d, regex) && sedUntil(s, i, d, false)
}

// awk reads, unless its program may run a command or write a file: kept simple, a program
// that mentions system or holds '>' or '|' (output redirections and pipes, comparisons too)
// runs code, as do program files and extensions. --sandbox (gawk) forbids all of it.
func (c *cmd) awk() {
	runs, sandbox := false, false
	var prog *arg
	args := c.args
	for i := 0; i < len(args); i++ {
		a := args[i]
		v := a.value
		if !a.lit {
			if prog == nil && !runs {
				prog = &args[i]
			}
			continue
		}
		name, _, hasVal := strings.Cut(v, "=")
		value := func() {
			if !hasVal && len(v) == 2 && i+1 < len(args) {
				i++
			}
		}
		switch {
		case v == "--":
			if prog == nil && !runs && i+1 < len(args) {
				prog = &args[i+1]
			}
			i = len(args)
		case v == "--sandbox" || v == "-S":
			sandbox = true
		case strings.HasPrefix(v, "-f") || name == "--file" || strings.HasPrefix(v, "-i") || name == "--include" ||
			strings.HasPrefix(v, "-l") || name == "--load" || strings.HasPrefix(v, "-E") || name == "--exec":
			runs = true
			if strings.HasPrefix(v, "--") {
				if !hasVal {
					i++
				}
			} else {
				value()
			}
		case strings.HasPrefix(v, "-e") || name == "--source":
			if strings.HasPrefix(v, "--") {
				if hasVal {
					p := litArg(strings.TrimPrefix(v, "--source="))
					prog = &p
				} else if i+1 < len(args) {
					i++
					prog = &args[i]
				}
			} else if len(v) > 2 {
				p := litArg(v[2:])
				prog = &p
			} else if i+1 < len(args) {
				i++
				prog = &args[i]
			}
		case strings.HasPrefix(v, "-v") || strings.HasPrefix(v, "-F") || name == "--assign" || name == "--field-separator":
			if strings.HasPrefix(v, "--") {
				if !hasVal {
					i++
				}
			} else {
				value()
			}
		case strings.HasPrefix(v, "-") && v != "-":
		default:
			if prog == nil && !runs {
				prog = &args[i]
			}
		}
	}
	if prog != nil && (!prog.lit || strings.Contains(prog.value, "system") || strings.ContainsAny(prog.value, ">|")) {
		runs = true
	}
	if runs && !sandbox {
		word := ""
		if prog != nil {
			word = prog.text
		}
		c.w.add(Op{Effect: policy.EffectExec, Command: c.label, Word: word})
		return
	}
	c.read()
}
