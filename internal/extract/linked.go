package extract

import (
	"encoding/base64"
	"fmt"
	"mime"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// This file reads the style sheets a document links to (<link rel=stylesheet>, and @import
// in its sheets) as far as the caller fetched them: the package never fetches anything
// itself. A sheet that would apply in a browser but is not there to read is counted, and
// the text opens with a note saying how many were not checked and why.

// Sheet is an external style sheet as the caller fetched it (HTMLOptions.Sheets).
type Sheet struct {
	// CSS is the sheet's content.
	CSS []byte
	// Type is the Content-Type it was served with ("" if unknown). A type other than
	// text/css, which a browser in standards mode refuses to apply, makes its rules
	// uncertain: they can hide text but not show what other rules hide.
	Type string
	// Missing, when not empty, says why the sheet is not there, as a short phrase that follows
	// a count in the note ("2 from other hosts"); CSS is then ignored.
	Missing string
}

// HTMLOptions say where an HTML document comes from and how its external style sheets are
// obtained.
type HTMLOptions struct {
	// URL is the document's address: linked sheets resolve against it (and the document's
	// <base href>). Nil for a document without one (a file).
	URL *url.URL
	// Sheets returns the sheets at urls (absolute when URL is set; data: URLs are read by
	// the package itself and never passed), one Sheet per URL in order. It is called at most
	// twice per document: for the sheets the document links (<link rel=stylesheet> and
	// @import in its <style> elements), then for those the first ones @import. Nil: no
	// external sheet is read (ReasonLocalFile).
	Sheets func(urls []string) []Sheet
}

// ReasonLocalFile is why the sheets a document without HTMLOptions.Sheets links are not
// checked. A local file's sheets are other files: reading them would be reads the person
// never asked for, outside the tool call's scope (and the file may name any path or a web
// address), so they are noted, not read.
const ReasonLocalFile = "not read for a local file"

// Limits on external sheets.
const (
	// maxLinkedSheets caps the external sheets (data: URLs included) applied to a document,
	// and the @import rules read from one sheet.
	maxLinkedSheets = 32
	// maxImportDepth is how many URLs deep sheets are followed: a linked sheet (or one a
	// <style> element imports) is 1, a sheet it imports 2.
	maxImportDepth = 2
)

// Reasons extract itself gives for a sheet not checked.
var (
	reasonTooMany    = fmt.Sprintf("beyond the first %d", maxLinkedSheets)
	reasonDeepImport = "imported by an imported sheet"
	reasonBadData    = "unreadable data: URLs"
)

// HTML returns the main text of an HTML document (see Text), styled with the external
// sheets opt obtains. Linked sheets that would apply but could not be read are counted in
// Result.Unchecked, and the text opens with a one-line note saying so.
func HTML(data []byte, opt HTMLOptions) (Result, error) {
	if len(data) > MaxInput {
		return Result{}, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(data), MaxInput)
	}
	r := htmlText(data, opt)
	r.Format = FormatHTML
	return r, nil
}

// cssImport is an @import rule.
type cssImport struct {
	url     string // resolved
	certain bool   // where @import is valid, without supports() or layer(), its media list matched (media.go)
}

// extSheet is an external sheet as read.
type extSheet struct {
	css     string // comments removed (cleanCSS)
	certain bool   // served as CSS
	imports []cssImport
	extra   int    // @import rules beyond maxLinkedSheets
	missing string // why it is not there
}

// linker resolves, obtains and applies a document's external sheets.
type linker struct {
	opt     HTMLOptions
	base    *url.URL // what the document's links resolve against; nil: none
	sheets  map[string]*extSheet
	applied int

	missed  map[string]bool // URLs counted as not checked
	reasons []string        // in first-seen order
	counts  map[string]int
}

func newLinker(opt HTMLOptions) *linker {
	return &linker{opt: opt, base: opt.URL, sheets: map[string]*extSheet{}, missed: map[string]bool{}, counts: map[string]int{}}
}

// setBase takes the href of the document's first <base href>.
func (l *linker) setBase(href string) {
	u, err := url.Parse(strings.TrimFunc(href, isHTMLSpace))
	if err != nil {
		return
	}
	if l.base != nil {
		u = l.base.ResolveReference(u)
	}
	if u.IsAbs() {
		l.base = u
	}
}

// resolve returns href resolved against base (if any), without its fragment; ok is false
// for what no browser could load.
func resolve(base *url.URL, href string) (string, bool) {
	href = strings.TrimFunc(href, isHTMLSpace)
	if href == "" {
		return "", false
	}
	u, err := url.Parse(href)
	if err != nil {
		return "", false
	}
	if base != nil && !u.IsAbs() {
		if base.Opaque != "" {
			return "", false // relative to a data: URL
		}
		u = base.ResolveReference(u)
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String(), true
}

func isData(u string) bool { return len(u) >= 5 && strings.EqualFold(u[:5], "data:") }

// load obtains the sheets of srcs (the document's sheets in order) and those they import.
func (l *linker) load(srcs []styleSource) {
	var first []string
	for _, s := range srcs {
		if s.url != "" {
			first = append(first, s.url)
		}
		for _, im := range s.imports {
			first = append(first, im.url)
		}
	}
	l.fetch(first)
	var second []string
	for _, u := range first {
		if s := l.sheets[u]; s != nil && s.missing == "" {
			for _, im := range s.imports {
				second = append(second, im.url)
			}
		}
	}
	l.fetch(second)
}

// fetch obtains the sheets at urls not obtained yet: data: URLs here, the rest through
// opt.Sheets, the first maxLinkedSheets only.
func (l *linker) fetch(urls []string) {
	var ask []string
	seen := map[string]bool{}
	for _, u := range urls {
		if l.sheets[u] != nil || seen[u] {
			continue
		}
		seen[u] = true
		switch {
		case isData(u):
			css, typ, ok := dataURL(u)
			if !ok {
				l.sheets[u] = &extSheet{missing: reasonBadData}
				continue
			}
			l.sheets[u] = l.read(u, Sheet{CSS: css, Type: typ})
		case len(ask) >= maxLinkedSheets:
			l.sheets[u] = &extSheet{missing: reasonTooMany}
		default:
			ask = append(ask, u)
		}
	}
	if len(ask) == 0 {
		return
	}
	var got []Sheet
	if l.opt.Sheets != nil {
		got = l.opt.Sheets(ask)
	}
	for i, u := range ask {
		s := Sheet{Missing: ReasonLocalFile}
		if l.opt.Sheets != nil {
			s = Sheet{Missing: "not fetched"}
			if i < len(got) {
				s = got[i]
			}
		}
		l.sheets[u] = l.read(u, s)
	}
}

// read reads a sheet obtained from u.
func (l *linker) read(u string, s Sheet) *extSheet {
	if s.Missing != "" {
		return &extSheet{missing: s.Missing}
	}
	mt, _, _ := mime.ParseMediaType(s.Type)
	x := &extSheet{css: cleanCSS(string(s.CSS)), certain: s.Type == "" || mt == "text/css"}
	base, _ := url.Parse(u)
	x.imports, x.extra = cssImports(x.css, base)
	return x
}

// get returns the sheet at u to apply, or nil when it is not there (and counts it).
func (l *linker) get(u string) *extSheet {
	s := l.sheets[u]
	switch {
	case s == nil:
		l.miss(u, "not fetched")
		return nil
	case s.missing != "":
		l.miss(u, s.missing)
		return nil
	case l.applied >= maxLinkedSheets:
		l.miss(u, reasonTooMany)
		return nil
	}
	l.applied++
	return s
}

// miss counts the sheet at u (once) as not checked, for reason.
func (l *linker) miss(u, reason string) {
	if !l.missed[u] {
		l.missed[u] = true
		l.missN(1, reason)
	}
}

// missN counts n sheets as not checked, for reason.
func (l *linker) missN(n int, reason string) {
	if n == 0 {
		return
	}
	if l.counts[reason] == 0 {
		l.reasons = append(l.reasons, reason)
	}
	l.counts[reason] += n
}

// note is the line saying which sheets were not checked, or "".
func (l *linker) note() (string, int) {
	n := 0
	parts := make([]string, len(l.reasons))
	for i, r := range l.reasons {
		n += l.counts[r]
		parts[i] = fmt.Sprintf("%d %s", l.counts[r], r)
	}
	if n == 0 {
		return "", 0
	}
	why := l.reasons[0]
	if len(parts) > 1 {
		why = strings.Join(parts, ", ")
	}
	if n == 1 {
		return fmt.Sprintf("[note: 1 stylesheet was not checked for hidden text (%s)]", why), n
	}
	return fmt.Sprintf("[note: %d stylesheets were not checked for hidden text (%s)]", n, why), n
}

// cssImports returns the @import rules of a sheet (comments removed) with their URLs resolved
// against base, the first maxLinkedSheets of them, and how many more there are. An @import
// after a rule other than @charset or @layer, which a browser ignores, is read as uncertain.
func cssImports(css string, base *url.URL) (out []cssImport, extra int) {
	valid := true
	for {
		css = strings.TrimLeft(css, " \t\r\n\f")
		if css == "" {
			return out, extra
		}
		if css[0] != '@' {
			valid = false
			_, _, _, css = nextItem(css, "")
			continue
		}
		prelude, _, block, rest := nextItem(css, ";")
		css = rest
		name := strings.ToLower(prelude[1:nameEnd(prelude, 1)])
		switch {
		case block:
			valid = false
		case name == "charset" || name == "layer":
		case name == "import":
			href, cond, ok := importTarget(strings.TrimSpace(prelude[len("@import"):]))
			if !ok {
				continue
			}
			u, ok := resolve(base, href)
			if !ok {
				continue
			}
			m := importMedia(cond)
			if m == mediaNo {
				continue // not applied on the nominal screen
			}
			if len(out) == maxLinkedSheets {
				extra++
				continue
			}
			out = append(out, cssImport{url: u, certain: valid && m == mediaYes})
		default:
			valid = false
		}
	}
}

// importTarget splits what follows @import into its URL (a string or url()) and the
// conditions after it.
func importTarget(s string) (href, cond string, ok bool) {
	switch {
	case s == "":
		return "", "", false
	case s[0] == '"' || s[0] == '\'':
		v, end := unquote(s)
		return cssUnescape(v), s[end:], true
	case len(s) > 4 && strings.EqualFold(s[:4], "url("):
		end := 4 + scanTo(s[4:], ")")
		v := strings.TrimSpace(s[4:end])
		if v != "" && (v[0] == '"' || v[0] == '\'') {
			v, _ = unquote(v)
		}
		return cssUnescape(v), s[min(end+1, len(s)):], true
	}
	return "", "", false
}

// unquote returns what the CSS string at the start of s holds, and where it ends.
func unquote(s string) (string, int) {
	end := skipString(s, 0)
	if end > 1 && s[end-1] == s[0] {
		return s[1 : end-1], end
	}
	return s[1:end], end // unterminated
}

// cssUnescape drops the backslashes of simple escapes in a CSS string.
func cssUnescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cssType reports whether the type attribute of a <style> or <link> says CSS: empty or
// text/css.
func cssType(t string) bool {
	t, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(t)), ";")
	return t == "" || t == "text/css"
}

// dataURL decodes a data: URL: its bytes and media type.
func dataURL(u string) (data []byte, typ string, ok bool) {
	meta, payload, found := strings.Cut(u[len("data:"):], ",")
	if !found {
		return nil, "", false
	}
	typ = strings.ToLower(strings.TrimSpace(meta))
	p, err := url.PathUnescape(payload)
	if err != nil {
		p = payload
	}
	if !strings.HasSuffix(typ, ";base64") {
		return []byte(p), typ, true
	}
	typ = strings.TrimSuffix(typ, ";base64")
	p = strings.Map(func(r rune) rune {
		if isHTMLSpace(r) {
			return -1
		}
		return r
	}, p)
	if data, err = base64.StdEncoding.DecodeString(p); err != nil {
		if data, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(p, "=")); err != nil {
			return nil, "", false
		}
	}
	return data, typ, true
}

// styleSource is one of a document's style sheets, in document order: a <style> element's
// text or a linked sheet.
type styleSource struct {
	css     string // a <style> element's text, comments removed
	imports []cssImport
	extra   int    // its @import rules beyond maxLinkedSheets
	url     string // a <link>'s sheet, resolved; "" for a <style>
	certain bool
	inert   bool // a <style> in a <template>: its @import rules load nothing
}

// stylesheetLink reports whether a <link> element loads a style sheet a browser applies,
// with its href and whether its rules apply on the nominal screen (mediaUnknown for a sheet
// that may not apply). Disabled links, alternate style sheets and types other than text/css
// are not loaded by browsers and are left out.
func stylesheetLink(n *html.Node) (href string, m mediaResult, ok bool) {
	if n.DataAtom != atom.Link || n.Namespace != "" {
		return "", mediaNo, false
	}
	rel, _ := getAttr(n, "rel")
	sheet, alternate := false, false
	for _, t := range strings.FieldsFunc(strings.ToLower(rel), isHTMLSpace) {
		sheet = sheet || t == "stylesheet"
		alternate = alternate || t == "alternate"
	}
	if _, disabled := getAttr(n, "disabled"); !sheet || alternate || disabled {
		return "", mediaNo, false
	}
	if t, ok := getAttr(n, "type"); ok && !cssType(t) {
		return "", mediaNo, false
	}
	href, ok = getAttr(n, "href")
	if !ok || strings.TrimFunc(href, isHTMLSpace) == "" {
		return "", mediaNo, false
	}
	media, _ := getAttr(n, "media")
	// A browser refuses a sheet that does not match its integrity hash; it is not checked
	// here, so such a sheet may not apply.
	m = mediaList(media)
	if _, integrity := getAttr(n, "integrity"); integrity {
		m = min(m, mediaUnknown)
	}
	return href, m, true
}
