package extract

import (
	"bytes"
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxHTMLDepth bounds the element nesting htmlText follows; deeper content is read flat.
const maxHTMLDepth = 256

// htmlText returns the main text of an HTML document. Elements hidden from a reader (the
// hidden attribute, aria-hidden="true", inline styles display:none, visibility:hidden,
// opacity:0, font-size 0 or at most 1px, text colour equal to the background colour,
// far-off-screen positioning; simple rules in <style> sheets matching by tag, .class or
// #id), <input type=hidden> values and comments come out as "[hidden text: ...]".
// Scripts, styles, templates, noscript and the head are dropped.
func htmlText(data []byte) Result {
	data = bytes.ReplaceAll(data, []byte{0}, nil)
	doc, err := html.ParseWithOptions(bytes.NewReader(data), html.ParseOptionEnableScripting(true))
	w := newWriter()
	if err != nil || doc == nil {
		return plainText(data) // html.Parse fails only on reader errors; be safe anyway
	}
	h := &htmlWalker{w: w, sheet: collectSheet(doc)}
	h.walk(doc, htmlCtx{color: "000000", bg: "ffffff"}, 0)
	return w.result()
}

// htmlCtx is what a node inherits from its ancestors.
type htmlCtx struct {
	pre   bool
	color string // text colour, RRGGBB
	bg    string // background colour, RRGGBB
	list  int    // list nesting
}

type htmlWalker struct {
	w     *writer
	sheet []cssRule
}

type cssRule struct {
	sel   []string // simple selectors: "tag", ".class", "#id", "tag.class"
	decls map[string]string
}

func isBlock(a atom.Atom) bool {
	switch a {
	case atom.P, atom.Div, atom.Section, atom.Article, atom.Header, atom.Footer, atom.Main,
		atom.Nav, atom.Aside, atom.Blockquote, atom.Pre, atom.Ul, atom.Ol, atom.Dl, atom.Dt,
		atom.Dd, atom.Table, atom.Thead, atom.Tbody, atom.Tfoot, atom.Tr, atom.Form,
		atom.Figure, atom.Figcaption, atom.Address, atom.Fieldset, atom.Details, atom.Summary,
		atom.Hr, atom.Caption, atom.Body, atom.Html, atom.Center, atom.Hgroup, atom.Legend:
		return true
	}
	return false
}

func headingLevel(a atom.Atom) int {
	switch a {
	case atom.H1:
		return 1
	case atom.H2:
		return 2
	case atom.H3:
		return 3
	case atom.H4:
		return 4
	case atom.H5:
		return 5
	case atom.H6:
		return 6
	}
	return 0
}

func getAttr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// style returns n's effective declarations: matching sheet rules, then the inline style.
func (h *htmlWalker) style(n *html.Node) map[string]string {
	decls := map[string]string{}
	if len(h.sheet) > 0 {
		classes := map[string]bool{}
		if c, ok := getAttr(n, "class"); ok {
			for _, f := range strings.Fields(c) {
				classes[f] = true
			}
		}
		id, _ := getAttr(n, "id")
		for _, r := range h.sheet {
			for _, sel := range r.sel {
				if selectorMatches(sel, n.Data, id, classes) {
					for k, v := range r.decls {
						decls[k] = v
					}
					break
				}
			}
		}
	}
	if s, ok := getAttr(n, "style"); ok {
		for k, v := range parseDecls(s) {
			decls[k] = v
		}
	}
	return decls
}

func selectorMatches(sel, tag, id string, classes map[string]bool) bool {
	if sel == "*" {
		return true
	}
	// tag, #id, .class, tag.class, tag#id, .a.b
	rest := sel
	i := strings.IndexAny(rest, ".#")
	if i < 0 {
		return rest == tag
	}
	if i > 0 && rest[:i] != tag {
		return false
	}
	rest = rest[i:]
	for rest != "" {
		kind := rest[0]
		rest = rest[1:]
		j := strings.IndexAny(rest, ".#")
		if j < 0 {
			j = len(rest)
		}
		name := rest[:j]
		rest = rest[j:]
		if name == "" {
			return false
		}
		if kind == '.' && !classes[name] || kind == '#' && name != id {
			return false
		}
	}
	return true
}

func parseDecls(s string) map[string]string {
	m := map[string]string{}
	for _, d := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(d, ":")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.ToLower(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "!important")))
		if k != "" && len(m) < 64 {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// collectSheet reads simple rules from the document's <style> elements: selector lists of
// tag, .class and #id forms (compound selectors, combinators and at-rules are ignored).
func collectSheet(doc *html.Node) []cssRule {
	var rules []cssRule
	var visit func(n *html.Node, depth int)
	visit = func(n *html.Node, depth int) {
		if depth > maxHTMLDepth || len(rules) > 5000 {
			return
		}
		if n.Type == html.ElementNode && n.DataAtom == atom.Style {
			var css strings.Builder
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				if c.Type == html.TextNode {
					css.WriteString(c.Data)
				}
			}
			rules = append(rules, parseSheet(css.String())...)
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c, depth+1)
		}
	}
	visit(doc, 0)
	return rules
}

func parseSheet(css string) []cssRule {
	// Drop comments.
	for {
		i := strings.Index(css, "/*")
		if i < 0 {
			break
		}
		j := strings.Index(css[i+2:], "*/")
		if j < 0 {
			css = css[:i]
			break
		}
		css = css[:i] + " " + css[i+2+j+2:]
	}
	var rules []cssRule
	for len(rules) < 5000 {
		open := strings.IndexByte(css, '{')
		if open < 0 {
			break
		}
		close := strings.IndexByte(css[open:], '}')
		if close < 0 {
			break
		}
		selText, body := css[:open], css[open+1:open+close]
		css = css[open+close+1:]
		if strings.Contains(selText, "@") || strings.Contains(body, "{") {
			continue // at-rules (@media and the like) are not followed
		}
		var sels []string
		for _, s := range strings.Split(selText, ",") {
			s = strings.ToLower(strings.TrimSpace(s))
			if s != "" && !strings.ContainsAny(s, " >+~:[") {
				sels = append(sels, s)
			}
		}
		if len(sels) > 0 {
			rules = append(rules, cssRule{sel: sels, decls: parseDecls(body)})
		}
	}
	return rules
}

// cssPx returns a CSS length in pixels, treating em/rem as 16px; ok is false for what it
// cannot tell (percentages, calc(), keywords).
func cssPx(v string) (float64, bool) {
	v = strings.TrimSpace(v)
	units := []struct {
		suffix string
		px     float64
	}{{"px", 1}, {"pt", 4.0 / 3}, {"rem", 16}, {"em", 16}, {"pc", 16}, {"cm", 37.8}, {"mm", 3.78}, {"in", 96}, {"vw", 10}, {"vh", 10}}
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), 64)
			return f * u.px, err == nil
		}
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f, true // unitless (0, or a legacy px value)
	}
	if strings.HasSuffix(v, "%") {
		f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		return f * 0.16, err == nil
	}
	return 0, false
}

// cssColor returns a colour as RRGGBB, or "" when it cannot tell (or it is transparent).
func cssColor(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	if i := strings.Index(v, "rgb"); i >= 0 {
		v = v[i:] // "background: url(x) rgb(...)"
		if j := strings.IndexByte(v, ')'); j >= 0 {
			v = v[:j+1]
		}
	} else if f := strings.Fields(v); len(f) > 0 {
		v = f[0] // "background: #fff url(x)"
		for _, x := range f {
			if strings.HasPrefix(x, "#") {
				v = x
			}
		}
	}
	if strings.HasPrefix(v, "rgb") && strings.IndexByte(v, '(') >= 0 {
		inner := v[strings.IndexByte(v, '(')+1:]
		inner = strings.TrimSuffix(inner, ")")
		parts := strings.FieldsFunc(inner, func(r rune) bool { return r == ',' || r == ' ' || r == '/' })
		if len(parts) < 3 {
			return ""
		}
		if len(parts) >= 4 {
			if a, err := strconv.ParseFloat(strings.TrimSuffix(parts[3], "%"), 64); err == nil && a == 0 {
				return ""
			}
		}
		var out [3]int
		for i := 0; i < 3; i++ {
			p := parts[i]
			if strings.HasSuffix(p, "%") {
				f, err := strconv.ParseFloat(strings.TrimSuffix(p, "%"), 64)
				if err != nil {
					return ""
				}
				out[i] = int(f * 2.55)
			} else {
				f, err := strconv.ParseFloat(p, 64)
				if err != nil {
					return ""
				}
				out[i] = int(f)
			}
			out[i] = max(0, min(255, out[i]))
		}
		return strconv.FormatInt(int64(out[0]<<16|out[1]<<8|out[2]), 16)
	}
	switch v {
	case "white":
		return "ffffff"
	case "black":
		return "000000"
	case "snow", "ghostwhite", "whitesmoke", "ivory", "floralwhite", "seashell", "mintcream", "azure", "aliceblue":
		return "f8f8f8"
	case "red":
		return "ff0000"
	case "silver":
		return "c0c0c0"
	case "gray", "grey":
		return "808080"
	}
	if _, _, _, ok := hexRGB(v); ok {
		return strings.TrimPrefix(v, "#")
	}
	return ""
}

// hiddenBy reports whether the element n, in context ctx, is hidden from a reader, and
// updates ctx with its colours.
func (h *htmlWalker) hiddenBy(n *html.Node, ctx *htmlCtx) bool {
	if _, ok := getAttr(n, "hidden"); ok {
		return true
	}
	if v, ok := getAttr(n, "aria-hidden"); ok && strings.EqualFold(strings.TrimSpace(v), "true") {
		return true
	}
	if n.DataAtom == atom.Font {
		if c, ok := getAttr(n, "color"); ok {
			if c := cssColor(c); c != "" {
				ctx.color = c
			}
		}
		if s, ok := getAttr(n, "size"); ok && strings.TrimSpace(s) == "0" {
			return true
		}
	}
	if c, ok := getAttr(n, "bgcolor"); ok {
		if c := cssColor(c); c != "" {
			ctx.bg = c
		}
	}
	decls := h.style(n)
	if len(decls) == 0 {
		return false
	}
	hidden := false
	for k, v := range decls {
		switch k {
		case "display":
			hidden = hidden || v == "none"
		case "visibility":
			hidden = hidden || v == "hidden" || v == "collapse"
		case "opacity":
			if f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64); err == nil && f <= 0.05 {
				hidden = true
			}
		case "font-size":
			if px, ok := cssPx(v); ok && px <= 1 {
				hidden = true
			}
		case "color":
			if c := cssColor(v); c != "" {
				ctx.color = c
			}
		case "background-color", "background":
			if c := cssColor(v); c != "" {
				ctx.bg = c
			}
		case "left", "top", "text-indent", "margin-left", "margin-top", "right":
			if px, ok := cssPx(v); ok && px <= -1000 {
				hidden = true
			}
		case "clip":
			if strings.ReplaceAll(strings.ReplaceAll(v, " ", ""), "px", "") == "rect(0,0,0,0)" || strings.ReplaceAll(v, "px", "") == "rect(0 0 0 0)" {
				hidden = true
			}
		case "transform":
			if strings.Contains(v, "scale(0") && !strings.Contains(v, "scale(0.") {
				hidden = true
			}
		case "max-height", "height", "width", "max-width":
			if px, ok := cssPx(v); ok && px == 0 && decls["overflow"] == "hidden" {
				hidden = true
			}
		}
	}
	return hidden
}

func (h *htmlWalker) walk(n *html.Node, ctx htmlCtx, depth int) {
	w := h.w
	if w.full() {
		return
	}
	switch n.Type {
	case html.TextNode:
		h.textNode(n.Data, ctx, false)
		return
	case html.CommentNode:
		if s := strings.TrimSpace(n.Data); s != "" {
			w.hide(s)
			w.flushHidden()
		}
		return
	case html.DocumentNode:
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			h.walk(c, ctx, depth+1)
		}
		return
	case html.ElementNode:
	default:
		return
	}
	switch n.DataAtom {
	case atom.Script, atom.Style, atom.Noscript, atom.Template, atom.Head, atom.Iframe,
		atom.Object, atom.Embed, atom.Svg, atom.Math, atom.Select, atom.Button, atom.Audio,
		atom.Video, atom.Canvas:
		return
	case atom.Input:
		if t, _ := getAttr(n, "type"); strings.EqualFold(t, "hidden") {
			if v, _ := getAttr(n, "value"); strings.TrimSpace(v) != "" {
				w.hide(v)
				w.flushHidden()
			}
		}
		return
	case atom.Br:
		w.newline(1)
		return
	case atom.Img:
		if alt, _ := getAttr(n, "alt"); strings.TrimSpace(alt) != "" {
			w.text("[image: " + strings.Join(strings.Fields(alt), " ") + "]")
		}
		return
	}
	if h.hiddenBy(n, &ctx) || sameColor(ctx.color, ctx.bg) {
		var sub strings.Builder
		h.collect(n, &sub, depth)
		w.hide(sub.String())
		w.flushHidden()
		return
	}
	if depth > maxHTMLDepth {
		var sub strings.Builder
		h.collect(n, &sub, 0)
		w.text(strings.Join(strings.Fields(sub.String()), " "))
		return
	}
	level := headingLevel(n.DataAtom)
	switch {
	case level > 0:
		w.newline(2)
		w.text(strings.Repeat("#", level) + " ")
	case n.DataAtom == atom.Li:
		w.newline(1)
		w.text(strings.Repeat("  ", max(ctx.list-1, 0)) + "- ")
	case n.DataAtom == atom.Ul || n.DataAtom == atom.Ol:
		ctx.list++
		w.newline(1)
	case n.DataAtom == atom.P || n.DataAtom == atom.Blockquote || n.DataAtom == atom.Pre || n.DataAtom == atom.Table:
		w.newline(2)
	case n.DataAtom == atom.Td || n.DataAtom == atom.Th:
		w.space()
	case isBlock(n.DataAtom):
		w.newline(1)
	}
	if n.DataAtom == atom.Pre {
		ctx.pre = true
	}
	linkStart := w.b.Len()
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		h.walk(c, ctx, depth+1)
	}
	switch {
	case n.DataAtom == atom.A:
		href, _ := getAttr(n, "href")
		href = strings.TrimSpace(href)
		lower := strings.ToLower(href)
		if href != "" && !strings.HasPrefix(href, "#") && !strings.HasPrefix(lower, "javascript:") && w.b.Len() > linkStart && !strings.Contains(w.b.String()[linkStart:], href) {
			w.flushHidden()
			w.text(" (" + href + ")")
		}
	case n.DataAtom == atom.Td || n.DataAtom == atom.Th:
		w.flushHidden()
		w.text(" |")
		w.space()
	case level > 0:
		w.newline(2)
	case n.DataAtom == atom.P || n.DataAtom == atom.Blockquote || n.DataAtom == atom.Pre || n.DataAtom == atom.Table || n.DataAtom == atom.Ul || n.DataAtom == atom.Ol:
		w.newline(2)
	case n.DataAtom == atom.Li || isBlock(n.DataAtom):
		w.newline(1)
	}
}

// textNode writes a text node: whitespace collapsed outside <pre>.
func (h *htmlWalker) textNode(s string, ctx htmlCtx, hidden bool) {
	w := h.w
	if ctx.pre {
		lines := strings.Split(s, "\n")
		for i, l := range lines {
			if i > 0 {
				w.newline(1)
			}
			w.text(l)
		}
		return
	}
	if s == "" {
		return
	}
	lead := startsSpace(s) || strings.HasPrefix(s, "\r") || strings.HasPrefix(s, "\f")
	f := strings.Fields(s)
	if len(f) == 0 {
		w.space()
		return
	}
	if lead {
		w.space()
	}
	w.text(strings.Join(f, " "))
	if last := s[len(s)-1]; last == ' ' || last == '\n' || last == '\t' || last == '\r' || last == '\f' {
		w.space()
	}
}

// collect gathers the text of a hidden subtree (including comments and hidden input
// values, but not scripts or styles) into b.
func (h *htmlWalker) collect(n *html.Node, b *strings.Builder, depth int) {
	if b.Len() > MaxOutput || depth > 4*maxHTMLDepth {
		return
	}
	switch n.Type {
	case html.TextNode, html.CommentNode:
		b.WriteString(n.Data)
		b.WriteByte(' ')
		return
	case html.ElementNode:
		switch n.DataAtom {
		case atom.Script, atom.Style, atom.Template:
			return
		case atom.Input:
			if v, _ := getAttr(n, "value"); v != "" {
				b.WriteString(v)
				b.WriteByte(' ')
			}
			return
		case atom.Img:
			if alt, _ := getAttr(n, "alt"); alt != "" {
				b.WriteString(alt)
				b.WriteByte(' ')
			}
			return
		}
		if isBlock(n.DataAtom) || headingLevel(n.DataAtom) > 0 || n.DataAtom == atom.Br || n.DataAtom == atom.Li || n.DataAtom == atom.Td {
			b.WriteByte(' ')
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		h.collect(c, b, depth+1)
	}
	if n.Type == html.ElementNode && n.DataAtom == atom.A {
		if href, _ := getAttr(n, "href"); href != "" && !strings.HasPrefix(href, "#") {
			b.WriteString(" (" + href + ") ")
		}
	}
}
