package extract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/ledongthuc/pdf"
)

// PDF limits.
const (
	maxPDFPages    = 5000
	maxPDFNodes    = 100000 // page-tree nodes visited (a cyclic tree ends here)
	maxPDFDepth    = 64
	maxPDFDuration = 30 * time.Second
)

// pdfText returns the text of each page, preceded by "--- page N ---". Text drawn
// invisibly (render mode 3 or 7), in white (fill, or stroke for stroke-only modes), at an
// effective size of at most one point, or entirely outside the page's visible box (CropBox,
// else MediaBox) is emitted as "[hidden text: ...]".
//
// Parsing (cross-reference tables and streams, object streams, filters, font encodings and
// ToUnicode maps) is github.com/ledongthuc/pdf; the content-stream interpretation that
// tracks the graphics state is ours. Limits: text in form XObjects (Do), annotations and
// form fields is not read; "white" means white on an assumed white page, so text hidden
// under an image or a drawn rectangle, or clipped away, is not detected; encrypted files
// are refused; reading order is content-stream order.
func pdfText(data []byte) (Result, error) {
	if i := bytes.Index(data[:min(len(data), 1024)], []byte("%PDF-")); i < 0 {
		return Result{}, errors.New("not a valid PDF (no %PDF- header)")
	}
	type out struct {
		r   Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		var o out
		defer func() {
			if x := recover(); x != nil {
				o.err = fmt.Errorf("malformed PDF: %v", x)
			}
			ch <- o
		}()
		o.r, o.err = pdfExtract(data)
	}()
	select {
	case o := <-ch:
		return o.r, o.err
	case <-time.After(maxPDFDuration):
		// The parsing goroutine is abandoned; it holds only its own copy of state.
		return Result{}, fmt.Errorf("malformed PDF: extraction took longer than %v", maxPDFDuration)
	}
}

func pdfExtract(data []byte) (res Result, err error) {
	rd, err := pdf.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return Result{}, fmt.Errorf("malformed PDF: %v", err)
	}
	if !rd.Trailer().Key("Encrypt").IsNull() {
		return Result{}, errors.New("encrypted PDF: not read")
	}
	pages := pdfPages(rd.Trailer().Key("Root").Key("Pages"))
	if len(pages) == 0 {
		return Result{}, errors.New("malformed PDF: no pages found")
	}
	w := newWriter()
	budget := int64(MaxDecompressed)
	var firstErr error
	for i, p := range pages {
		if w.full() {
			break
		}
		w.newline(2)
		w.text(fmt.Sprintf("--- page %d ---", i+1))
		w.newline(1)
		if err := pdfPage(w, p, &budget); err != nil {
			if errors.Is(err, ErrTooLarge) {
				return w.result(), err
			}
			if firstErr == nil {
				firstErr = fmt.Errorf("page %d: %v", i+1, err)
			}
			w.newline(1)
			w.text(fmt.Sprintf("[extract: page %d could not be read in full: %v]", i+1, err))
		}
	}
	return w.result(), nil
}

// pdfPages walks the page tree iteratively, bounded in nodes, depth and pages.
func pdfPages(root pdf.Value) []pdf.Value {
	type item struct {
		v     pdf.Value
		depth int
	}
	var pages []pdf.Value
	stack := []item{{root, 0}}
	visited := 0
	for len(stack) > 0 && len(pages) < maxPDFPages && visited < maxPDFNodes {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		visited++
		v := it.v
		if v.Kind() != pdf.Dict {
			continue
		}
		kids := v.Key("Kids")
		if v.Key("Type").Name() == "Page" || (kids.Kind() != pdf.Array && !v.Key("Contents").IsNull()) {
			pages = append(pages, v)
			continue
		}
		if kids.Kind() != pdf.Array || it.depth >= maxPDFDepth {
			continue
		}
		n := min(kids.Len(), maxPDFNodes)
		for i := n - 1; i >= 0; i-- { // reversed: the stack pops the first kid first
			stack = append(stack, item{kids.Index(i), it.depth + 1})
		}
	}
	return pages
}

// inherited finds a page attribute on the page or its ancestors (bounded: Parent may loop).
func inherited(page pdf.Value, key string) pdf.Value {
	v := page
	for i := 0; i < maxPDFDepth && v.Kind() == pdf.Dict; i++ {
		if r := v.Key(key); !r.IsNull() {
			return r
		}
		v = v.Key("Parent")
	}
	return pdf.Value{}
}

// pageBox is the visible area of page: its CropBox, else its MediaBox (both inheritable),
// as [llx lly urx ury]; false when it has neither, or a malformed one.
func pageBox(page pdf.Value) ([4]float64, bool) {
	for _, key := range []string{"CropBox", "MediaBox"} {
		a := inherited(page, key)
		if a.Kind() != pdf.Array || a.Len() != 4 {
			continue
		}
		var b [4]float64
		ok := true
		for i := range b {
			switch v := a.Index(i); v.Kind() {
			case pdf.Integer:
				b[i] = float64(v.Int64())
			case pdf.Real:
				b[i] = v.Float64()
			default:
				ok = false
			}
		}
		if !ok {
			continue
		}
		b = [4]float64{min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])}
		if b[2]-b[0] > 1 && b[3]-b[1] > 1 {
			return b, true
		}
	}
	return [4]float64{}, false
}

// offPage reports whether text of n characters, drawn at effective size eff from the origin
// of m, lies entirely outside box. It errs towards on the page: a glyph is taken to be up to
// one em wide and to reach one em above and below its baseline, and a rotated or skewed text
// matrix is never off the page.
func offPage(box [4]float64, m mat, eff float64, n int) bool {
	if m[1] != 0 || m[2] != 0 || m[0] < 0 || m[3] < 0 {
		return false
	}
	x, y := m[4], m[5]
	return x > box[2] || x+float64(n)*eff < box[0] || y-eff > box[3] || y+eff < box[1]
}

type mat [6]float64

var identity = mat{1, 0, 0, 1, 0, 0}

func (m mat) mul(n mat) mat {
	return mat{
		m[0]*n[0] + m[1]*n[2], m[0]*n[1] + m[1]*n[3],
		m[2]*n[0] + m[3]*n[2], m[2]*n[1] + m[3]*n[3],
		m[4]*n[0] + m[5]*n[2] + n[4], m[4]*n[1] + m[5]*n[3] + n[5],
	}
}

type gstate struct {
	ctm         mat
	fillWhite   bool
	strokeWhite bool
	render      int
	font        string
	size        float64
	leading     float64
}

func pdfPage(w *writer, page pdf.Value, budget *int64) (err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("%v", x)
		}
	}()
	contents := page.Key("Contents")
	var streams []pdf.Value
	switch contents.Kind() {
	case pdf.Stream:
		streams = []pdf.Value{contents}
	case pdf.Array:
		for i := 0; i < min(contents.Len(), 10000); i++ {
			if s := contents.Index(i); s.Kind() == pdf.Stream {
				streams = append(streams, s)
			}
		}
	default:
		return nil
	}
	// Refuse a decompression bomb before interpreting: count what each stream inflates to.
	for _, s := range streams {
		n, err := io.Copy(io.Discard, io.LimitReader(s.Reader(), *budget+1))
		if n > *budget {
			return fmt.Errorf("%w: PDF streams decompress to more than %d bytes", ErrTooLarge, MaxDecompressed)
		}
		*budget -= n
		if err != nil {
			return err
		}
	}
	fonts := inherited(page, "Resources").Key("Font")
	encs := map[string]pdf.TextEncoding{}
	encoder := func(name string) pdf.TextEncoding {
		if e, ok := encs[name]; ok {
			return e
		}
		var e pdf.TextEncoding
		func() {
			defer func() { recover() }()
			if fv := fonts.Key(name); fv.Kind() == pdf.Dict {
				if tu := fv.Key("ToUnicode"); tu.Kind() == pdf.Stream {
					n, _ := io.Copy(io.Discard, io.LimitReader(tu.Reader(), *budget+1))
					if n > *budget {
						return
					}
					*budget -= n
				}
				f := pdf.Font{V: fv}
				e = f.Encoder()
			}
		}()
		if len(encs) < 1000 {
			encs[name] = e
		}
		return e
	}

	box, boxed := pageBox(page)
	gs := gstate{ctm: identity}
	var saved []gstate
	tm, tlm := identity, identity
	moved, lastY, shown := false, 0.0, false

	show := func(raw string) {
		if raw == "" {
			return
		}
		enc := encoder(gs.font)
		var s string
		if enc != nil {
			s = enc.Decode(raw)
		} else {
			s = raw
		}
		m := tm.mul(gs.ctm)
		y := m[5]
		if moved && shown {
			if math.Abs(y-lastY) > 1 {
				w.newline(1)
			} else {
				if gs.render == 3 || gs.render == 7 {
					w.hideSpace()
				} else {
					w.space()
				}
			}
		}
		moved, lastY, shown = false, y, true
		eff := math.Abs(gs.size) * math.Hypot(m[2], m[3])
		white := gs.fillWhite
		if gs.render == 1 || gs.render == 5 {
			white = gs.strokeWhite
		}
		if gs.render == 3 || gs.render == 7 || white || eff <= 1 || boxed && offPage(box, m, eff, len([]rune(s))) {
			w.hide(s)
		} else {
			w.text(s)
		}
		// Advance roughly: without glyph widths, move by half an em per character so
		// that a following show on the same line is not mistaken for a new line.
		tm = mat{1, 0, 0, 1, float64(len([]rune(s))) * gs.size * 0.5, 0}.mul(tm)
	}
	num := func(v pdf.Value) float64 {
		switch v.Kind() {
		case pdf.Integer:
			return float64(v.Int64())
		case pdf.Real:
			return v.Float64()
		}
		return 0
	}
	isWhite := func(args []pdf.Value) (white, known bool) {
		switch len(args) {
		case 1:
			return num(args[0]) >= 0.95, true
		case 3:
			return num(args[0]) >= 0.95 && num(args[1]) >= 0.95 && num(args[2]) >= 0.95, true
		case 4:
			return num(args[0]) <= 0.05 && num(args[1]) <= 0.05 && num(args[2]) <= 0.05 && num(args[3]) <= 0.05, true
		}
		return false, false
	}
	ops := 0
	interp := func(strm pdf.Value) {
		pdf.Interpret(strm, func(stk *pdf.Stack, op string) {
			ops++
			n := stk.Len()
			if n > 64 { // no operator takes more; drop junk operands
				for stk.Len() > 64 {
					stk.Pop()
				}
				n = 64
			}
			args := make([]pdf.Value, n)
			for i := n - 1; i >= 0; i-- {
				args[i] = stk.Pop()
			}
			if w.full() {
				return
			}
			switch op {
			case "q":
				if len(saved) < 1000 {
					saved = append(saved, gs)
				}
			case "Q":
				if len(saved) > 0 {
					gs, saved = saved[len(saved)-1], saved[:len(saved)-1]
				}
			case "cm":
				if n == 6 {
					var m mat
					for i := range m {
						m[i] = num(args[i])
					}
					gs.ctm = m.mul(gs.ctm)
				}
			case "BT":
				tm, tlm = identity, identity
				moved = true
			case "Tf":
				if n == 2 {
					gs.font, gs.size = args[0].Name(), num(args[1])
				}
			case "Tr":
				if n == 1 {
					gs.render = int(num(args[0]))
				}
			case "TL":
				if n == 1 {
					gs.leading = num(args[0])
				}
			case "g", "rg", "k", "sc", "scn":
				if white, ok := isWhite(args); ok {
					gs.fillWhite = white
				} else {
					gs.fillWhite = false
				}
			case "G", "RG", "K", "SC", "SCN":
				white, _ := isWhite(args)
				gs.strokeWhite = white
			case "cs":
				gs.fillWhite = false // a new colour space starts black
			case "CS":
				gs.strokeWhite = false
			case "Td", "TD":
				if n == 2 {
					tx, ty := num(args[0]), num(args[1])
					tlm = mat{1, 0, 0, 1, tx, ty}.mul(tlm)
					tm = tlm
					moved = true
					if op == "TD" {
						gs.leading = -ty
					}
				}
			case "Tm":
				if n == 6 {
					for i := range tm {
						tm[i] = num(args[i])
					}
					tlm = tm
					moved = true
				}
			case "T*":
				tlm = mat{1, 0, 0, 1, 0, -gs.leading}.mul(tlm)
				tm = tlm
				moved = true
			case "Tj":
				if n >= 1 {
					show(args[n-1].RawString())
				}
			case "'", "\"":
				tlm = mat{1, 0, 0, 1, 0, -gs.leading}.mul(tlm)
				tm = tlm
				moved = true
				if n >= 1 {
					show(args[n-1].RawString())
				}
			case "TJ":
				if n >= 1 && args[n-1].Kind() == pdf.Array {
					a := args[n-1]
					var sb strings.Builder
					for i := 0; i < min(a.Len(), 100000); i++ {
						e := a.Index(i)
						if e.Kind() == pdf.String {
							sb.WriteString(e.RawString())
						} else if num(e) < -200 {
							show(sb.String())
							sb.Reset()
							if gs.render == 3 || gs.render == 7 {
								w.hideSpace()
							} else {
								w.space()
							}
						}
					}
					show(sb.String())
				}
			}
		})
	}
	for _, s := range streams {
		interp(s)
	}
	w.flushHidden()
	return nil
}
