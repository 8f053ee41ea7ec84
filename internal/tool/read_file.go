package tool

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/keepup/keepup/internal/extract"
	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
)

//go:embed read_file.md
var readFileDescription string

// ReadFile is the read_file tool: {path, offset?, limit?}. offset and limit count lines; the
// output is capped at MaxReadBytes with a notice saying how to read further.
type ReadFile struct{}

const readFileSchema = `{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "File to read: relative to the first granted folder, or absolute under /sessions/<id>/mnt/."},
    "offset": {"type": "integer", "minimum": 1, "description": "1-based line number to start at (default 1)."},
    "limit": {"type": "integer", "minimum": 1, "description": "Most lines to return (default: as many as fit in 256 KiB)."}
  },
  "required": ["path"],
  "additionalProperties": false
}`

func (ReadFile) Spec() model.ToolSpec { return spec("read_file", readFileDescription, readFileSchema) }

func (ReadFile) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Path   string `json:"path"`
		Offset int64  `json:"offset"`
		Limit  int64  `json:"limit"`
	}
	if err := decode("read_file", input, &in); err != nil {
		return nil, err
	}
	r, err := resolve(env, in.Path, true)
	if err != nil {
		return nil, err
	}
	fi, err := r.real.Stat()
	if err != nil {
		return nil, refusal(err)
	}
	switch {
	case fi.IsDir():
		return nil, Refusef("%s is a folder; use list_dir to list it", r.as.Virtual())
	case !fi.Mode().IsRegular():
		return nil, Refusef("%s is not a regular file; only regular files can be read", r.as.Virtual())
	}
	p := r.real
	offset := max(in.Offset, 1)
	summary := "read " + r.label()
	if in.Offset > 1 || in.Limit > 0 {
		summary += fmt.Sprintf(" (from line %d", offset)
		if in.Limit > 0 {
			summary += fmt.Sprintf(", %d lines", in.Limit)
		}
		summary += ")"
	}
	return &Call{
		Action: policy.Action{
			Tool:    "read_file",
			Ops:     []policy.Op{{Effect: policy.EffectRead, Target: target(p, true, r.protected()), Subject: "read_file"}},
			Summary: summary,
		},
		ReadOnly:   true,
		Idempotent: true,
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			f, fi, err := p.Open()
			if err != nil {
				return failed(err)
			}
			defer f.Close()
			var src io.Reader = f
			size := fi.Size()
			if extract.Extracted(p.Rel) {
				// Documents are read as their text, hidden text marked as such.
				data, err := io.ReadAll(io.LimitReader(f, extract.MaxInput+1))
				if err != nil {
					return failed(fmt.Errorf("%s: read: %v", p.Virtual(), err))
				}
				doc, err := extract.Text(path.Base(p.Rel), data)
				if err != nil {
					return failed(Refusef("%s: %v", p.Virtual(), err))
				}
				src, size = strings.NewReader(doc.Text), int64(len(doc.Text))
			}
			content, isErr, err := readLines(src, size, offset, in.Limit, MaxReadBytes)
			if err != nil {
				return failed(fmt.Errorf("%s: read: %v", p.Virtual(), err))
			}
			return &Result{Content: content, IsError: isErr, Untrusted: true, Sources: []string{source(p)}}, nil
		},
	}, nil
}

// readLines returns lines offset.. (1-based) of r, at most limit lines (0: no limit) and at
// most maxBytes bytes, followed by a notice when the file goes on. isErr is set when offset is
// past the end.
func readLines(r io.Reader, size, offset, limit int64, maxBytes int) (content string, isErr bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if head, _ := br.Peek(8 << 10); bytes.IndexByte(head, 0) >= 0 {
		return fmt.Sprintf("[read_file: binary file of %d bytes; read_file shows text only]", size), false, nil
	}
	if size == 0 {
		return "[read_file: the file is empty]", false, nil
	}
	pastEnd := func(lines int64) (string, bool, error) {
		return fmt.Sprintf("[read_file: offset %d is past the end; the file has %s]", offset, plural(int(lines), "line", "lines")), true, nil
	}
	line := int64(1) // the line about to be read
	partial := false // part of it was read already
	for line < offset {
		chunk, err := br.ReadSlice('\n')
		switch err {
		case nil:
			line++
			partial = false
		case bufio.ErrBufferFull:
			partial = true // same line, longer than the buffer
		case io.EOF:
			if len(chunk) > 0 || partial {
				return pastEnd(line)
			}
			return pastEnd(line - 1)
		default:
			return "", false, err
		}
	}
	// Collect whole lines until the limit, the byte cap or the end.
	var out []byte
	n := int64(0)
	cutLine, capped, eof := false, false, false
	for limit == 0 || n < limit {
		l, complete, err := readLine(br, maxBytes-len(out))
		if err != nil && err != io.EOF {
			return "", false, err
		}
		if len(l) == 0 && err == io.EOF {
			eof = true
			break
		}
		if !complete {
			if n == 0 {
				out = append(out, l...)
				n, cutLine = 1, true
			}
			capped = true
			break
		}
		out = append(out, l...)
		n++
		if err == io.EOF {
			eof = true
			break
		}
	}
	if !eof && !capped {
		// The limit was reached: is there more?
		if _, err := br.Peek(1); err == io.EOF {
			eof = true
		}
	}
	if n == 0 {
		return pastEnd(offset - 1)
	}
	first, last := offset, offset+n-1
	var notice string
	switch {
	case cutLine:
		notice = fmt.Sprintf("[read_file: line %d is longer than %d KiB and was cut; call read_file with offset=%d to read the lines after it]", first, maxBytes>>10, first+1)
	case capped:
		notice = fmt.Sprintf("[read_file: output truncated at %d KiB: showed lines %d-%d of a %d-byte file; call read_file with offset=%d to read further]", maxBytes>>10, first, last, size, last+1)
	case !eof:
		notice = fmt.Sprintf("[read_file: showed lines %d-%d; the file goes on: call read_file with offset=%d to read further]", first, last, last+1)
	}
	if notice == "" {
		return string(out), false, nil
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return string(out) + notice, false, nil
}

// readLine reads one line (with its newline) of at most budget bytes. complete is false when
// the line is longer: then only its first budget bytes are returned.
func readLine(br *bufio.Reader, budget int) (line []byte, complete bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > budget {
			return append(line, chunk[:budget-len(line)]...), false, nil
		}
		line = append(line, chunk...)
		if err != bufio.ErrBufferFull {
			return line, true, err
		}
	}
}
