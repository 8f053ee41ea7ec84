package extract

import (
	"strings"
	"time"

	"github.com/andybalholm/cascadia"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// This file reads a document's <style> sheets as far as hiding text is concerned: rules
// whose declarations can hide text or define custom properties, with their selectors
// compiled by cascadia and indexed by what the selector's subject must carry.
//
// What a browser would apply is approximated towards showing text as hidden: rules under
// an at-rule (@supports, @layer, @container, @scope), under a media query not decided for
// the nominal desktop screen of media.go, and selectors cascadia cannot read exactly are
// "uncertain"; rules under a media query that screen does not match are left out. An uncertain rule can hide an element but never
// un-hide one that certain rules hide (see style.go). A document whose sheets are too big
// or too costly to read whole is read as hiding all its text.

// Limits on what a document's style sheets may cost.
const (
	maxCSSRules        = 50000           // selector-rules kept; later ones are dropped
	maxCSSNesting      = 32              // nested blocks followed
	maxSelectorLen     = 4096            // a longer (nested, combined) selector is read as uncertain "*"
	maxSelectorMatch   = 2_000_000       // cascadia matches per document
	maxSelectorTime    = 2 * time.Second // time spent matching per document (twice that in all)
	maxCandidateVisits = 20_000_000      // candidate rules looked at per document
	maxVarSubstitutes  = 200_000         // var() substitutions per document
	maxVarValue        = 4096            // longest custom property value followed
)

// cssDecl is one declaration: prop is lower case (custom properties keep their case), val
// lower case (custom property values as written), without "!important".
type cssDecl struct {
	prop, val string
	important bool
}

// cssRule is one selector of a style rule with the rule's declarations.
type cssRule struct {
	sel     cascadia.Sel
	spec    cascadia.Specificity
	order   int32
	certain bool      // applies whenever the selector matches; false: see the file comment
	mayHide bool      // some declaration may hide an element
	decls   []cssDecl // shared by the selectors of a list
	anc     []uint32  // keyHash of what the element's ancestors must carry between them
}

// sheet is the document's style rules, indexed by the id, class or tag the subject of the
// selector requires (any: none).
type sheet struct {
	rules   []cssRule
	byID    map[string][]int32
	byClass map[string][]int32
	byTag   map[string][]int32
	any     []int32
	initial map[string]string // @property initial values
	quirks  bool              // quirks mode: class and id selectors ignore ASCII case

	matches   int
	deadline  time.Time
	spent     bool // matching budget used up: candidates count as uncertain matches
	visits    int  // candidate rules looked at
	exhausted bool // too costly to style at all: every element left counts as hidden
	cand      []int32
	out       []ruleMatch
}

// ruleMatch is a rule whose selector matches an element; exact is false when the
// matching budget ran out and the rule is only known to be a candidate.
type ruleMatch struct {
	rule  *cssRule
	exact bool
}

// collectSheet reads the rules of the document's style sheets in document order: its
// <style> elements and the external sheets l obtains (<link rel=stylesheet>, @import), an
// imported sheet's rules before those of the sheet importing it. A sheet whose media
// attribute (or @import media list) the nominal screen of media.go does not match is left
// out; one with media not decided for it, @import layer() or supports(), a type other than
// text/css, a title outside the preferred set, or one a browser would not apply (in a
// <template>, in MathML) is read as uncertain.
func collectSheet(doc *html.Node, l *linker) *sheet {
	p := &sheetParser{sh: &sheet{
		byID: map[string][]int32{}, byClass: map[string][]int32{}, byTag: map[string][]int32{},
		initial: map[string]string{},
	}}
	p.sh.quirks = quirksMode(doc)
	srcs := styleSources(doc, l)
	l.load(srcs)
	for _, s := range srcs {
		if s.url != "" {
			p.external(s.url, s.certain, 1, l)
		} else {
			p.withImports(s.css, s.imports, s.extra, s.certain, 0, l)
		}
	}
	if p.sh.quirks && len(p.sh.rules) > 0 {
		foldClassAttrs(doc)
	}
	p.sh.deadline = time.Now().Add(maxSelectorTime)
	p.sh.exhausted = p.overflow
	return p.sh
}

// styleSources returns the document's <style> elements and the sheets of its stylesheet
// links in document order, their URLs resolved with l (whose base it sets from the first
// <base href>).
func styleSources(doc *html.Node, l *linker) []styleSource {
	var (
		srcs      []styleSource
		hrefs     []string // of srcs, for links
		base      bool
		preferred string // the preferred style sheet set: the first title
	)
	var visit func(n *html.Node, depth int, inert bool)
	visit = func(n *html.Node, depth int, inert bool) {
		if depth > 4*maxHTMLDepth {
			return
		}
		if n.Type == html.ElementNode && n.DataAtom == atom.Template {
			inert = true
		}
		if n.Type == html.ElementNode && n.DataAtom == atom.Base && n.Namespace == "" && !inert && !base {
			if href, ok := getAttr(n, "href"); ok {
				l.setBase(href)
				base = true
			}
		}
		// A browser applies only the untitled sheets and those of the first title's set.
		inSet := func() bool {
			t, _ := getAttr(n, "title")
			if t == "" || inert {
				return true
			}
			if preferred == "" {
				preferred = t
			}
			return t == preferred
		}
		if href, m, ok := stylesheetLink(n); ok && !inert {
			if in := inSet(); m != mediaNo { // else not applied on the nominal screen
				srcs = append(srcs, styleSource{certain: in && m == mediaYes})
				hrefs = append(hrefs, href)
			}
			return
		}
		if n.Type == html.ElementNode && strings.EqualFold(n.Data, "style") {
			var css strings.Builder
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.TextNode {
					css.WriteString(c.Data)
				}
			}
			certain := !inert && (n.Namespace == "" || n.Namespace == "svg")
			if m, ok := getAttr(n, "media"); ok {
				switch mediaList(m) {
				case mediaNo:
					inSet()
					return // not applied on the nominal screen
				case mediaUnknown:
					certain = false
				}
			}
			if t, ok := getAttr(n, "type"); ok {
				certain = certain && cssType(t)
			}
			srcs = append(srcs, styleSource{css: cleanCSS(css.String()), certain: inSet() && certain, inert: inert})
			hrefs = append(hrefs, "")
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c, depth+1, inert)
		}
	}
	visit(doc, 0, false)
	out := srcs[:0]
	for i, s := range srcs {
		if hrefs[i] != "" {
			u, ok := resolve(l.base, hrefs[i])
			if !ok {
				continue // nothing a browser could load
			}
			s.url = u
		} else if !s.inert {
			s.imports, s.extra = cssImports(s.css, l.base)
		}
		out = append(out, s)
	}
	return out
}

// withImports reads a sheet (comments removed) whose @import rules are imports, and extra
// more, at depth (0 for a <style> element, 1 for a linked sheet): the imported sheets first,
// followed to maxImportDepth.
func (p *sheetParser) withImports(css string, imports []cssImport, extra int, certain bool, depth int, l *linker) {
	for _, im := range imports {
		if depth+1 > maxImportDepth {
			l.miss(im.url, reasonDeepImport)
			continue
		}
		p.external(im.url, certain && im.certain, depth+1, l)
	}
	l.missN(extra, reasonTooMany)
	p.block(css, nil, certain, 0)
}

// external reads the external sheet at u, at depth.
func (p *sheetParser) external(u string, certain bool, depth int, l *linker) {
	if s := l.get(u); s != nil {
		p.withImports(s.css, s.imports, s.extra, certain && s.certain, depth, l)
	}
}

// match returns the rules whose selectors match n, whose ancestors carry what anc holds.
// The result is valid until the next call.
func (s *sheet) match(n *html.Node, anc *ancestorFilter) []ruleMatch {
	if len(s.rules) == 0 || s.exhausted {
		return nil
	}
	cand := s.cand[:0]
	defer func() { s.cand = cand }()
	if id, ok := getAttr(n, "id"); ok {
		cand = append(cand, s.byID[s.fold(id)]...)
	}
	if c, ok := getAttr(n, "class"); ok {
		classes := strings.FieldsFunc(s.fold(c), isHTMLSpace)
		var seen map[string]bool // for many classes; few are compared in turn
		if len(classes) > 8 {
			seen = map[string]bool{}
		}
		for i, c := range classes {
			dup := seen[c]
			for _, d := range classes[:i*btoi(seen == nil)] {
				dup = dup || d == c
			}
			if seen != nil {
				seen[c] = true
			}
			if !dup {
				cand = append(cand, s.byClass[c]...)
			}
		}
	}
	cand = append(cand, s.byTag[n.Data]...)
	cand = append(cand, s.any...)
	out := s.out[:0]
	defer func() { s.out = out }()
	s.visits += len(cand)
	if s.visits > maxCandidateVisits || s.visits/65536 != (s.visits-len(cand))/65536 && time.Now().After(s.deadline.Add(maxSelectorTime)) {
		s.exhausted = true
		return nil
	}
next:
	for _, i := range cand {
		r := &s.rules[i]
		for _, k := range r.anc {
			if !anc.has(k) {
				continue next
			}
		}
		if !s.spent {
			s.matches++
			if s.matches > maxSelectorMatch || s.matches%256 == 0 && time.Now().After(s.deadline) {
				s.spent = true
			}
		}
		if s.spent {
			out = append(out, ruleMatch{rule: r})
			continue
		}
		switch matched, ok := safeMatch(r.sel, n); {
		case !ok:
			out = append(out, ruleMatch{rule: r})
		case matched:
			out = append(out, ruleMatch{rule: r, exact: true})
			s.visits += len(r.decls)
		}
	}
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fold returns an id or class attribute value as selectors are compared with it.
func (s *sheet) fold(v string) string {
	if s.quirks {
		return toLowerASCII(v)
	}
	return v
}

func toLowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lowerASCII(b[j])
			}
			return string(b)
		}
	}
	return s
}

// quirksMode reports whether a browser renders doc in quirks mode, where class and id
// selectors match regardless of ASCII case: without a doctype, or with one not for html.
// (Legacy public identifiers that also select quirks mode are not looked at.)
func quirksMode(doc *html.Node) bool {
	for n := doc.FirstChild; n != nil; n = n.NextSibling {
		if n.Type == html.DoctypeNode {
			return !strings.EqualFold(n.Data, "html")
		}
	}
	return true
}

// foldClassAttrs gives every element whose class or id has ASCII capitals a second,
// lower-case class or id attribute, which cascadia also matches: with the selectors'
// class and id names in lower case (foldClassSelectors), they then match regardless of
// case, as in quirks mode. Only getAttr's first attribute is read for the text.
func foldClassAttrs(doc *html.Node) {
	stack := []*html.Node{doc}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Type == html.ElementNode {
			for _, key := range []string{"class", "id"} {
				if v, ok := getAttr(n, key); ok {
					if f := toLowerASCII(v); f != v {
						n.Attr = append(n.Attr, html.Attribute{Key: key, Val: f})
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			stack = append(stack, c)
		}
	}
}

// foldClassSelectors returns s with the names of its class and id selectors in lower case.
func foldClassSelectors(s string) string {
	b := []byte(s)
	eachTopLevel(s, false, func(i int) int {
		if s[i] != '.' && s[i] != '#' {
			return i
		}
		j := i + 1
		for j < len(s) && isNameByte(s[j]) {
			b[j] = lowerASCII(s[j])
			j++
		}
		return j
	})
	return string(b)
}

func isHTMLSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f'
}

// safeMatch runs sel.Match; ok is false if it panicked.
func safeMatch(sel cascadia.Sel, n *html.Node) (matched, ok bool) {
	defer func() {
		if recover() != nil {
			matched, ok = false, false
		}
	}()
	return sel.Match(n), true
}

func safeParse(sel string) (s cascadia.Sel, err error) {
	defer func() {
		if recover() != nil {
			s, err = nil, errBadSelector
		}
	}()
	return cascadia.Parse(sel)
}

type selectorError struct{}

func (selectorError) Error() string { return "bad selector" }

var errBadSelector error = selectorError{}

type sheetParser struct {
	sh       *sheet
	order    int32
	overflow bool // a rule was dropped at maxCSSRules
}

func (p *sheetParser) full() bool { return len(p.sh.rules) >= maxCSSRules }

// cleanCSS drops comments and the <!-- --> tokens, leaving strings as written.
func cleanCSS(css string) string {
	var b strings.Builder
	for i := 0; i < len(css); {
		c := css[i]
		switch {
		case c == '"' || c == '\'':
			j := skipString(css, i)
			b.WriteString(css[i:j])
			i = j
		case c == '\\' && i+1 < len(css):
			b.WriteString(css[i : i+2])
			i += 2
		case strings.HasPrefix(css[i:], "/*"):
			end := strings.Index(css[i+2:], "*/")
			if end < 0 {
				return b.String()
			}
			b.WriteByte(' ')
			i += 2 + end + 2
		case strings.HasPrefix(css[i:], "<!--"):
			b.WriteByte(' ')
			i += 4
		case strings.HasPrefix(css[i:], "-->"):
			b.WriteByte(' ')
			i += 3
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// skipString returns the index after the string starting at s[i] (a quote); a string
// ends at its closing quote, an unescaped newline or the end of s.
func skipString(s string, i int) int {
	q := s[i]
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case q:
			return i + 1
		case '\n':
			return i
		}
	}
	return len(s)
}

// scanTo returns the index of the first byte of stops in s outside strings, escapes and
// (), [] and {} blocks, or len(s).
func scanTo(s string, stops string) int {
	var stack []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if len(stack) == 0 && strings.IndexByte(stops, c) >= 0 {
			return i
		}
		switch c {
		case '"', '\'':
			i = skipString(s, i) - 1
		case '\\':
			i++
		case '(', '[', '{':
			stack = append(stack, c)
		case ')', ']', '}':
			open := byte('(')
			if c == ']' {
				open = '['
			} else if c == '}' {
				open = '{'
			}
			if len(stack) > 0 && stack[len(stack)-1] == open {
				stack = stack[:len(stack)-1]
			}
		}
	}
	return len(s)
}

// nextItem splits the first item off a list of rules or declarations: prelude up to the
// first top-level byte of stops or '{'; for '{', body is the block up to its matching '}'.
func nextItem(s, stops string) (prelude, body string, block bool, rest string) {
	i := scanTo(s, stops+"{")
	if i == len(s) {
		return s, "", false, ""
	}
	if s[i] != '{' {
		return s[:i], "", false, s[i+1:]
	}
	j := i + 1 + scanTo(s[i+1:], "}")
	return s[:i], s[i+1 : j], true, s[min(j+1, len(s)):]
}

// parsedSel is one selector of a rule, as cascadia reads it.
type parsedSel struct {
	sel     cascadia.Sel
	text    string // what cascadia parsed (rewritten or relaxed from the source)
	certain bool   // text matches what the source selector matches
}

// block reads a list of rules: the style sheet (parents nil) or the block of a style rule
// whose selectors are parents. The block's own declarations become rules for parents.
func (p *sheetParser) block(css string, parents []parsedSel, certain bool, depth int) {
	if depth > maxCSSNesting {
		return
	}
	order := p.order
	p.order++
	var decls []cssDecl
	for css != "" {
		if p.full() {
			p.overflow = p.overflow || strings.TrimSpace(css) != ""
			return
		}
		var stops string
		switch {
		case parents != nil:
			stops = ";" // declarations and nested rules
		case strings.HasPrefix(strings.TrimLeft(css, " \t\r\n\f"), "@"):
			stops = ";" // at-rule statements (@import, @charset) end at ';'
		default:
			stops = "" // a top-level rule's prelude runs to '{', ';' and '}' included
		}
		prelude, body, isBlock, rest := nextItem(css, stops)
		css = rest
		prelude = strings.TrimSpace(prelude)
		if !isBlock {
			if parents != nil && !strings.HasPrefix(prelude, "@") {
				decls = appendDecl(decls, prelude)
			}
			continue
		}
		if strings.HasPrefix(prelude, "@") {
			name := strings.ToLower(prelude[1:])
			if i := strings.IndexFunc(name, func(r rune) bool { return !isNameRune(r) }); i >= 0 {
				name = name[:i]
			}
			switch name {
			case "media":
				// Rules a browser on the nominal screen ignores are left out (media.go).
				if m := mediaList(prelude[len("@media"):]); m != mediaNo {
					p.block(body, parents, certain && m == mediaYes, depth+1)
				}
			case "supports", "layer", "container", "scope", "document", "-moz-document":
				p.block(body, parents, false, depth+1)
			case "property":
				if v := strings.TrimSpace(prelude[len("@property"):]); strings.HasPrefix(v, "--") {
					for _, d := range parseDeclList(body) {
						if d.prop == "initial-value" && len(p.sh.initial) < maxCSSRules {
							p.sh.initial[v] = d.val
						}
					}
				}
			}
			// @font-face, @keyframes, @page, @starting-style and the like style no text.
			continue
		}
		sels, ok := nestSelectors(prelude, parents)
		ps, listOK := parseSelectors(sels, p.sh.quirks)
		p.block(body, ps, certain && ok && listOK, depth+1)
	}
	if decls = compactDecls(decls); len(parents) > 0 && len(decls) > 0 {
		p.addRules(parents, decls, order, certain)
	}
}

// nestSelectors returns the selector list of a rule with prelude inside a rule with
// parents (nil at the top level): a nested selector's '&', or its start, stands for
// :is(parents). ok is false when the result had to be approximated.
func nestSelectors(prelude string, parents []parsedSel) (sels []string, ok bool) {
	ok = true
	parts := splitSelectors(prelude)
	if parents == nil {
		return parts, ok
	}
	if len(parents) == 0 {
		return nil, ok // no parent can match: nothing nested can either
	}
	var list []string
	for _, p := range parents {
		list = append(list, p.text)
		ok = ok && p.certain
	}
	is := ":is(" + strings.Join(list, ", ") + ")"
	if len(is) > maxSelectorLen {
		is, ok = "*", false
	}
	for _, s := range parts {
		var n string
		amp := scanTo(s, "&")
		switch {
		case s == "":
		case len(parents) == 1 && amp == len(s):
			n = parents[0].text + " " + s
		case len(parents) == 1 && amp == 0 && scanTo(s[1:], "&") == len(s)-1:
			n = parents[0].text + s[1:]
		case amp < len(s):
			n = strings.ReplaceAll(s, "&", is) // '&' inside strings is vanishingly rare
		default:
			n = is + " " + s
		}
		sels = append(sels, n)
	}
	return sels, ok
}

// splitSelectors splits a selector list at its top-level commas.
func splitSelectors(s string) []string {
	var out []string
	for {
		i := scanTo(s, ",")
		out = append(out, strings.TrimSpace(s[:i]))
		if i == len(s) {
			return out
		}
		s = s[i+1:]
	}
}

// parseSelectors parses a selector list. Selectors of pseudo-elements are left out (they
// style generated content, not the element's text). A selector cascadia cannot read is
// relaxed by dropping pseudo-classes, and made uncertain. ok is false when the list does
// not parse as a whole: a browser drops the whole rule, so none of it is certain.
func parseSelectors(sels []string, quirks bool) (ps []parsedSel, ok bool) {
	ok = true
	ps = []parsedSel{} // not nil: nested rules have a (possibly empty) parent list
	for _, s := range sels {
		if s == "" {
			ok = false
			continue
		}
		if len(s) > maxSelectorLen {
			s = "*" // read as "may match anything"
			ok = false
		}
		if pe, known := pseudoElement(s); pe {
			ok = ok && known
			continue
		}
		text, where := rewriteIs(dropSensitiveFlag(s))
		if quirks {
			text = foldClassSelectors(text)
		}
		if !nonStandard(s) {
			if sel, err := safeParse(text); err == nil {
				ps = append(ps, parsedSel{sel, text, !where})
				continue
			}
		}
		ok = false
		for _, all := range []bool{false, true} {
			relaxed := stripPseudoClasses(text, all)
			if sel, err := safeParse(relaxed); err == nil {
				ps = append(ps, parsedSel{sel, relaxed, false})
				break
			}
		}
	}
	if !ok {
		for i := range ps {
			ps[i].certain = false
		}
	}
	return ps, ok
}

// addRules adds a rule for each selector of sels.
func (p *sheetParser) addRules(sels []parsedSel, decls []cssDecl, order int32, certain bool) {
	mayHide := false
	for _, d := range decls {
		hide, _ := hideCheck(d.prop, d.val, boxState{overflowHidden: true})
		mayHide = mayHide || hide || indexFold(d.val, "var(") >= 0
	}
	for _, x := range sels {
		if p.full() {
			p.overflow = true
			return
		}
		i := int32(len(p.sh.rules))
		subject, ancestors := selectorKeys(x.text)
		var anc []uint32
		for _, k := range ancestors {
			anc = append(anc, keyHash(k.kind, k.name))
		}
		p.sh.rules = append(p.sh.rules, cssRule{sel: x.sel, spec: x.sel.Specificity(), order: order,
			certain: certain && x.certain, mayHide: mayHide, decls: decls, anc: anc})
		switch subject.kind {
		case '#':
			p.sh.byID[subject.name] = append(p.sh.byID[subject.name], i)
		case '.':
			p.sh.byClass[subject.name] = append(p.sh.byClass[subject.name], i)
		case 't':
			p.sh.byTag[subject.name] = append(p.sh.byTag[subject.name], i)
		default:
			p.sh.any = append(p.sh.any, i)
		}
	}
}

func isNameByte(c byte) bool {
	return c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

func isNameRune(r rune) bool { return r < 0x80 && isNameByte(byte(r)) || r >= 0x80 }

// eachTopLevel calls f with the index of every byte of s outside strings and [] blocks
// (and, if outside is set, outside () blocks too); f returns the index to continue from.
func eachTopLevel(s string, outsideParens bool, f func(i int) int) {
	depth, brackets := 0, 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\'':
			i = skipString(s, i)
			continue
		case c == '\\':
			i += 2
			continue
		case c == '[':
			brackets++
		case c == ']' && brackets > 0:
			brackets--
		case brackets > 0:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		}
		if brackets == 0 && (depth == 0 || !outsideParens) {
			if next := f(i); next > i {
				i = next
				continue
			}
		}
		i++
	}
}

// pseudoElement reports whether s selects a pseudo-element, and whether it is one every
// browser knows (an unknown one makes a browser drop the whole selector list).
func pseudoElement(s string) (found, known bool) {
	known = true
	eachTopLevel(s, false, func(i int) int {
		if s[i] != ':' {
			return i
		}
		j := i + 1
		double := j < len(s) && s[j] == ':'
		if double {
			j++
		}
		k := nameEnd(s, j)
		switch name := strings.ToLower(s[j:k]); name {
		case "before", "after", "first-line", "first-letter":
			found = true
		case "marker", "placeholder", "selection", "backdrop", "file-selector-button", "cue",
			"part", "slotted", "grammar-error", "spelling-error", "target-text", "highlight",
			"view-transition", "details-content":
			if double {
				found = true
			}
		default:
			if double {
				found, known = true, false
			}
		}
		return k
	})
	return found, known
}

// dropSensitiveFlag removes the "s" (case-sensitive) flag from the attribute selectors of s:
// cascadia rejects it, and without it an attribute value is matched case-sensitively anyway
// (but for the few attributes HTML compares case-insensitively, where s matches less).
func dropSensitiveFlag(s string) string {
	var b strings.Builder
	last := 0
	eachTopLevel(s, false, func(i int) int {
		if s[i] != ']' {
			return i
		}
		j := i
		for j > 0 && isHTMLSpace(rune(s[j-1])) {
			j--
		}
		if j >= 2 && (s[j-1] == 's' || s[j-1] == 'S') && isHTMLSpace(rune(s[j-2])) {
			b.WriteString(s[last : j-1])
			last = i
		}
		return i
	})
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// nameEnd is where the name starting at s[k] ends.
func nameEnd(s string, k int) int {
	for k < len(s) && isNameByte(s[k]) {
		k++
	}
	return k
}

// pseudoAt reads the pseudo-class name (lower case) after a ':' at s[i], and where it ends;
// ok is false when s[i] is not a ':'.
func pseudoAt(s string, i int) (name string, end int, ok bool) {
	if s[i] != ':' {
		return "", i, false
	}
	end = nameEnd(s, i+1)
	return strings.ToLower(s[i+1 : end]), end, true
}

// nonStandard reports selector syntax that cascadia reads but browsers reject.
func nonStandard(s string) bool {
	bad := false
	eachTopLevel(s, false, func(i int) int {
		name, k, ok := pseudoAt(s, i)
		if !ok {
			return i
		}
		switch name {
		case "contains", "containsown", "matches", "matchesown", "haschild", "input":
			bad = true
		}
		return k
	})
	return bad || strings.Contains(s, "!=") || strings.Contains(s, "#=")
}

// rewriteIs turns :is(), :where() and :-webkit-any()/:-moz-any() into :not(:not()),
// which cascadia reads with the same matching (and, but for :where(), specificity).
func rewriteIs(s string) (out string, where bool) {
	if l := strings.ToLower(s); !strings.Contains(l, "is(") && !strings.Contains(l, "where(") && !strings.Contains(l, "any(") {
		return s, false
	}
	var b strings.Builder
	last := 0
	eachTopLevel(s, false, func(i int) int {
		name, k, ok := pseudoAt(s, i)
		if !ok {
			return i
		}
		if k >= len(s) || s[k] != '(' || name != "is" && name != "where" && name != "-webkit-any" && name != "-moz-any" {
			return i
		}
		end := k + 1 + scanTo(s[k+1:], ")")
		inner, w := rewriteIs(s[k+1 : end])
		where = where || w || name == "where"
		b.WriteString(s[last:i])
		b.WriteString(":not(:not(" + inner + "))")
		last = min(end+1, len(s))
		return last
	})
	b.WriteString(s[last:])
	return b.String(), where
}

// stripPseudoClasses drops the top-level pseudo-classes of s that cascadia does not read
// (with all, every pseudo-class), with their arguments, making a selector that matches at
// least what s matches in some state of the page.
func stripPseudoClasses(s string, all bool) string {
	var b strings.Builder
	last := 0
	eachTopLevel(s, true, func(i int) int {
		if s[i] != ':' {
			return i
		}
		k := i + 1
		for k < len(s) && (isNameByte(s[k]) || s[k] == ':') {
			k++
		}
		if !all && cascadiaPseudo(strings.ToLower(s[i+1:k])) {
			return i
		}
		if k < len(s) && s[k] == '(' {
			k += 1 + scanTo(s[k+1:], ")")
			k = min(k+1, len(s))
		}
		b.WriteString(s[last:i])
		if t := strings.TrimRight(b.String(), " \t\r\n\f"); t == "" || strings.ContainsAny(t[len(t)-1:], ">+~,(") || len(t) < b.Len() {
			b.WriteByte('*')
		}
		last = k
		return k
	})
	b.WriteString(s[last:])
	return b.String()
}

// cascadiaPseudo reports a standard pseudo-class that cascadia matches as a browser does
// on a page nobody interacts with.
func cascadiaPseudo(name string) bool {
	switch name {
	case "not", "has", "nth-child", "nth-last-child", "nth-of-type", "nth-last-of-type",
		"first-child", "last-child", "first-of-type", "last-of-type", "only-child",
		"only-of-type", "empty", "root", "lang", "enabled", "disabled", "checked", "link":
		return true
	}
	return false
}

// elemKey is something an element carries: kind '#' (its id), '.' (a class) or 't' (its
// tag name); kind '*' is nothing known.
type elemKey struct {
	kind byte
	name string
}

// selectorKeys returns what an element must carry to match selector s (subject) and what
// its ancestors must carry between them (ancestors).
func selectorKeys(s string) (subject elemKey, ancestors []elemKey) {
	if strings.IndexByte(s, '\\') >= 0 || strings.IndexByte(s, '|') >= 0 {
		return elemKey{kind: '*'}, nil
	}
	// Split s into compounds at its top-level combinators.
	type compound struct {
		text string
		next byte // the combinator after it: ' ', '>', '+' or '~'
	}
	var cs []compound
	start, inGap := 0, false
	var gap byte
	eachTopLevel(s, true, func(i int) int {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r', '\f', '>', '+', '~':
			if !inGap {
				cs = append(cs, compound{text: s[start:i]})
				inGap, gap = true, ' '
			}
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' {
				gap = c
			}
		default:
			if inGap {
				cs[len(cs)-1].next = gap
				inGap, start = false, i
			}
		}
		return i
	})
	if inGap {
		return elemKey{kind: '*'}, nil // a trailing combinator: not a selector cascadia reads
	}
	cs = append(cs, compound{text: s[start:]})
	for _, c := range cs[:len(cs)-1] {
		if k := compoundKey(c.text); k.kind != '*' && (c.next == ' ' || c.next == '>') {
			ancestors = append(ancestors, k)
		}
	}
	return compoundKey(cs[len(cs)-1].text), ancestors
}

// ancestorFilter is a counting Bloom filter of what the ancestors of the node being
// walked carry (keyHash values): has is false only for what none of them carries.
type ancestorFilter [ancestorFilterSize]uint32

const ancestorFilterSize = 1 << 12

func (f *ancestorFilter) add(h uint32, d uint32) {
	f[h%ancestorFilterSize] += d
	f[h>>20%ancestorFilterSize] += d
}

func (f *ancestorFilter) has(h uint32) bool {
	return f[h%ancestorFilterSize] > 0 && f[h>>20%ancestorFilterSize] > 0
}

// keyHash is FNV-1a of an elemKey.
func keyHash(kind byte, name string) uint32 {
	h := uint32(2166136261)
	h = (h ^ uint32(kind)) * 16777619
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return h
}

// compoundKey returns the id, else a class, else the tag that compound selector c
// requires (:root is the html element).
func compoundKey(c string) elemKey {
	k := elemKey{kind: '*'}
	eachTopLevel(c, true, func(i int) int {
		if c[i] == ':' && strings.EqualFold(c[i:min(i+5, len(c))], ":root") && (i+5 == len(c) || !isNameByte(c[i+5])) {
			k = elemKey{'t', "html"}
		}
		return i
	})
	if c != "" && isNameByte(c[0]) && c[0] != '-' && !(c[0] >= '0' && c[0] <= '9') {
		j := 0
		for j < len(c) && isNameByte(c[j]) {
			j++
		}
		k = elemKey{'t', strings.ToLower(c[:j])}
	}
	eachTopLevel(c, true, func(i int) int {
		if c[i] != '.' && c[i] != '#' {
			return i
		}
		j := i + 1
		for j < len(c) && isNameByte(c[j]) {
			j++
		}
		if j == i+1 {
			return i
		}
		switch {
		case c[i] == '#':
			k = elemKey{'#', c[i+1 : j]}
		case k.kind != '#' && k.kind != '.':
			k = elemKey{'.', c[i+1 : j]}
		}
		return j
	})
	return k
}

// appendDecl parses one declaration "prop: value [!important]" and appends it, expanding
// the font and background shorthands into the longhands this package reads.
func appendDecl(decls []cssDecl, d string) []cssDecl {
	k, v, ok := strings.Cut(d, ":")
	if !ok {
		return decls
	}
	k = strings.TrimSpace(k)
	if !strings.HasPrefix(k, "--") {
		k = strings.ToLower(k)
	}
	if k == "" || strings.IndexFunc(k, func(r rune) bool { return !isNameRune(r) }) >= 0 {
		return decls
	}
	v = strings.TrimSpace(v)
	important := false
	if lv := strings.ToLower(v); strings.HasSuffix(lv, "important") {
		rest := strings.TrimRight(v[:len(v)-len("important")], " \t\r\n\f")
		if strings.HasSuffix(rest, "!") {
			important = true
			v = strings.TrimSpace(rest[:len(rest)-1])
		}
	}
	if !strings.HasPrefix(k, "--") {
		v = strings.ToLower(v)
	}
	switch k {
	case "font":
		k, v = "font-size", fontShorthandSize(v)
	case "background":
		k = "background-color"
	}
	return append(decls, cssDecl{prop: k, val: v, important: important})
}

// parseDeclList parses a declaration list (a style attribute, an @property block) into
// its effective declarations (see compactDecls).
func parseDeclList(s string) []cssDecl {
	var decls []cssDecl
	for s != "" {
		prelude, _, block, rest := nextItem(s, ";")
		s = rest
		if !block {
			decls = appendDecl(decls, prelude)
		}
	}
	return compactDecls(decls)
}

// maxCustomProps caps the custom properties one declaration block defines.
const maxCustomProps = 1024

// compactDecls keeps, of the declarations of one block, those this package reads
// (relevantProp), one per property: the last !important one, else the last one. However
// many declarations a block holds, none that hides text is dropped for room.
func compactDecls(decls []cssDecl) []cssDecl {
	win := map[string]int{}
	customs := 0
	for i, d := range decls {
		if d.prop == "initial-value" {
			win[d.prop] = i // @property
			continue
		}
		if !relevantProp(d.prop) {
			continue
		}
		j, seen := win[d.prop]
		switch {
		case !seen && strings.HasPrefix(d.prop, "--"):
			if customs++; customs > maxCustomProps {
				continue
			}
			win[d.prop] = i
		case !seen || d.important || !decls[j].important:
			win[d.prop] = i
		}
	}
	out := make([]cssDecl, 0, len(win))
	for i, d := range decls {
		if j, ok := win[d.prop]; ok && j == i {
			out = append(out, d)
		}
	}
	return out
}

// relevantProp reports a property that can hide text or feed var() (custom properties).
func relevantProp(prop string) bool {
	if strings.HasPrefix(prop, "--") {
		return true
	}
	for _, p := range hidingProps {
		if p == prop {
			return true
		}
	}
	switch prop {
	case "background-color", "overflow", "overflow-x", "overflow-y", "background-clip",
		"-webkit-background-clip":
		return true
	}
	return false
}
