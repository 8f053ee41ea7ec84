package extract

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// pageURL is where the documents of these tests come from.
var pageURL = &url.URL{Scheme: "https", Host: "site.example", Path: "/dir/page.html"}

// sheetHost serves style sheets to HTML as a caller would, from what it holds by URL: a
// sheet it does not hold comes back missing "from other hosts". It records what it was
// asked for.
type sheetHost struct {
	css   map[string]string
	types map[string]string // Content-Type by URL; text/css when absent

	mu    sync.Mutex
	asked []string
}

func (h *sheetHost) fetch(urls []string) []Sheet {
	h.mu.Lock()
	h.asked = append(h.asked, urls...)
	h.mu.Unlock()
	out := make([]Sheet, len(urls))
	for i, u := range urls {
		css, ok := h.css[u]
		if !ok {
			out[i] = Sheet{Missing: "from other hosts"}
			continue
		}
		t, ok := h.types[u]
		if !ok {
			t = "text/css; charset=utf-8"
		}
		out[i] = Sheet{CSS: []byte(css), Type: t}
	}
	return out
}

func (h *sheetHost) options() HTMLOptions { return HTMLOptions{URL: pageURL, Sheets: h.fetch} }

// site makes sheet URLs under https://site.example/.
func site(css map[string]string) map[string]string {
	out := map[string]string{}
	for p, c := range css {
		out["https://site.example"+p] = c
	}
	return out
}

// TestHTMLLinkedSheets checks that the sheets a document links (and @imports) are applied in
// document order with its <style> elements, under the same cascade: a rule that hides text
// is overridden only by what overrides it in a browser, and a sheet that may not apply can
// hide text but never show what another hides. Every sheet is read: no note.
func TestHTMLLinkedSheets(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
		sheets    map[string]string // path -> CSS
		hidden    bool
	}{
		{"link-hides", `<link rel="stylesheet" href="/s.css"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`}, true},
		{"link-other-class", `<link rel="stylesheet" href="/s.css"><p class="y">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`}, false},
		{"link-relative", `<link rel=StyleSheet href="css/s.css#frag"><p class="x">SECRET</p>`,
			map[string]string{"/dir/css/s.css": `.x{font-size:0}`}, true},
		{"link-in-body", `<p class="x">SECRET</p><link rel="stylesheet" href="/s.css">`,
			map[string]string{"/s.css": `.x{color:#fff}`}, true},
		{"base-href", `<base href="/lib/"><link rel="stylesheet" href="s.css"><p class="x">SECRET</p>`,
			map[string]string{"/lib/s.css": `.x{display:none}`}, true},

		// Document order: a later sheet of equal weight overrides an earlier one.
		{"later-style-shows", `<link rel="stylesheet" href="/s.css"><style>.x{display:block}</style><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`}, false},
		{"later-link-hides", `<style>.x{display:block}</style><link rel="stylesheet" href="/s.css"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`}, true},
		{"later-link-shows", `<style>.x{display:none}</style><link rel="stylesheet" href="/s.css"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:block}`}, false},
		// What cannot unhide what a linked sheet hides.
		{"later-style-less-specific", `<link rel="stylesheet" href="/s.css"><style>p{display:block}</style><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`}, true},
		{"later-style-media", `<link rel="stylesheet" href="/s.css"><style>@media (scan: progressive){.x{display:block}}</style><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`}, true},
		{"later-style-where", `<link rel="stylesheet" href="/s.css"><style>:where(.x){display:block}</style><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`}, true},
		{"linked-important-beats-inline", `<link rel="stylesheet" href="/s.css"><p class="x" style="display:block">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none !important}`}, true},

		// media: as <style media>: rules that may apply (media not decided for the nominal
		// screen) can hide, never unhide; those that apply on it can do both.
		{"media-unknown-hides", `<link rel="stylesheet" href="/p.css" media="(scan: progressive)"><p class="x">SECRET</p>`,
			map[string]string{"/p.css": `.x{display:none}`}, true},
		{"media-unknown-cannot-unhide", `<link rel="stylesheet" href="/s.css"><link rel="stylesheet" href="/p.css" media="(scan: progressive)"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`, "/p.css": `.x{display:block}`}, true},
		{"media-screen-shows", `<link rel="stylesheet" href="/s.css"><link rel="stylesheet" href="/p.css" media="screen"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`, "/p.css": `.x{display:block}`}, false},
		{"media-desktop-shows", `<link rel="stylesheet" href="/s.css"><link rel="stylesheet" href="/p.css" media="screen and (min-width: 1000px)"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`, "/p.css": `.x{display:block}`}, false},
		{"integrity-cannot-unhide", `<link rel="stylesheet" href="/s.css"><link rel="stylesheet" href="/i.css" integrity="sha384-x"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`, "/i.css": `.x{display:block}`}, true},
		{"other-title-cannot-unhide", `<link rel="stylesheet" href="/s.css" title="A"><link rel="stylesheet" href="/b.css" title="B"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`, "/b.css": `.x{display:block}`}, true},
		{"same-title-shows", `<link rel="stylesheet" href="/s.css" title="A"><link rel="stylesheet" href="/b.css" title="A"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`, "/b.css": `.x{display:block}`}, false},

		// @import: in a linked sheet (relative to it) and in a <style>, imported rules first.
		{"import-hides", `<link rel="stylesheet" href="/css/s.css"><p class="x">SECRET</p>`,
			map[string]string{"/css/s.css": `@charset "utf-8"; @import "i.css";`, "/css/i.css": `.x{display:none}`}, true},
		{"import-url", `<link rel="stylesheet" href="/s.css"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `@import url( '/i.css' ) ;`, "/i.css": `.x{opacity:0}`}, true},
		{"import-before-own-rules", `<link rel="stylesheet" href="/s.css"><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `@import "/i.css"; .x{display:block}`, "/i.css": `.x{display:none}`}, false},
		{"import-from-style", `<style>@import url("/i.css");</style><p class="x">SECRET</p>`,
			map[string]string{"/i.css": `.x{display:none}`}, true},
		{"import-from-imported", `<style>@import "/i.css";</style><p class="x">SECRET</p>`,
			map[string]string{"/i.css": `@import "/j.css";`, "/j.css": `.x{visibility:hidden}`}, true},
		{"import-media-cannot-unhide", `<link rel="stylesheet" href="/s.css"><style>@import "/i.css" (scan: progressive);</style><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`, "/i.css": `.x{display:block}`}, true},
		{"import-misplaced-cannot-unhide", `<link rel="stylesheet" href="/s.css"><style>p{color:red} @import "/i.css";</style><p class="x">SECRET</p>`,
			map[string]string{"/s.css": `.x{display:none}`, "/i.css": `.x{display:block}`}, true},

		// data: URLs are read without the caller.
		{"data-url", `<link rel="stylesheet" href="data:text/css,.x%7Bdisplay:none%7D"><p class="x">SECRET</p>`, nil, true},
		{"data-url-base64", `<link rel="stylesheet" href="data:text/css;base64,Lnh7ZGlzcGxheTpub25lfQ=="><p class="x">SECRET</p>`, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := &sheetHost{css: site(c.sheets)}
			r := checkHiddenWith(t, c.doc, c.hidden, h.options())
			if r.Unchecked != 0 || strings.Contains(r.Text, "[note:") {
				t.Fatalf("sheets noted as not checked: %q", r.Text)
			}
			for u := range h.css {
				if !slices.Contains(h.asked, u) {
					t.Fatalf("%s was not asked for (asked: %q)", u, h.asked)
				}
			}
		})
	}
}

// TestHTMLLinkedSheetsIgnored checks the links a browser does not load (disabled, alternate,
// another type, preload, in a <template>) or does not apply on the nominal screen (media.go):
// they are neither asked for nor applied, while the page's other link is.
func TestHTMLLinkedSheetsIgnored(t *testing.T) {
	t.Parallel()
	for _, link := range []string{
		`<link rel="stylesheet" href="/off.css" disabled>`,
		`<link rel="alternate stylesheet" href="/off.css" title="Big">`,
		`<link rel="stylesheet alternate" href="/off.css">`,
		`<link rel="stylesheet" href="/off.css" type="text/plain">`,
		`<link rel="preload" href="/off.css" as="style">`,
		`<template><link rel="stylesheet" href="/off.css"></template>`,
		`<template><style>@import "/off.css";</style></template>`,
		`<link rel="stylesheet" href="/off.css" media="print">`,
		`<link rel="stylesheet" href="/off.css" media="(max-width: 700px)">`,
		`<style>@import "/off.css" print;</style>`,
		`<style>@import url(/off.css) layer(x) supports(display: grid) (prefers-color-scheme: dark);</style>`,
	} {
		t.Run(link, func(t *testing.T) {
			t.Parallel()
			h := &sheetHost{css: site(map[string]string{"/on.css": `.a{display:none}`, "/off.css": `.x{display:none}`})}
			doc := `<link rel="stylesheet" href="/on.css">` + link + `<p class="a">A</p><p class="x">SECRET</p>`
			r := checkHiddenWith(t, doc, false, h.options())
			if !strings.Contains(r.Text, "[hidden text: A]") {
				t.Fatalf("the enabled sheet was not applied: %q", r.Text)
			}
			if want := []string{"https://site.example/on.css"}; !slices.Equal(h.asked, want) {
				t.Fatalf("asked for %q, want %q", h.asked, want)
			}
		})
	}
}

// TestHTMLLinkedSheetsNote checks the note that opens the text when sheets that would apply
// were not checked: how many, and why.
func TestHTMLLinkedSheetsNote(t *testing.T) {
	t.Parallel()
	var many strings.Builder
	for i := range maxLinkedSheets + 3 {
		fmt.Fprintf(&many, `<link rel="stylesheet" href="/m%d.css">`, i)
	}
	manySheets := map[string]string{}
	for i := range maxLinkedSheets + 3 {
		manySheets[fmt.Sprintf("/m%d.css", i)] = ".m{color:red}"
	}
	cases := []struct {
		name, doc string
		sheets    map[string]string
		note      string // "" for none
	}{
		{"other-hosts", `<link rel="stylesheet" href="https://cdn.example/a.css"><link rel="stylesheet" href="//cdn.example/b.css"><link rel="stylesheet" href="/s.css">`,
			map[string]string{"/s.css": `.x{display:none}`},
			"[note: 2 stylesheets were not checked for hidden text (from other hosts)]"},
		{"same-sheet-twice", `<link rel="stylesheet" href="https://cdn.example/a.css"><link rel="stylesheet" href="https://cdn.example/a.css#x">`, nil,
			"[note: 1 stylesheet was not checked for hidden text (from other hosts)]"},
		{"imported", `<link rel="stylesheet" href="/s.css">`,
			map[string]string{"/s.css": `@import "https://cdn.example/f.css";`},
			"[note: 1 stylesheet was not checked for hidden text (from other hosts)]"},
		{"reasons", `<link rel="stylesheet" href="https://cdn.example/a.css"><style>@import "/i.css";</style>`,
			map[string]string{"/i.css": `@import "/j.css";`, "/j.css": `@import "/k.css";`, "/k.css": `.x{display:none}`},
			"[note: 2 stylesheets were not checked for hidden text (1 from other hosts, 1 imported by an imported sheet)]"},
		{"too-many", many.String(), manySheets,
			"[note: 3 stylesheets were not checked for hidden text (beyond the first 32)]"},
		{"bad-data-url", `<link rel="stylesheet" href="data:text/css;base64,!!!">`, nil,
			"[note: 1 stylesheet was not checked for hidden text (unreadable data: URLs)]"},
		{"all-read", `<link rel="stylesheet" href="/s.css"><link rel="stylesheet" href="data:text/css,p{}">`, map[string]string{"/s.css": `.x{display:none}`}, ""},
		{"ignored-only", `<link rel="alternate stylesheet" href="https://cdn.example/a.css"><link rel="stylesheet" disabled href="https://cdn.example/b.css"><link rel="stylesheet" href=""><link rel="stylesheet" href="/s.css">`,
			map[string]string{"/s.css": `.x{display:none}`}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := &sheetHost{css: site(c.sheets)}
			r, err := HTML([]byte(c.doc+`<p class="x">SECRET</p><p>after.</p>`), h.options())
			if err != nil {
				t.Fatal(err)
			}
			first, rest, _ := strings.Cut(r.Text, "\n\n")
			if c.note == "" {
				if r.Unchecked != 0 || strings.Contains(r.Text, "[note:") || !strings.HasPrefix(r.Text, "[hidden text: SECRET]") {
					t.Fatalf("want no note and SECRET hidden by the sheet read: %q", r.Text)
				}
				return
			}
			if first != c.note || !strings.Contains(rest, "after.") || r.Unchecked == 0 {
				t.Fatalf("got %q (Unchecked=%d), want the note %q first", r.Text, r.Unchecked, c.note)
			}
		})
	}
}

// TestHTMLLinkedSheetsLocalFile checks a document read as a file (Text): its linked sheets
// are not read, and the text says so; data: URLs are read all the same.
func TestHTMLLinkedSheetsLocalFile(t *testing.T) {
	t.Parallel()
	doc := `<link rel="stylesheet" href="page_files/s.css"><style>@import "/etc/x.css";</style>` +
		`<link rel="stylesheet" href="data:text/css,.d%7Bdisplay:none%7D"><p>Text.</p><p class="d">D</p>`
	r, err := Text("page.html", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := "[note: 2 stylesheets were not checked for hidden text (" + ReasonLocalFile + ")]\n\nText.\n\n[hidden text: D]"
	if r.Text != want || r.Unchecked != 2 {
		t.Fatalf("got %q (Unchecked=%d), want %q", r.Text, r.Unchecked, want)
	}
}

// checkHiddenWith is checkHidden for HTML with opt.
func checkHiddenWith(t *testing.T, body string, hidden bool, opt HTMLOptions) Result {
	t.Helper()
	r, err := HTML([]byte(`<html><body><h1>Before</h1>`+body+`<h2>after.</h2></body></html>`), opt)
	if err != nil {
		t.Fatal(err)
	}
	checkSecret(t, r, hidden)
	return r
}
