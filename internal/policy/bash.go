package policy

import "strings"

// commandPattern is a compiled Bash(...) pattern: an exact command, or a prefix in the
// `prefix:*` (or `prefix *`) form that matches the prefix alone or followed by a space and
// anything. Whitespace runs compare as one space.
//
// Shell operators are understood, so a rule about one command does not cover another one
// chained to it: an allow rule matches only when every command of a chain (`;`, `&&`, `||`,
// `|`, `&`, newlines) matches and the line has no command or process substitution, subshell
// or redirection (unless the rule names that exact line); an ask or deny rule matches when any
// command of the chain matches, leading `NAME=value` assignments aside. These rules are a
// convenience for approvals; the sandbox, not string matching, is the barrier.
type commandPattern struct {
	all    bool
	prefix bool
	text   string // normalized
}

func compileCommand(p string) (commandPattern, string) {
	if p == "*" {
		return commandPattern{all: true}, ""
	}
	cp := commandPattern{}
	switch {
	case strings.HasSuffix(p, ":*"):
		cp.prefix, p = true, p[:len(p)-2]
	case strings.HasSuffix(p, " *"):
		cp.prefix, p = true, p[:len(p)-2]
	}
	cp.text = normalizeCommand(p)
	if cp.text == "" {
		return cp, "empty command prefix"
	}
	return cp, ""
}

// matchOne matches one normalized simple command.
func (cp commandPattern) matchOne(cmd string) bool {
	if cp.all {
		return true
	}
	if cmd == cp.text {
		return true
	}
	return cp.prefix && strings.HasPrefix(cmd, cp.text+" ")
}

// match matches a command line; strict is for allow rules (every part must match).
func (cp commandPattern) match(line string, strict bool) bool {
	if cp.all {
		return true
	}
	whole := normalizeCommand(line)
	if whole == "" {
		return false
	}
	if !cp.prefix && whole == cp.text {
		return true // the rule names this exact line
	}
	segs, simple := splitCommand(line)
	if strict {
		if !simple || len(segs) == 0 {
			return false
		}
		for _, s := range segs {
			if !cp.matchOne(s) {
				return false
			}
		}
		return true
	}
	if cp.matchOne(whole) {
		return true
	}
	for _, s := range segs {
		if cp.matchOne(s) || cp.matchOne(stripAssignments(s)) {
			return true
		}
	}
	return false
}

func normalizeCommand(s string) string { return strings.Join(strings.Fields(s), " ") }

// splitCommand splits a command line at unquoted shell operators and reports whether it is
// simple: no substitution, subshell or redirection, and all quotes closed. Parts are
// normalized; empty parts are dropped.
func splitCommand(line string) (parts []string, simple bool) {
	simple = true
	var cur strings.Builder
	flush := func() {
		if s := normalizeCommand(cur.String()); s != "" {
			parts = append(parts, s)
		}
		cur.Reset()
	}
	const (
		none = iota
		single
		double
	)
	q := none
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch q {
		case single:
			cur.WriteByte(c)
			if c == '\'' {
				q = none
			}
			continue
		case double:
			cur.WriteByte(c)
			switch {
			case c == '\\' && i+1 < len(line):
				i++
				cur.WriteByte(line[i])
			case c == '"':
				q = none
			case c == '`', c == '$' && i+1 < len(line) && line[i+1] == '(':
				simple = false
			}
			continue
		}
		switch c {
		case '\\':
			cur.WriteByte(c)
			if i+1 < len(line) {
				i++
				cur.WriteByte(line[i])
			}
		case '\'':
			q = single
			cur.WriteByte(c)
		case '"':
			q = double
			cur.WriteByte(c)
		case ';', '|', '\n', '\r':
			flush()
		case '&':
			if i > 0 && (line[i-1] == '>' || line[i-1] == '<') {
				cur.WriteByte(c) // 2>&1
				continue
			}
			flush()
		case '(', ')', '`':
			simple = false
			flush()
		case '>', '<':
			simple = false
			cur.WriteByte(c)
		default:
			cur.WriteByte(c)
		}
	}
	if q != none {
		simple = false
	}
	flush()
	return parts, simple
}

// stripAssignments drops leading `NAME=value` words and `{`/`!` keywords from a normalized
// simple command, so that deny and ask rules still see the command they name.
func stripAssignments(s string) string {
	words := strings.Split(s, " ")
	for len(words) > 0 && (isAssignment(words[0]) || words[0] == "{" || words[0] == "!") {
		words = words[1:]
	}
	return strings.Join(words, " ")
}

func isAssignment(w string) bool {
	eq := strings.IndexByte(w, '=')
	if eq <= 0 {
		return false
	}
	for i := 0; i < eq; i++ {
		c := w[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
