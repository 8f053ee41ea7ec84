package extract

import (
	"bytes"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// maxHTMLDepth bounds the element nesting htmlText follows; deeper content is read flat.
const maxHTMLDepth = 256

// htmlText returns the main text of an HTML document. Elements hidden from a reader (the
// hidden attribute, aria-hidden="true"; display:none, visibility:hidden, opacity:0,
// font-size 0 or at most 1px, transparent text or text colour equal to the background
// colour, far-off-screen positioning, clipping or zero size, whether set inline or by
// rules of the document's style sheets, see css.go and style.go), <input type=hidden>
// values, comments, a <dialog> that is not open and what a closed <details> holds beyond
// its <summary> come out as "[hidden text: ...]". Scripts, styles, templates,
// noscript and the head are dropped. External sheets are those opt obtains (linked.go); the
// text opens with a note when some were not checked.
func htmlText(data []byte, opt HTMLOptions) Result {
	data = bytes.ReplaceAll(data, []byte{0}, nil)
	doc, err := html.ParseWithOptions(bytes.NewReader(data), html.ParseOptionEnableScripting(true))
	if err != nil || doc == nil {
		// The parser refuses a document nested beyond its limit (512 open elements): no page
		// needs that, and nothing of its styles can be checked, so all of it counts as hidden.
		w := newWriter()
		w.hide(plainText(data).Text)
		return w.result()
	}
	l := newLinker(opt)
	r := walkHTML(doc, collectSheet(doc, l))
	if note, n := l.note(); n > 0 {
		// First, where a reader of the text (or of its first page) cannot miss it.
		r.Text = strings.TrimSuffix(note+"\n\n"+r.Text, "\n\n")
		r.Unchecked = n
	}
	return r
}

// walkHTML returns the text of doc styled by sh.
func walkHTML(doc *html.Node, sh *sheet) Result {
	h := &htmlWalker{w: newWriter(), sheet: sh, anc: new(ancestorFilter)}
	base := scene{color: "000000", bg: "ffffff"}
	h.walk(doc, htmlCtx{scenes: [2]scene{base, base}}, 0)
	return h.w.result()
}

// htmlCtx is what a node inherits from its ancestors.
type htmlCtx struct {
	pre    bool
	list   int      // list nesting
	scenes [2]scene // with certain style rules only, and with every rule that may apply
}

type htmlWalker struct {
	w       *writer
	sheet   *sheet
	varSubs int             // var() substitutions so far
	anc     *ancestorFilter // what the ancestors of the current node carry
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

func (h *htmlWalker) walk(n *html.Node, ctx htmlCtx, depth int) {
	w := h.w
	if w.full() {
		return
	}
	switch n.Type {
	case html.TextNode:
		h.textNode(n.Data, ctx, ctx.sameColor())
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
	if h.hiddenBy(n, &ctx) {
		var sub strings.Builder
		h.collect(n, &sub, depth)
		w.hide(sub.String())
		w.flushHidden()
		return
	}
	if depth > maxHTMLDepth {
		// Styles are not checked this deep (a rule matching here could hide it): no page
		// needs such nesting, so what is in it counts as hidden.
		var sub strings.Builder
		h.collect(n, &sub, 0)
		w.hide(sub.String())
		w.flushHidden()
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
	keys := h.enter(n)
	// A closed <details> shows its first <summary> only: the rest is what a reader opens.
	_, open := getAttr(n, "open")
	closed, summary := n.DataAtom == atom.Details && !open, false
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if closed {
			if c.Type == html.ElementNode && c.DataAtom == atom.Summary && !summary {
				summary = true
			} else {
				var sub strings.Builder
				h.collect(c, &sub, depth+1)
				if strings.TrimSpace(sub.String()) != "" {
					w.hide(sub.String())
					w.flushHidden()
				}
				continue
			}
		}
		h.walk(c, ctx, depth+1)
	}
	h.leave(keys)
	switch {
	case n.DataAtom == atom.A:
		href, _ := getAttr(n, "href")
		href = strings.TrimSpace(href)
		lower := strings.ToLower(href)
		switch {
		case href == "" || strings.HasPrefix(href, "#") || strings.HasPrefix(lower, "javascript:"):
		case ctx.sameColor():
			if !strings.Contains(w.hid.String(), href) {
				w.hideSpace()
				w.hide("(" + href + ")") // the link is as hidden as its text
			}
		case w.b.Len() > linkStart && !strings.Contains(w.b.String()[linkStart:], href):
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

// enter records what n carries in the ancestor filter for the nodes below it, for
// sheet.match; leave takes it out again.
func (h *htmlWalker) enter(n *html.Node) []uint32 {
	if len(h.sheet.rules) == 0 {
		return nil
	}
	keys := []uint32{keyHash('t', n.Data)}
	if id, ok := getAttr(n, "id"); ok {
		keys = append(keys, keyHash('#', h.sheet.fold(id)))
	}
	if c, ok := getAttr(n, "class"); ok {
		for _, c := range strings.FieldsFunc(h.sheet.fold(c), isHTMLSpace) {
			keys = append(keys, keyHash('.', c))
		}
	}
	for _, k := range keys {
		h.anc.add(k, 1)
	}
	return keys
}

func (h *htmlWalker) leave(keys []uint32) {
	for _, k := range keys {
		h.anc.add(k, ^uint32(0)) // -1
	}
}

// sameColor reports text drawn in its background colour, with certain style rules only
// or with every rule that may apply. It is decided per text node: a container may set a
// dark background and a child the light text colour.
func (c *htmlCtx) sameColor() bool {
	return sameColor(c.scenes[0].color, c.scenes[0].bg) || sameColor(c.scenes[1].color, c.scenes[1].bg)
}

// textNode writes a text node: whitespace collapsed outside <pre>; hidden text goes to
// the current hidden run.
func (h *htmlWalker) textNode(s string, ctx htmlCtx, hidden bool) {
	w := h.w
	if hidden {
		if strings.TrimSpace(s) == "" {
			w.hideSpace()
			return
		}
		if startsSpace(s) {
			w.hideSpace()
		}
		w.hide(strings.Join(strings.Fields(s), " "))
		if last := s[len(s)-1]; last == ' ' || last == '\n' || last == '\t' || last == '\r' || last == '\f' {
			w.hideSpace()
		}
		return
	}
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
