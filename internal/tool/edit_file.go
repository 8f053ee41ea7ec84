package tool

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/scope"
)

//go:embed edit_file.md
var editFileDescription string

// EditFile is the edit_file tool: {path, old, new, replace_all?}.
type EditFile struct{}

const editFileSchema = `{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "File to edit: relative to the first granted folder, or absolute under /sessions/<id>/mnt/."},
    "old": {"type": "string", "minLength": 1, "description": "Exact text to replace; must occur exactly once unless replace_all is true."},
    "new": {"type": "string", "description": "Replacement text."},
    "replace_all": {"type": "boolean", "description": "Replace every occurrence of old (default false)."}
  },
  "required": ["path", "old", "new"],
  "additionalProperties": false
}`

func (EditFile) Spec() model.ToolSpec { return spec("edit_file", editFileDescription, editFileSchema) }

func (EditFile) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Path       string `json:"path"`
		Old        string `json:"old"`
		New        string `json:"new"`
		ReplaceAll bool   `json:"replace_all"`
	}
	if err := decode("edit_file", input, &in); err != nil {
		return nil, err
	}
	if in.Old == in.New {
		return nil, Refusef("old and new are the same text; nothing to change")
	}
	r, err := resolveWritable(env, in.Path, true)
	if err != nil {
		return nil, err
	}
	p := r.real
	fi, err := p.Stat()
	if err != nil {
		if scopeNotExist(err) {
			return nil, Refusef("%s does not exist; use write_file to create it", r.as.Virtual())
		}
		return nil, refusal(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, Refusef("%s is not a regular file; edit_file only edits regular files", r.as.Virtual())
	}
	summary := "edit " + r.label()
	if in.ReplaceAll {
		summary += " (replace all)"
	}
	return &Call{
		Action: policy.Action{
			Tool:    "edit_file",
			Ops:     []policy.Op{{Effect: policy.EffectOverwrite, Target: target(p, true, r.protected()), Subject: "edit_file"}},
			Summary: summary,
		},
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			data, size, truncated, err := p.ReadFile(0, 0, MaxEditBytes)
			if err != nil {
				return failed(err)
			}
			if truncated {
				return failed(Refusef("%s is %d bytes, larger than edit_file handles (%d MiB); use write_file to replace it", p.Virtual(), size, MaxEditBytes>>20))
			}
			updated, n, err := applyEdit(p, data, in.Old, in.New, in.ReplaceAll)
			if err != nil {
				return failed(err)
			}
			read := scope.DigestBytes(data)
			before, after, _, err := p.WriteAtomicCheck(updated, newFilePerm, func(before string, exists bool) error {
				if !exists || before != read {
					return Refusef("%s changed while it was being edited; read it again and retry", p.Virtual())
				}
				return nil
			})
			if err != nil {
				return failed(err)
			}
			return &Result{
				Content: fmt.Sprintf("edited %s: replaced %s", shown(env.Session, p, isRelative(in.Path)), plural(n, "occurrence", "occurrences")),
				Files:   []FileChange{{Path: p.String(), Before: before, After: after}},
			}, nil
		},
	}, nil
}

// applyEdit replaces old with repl in data: exactly one occurrence, or all with replaceAll. A
// file with CRLF line ends also matches old written with LF ones.
func applyEdit(p scope.Path, data []byte, old, repl string, replaceAll bool) ([]byte, int, error) {
	n := bytes.Count(data, []byte(old))
	if n == 0 && bytes.Contains(data, []byte("\r\n")) && strings.Contains(old, "\n") && !strings.Contains(old, "\r\n") {
		old = strings.ReplaceAll(old, "\n", "\r\n")
		repl = strings.ReplaceAll(strings.ReplaceAll(repl, "\r\n", "\n"), "\n", "\r\n")
		n = bytes.Count(data, []byte(old))
	}
	switch {
	case n == 0:
		return nil, 0, Refusef("old text not found in %s; read the file again and copy the text exactly, including whitespace and line breaks", p.Virtual())
	case n > 1 && !replaceAll:
		return nil, 0, Refusef("old text occurs %d times in %s (at lines %s); include more surrounding text to make it unique, or set replace_all to replace every occurrence", n, p.Virtual(), lineList(data, []byte(old), 10))
	}
	if replaceAll {
		return bytes.ReplaceAll(data, []byte(old), []byte(repl)), n, nil
	}
	return bytes.Replace(data, []byte(old), []byte(repl), 1), 1, nil
}

// lineList names the lines where sep starts in data, at most max of them.
func lineList(data, sep []byte, max int) string {
	var lines []string
	off := 0
	for len(lines) < max {
		i := bytes.Index(data[off:], sep)
		if i < 0 {
			break
		}
		lines = append(lines, fmt.Sprint(bytes.Count(data[:off+i], []byte("\n"))+1))
		off += i + len(sep)
	}
	s := strings.Join(lines, ", ")
	if bytes.Count(data, sep) > max {
		s += ", ..."
	}
	return s
}
