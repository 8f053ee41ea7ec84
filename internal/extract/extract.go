// Package extract owns turning documents into plain text for the model.
//
// Text picks a format by the file name's extension (and, for files without a known
// extension, by sniffing the content) and returns the document's readable text: .txt, .md
// and .csv as text; .html and .htm as their main text; .docx as the text of its body,
// headers, footers, notes and comments; .pdf as the text of each page.
//
// Text that a reader of the rendered document would not see — a .docx run with w:vanish,
// a one-point or white-on-white run, an HTML element hidden by an attribute, an inline
// style or a rule of the document's style sheets, an HTML comment, PDF text drawn
// invisibly, in white or in a tiny font — is not blended into the visible text: it is
// emitted as "[hidden text: ...]" so that the model (and whoever reviews its actions) can
// tell it apart. This is the Cowork incident: a .docx whose one-point white text told the
// agent to upload the user's files. Where the package cannot tell whether text is shown
// (a rule under @media, a selector it reads only approximately, style sheets too costly
// to evaluate), it marks the text hidden. An HTML document's external style sheets are
// read only as the caller of HTML supplies them; those that would apply but are not there
// are counted, and the text opens with a "[note: ...]" line saying so.
//
// The package never executes anything in a document: no macros, no scripts, no external
// entity resolution (encoding/xml does not resolve external entities and this package
// never sets Decoder.Entity; keep it that way), no fetching or reading of linked resources
// (style sheets come only from the caller; data: URLs are decoded).
// Every format is parsed under size caps (MaxInput, MaxDecompressed, MaxOutput) and
// malformed input yields an error or partial text, never a panic.
package extract

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Limits.
const (
	// MaxInput is the largest document Text accepts.
	MaxInput = 64 << 20
	// MaxDecompressed caps the bytes decompressed from one document (zip parts of a .docx,
	// PDF streams): a zip or Flate bomb is refused rather than inflated.
	MaxDecompressed = 50 << 20
	// MaxOutput caps the extracted text; beyond it Result.Truncated is set.
	MaxOutput = 8 << 20
)

// Formats reported in Result.Format.
const (
	FormatText = "text"
	FormatHTML = "html"
	FormatDocx = "docx"
	FormatPDF  = "pdf"
)

// Result is a document's text.
type Result struct {
	Text      string // the readable text; hidden text appears as "[hidden text: ...]"
	Format    string // FormatText, FormatHTML, FormatDocx or FormatPDF
	Hidden    int    // how many "[hidden text: ...]" markers Text holds (HTML comments included)
	Unchecked int    // external style sheets of an HTML document not checked (Text opens with a note)
	Truncated bool   // Text was cut at MaxOutput
}

// ErrTooLarge reports a document, or the data decompressed from it, over the caps.
var ErrTooLarge = errors.New("document too large")

// Extracted reports whether Text converts files with this name (by extension) rather than
// passing them through as text: .docx, .pdf, .html and .htm.
func Extracted(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".docx", ".pdf", ".html", ".htm":
		return true
	}
	return false
}

// Text returns the plain text of the document data, named name (only its extension
// matters; the name also appears in errors). Known extensions decide the format: .docx,
// .pdf, .html/.htm, and .txt/.md/.csv as text. Other names are sniffed: a PDF header, a zip
// holding word/document.xml, or markup starting with <!doctype html or <html; anything else is
// read as text. A file whose content contradicts its extension (a .docx that is not a zip,
// a .pdf without a PDF header) is an error naming the file. An HTML document is read as a
// local file: the style sheets it links are not read, and its text opens with a note saying
// so (ReasonLocalFile); HTML takes them from a caller that can fetch them.
func Text(name string, data []byte) (Result, error) {
	if len(data) > MaxInput {
		return Result{}, fmt.Errorf("%s: %w: %d bytes (limit %d)", name, ErrTooLarge, len(data), MaxInput)
	}
	format := ""
	switch strings.ToLower(filepath.Ext(name)) {
	case ".docx":
		format = FormatDocx
	case ".pdf":
		format = FormatPDF
	case ".html", ".htm", ".xhtml":
		format = FormatHTML
	case ".txt", ".md", ".markdown", ".csv", ".tsv", ".text":
		format = FormatText
	default:
		format = sniff(data)
	}
	var (
		r   Result
		err error
	)
	switch format {
	case FormatDocx:
		r, err = docxText(data)
	case FormatPDF:
		r, err = pdfText(data)
	case FormatHTML:
		r = htmlText(data, HTMLOptions{})
	default:
		r = plainText(data)
	}
	r.Format = format
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

func sniff(data []byte) string {
	head := data[:min(len(data), 1024)]
	switch {
	case bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n\x00"), []byte("%PDF-")):
		return FormatPDF
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) && bytes.Contains(data[:min(len(data), 64<<10)], []byte("word/document.xml")):
		return FormatDocx
	}
	lower := bytes.ToLower(bytes.TrimLeft(head, " \t\r\n\ufeff"))
	lower = bytes.TrimPrefix(lower, []byte("\xef\xbb\xbf"))
	if bytes.HasPrefix(lower, []byte("<!doctype html")) || bytes.HasPrefix(lower, []byte("<html")) {
		return FormatHTML
	}
	return FormatText
}

// plainText validates UTF-8 (invalid bytes become U+FFFD) and strips NULs.
func plainText(data []byte) Result {
	var r Result
	if len(data) > MaxOutput {
		data = data[:MaxOutput]
		// Do not leave a cut rune behind: ToValidUTF8 would show it as U+FFFD.
		for i := 0; i < utf8.UTFMax && len(data) > 0 && !utf8.Valid(data[len(data)-min(len(data), utf8.UTFMax):]); i++ {
			data = data[:len(data)-1]
		}
		r.Truncated = true
	}
	s := strings.ToValidUTF8(string(data), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	s = strings.TrimPrefix(s, "\ufeff")
	r.Text = s
	return r
}

// clean makes s valid UTF-8 without NULs and other C0 controls other than tab and newline.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexFunc(s, isBadControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isBadControl(r) {
			if r == '\r' || r == '\v' || r == '\f' {
				return '\n'
			}
			return -1
		}
		return r
	}, s)
}

func isBadControl(r rune) bool {
	return (r < 0x20 && r != '\t' && r != '\n') || r == 0x7f
}

// writer assembles extracted text: visible text, pending spaces and newlines, and hidden
// runs, which are merged until the next visible text or line break and emitted as one
// "[hidden text: ...]" marker.
type writer struct {
	b         strings.Builder
	hid       strings.Builder
	hidden    int
	nl        int  // newlines owed before the next text
	sp        bool // a space owed before the next text
	truncated bool
	max       int
}

func newWriter() *writer { return &writer{max: MaxOutput} }

// full reports that the output cap was reached; callers may stop early.
func (w *writer) full() bool { return w.truncated }

func (w *writer) raw(s string) {
	if w.truncated {
		return
	}
	if w.b.Len()+len(s) > w.max {
		cut := w.max - w.b.Len()
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		w.b.WriteString(s[:max(cut, 0)])
		w.truncated = true
		return
	}
	w.b.WriteString(s)
}

// sep writes the newlines or the space owed before next, the text about to be written.
func (w *writer) sep(next string) {
	if w.b.Len() == 0 {
		w.nl, w.sp = 0, false
		return
	}
	if w.nl > 0 {
		w.raw(strings.Repeat("\n", min(w.nl, 2)))
	} else if w.sp && !startsSpace(next) && !w.endsSpace() {
		w.raw(" ")
	}
	w.nl, w.sp = 0, false
}

func startsSpace(s string) bool {
	return s != "" && (s[0] == ' ' || s[0] == '\t' || s[0] == '\n')
}

func (w *writer) endsSpace() bool {
	s := w.b.String()
	return s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t' || s[len(s)-1] == '\n')
}

// text writes visible text.
func (w *writer) text(s string) {
	s = clean(s)
	if s == "" {
		return
	}
	w.flushHidden()
	w.sep(s)
	w.raw(s)
}

// space owes a space before the next text.
func (w *writer) space() { w.sp = true }

// newline owes n line breaks (at most two are written in a row) and ends a hidden run.
func (w *writer) newline(n int) {
	w.flushHidden()
	if w.b.Len() > 0 {
		w.nl = max(w.nl, n)
	}
}

// hide adds s to the current hidden run.
func (w *writer) hide(s string) {
	s = clean(s)
	if s == "" {
		return
	}
	w.hid.WriteString(s)
	if w.hid.Len() > w.max {
		w.flushHidden()
	}
}

// hideSpace adds a word break to the current hidden run.
func (w *writer) hideSpace() {
	if w.hid.Len() > 0 {
		w.hid.WriteByte(' ')
	}
}

func (w *writer) flushHidden() {
	if w.hid.Len() == 0 {
		return
	}
	s := hiddenMarker(w.hid.String())
	w.hid.Reset()
	if s == "" {
		return
	}
	w.hidden++
	w.sp = true // a marker never touches the text before it
	w.sep(s)
	w.raw(s)
	w.sp = true
}

// hiddenMarker renders hidden text as one line "[hidden text: ...]": whitespace collapsed,
// and brackets and backslashes escaped so the text cannot close the marker early and pass
// what follows as visible text. Empty (all-space) hidden text gives "".
func hiddenMarker(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	s = markerEscaper.Replace(strings.Join(f, " "))
	return "[hidden text: " + s + "]"
}

var markerEscaper = strings.NewReplacer(`\`, `\\`, `[`, `\[`, `]`, `\]`)

func (w *writer) result() Result {
	w.flushHidden()
	s := strings.TrimRight(w.b.String(), " \t\n")
	// Trailing spaces on each line are noise.
	if strings.Contains(s, " \n") {
		lines := strings.Split(s, "\n")
		for i, l := range lines {
			lines[i] = strings.TrimRight(l, " ")
		}
		s = strings.Join(lines, "\n")
	}
	r := Result{Text: s, Hidden: w.hidden, Truncated: w.truncated}
	if w.truncated {
		r.Text += fmt.Sprintf("\n[extract: output truncated at %d MiB]", w.max>>20)
	}
	return r
}
