package extract

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
)

const nsW = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

// docxZip reads parts of a .docx zip under a shared decompression budget.
type docxZip struct {
	files  map[string]*zip.File
	budget int64
}

func (z *docxZip) read(name string) ([]byte, error) {
	f := z.files[name]
	if f == nil {
		return nil, nil
	}
	if f.UncompressedSize64 > uint64(z.budget) {
		return nil, fmt.Errorf("%w: %s would decompress to %d bytes (limit %d in all)", ErrTooLarge, name, f.UncompressedSize64, MaxDecompressed)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	defer rc.Close()
	// The declared size may lie: read at most the budget plus one byte.
	data, err := io.ReadAll(io.LimitReader(rc, z.budget+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if int64(len(data)) > z.budget {
		return nil, fmt.Errorf("%w: %s decompresses to more than the %d-byte limit", ErrTooLarge, name, MaxDecompressed)
	}
	z.budget -= int64(len(data))
	return data, nil
}

func docxText(data []byte) (Result, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return Result{}, fmt.Errorf("not a valid .docx (not a zip archive): %v", err)
	}
	z := &docxZip{files: map[string]*zip.File{}, budget: MaxDecompressed}
	for _, f := range zr.File {
		z.files[strings.TrimPrefix(f.Name, "/")] = f
	}
	body, err := z.read("word/document.xml")
	if err != nil {
		return Result{}, err
	}
	if body == nil {
		return Result{}, errors.New("not a valid .docx: no word/document.xml in the archive")
	}
	d := &docx{w: newWriter(), styles: map[string]*style{}, links: map[string]string{}}
	if s, err := z.read("word/styles.xml"); err != nil {
		return Result{}, err
	} else if s != nil {
		d.readStyles(s) // best effort: a broken styles part only loses style-borne hiding
	}
	if s, err := z.read("word/_rels/document.xml.rels"); err != nil {
		return Result{}, err
	} else if s != nil {
		d.readRels(s)
	}

	var headers, footers []string
	for name := range z.files {
		dir, base := path.Split(name)
		if dir != "word/" || !strings.HasSuffix(base, ".xml") {
			continue
		}
		switch {
		case strings.HasPrefix(base, "header"):
			headers = append(headers, name)
		case strings.HasPrefix(base, "footer"):
			footers = append(footers, name)
		}
	}
	sort.Strings(headers)
	sort.Strings(footers)

	var firstErr error
	part := func(name, label string) {
		data := body
		if name != "word/document.xml" {
			var err error
			if data, err = z.read(name); err != nil || data == nil {
				if err != nil && firstErr == nil {
					firstErr = err
				}
				return
			}
		}
		mark := d.w.b.Len()
		if label != "" {
			d.w.newline(2)
			d.w.text("--- " + label + " ---")
			d.w.newline(1)
		}
		before := d.w.b.Len()
		if err := d.walk(data); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %v", name, err)
		}
		d.w.flushHidden()
		d.w.newline(2)
		if label != "" && d.w.b.Len() == before && !d.w.truncated {
			// Nothing in the part: drop its label.
			s := d.w.b.String()[:mark]
			d.w.b.Reset()
			d.w.b.WriteString(s)
		}
	}
	for _, h := range headers {
		part(h, "header ("+path.Base(h)+")")
	}
	part("word/document.xml", "")
	for _, f := range footers {
		part(f, "footer ("+path.Base(f)+")")
	}
	part("word/footnotes.xml", "footnotes")
	part("word/endnotes.xml", "endnotes")
	part("word/comments.xml", "comments")
	r := d.w.result()
	if firstErr != nil && errors.Is(firstErr, ErrTooLarge) {
		return r, firstErr
	}
	if firstErr != nil && strings.TrimSpace(r.Text) == "" {
		return r, fmt.Errorf("malformed .docx: %v", firstErr)
	}
	return r, nil
}

// runProps are the run properties that decide whether text is visible. A nil field is
// "not set here" (inherited).
type runProps struct {
	vanish *bool
	size   *int    // half-points
	color  *string // hex RRGGBB or "auto"
	fill   *string // run shading or highlight, hex RRGGBB
}

func (p runProps) over(base runProps) runProps {
	if p.vanish == nil {
		p.vanish = base.vanish
	}
	if p.size == nil {
		p.size = base.size
	}
	if p.color == nil {
		p.color = base.color
	}
	if p.fill == nil {
		p.fill = base.fill
	}
	return p
}

type style struct {
	basedOn string
	rPr     runProps
}

type docx struct {
	w        *writer
	styles   map[string]*style
	defaults runProps
	links    map[string]string
}

func attr(se xml.StartElement, local string) (string, bool) {
	for _, a := range se.Attr {
		if a.Name.Local == local && (a.Name.Space == nsW || a.Name.Space == "" || local == "id") {
			return a.Value, true
		}
	}
	return "", false
}

func onOff(se xml.StartElement) bool {
	v, ok := attr(se, "val")
	if !ok {
		return true
	}
	switch strings.ToLower(v) {
	case "0", "false", "off", "none":
		return false
	}
	return true
}

// readRPr reads a w:rPr element's relevant children; the decoder is just past its start.
func readRPr(dec *xml.Decoder) (runProps, string, error) {
	var p runProps
	rStyle := ""
	depth := 1
	for depth > 0 {
		tok, err := dec.Token()
		if err != nil {
			return p, rStyle, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth != 2 {
				continue
			}
			switch t.Name.Local {
			case "vanish", "specVanish", "webHidden":
				b := onOff(t)
				if b || p.vanish == nil {
					p.vanish = &b
				}
			case "sz":
				if v, ok := attr(t, "val"); ok {
					if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
						p.size = &n
					}
				}
			case "color":
				if v, ok := attr(t, "val"); ok {
					v = strings.ToLower(strings.TrimSpace(v))
					p.color = &v
				}
			case "highlight":
				if v, ok := attr(t, "val"); ok {
					if h := highlightHex(v); h != "" {
						p.fill = &h
					}
				}
			case "shd":
				if v, ok := attr(t, "fill"); ok {
					v = strings.ToLower(strings.TrimSpace(v))
					if v != "auto" && v != "" {
						p.fill = &v
					}
				}
			case "rStyle":
				rStyle, _ = attr(t, "val")
			}
		case xml.EndElement:
			depth--
		}
	}
	return p, rStyle, nil
}

func highlightHex(v string) string {
	switch strings.ToLower(v) {
	case "white":
		return "ffffff"
	case "black":
		return "000000"
	case "yellow":
		return "ffff00"
	case "green":
		return "00ff00"
	case "cyan":
		return "00ffff"
	case "magenta":
		return "ff00ff"
	case "blue":
		return "0000ff"
	case "red":
		return "ff0000"
	case "lightgray":
		return "c0c0c0"
	case "darkgray":
		return "808080"
	}
	return ""
}

func newDecoder(data []byte) *xml.Decoder {
	dec := xml.NewDecoder(bytes.NewReader(data))
	// No Entity map and no CharsetReader: nothing external is ever resolved.
	return dec
}

func (d *docx) readStyles(data []byte) {
	dec := newDecoder(data)
	var cur *style
	inDefaults := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "rPrDefault":
				inDefaults = true
			case "style":
				id, _ := attr(t, "styleId")
				cur = &style{}
				if len(d.styles) < 10000 {
					d.styles[id] = cur
				}
			case "basedOn":
				if cur != nil {
					cur.basedOn, _ = attr(t, "val")
				}
			case "rPr":
				p, _, err := readRPr(dec)
				if err != nil {
					return
				}
				if inDefaults {
					d.defaults = p
				} else if cur != nil {
					cur.rPr = p
				}
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "rPrDefault":
				inDefaults = false
			case "style":
				cur = nil
			}
		}
	}
}

// styleProps resolves a style's run properties through its basedOn chain.
func (d *docx) styleProps(id string) runProps {
	var p runProps
	for i := 0; id != "" && i < 32; i++ {
		s := d.styles[id]
		if s == nil {
			break
		}
		p = p.over(s.rPr)
		id = s.basedOn
	}
	return p
}

func (d *docx) readRels(data []byte) {
	dec := newDecoder(data)
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		if t, ok := tok.(xml.StartElement); ok && t.Name.Local == "Relationship" {
			var id, target, typ string
			for _, a := range t.Attr {
				switch a.Name.Local {
				case "Id":
					id = a.Value
				case "Target":
					target = a.Value
				case "Type":
					typ = a.Value
				}
			}
			if strings.HasSuffix(typ, "/hyperlink") && len(d.links) < 100000 {
				d.links[id] = target
			}
		}
	}
}

// walk reads one WordprocessingML part (document, header, footer, notes, comments).
func (d *docx) walk(data []byte) error {
	dec := newDecoder(data)
	w := d.w
	var (
		pStyle    string
		pFill     string
		cellFill  []string
		pageFill  string
		inRun     bool
		rPr       runProps
		rStyle    string
		inDel     int
		skip      int // depth inside a skipped subtree (mc:Fallback, field instructions)
		cellDepth int
		link      []string // hyperlink targets, innermost last
		linkText  []int    // output length at the hyperlink's start
	)
	hidden := func() bool {
		if inDel > 0 {
			return true
		}
		p := rPr.over(d.styleProps(rStyle)).over(d.styleProps(pStyle)).over(d.defaults)
		if p.vanish != nil && *p.vanish {
			return true
		}
		if p.size != nil && *p.size <= 2 {
			return true
		}
		bg := "ffffff"
		switch {
		case p.fill != nil:
			bg = *p.fill
		case len(cellFill) > 0 && cellFill[len(cellFill)-1] != "":
			bg = cellFill[len(cellFill)-1]
		case pFill != "":
			bg = pFill
		case pageFill != "":
			bg = pageFill
		}
		if p.color != nil && *p.color != "auto" && sameColor(*p.color, bg) {
			return true
		}
		return false
	}
	emit := func(s string) {
		if hidden() {
			w.hide(s)
		} else {
			w.text(s)
		}
	}
	for {
		if w.full() {
			return nil
		}
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if skip > 0 {
				skip++
				continue
			}
			switch t.Name.Local {
			case "Fallback", "instrText", "delInstrText":
				skip = 1
			case "background":
				if v, ok := attr(t, "color"); ok {
					pageFill = strings.ToLower(v)
				}
			case "p":
				pStyle, pFill = "", ""
			case "pPr":
				pStyle, pFill = readPPr(dec)
			case "r":
				inRun, rPr, rStyle = true, runProps{}, ""
			case "rPr":
				if inRun {
					var err error
					if rPr, rStyle, err = readRPr(dec); err != nil {
						return err
					}
				} else if err := dec.Skip(); err != nil { // paragraph-mark properties
					return err
				}
			case "del", "moveFrom":
				inDel++
			case "t", "delText":
				var s string
				if err := dec.DecodeElement(&s, &t); err != nil {
					return err
				}
				emit(s)
			case "tab", "ptab":
				if inRun {
					emit("\t")
				}
			case "br", "cr":
				if inRun {
					if hidden() {
						w.hideSpace()
					} else if cellDepth > 0 {
						w.space()
					} else {
						w.newline(1)
					}
				}
			case "noBreakHyphen":
				emit("-")
			case "sym":
				if c, ok := attr(t, "char"); ok {
					if n, err := strconv.ParseUint(c, 16, 32); err == nil && n >= 0x20 && n < 0xF000 {
						emit(string(rune(n)))
					}
				}
			case "tbl":
				w.newline(1)
			case "tc":
				cellDepth++
				cellFill = append(cellFill, "")
			case "tcPr":
				f := readShd(dec)
				if len(cellFill) > 0 {
					cellFill[len(cellFill)-1] = f
				}
			case "hyperlink":
				id, _ := attr(t, "id")
				target := d.links[id]
				link = append(link, target)
				linkText = append(linkText, w.b.Len())
			case "comment":
				author, _ := attr(t, "author")
				w.newline(1)
				if author != "" {
					w.text("[comment by " + author + "]")
				} else {
					w.text("[comment]")
				}
				w.space()
			case "footnote", "endnote":
				if typ, _ := attr(t, "type"); typ == "separator" || typ == "continuationSeparator" || typ == "continuationNotice" {
					skip = 1
					continue
				}
				w.newline(1)
				if id, ok := attr(t, "id"); ok {
					w.text("[" + t.Name.Local + " " + id + "]")
					w.space()
				}
			case "footnoteReference", "endnoteReference":
				if id, ok := attr(t, "id"); ok {
					w.text("[" + strings.TrimSuffix(t.Name.Local, "Reference") + " " + id + "]")
				}
			}
		case xml.EndElement:
			if skip > 0 {
				skip--
				continue
			}
			switch t.Name.Local {
			case "r":
				inRun = false
			case "p":
				w.flushHidden()
				if cellDepth > 0 {
					w.space()
				} else {
					w.newline(1)
				}
			case "del", "moveFrom":
				inDel = max(inDel-1, 0)
			case "tc":
				if cellDepth > 0 {
					cellDepth--
					cellFill = cellFill[:len(cellFill)-1]
				}
				w.flushHidden()
				w.text(" |")
				w.space()
			case "tr":
				w.newline(1)
			case "tbl":
				w.newline(1)
			case "hyperlink":
				if n := len(link); n > 0 {
					target, start := link[n-1], linkText[n-1]
					link, linkText = link[:n-1], linkText[:n-1]
					if target != "" && w.b.Len() > start && !strings.Contains(w.b.String()[start:], target) {
						w.flushHidden()
						w.text(" (" + target + ")")
					}
				}
			}
		}
	}
}

// readPPr reads a w:pPr for its style and shading; the decoder is just past its start.
func readPPr(dec *xml.Decoder) (styleID, fill string) {
	depth := 1
	for depth > 0 {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth != 2 {
				continue
			}
			switch t.Name.Local {
			case "pStyle":
				styleID, _ = attr(t, "val")
			case "shd":
				if v, ok := attr(t, "fill"); ok && !strings.EqualFold(v, "auto") {
					fill = strings.ToLower(v)
				}
			}
		case xml.EndElement:
			depth--
		}
	}
	return
}

// readShd reads a properties element (w:tcPr) for its w:shd fill.
func readShd(dec *xml.Decoder) (fill string) {
	depth := 1
	for depth > 0 {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && t.Name.Local == "shd" {
				if v, ok := attr(t, "fill"); ok && !strings.EqualFold(v, "auto") {
					fill = strings.ToLower(v)
				}
			}
		case xml.EndElement:
			depth--
		}
	}
	return
}

// sameColor reports whether two hex colours (RRGGBB) are indistinguishable to a reader:
// every channel within 0x18 of the other.
func sameColor(a, b string) bool {
	ra, ga, ba, ok1 := hexRGB(a)
	rb, gb, bb, ok2 := hexRGB(b)
	if !ok1 || !ok2 {
		return false
	}
	near := func(x, y int) bool { return x-y <= 0x18 && y-x <= 0x18 }
	return near(ra, rb) && near(ga, gb) && near(ba, bb)
}

func hexRGB(s string) (r, g, b int, ok bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "#")
	if len(s) == 3 {
		s = string([]byte{s[0], s[0], s[1], s[1], s[2], s[2]})
	}
	if len(s) != 6 {
		return 0, 0, 0, false
	}
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, 0, 0, false
	}
	return int(n >> 16), int(n >> 8 & 0xff), int(n & 0xff), true
}
