package policy

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Kind is what a rule is about.
type Kind string

const (
	KindRead      Kind = "Read"      // EffectRead; path pattern
	KindWrite     Kind = "Write"     // EffectCreate and EffectOverwrite; path pattern
	KindCreate    Kind = "Create"    // EffectCreate; path pattern
	KindOverwrite Kind = "Overwrite" // EffectOverwrite; path pattern
	KindEdit      Kind = "Edit"      // alias of Overwrite
	KindDelete    Kind = "Delete"    // EffectDelete; path pattern
	KindMove      Kind = "Move"      // EffectMove and EffectMoveOut; path pattern (the source)
	KindBash      Kind = "Bash"      // EffectExec; command pattern: `git status`, `npm run:*`
	KindWebFetch  Kind = "WebFetch"  // EffectEgress; `domain:example.com`, `domain:*.example.com`
	KindTool      Kind = "Tool"      // any op of the named tool(s); the name may be a glob
)

// Kinds lists every rule kind, in the order they are documented.
var Kinds = []Kind{KindRead, KindWrite, KindCreate, KindOverwrite, KindEdit, KindDelete,
	KindMove, KindBash, KindWebFetch, KindTool}

// effects returns the effects a kind's rules apply to; nil means any (Tool).
func (k Kind) effects() []Effect {
	switch k {
	case KindRead:
		return []Effect{EffectRead}
	case KindWrite:
		return []Effect{EffectCreate, EffectOverwrite}
	case KindCreate:
		return []Effect{EffectCreate}
	case KindOverwrite, KindEdit:
		return []Effect{EffectOverwrite}
	case KindDelete:
		return []Effect{EffectDelete}
	case KindMove:
		return []Effect{EffectMove, EffectMoveOut}
	case KindBash:
		return []Effect{EffectExec}
	case KindWebFetch:
		return []Effect{EffectEgress}
	}
	return nil
}

func (k Kind) known() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

func (k Kind) isPath() bool {
	switch k {
	case KindRead, KindWrite, KindCreate, KindOverwrite, KindEdit, KindDelete, KindMove:
		return true
	}
	return false
}

// Rule is one parsed permission rule: `Kind` (every op of that kind) or `Kind(pattern)`.
// Rules match case-sensitively (host names aside, which DNS compares without case).
type Rule struct {
	Kind    Kind
	Pattern string // as written, surrounding space trimmed; "" for a bare Kind

	path    pathPattern
	command commandPattern
	domain  string // lower case; "*" any; "*.x" any subdomain of x
}

// String returns the rule in its canonical written form; ParseRule(r.String()) gives r back.
func (r Rule) String() string {
	if r.Pattern == "" {
		return string(r.Kind)
	}
	return string(r.Kind) + "(" + r.Pattern + ")"
}

// Equal reports whether two rules are the same rule.
func (r Rule) Equal(o Rule) bool { return r.Kind == o.Kind && r.Pattern == o.Pattern }

// ParseRule parses `Kind` or `Kind(pattern)`. Errors are one line naming the rule and what is
// wrong with it.
func ParseRule(s string) (Rule, error) {
	s = strings.TrimSpace(s)
	fail := func(what string) (Rule, error) {
		return Rule{}, fmt.Errorf("%s in %s", what, quote(s))
	}
	if s == "" {
		return Rule{}, errors.New("empty rule")
	}
	var r Rule
	open := strings.IndexByte(s, '(')
	if open < 0 {
		if strings.IndexByte(s, ')') >= 0 {
			return fail("unbalanced parentheses")
		}
		r.Kind = Kind(s)
	} else {
		r.Kind = Kind(strings.TrimSpace(s[:open]))
		if !strings.HasSuffix(s, ")") || len(s) == open+1 {
			if strings.IndexByte(s[open+1:], ')') < 0 {
				return fail("unbalanced parentheses")
			}
			return fail("text after the closing parenthesis")
		}
		r.Pattern = strings.TrimSpace(s[open+1 : len(s)-1])
	}
	if r.Kind == "" {
		return fail("missing rule kind")
	}
	if !r.Kind.known() {
		return fail("unknown rule kind " + quote(string(r.Kind)))
	}
	if open >= 0 {
		if r.Pattern == "" {
			return fail("empty pattern")
		}
		if !balanced(r.Pattern, r.Kind == KindBash) {
			return fail("unbalanced parentheses")
		}
	}
	if r.Pattern == "" {
		if r.Kind == KindTool {
			return fail("Tool needs a tool name, e.g. Tool(ask_user)")
		}
		return r, nil
	}
	switch {
	case r.Kind.isPath():
		pp, err := compilePath(r.Pattern)
		if err != nil {
			return fail(err.Error())
		}
		r.path = pp
	case r.Kind == KindBash:
		cp, msg := compileCommand(r.Pattern)
		if msg != "" {
			return fail(msg)
		}
		r.command = cp
	case r.Kind == KindWebFetch:
		d, msg := compileDomain(r.Pattern)
		if msg != "" {
			return fail(msg)
		}
		r.domain = d
	case r.Kind == KindTool:
		if strings.ContainsAny(r.Pattern, " \t\r\n/") {
			return fail("bad tool name " + quote(r.Pattern))
		}
		if _, err := path.Match(r.Pattern, ""); err != nil {
			return fail("bad glob " + quote(r.Pattern) + ": " + err.Error())
		}
	}
	return r, nil
}

// MustParseRule is ParseRule for rules known to be valid (tests, built-in defaults).
func MustParseRule(s string) Rule {
	r, err := ParseRule(s)
	if err != nil {
		panic(err)
	}
	return r
}

// balanced reports whether parentheses in p are balanced; for shell commands, quoted ones do
// not count.
func balanced(p string, shell bool) bool {
	depth := 0
	var q byte
	for i := 0; i < len(p); i++ {
		c := p[i]
		if shell {
			if q != 0 {
				if c == q {
					q = 0
				} else if c == '\\' && q == '"' {
					i++
				}
				continue
			}
			switch c {
			case '\'', '"':
				q = c
				continue
			case '\\':
				i++
				continue
			}
		}
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

func compileDomain(p string) (string, string) {
	d, ok := strings.CutPrefix(p, "domain:")
	if !ok {
		return "", "WebFetch pattern must be domain:HOST, e.g. domain:example.com"
	}
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if d == "*" {
		return d, ""
	}
	host := strings.TrimPrefix(d, "*.")
	if host == "" {
		return "", "empty domain"
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", "bad domain " + quote(d) + ": only letters, digits, '-', '.', '_' and a leading '*.' are allowed"
		}
	}
	if strings.HasPrefix(host, ".") || strings.Contains(host, "..") {
		return "", "bad domain " + quote(d)
	}
	return d, ""
}

// hostOf returns the lower-case host name of a WebFetch subject: a host, host:port, or a URL
// with or without its scheme.
func hostOf(subject string) string {
	s := strings.TrimSpace(subject)
	if !strings.Contains(s, "://") {
		s = "//" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
}

func matchDomain(pattern, host string) bool {
	if host == "" {
		return false
	}
	if pattern == "*" {
		return true
	}
	if base, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(host, "."+base)
	}
	return host == pattern
}

// matches reports whether r applies to op of tool. strict is set for allow rules, which must
// cover everything the op does (see commandPattern).
func (r Rule) matches(tool string, op Op, strict bool) bool {
	if r.Kind == KindTool {
		ok, _ := path.Match(r.Pattern, tool)
		return ok
	}
	eff := normalEffect(op.Effect)
	// A Bash rule speaks of command lines: it matches every op of the bash tool, whatever
	// effect the command was classified as (Bash(rm:*) catches `rm -rf x`, a delete).
	hit := r.Kind == KindBash && tool == "bash"
	for _, e := range r.Kind.effects() {
		if e == eff {
			hit = true
		}
	}
	if !hit {
		return false
	}
	if r.Pattern == "" {
		return true
	}
	switch {
	case r.Kind.isPath():
		return op.Target != nil && r.path.match(op.Target.Grant, op.Target.Rel)
	case r.Kind == KindBash:
		return r.command.match(op.Subject, strict)
	case r.Kind == KindWebFetch:
		return matchDomain(r.domain, hostOf(op.Subject))
	}
	return false
}

// normalEffect maps anything not a known effect to EffectUnknown.
func normalEffect(e Effect) Effect {
	switch e {
	case EffectNone, EffectRead, EffectCreate, EffectOverwrite, EffectDelete, EffectMove,
		EffectMoveOut, EffectExec, EffectEgress:
		return e
	}
	return EffectUnknown
}

func quote(s string) string { return strconv.Quote(s) }
