package shell

import (
	"path"
	"slices"
	"strings"

	"github.com/keepup/keepup/internal/policy"
	"mvdan.cc/sh/v3/syntax"
)

// cmd is one command being classified.
type cmd struct {
	w      *walker
	st     *state
	name   string // the command's name ("rm" for /bin/rm)
	label  string // what its ops say they come from ("rm", "git clean")
	args   []arg  // the arguments after the name
	redirs []*syntax.Redirect
}

// binDirs are where a command named by path is taken for the command of that name.
var binDirs = []string{"/bin/", "/usr/bin/", "/usr/local/bin/", "/sbin/", "/usr/sbin/"}

// run classifies one command given as arguments (name first).
func (w *walker) run(args []arg, st *state, redirs []*syntax.Redirect) {
	if len(args) == 0 {
		return
	}
	a := args[0]
	if !a.lit || a.glob || a.value == "" {
		w.add(Op{Effect: policy.EffectUnknown, Command: a.text, Word: a.text})
		return
	}
	name := a.value
	if strings.Contains(name, "/") {
		dir, base := path.Split(name)
		if !slices.Contains(binDirs, dir) {
			w.addCommand(name)
			w.add(Op{Effect: policy.EffectExec, Command: name}) // a script or program at a path
			return
		}
		name = base
	}
	w.addCommand(name)
	if w.funcs[name] {
		return // a function of the line: its body was classified where it was declared
	}
	c := &cmd{w: w, st: st, name: name, label: name, args: args[1:], redirs: redirs}
	h, ok := handlers[name]
	if !ok {
		c.op(policy.EffectExec, nil)
		return
	}
	h(c)
}

var handlers map[string]func(*cmd)

// readOnly are commands that only read, whatever their arguments (given no redirection).
var readOnly = []string{
	"ls", "cat", "head", "tail", "grep", "egrep", "fgrep", "wc", "cut", "tr", "echo", "printf",
	"pwd", "stat", "file", "du", "df", "which", "type", "printenv", "id", "whoami", "uname",
	"diff", "cmp", "md5sum", "sha1sum", "sha224sum", "sha256sum", "sha384sum", "sha512sum",
	"b2sum", "cksum", "jq", "basename", "dirname", "realpath", "readlink", "column", "nl", "test",
	"[", "true", "false", "seq", "sleep", "tac", "rev", "paste", "comm", "join", "fold", "fmt",
	"expand", "unexpand", "od", "hexdump", "strings", "base64", "nproc", "arch", "groups",
	"locale", "whereis", "help",
	// builtins with no effect outside the shell
	":", "exit", "return", "break", "continue", "shift", "set", "shopt", "unset", "read",
	"wait", "getopts", "dirs", "umask", "unalias", "jobs", "caller",
}

func init() {
	handlers = map[string]func(*cmd){
		"cd": (*cmd).cd, "pushd": (*cmd).cd, "popd": (*cmd).popd,
		"rm": (*cmd).deletes, "rmdir": (*cmd).deletes, "unlink": (*cmd).deletes,
		"shred": (*cmd).deletes, "truncate": (*cmd).deletes,
		"mv": (*cmd).mv,
		"cp": (*cmd).cp, "ln": (*cmd).ln, "install": (*cmd).install,
		"touch": (*cmd).writes, "mkdir": (*cmd).writes, "tee": (*cmd).tee,
		"chmod": (*cmd).chmod, "chown": (*cmd).chown, "chgrp": (*cmd).chown,
		"dd": (*cmd).dd, "tar": (*cmd).tar, "unzip": (*cmd).unzip, "rsync": (*cmd).rsync,
		"sort": (*cmd).sort, "uniq": (*cmd).uniq, "tree": (*cmd).tree, "date": (*cmd).date,
		"less": (*cmd).less, "more": (*cmd).less, "rg": (*cmd).rg, "hash": (*cmd).hash,
		"sed": (*cmd).sed, "awk": (*cmd).awk, "gawk": (*cmd).awk, "mawk": (*cmd).awk, "nawk": (*cmd).awk,
		"find": (*cmd).find, "git": (*cmd).git, "xargs": (*cmd).xargs,
		"env": (*cmd).env, "sudo": (*cmd).sudo, "doas": (*cmd).sudo, "nice": (*cmd).nice,
		"timeout": (*cmd).timeout, "nohup": (*cmd).nohup, "stdbuf": (*cmd).stdbuf,
		"setsid": (*cmd).nohup, "ionice": (*cmd).ionice, "taskset": (*cmd).taskset,
		"chrt": (*cmd).taskset, "time": (*cmd).time, "command": (*cmd).commandBuiltin,
		"builtin": (*cmd).nohup, "exec": (*cmd).exec, "busybox": (*cmd).nohup,
		"watch": (*cmd).watch, "flock": (*cmd).flock, "trap": (*cmd).trap,
		"eval": (*cmd).unknown, "source": (*cmd).unknown, ".": (*cmd).unknown,
		"enable": (*cmd).unknown, "fc": (*cmd).unknown, "alias": (*cmd).alias,
		"mapfile": (*cmd).mapfile, "readarray": (*cmd).mapfile,
	}
	for _, n := range readOnly {
		handlers[n] = (*cmd).read
	}
	for _, n := range []string{"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "posh", "yash"} {
		handlers[n] = (*cmd).shell
	}
}

// op adds an op of c about a (nil: about the command as a whole). A write whose target is not a
// literal path runs code somewhere the classifier cannot name: EffectExec. Writes and deletes
// of null devices (/dev/null) are no op.
func (c *cmd) op(e policy.Effect, a *arg) {
	o := Op{Effect: e, Command: c.label}
	if a != nil {
		o.Word = a.text
	}
	if a != nil && (e == policy.EffectOverwrite || e == policy.EffectDelete) {
		o.Path, o.Glob = pathOf(*a, c.st)
		if (e == policy.EffectOverwrite || e == policy.EffectDelete) && isNullDevice(o.Path) {
			return
		}
	}
	if e == policy.EffectOverwrite && o.Path == "" {
		o.Effect = policy.EffectExec
	}
	c.w.add(o)
}

func (c *cmd) read() { c.op(policy.EffectRead, nil) }
func (c *cmd) unknown() {
	c.w.add(Op{Effect: policy.EffectUnknown, Command: c.label, Word: joinText(c.args)})
}

func joinText(args []arg) string {
	var parts []string
	for _, a := range args {
		parts = append(parts, a.text)
	}
	return strings.Join(parts, " ")
}

// sub classifies the command args runs (after a wrapper), with c's redirections.
func (c *cmd) sub(args []arg) {
	if len(args) == 0 {
		c.read()
		return
	}
	c.w.run(args, c.st, c.redirs)
}

// ---- option parsing ----

// opt is one option found in the arguments.
type opt struct {
	name string // "-t" or "--target-directory"
	val  *arg   // its value, for options that take one
}

type opts []opt

func (os opts) has(names ...string) bool {
	for _, o := range os {
		if slices.Contains(names, o.name) {
			return true
		}
	}
	return false
}

func (os opts) val(names ...string) (arg, bool) {
	for _, o := range os {
		if slices.Contains(names, o.name) && o.val != nil {
			return *o.val, true
		}
	}
	return arg{}, false
}

func (os opts) hasPrefix(prefix string) bool {
	for _, o := range os {
		if strings.HasPrefix(o.name, prefix) {
			return true
		}
	}
	return false
}

// spec says which options take a value: short letters, and long names (a long option's value
// may also follow '=', which it always does for options with an optional value).
type spec struct {
	short string
	long  []string
	// stop at the first operand (wrappers: what follows is another command's)
	stop bool
}

// parse separates options from operands GNU style: options anywhere before `--` (or, with
// stop, before the first operand); short options cluster (-rf) and take their value attached
// (-tDIR) or as the next argument. A non-literal argument counts as an operand.
func (c *cmd) parse(sp spec) (opts, []arg) {
	return parseArgs(c.args, sp)
}

func parseArgs(args []arg, sp spec) (opts, []arg) {
	var os opts
	var operands []arg
	for i := 0; i < len(args); i++ {
		a := args[i]
		v := a.value
		switch {
		case !a.lit || v == "-" || !strings.HasPrefix(v, "-"):
			if sp.stop {
				return os, append(operands, args[i:]...)
			}
			operands = append(operands, a)
		case v == "--":
			return os, append(operands, args[i+1:]...)
		case strings.HasPrefix(v, "--"):
			name, val, hasVal := strings.Cut(v, "=")
			o := opt{name: name}
			switch {
			case hasVal:
				va := litArg(val)
				o.val = &va
			case slices.Contains(sp.long, name) && i+1 < len(args):
				i++
				o.val = &args[i]
			}
			os = append(os, o)
		default:
			for j := 1; j < len(v); j++ {
				o := opt{name: "-" + v[j:j+1]}
				if strings.IndexByte(sp.short, v[j]) >= 0 {
					if j+1 < len(v) {
						va := litArg(v[j+1:])
						o.val = &va
					} else if i+1 < len(args) {
						i++
						o.val = &args[i]
					}
					os = append(os, o)
					break
				}
				os = append(os, o)
			}
		}
	}
	return os, operands
}

// ---- working directory ----

func (c *cmd) cd() {
	c.read()
	_, ops := c.parse(spec{})
	if len(ops) == 0 {
		c.st.cwd = "" // home
		return
	}
	a := ops[0]
	if a.glob || a.value == "-" || strings.HasPrefix(a.value, "+") {
		c.st.cwd = ""
		return
	}
	c.st.cwd, _ = pathOf(a, c.st)
}

func (c *cmd) popd() {
	c.read()
	c.st.cwd = ""
}

// ---- deletes, moves, writes ----

// deletes: rm, rmdir, unlink, shred, truncate: every operand is deleted (or wiped).
func (c *cmd) deletes() {
	sp := spec{}
	switch c.name {
	case "shred":
		sp = spec{short: "ns", long: []string{"--iterations", "--size", "--random-source"}}
	case "truncate":
		sp = spec{short: "sr", long: []string{"--size", "--reference"}}
	}
	_, ops := c.parse(sp)
	c.each(policy.EffectDelete, ops)
}

// each adds one op per operand, or one about the command when there is none.
func (c *cmd) each(e policy.Effect, ops []arg) {
	if len(ops) == 0 {
		c.op(e, nil)
		return
	}
	for i := range ops {
		c.op(e, &ops[i])
	}
}

func (c *cmd) mv() {
	os, ops := c.parse(spec{short: "tS", long: []string{"--target-directory", "--suffix"}})
	dest, ok := os.val("-t", "--target-directory")
	switch {
	case ok:
	case len(ops) >= 2:
		dest, ops = ops[len(ops)-1], ops[:len(ops)-1]
	default:
		dest = arg{} // not known (xargs mv, mv "${files[@]}")
	}
	c.moves(ops, dest)
}

// moves adds one move op per source.
func (c *cmd) moves(srcs []arg, dest arg) {
	if len(srcs) == 0 {
		srcs = []arg{{}}
	}
	d, _ := pathOf(dest, c.st)
	for _, s := range srcs {
		o := Op{Effect: policy.EffectMove, Command: c.label, Word: s.text, DestWord: dest.text, Dest: d}
		o.Path, o.Glob = pathOf(s, c.st)
		if o.Path == "" || o.Dest == "" || mountOf(o.Path) == "" || mountOf(o.Path) != mountOf(o.Dest) {
			o.Effect = policy.EffectMoveOut
		}
		c.w.add(o)
	}
}

// cp and install copy sources (read) to a destination (written).
func (c *cmd) cp() {
	os, ops := c.parse(spec{short: "tS", long: []string{"--target-directory", "--suffix"}})
	c.copyTo(os, ops)
}

func (c *cmd) copyTo(os opts, ops []arg) {
	if d, ok := os.val("-t", "--target-directory"); ok {
		c.op(policy.EffectOverwrite, &d)
		return
	}
	if len(ops) < 2 {
		c.op(policy.EffectOverwrite, nil)
		return
	}
	c.op(policy.EffectOverwrite, &ops[len(ops)-1])
}

func (c *cmd) install() {
	os, ops := c.parse(spec{short: "mogSt", long: []string{"--mode", "--owner", "--group", "--suffix", "--target-directory", "--strip-program"}})
	if os.has("-d", "--directory") {
		c.each(policy.EffectOverwrite, ops)
		return
	}
	c.copyTo(os, ops)
}

func (c *cmd) ln() {
	os, ops := c.parse(spec{short: "tS", long: []string{"--target-directory", "--suffix"}})
	if len(ops) == 1 && ops[0].lit && !ops[0].glob {
		// ln TARGET: a link named after it in the working directory.
		base := litArg(path.Base(ops[0].value))
		c.op(policy.EffectOverwrite, &base)
		return
	}
	c.copyTo(os, ops)
}

// writes: touch, mkdir: every operand is written.
func (c *cmd) writes() {
	_, ops := c.parse(spec{short: "rdtm", long: []string{"--reference", "--date", "--mode", "--context"}})
	c.each(policy.EffectOverwrite, ops)
}

func (c *cmd) tee() {
	_, ops := c.parse(spec{})
	if len(ops) == 0 {
		c.read()
		return
	}
	c.each(policy.EffectOverwrite, ops)
}

var chmodOpts = []string{"-R", "-c", "-f", "-v", "-h", "-H", "-L", "-P", "--recursive", "--changes",
	"--silent", "--quiet", "--verbose", "--no-preserve-root", "--preserve-root", "--dereference",
	"--no-dereference"}

// chmod MODE FILE...: the mode may look like an option (-x).
func (c *cmd) chmod() { c.ownerOrMode() }

// chown OWNER FILE..., chgrp GROUP FILE...
func (c *cmd) chown() { c.ownerOrMode() }

func (c *cmd) ownerOrMode() {
	reference := false
	var ops []arg
	first := true
	for i, a := range c.args {
		switch {
		case a.lit && a.value == "--":
			ops = append(ops, c.args[i+1:]...)
			if first && !reference && len(ops) > 0 {
				ops = ops[1:]
			}
			c.each(policy.EffectOverwrite, ops)
			return
		case a.lit && (slices.Contains(chmodOpts, a.value) || strings.HasPrefix(a.value, "--from=")):
			continue
		case a.lit && strings.HasPrefix(a.value, "--reference="):
			reference = true
			continue
		case first && !reference:
			first = false // the mode or owner
			continue
		}
		ops = append(ops, a)
	}
	c.each(policy.EffectOverwrite, ops)
}

// dd writes of=FILE.
func (c *cmd) dd() {
	for _, a := range c.args {
		if strings.HasPrefix(a.text, "of=") {
			if !a.lit {
				c.op(policy.EffectExec, &a)
				return
			}
			f := litArg(strings.TrimPrefix(a.value, "of="))
			c.op(policy.EffectOverwrite, &f)
			return
		}
	}
	c.read()
}

func isLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
			return false
		}
	}
	return s != ""
}

// tar: -x writes into -C DIR (or the working directory); -c, -r, -u, -A and --delete write the
// archive; --remove-files deletes what was archived; options that run programs run code.
func (c *cmd) tar() {
	args := c.args
	mode := ""
	var archive, dir *arg
	runs, remove := false, false
	valued := "fCIFTXbLNVgHK"
	take := func(ch byte, v *arg) {
		switch ch {
		case 'f':
			archive = v
		case 'C':
			dir = v
		case 'I', 'F':
			runs = true
		}
	}
	setMode := func(ch byte) {
		if strings.IndexByte("xctruAd", ch) >= 0 {
			mode = string(ch)
		}
	}
	i := 0
	if len(args) > 0 && args[0].lit && isLetters(args[0].value) {
		// Old style: "tar xzf FILE": the letters' values follow in order.
		i = 1
		for _, ch := range []byte(args[0].value) {
			setMode(ch)
			if strings.IndexByte(valued, ch) >= 0 && i < len(args) {
				take(ch, &args[i])
				i++
			}
		}
	}
	os, ops := parseArgs(args[i:], spec{short: valued, long: tarValued})
	for _, o := range os {
		if len(o.name) == 2 { // a short option, its value (if any) taken as the letter says
			setMode(o.name[1])
			if o.val != nil {
				take(o.name[1], o.val)
			}
			continue
		}
		switch o.name {
		case "--extract", "--get":
			mode = "x"
		case "--create":
			mode = "c"
		case "--list":
			mode = "t"
		case "--append":
			mode = "r"
		case "--update":
			mode = "u"
		case "--catenate", "--concatenate":
			mode = "A"
		case "--diff", "--compare":
			mode = "d"
		case "--delete":
			mode = "D"
		case "--file":
			archive = o.val
		case "--directory":
			dir = o.val
		case "--remove-files":
			remove = true
		case "--to-command", "--use-compress-program", "--checkpoint-action", "--info-script",
			"--new-volume-script", "--rsh-command", "--rmt-command":
			runs = true
		}
	}
	c.label = "tar"
	switch mode {
	case "x":
		c.label = "tar -x"
		if dir == nil {
			d := litArg(".")
			dir = &d
		}
		c.op(policy.EffectOverwrite, dir)
	case "c", "r", "u", "A", "D":
		c.label = "tar -" + strings.ToLower(mode)
		if archive != nil && archive.value != "-" {
			c.op(policy.EffectOverwrite, archive)
		}
	}
	if remove {
		c.label = "tar --remove-files"
		c.each(policy.EffectDelete, ops)
	}
	if runs {
		c.label = "tar"
		c.op(policy.EffectExec, nil)
	}
	if mode == "t" || mode == "d" || mode == "" {
		c.label = "tar"
		c.read()
	}
}

// tarValued are tar's long options that take a value (as the next argument when not given
// with "=").
var tarValued = []string{"--file", "--directory", "--to-command", "--use-compress-program",
	"--checkpoint-action", "--info-script", "--new-volume-script", "--rsh-command", "--rmt-command",
	"--exclude", "--exclude-from", "--files-from", "--owner", "--group", "--mode",
	"--transform", "--xform", "--label", "--newer", "--after-date", "--newer-mtime",
	"--blocking-factor", "--tape-length", "--strip-components", "--format", "--suffix",
	"--mtime", "--record-size", "--listed-incremental", "--sort", "--occurrence",
	"--volno-file", "--index-file", "--quoting-style", "--owner-map", "--group-map"}

// unzip extracts into -d DIR (or the working directory), unless it only lists, tests or pipes.
func (c *cmd) unzip() {
	var dir *arg
	readOnly := false
	for i := 0; i < len(c.args); i++ {
		a := c.args[i]
		v := a.value
		if !a.lit || !strings.HasPrefix(v, "-") || len(v) < 2 {
			continue
		}
		switch {
		case v == "-d":
			if i+1 < len(c.args) {
				i++
				dir = &c.args[i]
			}
			continue
		case strings.HasPrefix(v, "-d"):
			d := litArg(v[2:])
			dir = &d
			continue
		case v == "-x":
			for i+1 < len(c.args) && !strings.HasPrefix(c.args[i+1].value, "-") {
				i++
			}
			continue
		case v == "-P" || v == "-I" || v == "-O":
			i++
			continue
		}
		if strings.ContainsAny(v[1:], "ltvZpcz") {
			readOnly = true
		}
	}
	if readOnly {
		c.read()
		return
	}
	if dir == nil {
		d := litArg(".")
		dir = &d
	}
	c.op(policy.EffectOverwrite, dir)
}

var rsyncLong = []string{"--rsh", "--rsync-path", "--filter", "--exclude", "--include",
	"--exclude-from", "--include-from", "--files-from", "--temp-dir", "--compare-dest",
	"--copy-dest", "--link-dest", "--backup-dir", "--suffix", "--chmod", "--chown", "--usermap",
	"--groupmap", "--log-file", "--log-file-format", "--partial-dir", "--out-format",
	"--password-file", "--timeout", "--contimeout", "--max-size", "--min-size", "--max-delete",
	"--bwlimit", "--port", "--sockopts", "--block-size", "--modify-window", "--info", "--debug",
	"--skip-compress", "--iconv", "--protocol", "--checksum-choice", "--compress-choice",
	"--compress-level", "--remote-option", "--outbuf", "--stop-after", "--stop-at",
	"--write-batch", "--only-write-batch", "--read-batch"}

// rsync writes its destination; --delete* deletes in it, --remove-source-files deletes the
// sources; a remote shell runs code.
func (c *cmd) rsync() {
	os, ops := c.parse(spec{short: "efTBM", long: rsyncLong})
	if os.has("-e", "--rsh", "--rsync-path") {
		c.op(policy.EffectExec, nil)
	}
	if len(ops) < 2 {
		c.read() // rsync SRC lists it
		return
	}
	dest, srcs := ops[len(ops)-1], ops[:len(ops)-1]
	if dest.lit && strings.Contains(strings.SplitN(dest.value, "/", 2)[0], ":") {
		c.op(policy.EffectExec, nil) // a remote destination
		return
	}
	c.op(policy.EffectOverwrite, &dest)
	if os.hasPrefix("--delete") || os.has("--del") {
		c.label = "rsync --delete"
		c.op(policy.EffectDelete, &dest)
	}
	if os.has("--remove-source-files") {
		c.label = "rsync --remove-source-files"
		c.each(policy.EffectDelete, srcs)
	}
}

// ---- read commands with writing options ----

func (c *cmd) sort() {
	os, _ := c.parse(spec{short: "kotST", long: []string{"--key", "--output", "--field-separator",
		"--buffer-size", "--temporary-directory", "--compress-program", "--files0-from",
		"--batch-size", "--parallel", "--random-source"}})
	if os.has("--compress-program") {
		c.op(policy.EffectExec, nil)
	}
	if o, ok := os.val("-o", "--output"); ok {
		c.label = "sort -o"
		c.op(policy.EffectOverwrite, &o)
		return
	}
	c.read()
}

func (c *cmd) uniq() {
	_, ops := c.parse(spec{short: "fsw", long: []string{"--skip-fields", "--skip-chars", "--check-chars"}})
	if len(ops) >= 2 {
		c.op(policy.EffectOverwrite, &ops[1])
		return
	}
	c.read()
}

func (c *cmd) tree() {
	os, _ := c.parse(spec{short: "LPIoH", long: []string{"--filelimit", "--charset", "--sort", "--timefmt"}})
	if o, ok := os.val("-o"); ok {
		c.label = "tree -o"
		c.op(policy.EffectOverwrite, &o)
		return
	}
	c.read()
}

func (c *cmd) date() {
	os, ops := c.parse(spec{short: "dfrs", long: []string{"--date", "--file", "--reference", "--set"}})
	if os.has("-s", "--set") {
		c.op(policy.EffectExec, nil)
		return
	}
	for _, a := range ops {
		if !strings.HasPrefix(a.value, "+") {
			c.op(policy.EffectExec, nil) // date MMDDhhmm sets the clock
			return
		}
	}
	c.read()
}

// less and more: +CMD runs a pager command (`+!cmd` runs a shell command); -o/-O log to a file.
func (c *cmd) less() {
	for _, a := range c.args {
		if strings.HasPrefix(a.text, "+") {
			c.op(policy.EffectExec, nil)
			return
		}
	}
	os, _ := c.parse(spec{short: "oObhjkpPTxyz#", long: []string{"--log-file", "--LOG-FILE"}})
	if o, ok := os.val("-o", "-O", "--log-file", "--LOG-FILE"); ok {
		c.op(policy.EffectOverwrite, &o)
		return
	}
	c.read()
}

// rg runs a preprocessor with --pre.
func (c *cmd) rg() {
	os, _ := c.parse(spec{short: "efgtTmABCMEj", long: []string{"--pre", "--pre-glob"}})
	if os.has("--pre") {
		c.op(policy.EffectExec, nil)
		return
	}
	c.read()
}

// hash -p PATH NAME makes NAME run PATH.
func (c *cmd) hash() {
	os, _ := c.parse(spec{short: "pt"})
	if os.has("-p") {
		c.op(policy.EffectExec, nil)
		return
	}
	c.read()
}

func (c *cmd) alias() {
	for _, a := range c.args {
		if !a.lit || strings.Contains(a.value, "=") {
			c.unknown()
			return
		}
	}
	c.read()
}

func (c *cmd) mapfile() {
	os, _ := c.parse(spec{short: "dnOsuCc"})
	if os.has("-C") {
		c.unknown()
		return
	}
	c.read()
}

// ---- wrappers: what they run is classified ----

func (c *cmd) nohup() {
	_, rest := c.parse(spec{stop: true})
	c.sub(rest)
}

func (c *cmd) nice() {
	_, rest := c.parse(spec{short: "n", long: []string{"--adjustment"}, stop: true})
	c.sub(rest)
}

func (c *cmd) timeout() {
	_, rest := c.parse(spec{short: "sk", long: []string{"--signal", "--kill-after"}, stop: true})
	if len(rest) > 0 {
		rest = rest[1:] // the duration
	}
	c.sub(rest)
}

func (c *cmd) stdbuf() {
	_, rest := c.parse(spec{short: "ioe", long: []string{"--input", "--output", "--error"}, stop: true})
	c.sub(rest)
}

func (c *cmd) ionice() {
	os, rest := c.parse(spec{short: "cnp", long: []string{"--class", "--classdata", "--pid", "--pgid", "--uid"}, stop: true})
	if os.has("-p", "--pid", "-P", "--pgid", "-u", "--uid") {
		c.op(policy.EffectExec, nil)
		return
	}
	c.sub(rest)
}

// taskset MASK CMD, chrt PRIO CMD (with -p they change a running process).
func (c *cmd) taskset() {
	os, rest := c.parse(spec{short: "T", long: []string{"--sched-runtime", "--sched-deadline", "--sched-period"}, stop: true})
	if os.has("-p", "--pid") {
		c.op(policy.EffectExec, nil)
		return
	}
	if len(rest) > 0 {
		rest = rest[1:]
	}
	c.sub(rest)
}

// time (the program, not the keyword): -o FILE writes it.
func (c *cmd) time() {
	os, rest := c.parse(spec{short: "of", long: []string{"--output", "--format"}, stop: true})
	if o, ok := os.val("-o", "--output"); ok {
		c.op(policy.EffectOverwrite, &o)
	}
	c.sub(rest)
}

func (c *cmd) commandBuiltin() {
	os, rest := c.parse(spec{stop: true})
	if os.has("-v", "-V") {
		c.read()
		return
	}
	c.sub(rest)
}

func (c *cmd) exec() {
	_, rest := c.parse(spec{short: "a", stop: true})
	if len(rest) == 0 {
		c.read() // exec with redirections only: they are classified with the statement
		return
	}
	c.w.run(rest, c.st, c.redirs)
}

// sudo and doas run a command as another user.
func (c *cmd) sudo() {
	os, rest := c.parse(spec{short: "ugCDhprtTU", long: []string{"--user", "--group", "--close-from",
		"--chdir", "--host", "--prompt", "--role", "--type", "--command-timeout", "--other-user"}, stop: true})
	if os.has("-e", "--edit") {
		c.label = "sudoedit"
		c.each(policy.EffectOverwrite, rest)
		return
	}
	if len(rest) == 0 {
		if os.has("-s", "--shell", "-i", "--login") {
			c.unknown() // a shell reading commands from standard input
			return
		}
		c.read() // -l, -v, -k, -V
		return
	}
	st := c.st
	if d, ok := os.val("-D", "--chdir"); ok {
		sub := *c.st
		sub.cwd, _ = pathOf(d, c.st)
		st = &sub
	}
	c.w.run(rest, st, c.redirs)
}

// env [-i] [-u NAME] [-C DIR] [-S STRING] [NAME=VALUE]... [CMD ARGS]
func (c *cmd) env() {
	os, rest := c.parse(spec{short: "uCS", long: []string{"--unset", "--chdir", "--split-string"}, stop: true})
	for len(rest) > 0 && rest[0].lit && strings.Contains(rest[0].value, "=") && !strings.HasPrefix(rest[0].value, "=") {
		name, _, _ := strings.Cut(rest[0].value, "=")
		c.w.assign(name, rest[0].text)
		rest = rest[1:]
	}
	st := c.st
	if d, ok := os.val("-C", "--chdir"); ok {
		sub := *c.st
		sub.cwd, _ = pathOf(d, c.st)
		st = &sub
	}
	if s, ok := os.val("-S", "--split-string"); ok {
		if !s.lit {
			c.unknown()
			return
		}
		line := s.value
		for _, a := range rest {
			if !a.lit {
				c.unknown()
				return
			}
			line += " " + shellQuote(a.value)
		}
		c.w.nested("env -S", line, st)
		return
	}
	if len(rest) == 0 {
		c.read()
		return
	}
	c.w.run(rest, st, c.redirs)
}

func shellQuote(s string) string {
	q, err := syntax.Quote(s, syntax.LangBash)
	if err != nil {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return q
}

// watch runs its command with sh -c (the words joined), or directly with -x.
func (c *cmd) watch() {
	os, rest := c.parse(spec{short: "nq", long: []string{"--interval", "--equexit"}, stop: true})
	if len(rest) == 0 {
		c.read()
		return
	}
	if os.has("-x", "--exec") {
		c.w.run(rest, c.st, nil)
		return
	}
	c.nestedWords("watch", rest)
}

// nestedWords classifies words joined with spaces as a shell command line.
func (c *cmd) nestedWords(label string, words []arg) {
	var parts []string
	for _, a := range words {
		if !a.lit {
			c.w.add(Op{Effect: policy.EffectUnknown, Command: label, Word: joinText(words)})
			return
		}
		parts = append(parts, a.value)
	}
	c.w.nested(label, strings.Join(parts, " "), c.st)
}

// flock [opts] FILE CMD ARGS, or flock [opts] FILE -c STRING.
func (c *cmd) flock() {
	os, rest := c.parse(spec{short: "wEc", long: []string{"--timeout", "--conflict-exit-code", "--command"}, stop: true})
	if len(rest) > 0 {
		rest = rest[1:] // the lock file
	}
	// -c may also follow the lock file.
	if len(rest) >= 2 && rest[0].lit && (rest[0].value == "-c" || rest[0].value == "--command") {
		os = append(os, opt{name: "-c", val: &rest[1]})
		rest = nil
	}
	if s, ok := os.val("-c", "--command"); ok {
		c.nestedWords("flock -c", []arg{s})
		return
	}
	c.sub(rest)
}

// trap 'CMD' SIGNALS: CMD runs later, in this shell.
func (c *cmd) trap() {
	os, rest := c.parse(spec{stop: true})
	if os.has("-l", "-p") || len(rest) < 2 {
		c.read()
		return
	}
	if rest[0].lit && (rest[0].value == "-" || rest[0].value == "") {
		c.read()
		return
	}
	c.nestedWords("trap", rest[:1])
}

// xargs runs its command with arguments read from standard input: what they name is not known.
func (c *cmd) xargs() {
	os, rest := c.parse(spec{short: "InLPsdEa", long: []string{"--max-args", "--max-lines",
		"--max-procs", "--max-chars", "--delimiter", "--arg-file", "--process-slot-var"}, stop: true})
	placeholder := ""
	for _, o := range os {
		switch {
		case o.name == "-I" && o.val != nil:
			placeholder = o.val.value
		case o.name == "-i" || o.name == "--replace":
			placeholder = "{}"
			if o.val != nil {
				placeholder = o.val.value
			}
		}
	}
	// -i, -l and -e take an optional value attached to them, never the next argument; parse
	// took "-i" clusters apart, which is harmless: their letters are flags here.
	if len(rest) == 0 {
		c.read() // echo
		return
	}
	from := len(c.w.ops)
	c.w.run(rest, c.st, nil)
	added := slices.Clone(c.w.ops[from:])
	c.w.ops = c.w.ops[:from]
	for _, o := range added {
		if placeholder != "" && strings.Contains(o.Word, placeholder) {
			o = unnamed(o)
		}
		if placeholder != "" && o.DestWord != "" && strings.Contains(o.DestWord, placeholder) {
			o.Dest, o.Effect = "", policy.EffectMoveOut
		}
		c.w.add(o)
		// The arguments read from standard input get the same effect, on files not known here.
		switch o.Effect {
		case policy.EffectDelete, policy.EffectMove, policy.EffectMoveOut, policy.EffectOverwrite:
			if placeholder == "" {
				c.w.add(unnamed(Op{Effect: o.Effect, Command: o.Command, DestWord: o.DestWord, Dest: o.Dest}))
			}
		}
	}
}

// unnamed is o about a file that is not known.
func unnamed(o Op) Op {
	o.Path, o.Glob = "", false
	switch o.Effect {
	case policy.EffectOverwrite:
		o.Effect = policy.EffectExec
	case policy.EffectMove:
		o.Effect = policy.EffectMoveOut
	}
	return o
}

// shell: sh -c STRING is classified as a command line; sh FILE runs a script; a shell reading
// its commands from standard input runs what a here-document gives it, or something unknown.
func (c *cmd) shell() {
	cmdMode, stdin := false, false
	var ops []arg
	args := c.args
loop:
	for i := 0; i < len(args); i++ {
		a := args[i]
		v := a.value
		switch {
		case !a.lit:
			ops = args[i:]
			break loop
		case v == "--" || v == "-":
			ops = args[i+1:]
			break loop
		case strings.HasPrefix(v, "--"):
			if v == "--rcfile" || v == "--init-file" {
				i++
			}
		case len(v) > 1 && (v[0] == '-' || v[0] == '+'):
			for _, ch := range v[1:] {
				switch ch {
				case 'c':
					cmdMode = true
				case 's':
					stdin = true
				case 'o', 'O':
					i++
				}
			}
		default:
			ops = args[i:]
			break loop
		}
	}
	switch {
	case cmdMode:
		if len(ops) == 0 {
			c.unknown()
			return
		}
		c.nestedWords(c.name+" -c", ops[:1])
	case !stdin && len(ops) > 0:
		c.op(policy.EffectExec, &ops[0]) // a script file
	default:
		c.stdinScript()
	}
}

// stdinScript classifies what a shell reads from standard input: a literal here-document or
// here-string is a command line; a file is a script; anything else is unknown.
func (c *cmd) stdinScript() {
	for i := len(c.redirs) - 1; i >= 0; i-- {
		r := c.redirs[i]
		if r.N != nil && r.N.Value != "0" {
			continue
		}
		switch r.Op {
		case syntax.Hdoc, syntax.DashHdoc:
			if body, ok := hdocText(r); ok {
				c.w.nested(c.name+" <<", body, c.st)
				return
			}
		case syntax.WordHdoc:
			if v, ok := literal(r.Word); ok {
				c.w.nested(c.name+" <<<", v, c.st)
				return
			}
		case syntax.RdrIn:
			a := c.w.arg(r.Word)
			c.op(policy.EffectExec, &a) // a script file
			return
		default:
			continue
		}
		break
	}
	c.w.add(Op{Effect: policy.EffectUnknown, Command: c.name, Word: "commands from standard input"})
}

// hdocText is a here-document's body when it holds no expansion.
func hdocText(r *syntax.Redirect) (string, bool) {
	if r.Hdoc == nil {
		return "", true
	}
	var b strings.Builder
	quoted := false
	for _, p := range r.Word.Parts {
		if _, ok := p.(*syntax.Lit); !ok {
			quoted = true
		}
	}
	if l, ok := r.Word.Parts[0].(*syntax.Lit); ok && strings.Contains(l.Value, `\`) {
		quoted = true
	}
	for _, p := range r.Hdoc.Parts {
		l, ok := p.(*syntax.Lit)
		if !ok {
			return "", false
		}
		if quoted {
			b.WriteString(l.Value)
		} else {
			b.WriteString(unescapeDouble(l.Value))
		}
	}
	return b.String(), true
}
