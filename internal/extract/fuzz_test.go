package extract

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func checkResult(t *testing.T, r Result) {
	if !utf8.ValidString(r.Text) {
		t.Fatalf("invalid UTF-8 in output")
	}
	if strings.ContainsRune(r.Text, 0) {
		t.Fatalf("NUL in output")
	}
	if len(r.Text) > MaxOutput+200 {
		t.Fatalf("output %d bytes over the cap", len(r.Text))
	}
}

func FuzzDocx(f *testing.F) {
	f.Add(makeDocx(f, para(run("Visible", ""), run(coworkInstruction, `<w:color w:val="FFFFFF"/><w:sz w:val="2"/>`)), nil))
	f.Add(makeDocx(f, `<w:tbl><w:tr><w:tc><w:p><w:r><w:t>x</w:t></w:r></w:p></w:tc></w:tr></w:tbl>`, map[string]string{"word/comments.xml": `<w:comments ` + docxNS + `><w:comment w:author="a"><w:p><w:r><w:t>c</w:t></w:r></w:p></w:comment></w:comments>`}))
	f.Add([]byte("PK\x03\x04garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _ := Text("f.docx", data)
		checkResult(t, r)
	})
}

func FuzzHTML(f *testing.F) {
	f.Add([]byte(`<html><body><p>a <span style="color:#fff">b</span><!-- c --><input type=hidden value=d></p><table><tr><td>e</td></tr></table></body></html>`))
	f.Add([]byte(`<style>.x{display:none}</style><div class=x>y</div><a href="u">z</a><pre> p </pre>`))
	f.Add([]byte("<ul><li>\x00\xff</ul"))
	f.Add([]byte(`<style>div .x, .a > span + i ~ b, p.n#x[data-x^="a" i]:not(.y):nth-child(2n+1){display:none}` +
		`@media screen{@supports (x:y){:is(.a,.b) :where(p){color:#fff}}} .n{&.m{font:0/0 a} > i{opacity:calc(1 - 1)}}` +
		`:root{--h:none;--c:var(--h, #fff)} .v{display:var(--h);color:var(--c)} @property --p{initial-value:none}` +
		`.u:focus-within:hover, .w::before, <!-- .z{visibility:hidden} --> .e{clip:rect(0,0,0,0)}</style>` +
		`<div class="a x n m v u e"><span id=x>s</span><i>i</i><b>b</b><p class="n y" id=x data-x=A>p</p></div>`))
	f.Add([]byte(`<style>}}{{ ;; .q[ {;} "unterminated \{ :is(:where(:not( & & {{ @media{ .x{display:none` +
		`</style><style media=print type="text/foo">*{opacity:0}</style><p class=x style="--a:var(--a);color:var(--a)">t</p>`))
	f.Add([]byte(`<base href="x/"><link rel="stylesheet alternate" href="a.css"><link rel=stylesheet href="data:text/css;base64,QGltcG9ydCAiZGF0YTp0ZXh0L2NzcywueHtkaXNwbGF5Om5vbmV9Ijs=">` +
		`<link rel=stylesheet media=print title=t href="data:,@import url('b.css') screen; .x{color:#fff">` +
		`<style>@charset "x"; @layer a; @import url( "c.css ; @import 'd.css' supports(x) ;</style><p class=x>t</p>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _ := Text("f.html", data)
		checkResult(t, r)
		// As a web page whose every sheet is the document's own text.
		r, _ = HTML(data, HTMLOptions{URL: pageURL, Sheets: func(urls []string) []Sheet {
			out := make([]Sheet, len(urls))
			for i := range out {
				out[i] = Sheet{CSS: data}
			}
			return out
		}})
		checkResult(t, r)
	})
}

func FuzzPDF(f *testing.F) {
	f.Add(makePDF(f, false, "BT /F1 12 Tf 72 720 Td (Hello) Tj 3 Tr (hidden) Tj ET"))
	f.Add(makePDF(f, true, "BT /F1 1 Tf 1 1 1 rg [(a) -300 (b)] TJ T* (c) ' ET"))
	f.Add(makePDFRaw("<< /Length 5 /Filter /FlateDecode >>\nstream\nxxxxx\nendstream"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _ := Text("f.pdf", data)
		checkResult(t, r)
	})
}

func TestCaps(t *testing.T) {
	r, err := Text("big.txt", []byte(strings.Repeat("é", MaxOutput)))
	if err != nil || !r.Truncated || len(r.Text) > MaxOutput || !utf8.ValidString(r.Text) {
		t.Fatalf("big txt: Truncated=%v len=%d err=%v", r.Truncated, len(r.Text), err)
	}
	r, err = Text("big.html", []byte("<p>"+strings.Repeat("word ", MaxOutput/4)+"</p>"))
	if err != nil || !r.Truncated || !strings.HasSuffix(r.Text, "[extract: output truncated at 8 MiB]") {
		t.Fatalf("big html: Truncated=%v err=%v", r.Truncated, err)
	}
	if _, err := Text("huge.txt", make([]byte, MaxInput+1)); err == nil || !strings.Contains(err.Error(), "huge.txt") {
		t.Fatalf("huge: %v", err)
	}
}
