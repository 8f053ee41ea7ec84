package extract

import (
	"strings"
	"testing"
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
			if !strings.Contains(r.Text, "Before") || !strings.Contains(r.Text, "after.") {
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
