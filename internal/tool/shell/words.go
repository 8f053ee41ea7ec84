package shell

import (
	"bytes"
	"path"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// arg is one argument of a command after brace expansion.
type arg struct {
	text    string // as written
	value   string // its value once quotes are removed, when lit
	pattern string // value with quoted glob metacharacters escaped, when glob
	lit     bool   // no expansion in it (no $X, $(...), ~)
	glob    bool   // unquoted glob metacharacters: bash expands it to matching files
}

// litArg is an argument made up by a handler (a default such as "."), or the value part of an
// option (--output=FILE).
func litArg(v string) arg { return arg{text: v, value: v, pattern: v, lit: true} }

// maxBraceWords bounds the words one brace expansion may give; past it, the word is dynamic.
const maxBraceWords = 256

// args expands words into arguments: brace expansion ({a,b}) gives several.
func (w *walker) args(words []*syntax.Word) []arg {
	var out []arg
	for _, word := range words {
		out = append(out, w.expandBraces(word)...)
	}
	return out
}

func (w *walker) expandBraces(word *syntax.Word) []arg {
	cp := *word
	cp.Parts = slices.Clone(word.Parts)
	if !syntax.SplitBraces(&cp) {
		return []arg{w.arg(word)}
	}
	var out []arg
	for ew, err := range expand.BracesSeq(nil, &cp) {
		if err != nil || len(out) >= maxBraceWords {
			return []arg{{text: w.text(word)}} // too many: not literal
		}
		a := analyze(ew)
		var b bytes.Buffer
		if syntax.NewPrinter().Print(&b, ew) == nil {
			a.text = b.String()
		}
		out = append(out, a)
	}
	return out
}

// arg is one word as an argument, without brace expansion.
func (w *walker) arg(word *syntax.Word) arg {
	a := analyze(word)
	a.text = w.text(word)
	return a
}

// literal returns a word's value when it holds no expansion and no glob.
func literal(word *syntax.Word) (string, bool) {
	if word == nil {
		return "", false
	}
	a := analyze(word)
	return a.value, a.lit && !a.glob
}

// analyze computes a word's literal value, if it has one, and whether it is a glob.
func analyze(word *syntax.Word) arg {
	var val, pat strings.Builder
	a := arg{lit: true}
	for i, part := range word.Parts {
		switch p := part.(type) {
		case *syntax.Lit:
			v := p.Value
			if i == 0 && strings.HasPrefix(v, "~") {
				return arg{} // the home folder: not known here
			}
			for j := 0; j < len(v); j++ {
				c := v[j]
				switch {
				case c == '\\' && j+1 < len(v):
					j++
					if v[j] == '\n' {
						continue
					}
					val.WriteByte(v[j])
					pat.WriteString(escapeGlob(v[j : j+1]))
				case c == '*' || c == '?' || c == '[' && strings.IndexByte(v[j+1:], ']') >= 0:
					a.glob = true
					val.WriteByte(c)
					pat.WriteByte(c)
				default:
					val.WriteByte(c)
					pat.WriteByte(c)
				}
			}
		case *syntax.SglQuoted:
			if p.Dollar && strings.Contains(p.Value, `\`) {
				return arg{} // $'...' escapes: not decoded here
			}
			val.WriteString(p.Value)
			pat.WriteString(escapeGlob(p.Value))
		case *syntax.DblQuoted:
			for _, q := range p.Parts {
				l, ok := q.(*syntax.Lit)
				if !ok {
					return arg{}
				}
				v := unescapeDouble(l.Value)
				val.WriteString(v)
				pat.WriteString(escapeGlob(v))
			}
		default: // parameter, command, arithmetic or process expansion, extended glob
			return arg{}
		}
	}
	a.value, a.pattern = val.String(), pat.String()
	if !a.glob {
		a.pattern = a.value
	}
	return a
}

// unescapeDouble removes the backslashes that are special inside double quotes.
func unescapeDouble(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case '$', '`', '"', '\\':
				i++
			case '\n':
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// pathOf is an argument as an absolute path in st's working directory, and whether it is a
// glob pattern. "" when it is not a literal path.
func pathOf(a arg, st *state) (string, bool) {
	if !a.lit || a.value == "" {
		return "", false
	}
	v := a.value
	if a.glob {
		v = a.pattern
	}
	if path.IsAbs(v) {
		return path.Clean(v), a.glob
	}
	if st.cwd == "" {
		return "", false
	}
	return path.Join(st.cwd, v), a.glob
}
