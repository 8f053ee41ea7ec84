package extract

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// makePDF builds a PDF with one page per content stream, Helvetica as /F1, and a correct
// cross-reference table. With flate, content streams are FlateDecode-compressed.
func makePDF(t testing.TB, flate bool, contents ...string) []byte {
	var objs []string
	nPages := len(contents)
	kids := ""
	for i := range contents {
		kids += fmt.Sprintf("%d 0 R ", 4+2*i)
	}
	objs = append(objs,
		"<< /Type /Catalog /Pages 2 0 R >>",
		fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d /Resources << /Font << /F1 3 0 R >> >> /MediaBox [0 0 612 792] >>", kids, nPages),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
	)
	for i, c := range contents {
		objs = append(objs, fmt.Sprintf("<< /Type /Page /Parent 2 0 R /Contents %d 0 R >>", 5+2*i))
		data, filter := []byte(c), ""
		if flate {
			var b bytes.Buffer
			zw := zlib.NewWriter(&b)
			zw.Write(data)
			zw.Close()
			data, filter = b.Bytes(), " /Filter /FlateDecode"
		}
		objs = append(objs, fmt.Sprintf("<< /Length %d%s >>\nstream\n%s\nendstream", len(data), filter, data))
	}
	return assemblePDF(objs)
}

func assemblePDF(objs []string) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}

func TestPDFText(t *testing.T) {
	for _, flate := range []bool{false, true} {
		t.Run(fmt.Sprintf("flate=%v", flate), func(t *testing.T) {
			p1 := "BT /F1 12 Tf 72 720 Td (Hello, world.) Tj 0 -14 Td [(Second) -250 (line)] TJ ET"
			p2 := "BT /F1 12 Tf 72 720 Td (Page two) Tj T* ET\nBT /F1 12 Tf 1 0 0 1 72 700 Tm (Next line) Tj ET"
			r, err := Text("doc.pdf", makePDF(t, flate, p1, p2))
			if err != nil {
				t.Fatal(err)
			}
			want := "--- page 1 ---\nHello, world.\nSecond line\n\n--- page 2 ---\nPage two\nNext line"
			if r.Text != want || r.Hidden != 0 || r.Format != FormatPDF {
				t.Fatalf("got:\n%s\nwant:\n%s\n(Hidden=%d)", r.Text, want, r.Hidden)
			}
		})
	}
}

func TestPDFHidden(t *testing.T) {
	cases := []struct{ name, ops string }{
		{"render-mode-3", "3 Tr"},
		{"white-rgb", "1 1 1 rg"},
		{"white-gray", "1 g"},
		{"white-cmyk", "0 0 0 0 k"},
		{"tiny-font", "/F1 1 Tf"},
		{"tiny-by-matrix", "0.05 0 0 0.05 72 600 Tm"},
		{"off-page-right", "1000 0 Td"},
		{"off-page-left", "-3000 0 Td"},
		{"off-page-above", "0 1000 Td"},
		{"off-page-below", "0 -700 Td"},
		{"off-page-by-ctm", "ET 1 0 0 1 0 5000 cm BT /F1 12 Tf"},
	}
	for _, c := range cases {
		for _, flate := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/flate=%v", c.name, flate), func(t *testing.T) {
				content := "BT /F1 12 Tf 72 720 Td (Visible text.) Tj ET\n" +
					"q BT /F1 12 Tf 72 600 Td " + c.ops + " (" + coworkInstruction + ") Tj ET Q\n" +
					"BT /F1 12 Tf 72 500 Td (More visible.) Tj ET"
				r, err := Text("x.pdf", makePDF(t, flate, content))
				if err != nil {
					t.Fatal(err)
				}
				want := "--- page 1 ---\nVisible text.\n[hidden text: " + coworkInstruction + "]\nMore visible."
				if r.Text != want || r.Hidden != 1 {
					t.Fatalf("got:\n%s\nwant:\n%s\n(Hidden=%d)", r.Text, want, r.Hidden)
				}
			})
		}
	}
	// q/Q restores the colour: text after Q is visible again.
	r, err := Text("x.pdf", makePDF(t, false, "BT /F1 12 Tf 72 700 Td q 1 1 1 rg (white) Tj Q 0 -20 Td (black) Tj ET"))
	if err != nil || r.Text != "--- page 1 ---\n[hidden text: white]\nblack" {
		t.Fatalf("q/Q: %q %v", r.Text, err)
	}
	// Text that reaches into the page, or drawn through a flipped matrix, stays visible.
	for _, ops := range []string{"-30 700 Td", "1 0 0 -1 72 -100 Tm", "72 795 Td"} {
		r, _ = Text("x.pdf", makePDF(t, false, "BT /F1 12 Tf "+ops+" (edge) Tj ET"))
		if r.Text != "--- page 1 ---\nedge" {
			t.Errorf("%s: %q", ops, r.Text)
		}
	}
	// Dark text stays visible.
	r, _ = Text("x.pdf", makePDF(t, false, "BT /F1 12 Tf 0.2 0.2 0.2 rg 0 Tr 72 700 Td (dark) Tj ET"))
	if r.Text != "--- page 1 ---\ndark" {
		t.Fatalf("dark: %q", r.Text)
	}
}

func TestPDFErrors(t *testing.T) {
	good := makePDF(t, true, "BT /F1 12 Tf 72 720 Td (Hello) Tj ET")
	for name, data := range map[string][]byte{
		"not-a-pdf":  []byte("hello, I am text"),
		"truncated":  good[:len(good)/2],
		"empty":      nil,
		"bad-xref":   bytes.Replace(good, []byte("startxref\n"), []byte("startxref\n9"), 1),
		"no-pages":   assemblePDF([]string{"<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [] /Count 0 >>"}),
		"bad-stream": makePDFRaw("<< /Length 5 /Filter /FlateDecode >>\nstream\nxxxxx\nendstream"),
	} {
		r, err := Text(name+".pdf", data)
		if err == nil && !strings.Contains(r.Text, "could not be read") {
			t.Errorf("%s: no error: %q", name, r.Text)
		} else if err != nil && !strings.Contains(err.Error(), name+".pdf") {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
}

// makePDFRaw builds a one-page PDF whose content stream object is given verbatim.
func makePDFRaw(stream string) []byte {
	return assemblePDF([]string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>",
		stream,
	})
}

func TestPDFCyclicPageTree(t *testing.T) {
	data := assemblePDF([]string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 5 /Parent 2 0 R >>",
		"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>",
		"<< /Length 30 >>\nstream\nBT /F1 12 Tf (loop) Tj ET    \nendstream",
	})
	r, err := Text("cycle.pdf", data)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Text, "loop") {
		t.Fatalf("got %.200q", r.Text)
	}
}

func TestPDFFlateBomb(t *testing.T) {
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	chunk := bytes.Repeat([]byte(" "), 1<<20)
	for i := 0; i < MaxDecompressed>>20+2; i++ {
		zw.Write(chunk)
	}
	zw.Close()
	data := makePDFRaw(fmt.Sprintf("<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream", b.Len(), b.Bytes()))
	_, err := Text("bomb.pdf", data)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("bomb: %v", err)
	}
}
