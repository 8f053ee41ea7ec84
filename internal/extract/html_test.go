package extract

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

func TestHTMLMainText(t *testing.T) {
	page := `<!DOCTYPE html><html><head><title>T</title><style>p{color:#333}</style><script>alert("x")</script></head>
<body>
<h1>Title   here</h1>
<p>First <b>bold</b> paragraph with a <a href="https://example.com/a">link</a>.</p>
<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>
<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>
<pre>  code
  block</pre>
<noscript>enable js</noscript><template><p>tpl</p></template>
<p>line<br>break <img alt="a cat" src="c.png"> <a href="#top">top</a> <a href="https://x.org">https://x.org</a></p>
</body></html>`
	r, err := Text("page.html", []byte(page))
	if err != nil {
		t.Fatal(err)
	}
	want := `# Title here

First bold paragraph with a link (https://example.com/a).

- one
- two
  - nested

k | v |
a | 1 |

  code
  block

line
break [image: a cat] top https://x.org`
	if r.Text != want {
		t.Fatalf("got:\n%s\nwant:\n%s", r.Text, want)
	}
	if r.Hidden != 0 || r.Format != FormatHTML {
		t.Fatalf("Hidden=%d Format=%q", r.Hidden, r.Format)
	}
}

func TestHTMLHidden(t *testing.T) {
	cases := []struct{ name, html string }{
		{"hidden-attr", `<div hidden>SECRET</div>`},
		{"aria-hidden", `<span aria-hidden="true">SECRET</span>`},
		{"display-none", `<div style="display: none">SECRET</div>`},
		{"display-none-important", `<div style="DISPLAY:NONE !important">SECRET</div>`},
		{"visibility", `<p style="visibility:hidden">SECRET</p>`},
		{"font-size-0", `<span style="font-size:0">SECRET</span>`},
		{"font-size-1px", `<span style="font-size: 1px">SECRET</span>`},
		{"font-size-half-pt", `<span style="font-size:.5pt">SECRET</span>`},
		{"white-on-white", `<span style="color:#fff">SECRET</span>`},
		{"white-rgb", `<span style="color: rgb(255, 255, 255)">SECRET</span>`},
		{"same-as-bg", `<div style="background-color:#123456"><span style="color:#123456">SECRET</span></div>`},
		{"font-color", `<font color="white">SECRET</font>`},
		{"opacity", `<span style="opacity:0">SECRET</span>`},
		{"offscreen", `<div style="position:absolute;left:-9999px">SECRET</div>`},
		{"class-rule", `<style>.x, .y { display:none }</style><div class="a y">SECRET</div>`},
		{"id-rule", `<style>#z{font-size:0px}</style><div id="z">SECRET</div>`},
		{"comment", `<!-- SECRET -->`},
		{"input-hidden", `<input type="hidden" name="n" value="SECRET">`},
		{"nested", `<div style="display:none"><p>SECRET</p></div>`},
		{"scale-tiny", `<span style="display:inline-block;transform:scale(0.01)">SECRET</span>`},
		{"scale-y-zero", `<span style="transform:rotate(2deg) scaleY(0)">SECRET</span>`},
		{"matrix-tiny", `<span style="transform:matrix(0.02,0,0,0.02,0,0)">SECRET</span>`},
		{"scale-property", `<span style="scale:1 0.05">SECRET</span>`},
		{"translate-property", `<span style="translate:-5000px 0">SECRET</span>`},
		{"zoom", `<span style="zoom:5%">SECRET</span>`},
		{"blur", `<span style="filter:blur(12px)">SECRET</span>`},
		{"contrast-zero", `<span style="filter:contrast(0)">SECRET</span>`},
		{"visually-hidden", `<span style="position:absolute;width:1px;height:1px;overflow:hidden;clip:auto">SECRET</span>`},
		{"dialog-closed", `<dialog><p>SECRET</p></dialog>`},
		{"details-closed", `<details><summary>More</summary><p>SECRET</p></details>`},
		{"details-closed-no-summary", `<details>SECRET</details>`},
		{"details-second-summary", `<details><summary>More</summary><summary>SECRET</summary></details>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Text("p.html", []byte(`<html><body><p>Before `+c.html+` after.</p></body></html>`))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(r.Text, "[hidden text: SECRET]") || r.Hidden != 1 {
				t.Fatalf("got %q (Hidden=%d)", r.Text, r.Hidden)
			}
			if !strings.Contains(r.Text, "Before") || !strings.Contains(r.Text, "after.") || strings.Contains(c.html, "<summary>More") && !strings.Contains(r.Text, "More") {
				t.Fatalf("visible text lost: %q", r.Text)
			}
			if strings.Count(r.Text, "SECRET") != 1 {
				t.Fatalf("hidden text also shown as visible: %q", r.Text)
			}
		})
	}
	// Visible: white text on a dark background, ordinary sizes, visible opacity.
	for _, v := range []string{
		`<div style="background:#000;color:#fff">SHOWN</div>`,
		`<span style="font-size:12px">SHOWN</span>`,
		`<span style="opacity:0.9">SHOWN</span>`,
		`<div style="display:block">SHOWN</div>`,
		`<span aria-hidden="false">SHOWN</span>`,
		`<span style="transform:scale(0.9) scale3d(1,1,0)">SHOWN</span>`,
		`<span style="transform:matrix(1,0,0,1,10,10)">SHOWN</span>`,
		`<span style="scale:0.5;zoom:80%;translate:10px">SHOWN</span>`,
		`<span style="filter:blur(1px) contrast(1.2)">SHOWN</span>`,
		`<span style="width:1px;height:1px">SHOWN</span>`,
		`<dialog open>SHOWN</dialog>`,
		`<details open><summary>SHOWN</summary></details>`,
		`<details><summary>SHOWN</summary></details>`,
	} {
		r, _ := Text("p.html", []byte(`<body>`+v+`</body>`))
		if r.Text != "SHOWN" || r.Hidden != 0 {
			t.Errorf("%s: got %q (Hidden=%d)", v, r.Text, r.Hidden)
		}
	}
}

func TestHTMLCoworkStyle(t *testing.T) {
	page := `<html><body><h2>Report</h2><p>Sales rose.</p><p style="color:white;font-size:1px">` + coworkInstruction + `</p></body></html>`
	r, err := Text("r.htm", []byte(page))
	if err != nil {
		t.Fatal(err)
	}
	want := "## Report\n\nSales rose.\n\n[hidden text: " + coworkInstruction + "]"
	if r.Text != want {
		t.Fatalf("got:\n%s\nwant:\n%s", r.Text, want)
	}
}

func TestHTMLMalformedAndDeep(t *testing.T) {
	for _, s := range []string{"", "<", "<html><body><p>unclosed <b>bold", "</p></div>\x00<<<>>>", strings.Repeat("<div>", 100000) + "deep" + strings.Repeat("</div>", 10)} {
		r, err := Text("x.html", []byte(s))
		if err != nil {
			t.Fatalf("%.40q: %v", s, err)
		}
		if strings.Contains(s, "deep") && !strings.Contains(r.Text, "deep") {
			t.Fatalf("deep text lost")
		}
	}
}

func TestSniffAndText(t *testing.T) {
	r, err := Text("notes.txt", []byte("a\x00b\xffc\n"))
	if err != nil || r.Text != "ab\uFFFDc\n" || r.Format != FormatText {
		t.Fatalf("txt: %q %v", r.Text, err)
	}
	r, _ = Text("data.csv", []byte("a,b\n1,2\n"))
	if r.Text != "a,b\n1,2\n" {
		t.Fatalf("csv: %q", r.Text)
	}
	r, _ = Text("README", []byte("<!DOCTYPE html><p>hi<!--x--></p>"))
	if r.Format != FormatHTML || r.Text != "hi [hidden text: x]" {
		t.Fatalf("sniffed html: %q %q", r.Format, r.Text)
	}
	// A .md file is text: its HTML is not interpreted.
	r, _ = Text("x.md", []byte("# T\n<!-- c -->\n"))
	if r.Format != FormatText || r.Text != "# T\n<!-- c -->\n" {
		t.Fatalf("md: %q", r.Text)
	}
}

// TestHTMLStyleSheet checks <style> rules by selector kind, each both ways: a rule that
// hides the element marks its text hidden; a near miss leaves it plain.
func TestHTMLStyleSheet(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, css, body string
		hidden          bool
	}{
		{"tag", `span{display:none}`, `<span>SECRET</span>`, true},
		{"tag-other", `b{display:none}`, `<span>SECRET</span>`, false},
		{"class", `.x{display:none}`, `<span class="a x">SECRET</span>`, true},
		{"class-other", `.x{display:none}`, `<span class="xx">SECRET</span>`, false},
		{"id", `#z{font-size:0}`, `<span id="z">SECRET</span>`, true},
		{"id-other", `#z{font-size:0}`, `<span id="zz">SECRET</span>`, false},

		{"descendant", `div .x{display:none}`, `<div><p><span class="x">SECRET</span></p></div>`, true},
		{"descendant-other", `div .x{display:none}`, `<section><span class="x">SECRET</span></section>`, false},
		{"child", `.a > span{visibility:hidden}`, `<div class="a"><span>SECRET</span></div>`, true},
		{"child-grandchild", `.a > span{visibility:hidden}`, `<div class="a"><b><span>SECRET</span></b></div>`, false},
		{"adjacent", `h2 + p{font-size:0}`, `<h2>Title</h2><p>SECRET</p>`, true},
		{"adjacent-not-next", `h2 + p{font-size:0}`, `<h2>Title</h2><div>x</div><p>SECRET</p>`, false},
		{"sibling", `.m ~ p{opacity:0}`, `<i class="m"></i><b>x</b><p>SECRET</p>`, true},
		{"sibling-before", `.m ~ p{opacity:0}`, `<p>SECRET</p><i class="m"></i>`, false},

		{"compound", `p.note#x{color:#fff}`, `<p class="note" id="x">SECRET</p>`, true},
		{"compound-other-id", `p.note#x{color:#fff}`, `<p class="note" id="y">SECRET</p>`, false},
		{"compound-other-tag", `p.note#x{color:#fff}`, `<div class="note" id="x">SECRET</div>`, false},

		{"attr-present", `[data-x]{display:none}`, `<span data-x>SECRET</span>`, true},
		{"attr-absent", `[data-x]{display:none}`, `<span data-y>SECRET</span>`, false},
		{"attr-equal", `span[data-state="closed"]{display:none}`, `<span data-state="closed">SECRET</span>`, true},
		{"attr-equal-other", `span[data-state="closed"]{display:none}`, `<span data-state="open">SECRET</span>`, false},
		{"attr-aria-sibling", `[aria-hidden=true] + span{display:none}`, `<i aria-hidden="true"></i><span>SECRET</span>`, true},
		{"attr-aria-sibling-false", `[aria-hidden=true] + span{display:none}`, `<i aria-hidden="false"></i><span>SECRET</span>`, false},
		{"attr-s-flag", `[data-k="Hide" s]{display:none}`, `<span data-k="Hide">SECRET</span>`, true},
		{"attr-s-flag-case", `[data-k="Hide" s]{display:none}`, `<span data-k="hide">SECRET</span>`, false},
		{"attr-s-flag-in-value", `[data-k="x s"]{display:none}`, `<span data-k="x s">SECRET</span>`, true},
		{"attr-s-flag-unquoted", `[data-k=Hide S ] > b{display:none}`, `<span data-k="Hide"><b>SECRET</b></span>`, true},
		{"attr-prefix", `[class^="hid"]{display:none}`, `<span class="hidden-text">SECRET</span>`, true},
		{"attr-suffix", `span[data-f$=".pdf"]{display:none}`, `<span data-f="/x.pdf">SECRET</span>`, true},
		{"attr-suffix-other", `span[data-f$=".pdf"]{display:none}`, `<span data-f="/x.html">SECRET</span>`, false},
		{"attr-substring", `[title*="ecre"]{display:none}`, `<span title="secret">SECRET</span>`, true},
		{"attr-dash", `[lang|=en]{display:none}`, `<span lang="en-GB">SECRET</span>`, true},
		{"attr-dash-other", `[lang|=en]{display:none}`, `<span lang="eng">SECRET</span>`, false},
		{"attr-case-flag", `[data-k="ABC" i]{display:none}`, `<span data-k="abc">SECRET</span>`, true},

		{"list", `.a, .b{display:none}`, `<span class="b">SECRET</span>`, true},
		{"list-other", `.a, .b{display:none}`, `<span class="c">SECRET</span>`, false},
		{"list-with-pseudo-element", `.a::before, .b{display:none}`, `<span class="b">SECRET</span>`, true},

		{"nth-child", `li:nth-child(2){display:none}`, `<ul><li>one</li><li>SECRET</li></ul>`, true},
		{"nth-child-other", `li:nth-child(3){display:none}`, `<ul><li>one</li><li>SECRET</li></ul>`, false},
		{"nth-child-odd", `li:nth-child(2n+1){display:none}`, `<ul><li>SECRET</li><li>two</li></ul>`, true},
		{"first-child", `p:first-child{display:none}`, `<div><p>SECRET</p></div>`, true},
		{"first-child-other", `p:first-child{display:none}`, `<div><b>x</b><p>SECRET</p></div>`, false},
		{"last-of-type", `p:last-of-type{display:none}`, `<div><p>one</p><p>SECRET</p></div>`, true},
		{"not", `span:not(.shown){display:none}`, `<span class="z">SECRET</span>`, true},
		{"not-excluded", `span:not(.shown){display:none}`, `<span class="shown">SECRET</span>`, false},
		{"is", `:is(.a, .b) span{display:none}`, `<div class="b"><span>SECRET</span></div>`, true},
		{"is-other", `:is(.a, .b) span{display:none}`, `<div class="c"><span>SECRET</span></div>`, false},
		{"where", `:where(.a) span{display:none}`, `<div class="a"><span>SECRET</span></div>`, true},
		{"has", `div:has(.flag) p{display:none}`, `<div><i class="flag"></i><p>SECRET</p></div>`, true},
		{"has-other", `div:has(.flag) p{display:none}`, `<div><i class="nope"></i><p>SECRET</p></div>`, false},
		{"unknown-pseudo-class", `.x:focus-within span{display:none}`, `<div class="x"><span>SECRET</span></div>`, true},
		{"hover-only", `.x:hover{display:none}`, `<span class="x">SECRET</span>`, false},
		{"hidden-until-hover", `.menu ul{display:none} .menu li:hover > ul{display:block}`, `<div class="menu"><ul><li>SECRET</li></ul></div>`, true},
		{"pseudo-element", `.x::after{display:none}`, `<span class="x">SECRET</span>`, false},
		{"clearfix", `.cf:after{content:".";display:block;height:0;visibility:hidden}`, `<div class="cf">SECRET</div>`, false},

		{"media", `@media screen and (min-width: 1px){ .x{display:none} }`, `<span class="x">SECRET</span>`, true},
		{"media-print", `@media print{ .x{display:none} }`, `<span class="x">SECRET</span>`, false},
		{"media-unknown-feature", `@media (scan: progressive){ .x{display:none} }`, `<span class="x">SECRET</span>`, true},
		{"media-other", `@media screen{ .y{display:none} }`, `<span class="x">SECRET</span>`, false},
		{"supports-media", `@supports (display:grid){ @media screen { .x{font-size:0} } }`, `<span class="x">SECRET</span>`, true},
		{"layer", `@layer base { .x{opacity:0} }`, `<span class="x">SECRET</span>`, true},
		{"style-media-attr", ``, `<style media="print">.x{display:none}</style><span class="x">SECRET</span>`, false},
		{"style-media-attr-unknown", ``, `<style media="(scan: progressive)">.x{display:none}</style><span class="x">SECRET</span>`, true},
		{"nesting-amp", `.a { & .x { display:none } }`, `<div class="a"><span class="x">SECRET</span></div>`, true},
		{"nesting-implicit", `.a { .x { display:none } }`, `<div class="a"><span class="x">SECRET</span></div>`, true},
		{"nesting-child", `.a { > .x { display:none } }`, `<div class="a"><span class="x">SECRET</span></div>`, true},
		{"nesting-compound", `.a { &.x { display:none } }`, `<span class="a x">SECRET</span>`, true},
		{"nesting-outside", `.a { .x { display:none } }`, `<div class="b"><span class="x">SECRET</span></div>`, false},
		{"nesting-media", `.x { @media screen { display:none } }`, `<span class="x">SECRET</span>`, true},

		{"non-hiding-props", `.x{display:block;color:#333;font-size:14px;opacity:.9;margin-left:-10px}`, `<span class="x">SECRET</span>`, false},
		{"white-on-dark", `.dark{background:#000} .dark p{color:#fff}`, `<div class="dark"><p>SECRET</p></div>`, false},
		{"white-on-white", `.dark p{color:#fff}`, `<div class="dark"><p>SECRET</p></div>`, true},
		{"white-on-white-words", `.w{color:#fff}`, `<p class="w">SEC<b>RET</b></p>`, true},
		{"dark-child-on-dark", `.d{background:#000;color:#fff} .d b{color:#000}`, `<div class="d">x <b>SECRET</b></div>`, true},
		{"transparent", `.x{color:transparent}`, `<span class="x">SECRET</span>`, true},
		{"rgba-zero", `.x{color:rgba(0,0,0,0)}`, `<span class="x">SECRET</span>`, true},
		{"hsl-white", `.x{color:hsl(0, 0%, 100%)}`, `<span class="x">SECRET</span>`, true},
		{"font-shorthand", `.x{font:0/0 a}`, `<span class="x">SECRET</span>`, true},
		{"font-shorthand-visible", `.x{font:italic 700 14px/1.5 serif}`, `<span class="x">SECRET</span>`, false},
		{"calc-font-size", `.x{font-size:calc(2px - 2px)}`, `<span class="x">SECRET</span>`, true},
		{"calc-opacity", `.x{opacity:min(1, 0%)}`, `<span class="x">SECRET</span>`, true},
		{"filter-opacity", `.x{filter:blur(1px) opacity(0%)}`, `<span class="x">SECRET</span>`, true},
		{"filter-visible", `.x{filter:opacity(80%)}`, `<span class="x">SECRET</span>`, false},
		{"translate-offscreen", `.x{transform:translateX(-9999px)}`, `<span class="x">SECRET</span>`, true},
		{"translate-centred", `.x{transform:translate(-50%, -50%)}`, `<span class="x">SECRET</span>`, false},
		{"text-fill-transparent", `.x{-webkit-text-fill-color:transparent}`, `<span class="x">SECRET</span>`, true},
		{"gradient-text", `.x{background:linear-gradient(red,blue);-webkit-background-clip:text;-webkit-text-fill-color:transparent}`, `<span class="x">SECRET</span>`, false},
		{"zero-height", `.x{height:0;overflow:hidden}`, `<div class="x">SECRET</div>`, true},
		{"zero-height-visible-overflow", `.x{height:0}`, `<div class="x">SECRET</div>`, false},
		{"offscreen", `.x{position:absolute;left:-9999px}`, `<div class="x">SECRET</div>`, true},
		{"var", `:root{--h:none} .x{display:var(--h)}`, `<span class="x">SECRET</span>`, true},
		{"var-inherited", `.p{--c:#fff} .x{color:var(--c)}`, `<div class="p"><span class="x">SECRET</span></div>`, true},
		{"var-fallback", `.x{display:var(--nope, none)}`, `<span class="x">SECRET</span>`, true},
		{"var-visible", `:root{--h:block} .x{display:var(--h)}`, `<span class="x">SECRET</span>`, false},

		{"comment-in-sheet", `/* .x{display:block} */ .x{display:none}`, `<span class="x">SECRET</span>`, true},
		{"brace-in-string", `.x{content:"}"; display:none}`, `<span class="x">SECRET</span>`, true},
		{"cdo-cdc", `<!-- .x{display:none} -->`, `<span class="x">SECRET</span>`, true},
		{"garbage-then-rule", `;; @@ } .q{{display:none}} .x{display:none}`, `<span class="x">SECRET</span>`, true},
		{"unparseable-only", `.x[[[{display:none}`, `<span class="x">SECRET</span>`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			checkHidden(t, `<style>`+c.css+`</style>`+c.body, c.hidden)
		})
	}
}

// TestHTMLStyleCascade checks that a rule hiding text is overridden only by what
// overrides it in a browser, never by a rule that may not apply.
func TestHTMLStyleCascade(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
		hidden    bool
	}{
		{"later-rule-other-element", `<style>.x{display:none} .y{display:block}</style><p class="x">SECRET</p>`, true},
		{"later-less-specific", `<style>.x{display:none} div{display:block}</style><div class="x">SECRET</div>`, true},
		{"important-beats-specific", `<style>.x{display:none !important} #y.x{display:block}</style><p class="x" id="y">SECRET</p>`, true},
		{"important-beats-inline", `<style>.x{display:none!important}</style><p class="x" style="display:block">SECRET</p>`, true},
		{"media-unknown-cannot-unhide", `<style>.x{display:none} @media (scan: progressive){.x{display:block}}</style><p class="x">SECRET</p>`, true},
		{"media-screen-shows", `<style>.x{display:none} @media screen{.x{display:block}}</style><p class="x">SECRET</p>`, false},
		{"layer-cannot-unhide", `<style>.x{display:none} @layer l{.x{display:block !important}}</style><p class="x">SECRET</p>`, true},
		{"where-cannot-unhide", `<style>.x{display:none} :where(.x){display:block}</style><p class="x">SECRET</p>`, true},
		{"invalid-list-cannot-unhide", `<style>.x{display:none} .x, .y:nonsense{display:block}</style><p class="x">SECRET</p>`, true},
		{"nonstandard-cannot-unhide", `<style>.x{display:none} .x:contains(S){display:block}</style><p class="x">SECRET</p>`, true},
		{"second-sheet-type", `<style>.x{display:none}</style><style type="text/plain">.x{display:block}</style><p class="x">SECRET</p>`, true},
		{"unresolved-var-cannot-unhide", `<style>.x{display:none} .x.x{display:var(--nope)}</style><p class="x">SECRET</p>`, true},
		{"inline-hides", `<style>.x{display:block}</style><p class="x" style="display:none">SECRET</p>`, true},
		{"more-specific-shows", `<style>.x{display:none} .x.open{display:block}</style><div class="x open">SECRET</div>`, false},
		{"later-shows", `<style>.x{display:none} .x{display:block}</style><div class="x">SECRET</div>`, false},
		{"inline-shows", `<style>.x{display:none}</style><div class="x" style="display:block">SECRET</div>`, false},
		{"important-shows", `<style>#y{display:none} .x{display:block!important}</style><div class="x" id="y">SECRET</div>`, false},
		{"template-cannot-unhide", `<style>.x{display:none}</style><template><style>.x{display:block}</style></template><p class="x">SECRET</p>`, true},
		{"padded-inline-style", `<p style="` + strings.Repeat("color:red;", 300) + `display:none">SECRET</p>`, true},
		{"padded-rule", `<style>.x{` + strings.Repeat("--a:1;color:red;", 2000) + `display:none}</style><p class="x">SECRET</p>`, true},
		{"same-block-important", `<style>.x{display:none!important;display:block}</style><p class="x">SECRET</p>`, true},
		{"background-later", `<style>.x{color:#fff;background:#fff} .x{background:#000}</style><div class="x">SECRET</div>`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			checkHidden(t, c.doc, c.hidden)
		})
	}
}

// TestHTMLStyleTooBig checks that a document with more style rules than are read has all
// its text marked hidden: padding the sheet never pushes a hiding rule out unseen.
func TestHTMLStyleTooBig(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("<style>")
	for i := range maxCSSRules {
		fmt.Fprintf(&b, ".p%d{color:red}", i)
	}
	b.WriteString(".x{display:none}</style><p>Before</p><p class=x>SECRET</p>")
	r, err := Text("big.html", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if r.Text != "[hidden text: Before SECRET]" {
		t.Fatalf("got %.200q", r.Text)
	}
}

// TestHTMLStyleQuirks checks class and id selectors in quirks mode (no doctype), where
// they ignore ASCII case, and in standards mode, where they do not.
func TestHTMLStyleQuirks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
		hidden    bool
	}{
		{"quirks-class", `<style>.Hide{display:none}</style><p class="hIDE">SECRET</p>`, true},
		{"quirks-id", `<style>#X .y{display:none}</style><div id="x"><p class="Y">SECRET</p></div>`, true},
		// A browser compares [class=...] with case here; matching more is the safe side.
		{"quirks-attr-selector-overmatches", `<style>[class="hide"]{display:none}</style><p class="Hide">SECRET</p>`, true},
		{"standards-class", `<!DOCTYPE html><style>.Hide{display:none}</style><p class="hide">SECRET</p>`, false},
		{"standards-same-case", `<!DOCTYPE html><style>.Hide{display:none}</style><p class="Hide">SECRET</p>`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, err := Text("q.html", []byte(c.doc+`<p>after.</p>`))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(r.Text, "[hidden text: SECRET]"); got != c.hidden || strings.Count(r.Text, "SECRET") != 1 || !strings.Contains(r.Text, "after.") {
				t.Fatalf("hidden=%v, want %v: %q", got, c.hidden, r.Text)
			}
		})
	}
}

// checkHidden extracts body (with visible text around it) and checks that SECRET comes
// out once, hidden or plain as wanted.
func checkHidden(t *testing.T, body string, hidden bool) {
	t.Helper()
	r, err := Text("p.html", []byte(`<html><body><h1>Before</h1>`+body+`<h2>after.</h2></body></html>`))
	if err != nil {
		t.Fatal(err)
	}
	checkSecret(t, r, hidden)
	if hidden != (r.Hidden == 1) {
		t.Fatalf("Hidden=%d: %q", r.Hidden, r.Text)
	}
}

// checkSecret checks that the text around SECRET (Before, after.) is there and SECRET comes
// out once, hidden or plain as wanted.
func checkSecret(t *testing.T, r Result, hidden bool) {
	t.Helper()
	if !strings.Contains(r.Text, "Before") || !strings.Contains(r.Text, "after.") {
		t.Fatalf("visible text lost: %q", r.Text)
	}
	if strings.Count(r.Text, "SECRET") != 1 {
		t.Fatalf("SECRET not once: %q", r.Text)
	}
	if got := strings.Contains(r.Text, "[hidden text: SECRET]"); got != hidden {
		t.Fatalf("hidden=%v, want %v: %q", got, hidden, r.Text)
	}
}

// TestHTMLStyleBudget checks that once the selector-matching budget is spent, a rule that
// may match an element hides it if it can: matching cost never buys visibility.
func TestHTMLStyleBudget(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`<style>.nope ~ .x{display:none}</style><div>`)
	for range 2000 {
		b.WriteString(`<p class="x">t</p>`)
	}
	b.WriteString(`</div>`)
	for _, spent := range []bool{false, true} {
		doc, err := html.Parse(strings.NewReader(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		sh := collectSheet(doc, newLinker(HTMLOptions{}))
		if spent {
			sh.deadline = time.Time{} // spent after the first 256 matches
		}
		r := walkHTML(doc, sh)
		visible := strings.Count(r.Text, "t\n") + strings.Count(r.Text, "\nt")
		if !spent && (r.Hidden != 0 || visible == 0) {
			t.Fatalf("within budget: Hidden=%d, %.80q", r.Hidden, r.Text)
		}
		if spent && (r.Hidden == 0 || !sh.spent || visible == 0) {
			t.Fatalf("budget spent: Hidden=%d spent=%v, %.80q", r.Hidden, sh.spent, r.Text)
		}
	}
}

// BenchmarkHTMLStyleSheet extracts a page of 10,000 elements styled by 4,000 rules of
// mixed kinds.
func BenchmarkHTMLStyleSheet(b *testing.B) {
	var s strings.Builder
	s.WriteString("<!DOCTYPE html><html><head><style>:root{--fg:#222}\n")
	for i := range 4000 {
		switch i % 6 {
		case 0:
			fmt.Fprintf(&s, ".c%d{display:none}\n", i)
		case 1:
			fmt.Fprintf(&s, ".c%d .c%d > a{color:#%06x}\n", i, i+1, i*997%0xffffff)
		case 2:
			fmt.Fprintf(&s, "@media (max-width:%dpx){.c%d{display:block}}\n", i, i)
		case 3:
			fmt.Fprintf(&s, "div.c%d:not(.x) p, .c%d:hover{opacity:.5}\n", i, i)
		case 4:
			fmt.Fprintf(&s, "ul.c%d li:nth-child(2n+1){font-size:var(--s, 14px)}\n", i)
		case 5:
			fmt.Fprintf(&s, ".c%d p{color:var(--fg)}\n", i)
		}
	}
	s.WriteString("</style></head><body>")
	for i := range 2000 {
		fmt.Fprintf(&s, `<div class="c%d c%d"><p>Para <a href="/x">link</a></p><ul class="c%d"><li>item</li></ul></div>`, i%4000, i*7%4000, i*3%4000)
	}
	s.WriteString("</body></html>")
	page := []byte(s.String())
	b.SetBytes(int64(len(page)))
	for b.Loop() {
		if _, err := Text("bench.html", page); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHTMLHiddenLink checks that a link in text drawn in its background colour keeps its
// address inside the hidden marker, not as visible text.
func TestHTMLHiddenLink(t *testing.T) {
	t.Parallel()
	r, err := Text("l.html", []byte(`<style>.w{color:#fff}</style><p>Before <span class="w">click <a href="https://evil.example/x">here</a> now</span> after.</p>`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "Before [hidden text: click here (https://evil.example/x) now] after."; r.Text != want {
		t.Fatalf("got %q, want %q", r.Text, want)
	}
}

// TestHTMLDeepNesting: text nested deeper than styles are checked, or than the parser takes,
// counts as hidden (a class rule could hide it there); nesting within the limit is read as
// usual.
func TestHTMLDeepNesting(t *testing.T) {
	t.Parallel()
	nest := func(n int, inner string) string {
		return `<style>.h{display:none}</style>` + strings.Repeat("<div>", n) + inner + strings.Repeat("</div>", n)
	}
	checkHidden(t, nest(100, `<span class="h">SECRET</span>`), true)
	checkHidden(t, nest(100, `<span>SECRET</span>`), false)
	checkHidden(t, nest(maxHTMLDepth+20, `<span class="h">SECRET</span>`), true)
	checkHidden(t, nest(maxHTMLDepth+20, `<span>SECRET</span>`), true)
	// Beyond the parser's limit the document is refused: all of it is hidden text.
	r, err := Text("p.html", []byte(`<p>Before</p>`+nest(1000, `<span class="h">SECRET</span>`)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Hidden == 0 || !strings.HasPrefix(r.Text, "[hidden text: ") || strings.Count(r.Text, "SECRET") != 1 {
		t.Fatalf("a document the parser refuses: Hidden=%d %.200q", r.Hidden, r.Text)
	}
}
