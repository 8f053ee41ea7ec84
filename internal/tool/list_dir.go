package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
)

//go:embed list_dir.md
var listDirDescription string

// ListDir is the list_dir tool: {path}.
type ListDir struct{}

const listDirSchema = `{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "Folder to list: relative to the first granted folder, or absolute under /sessions/<id>/mnt/."}
  },
  "required": ["path"],
  "additionalProperties": false
}`

func (ListDir) Spec() model.ToolSpec { return spec("list_dir", listDirDescription, listDirSchema) }

func (ListDir) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Path string `json:"path"`
	}
	if err := decode("list_dir", input, &in); err != nil {
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
	if !fi.IsDir() {
		return nil, Refusef("%s is not a folder; use read_file to read a file", r.as.Virtual())
	}
	p := r.real
	rel := isRelative(in.Path)
	return &Call{
		Action: policy.Action{
			Tool:    "list_dir",
			Ops:     []policy.Op{{Effect: policy.EffectRead, Target: target(p, true, r.protected()), Subject: "list_dir"}},
			Summary: "list " + r.label(),
		},
		ReadOnly:   true,
		Idempotent: true,
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			ents, err := p.ReadDir()
			if err != nil {
				return failed(err)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%s: %s\n", shown(env.Session, p, rel), plural(len(ents), "entry", "entries"))
			for i, e := range ents {
				if i == MaxListEntries {
					fmt.Fprintf(&b, "[list_dir: showed the first %d of %d entries; use glob with a pattern to find the rest]\n", MaxListEntries, len(ents))
					break
				}
				b.WriteString(quote(e.Name()))
				switch t := e.Type(); {
				case t.IsDir():
					b.WriteString("/")
				case t&fs.ModeSymlink != 0:
					b.WriteString("@")
				case t.IsRegular():
					if info, err := e.Info(); err == nil {
						b.WriteString("  " + size(info.Size()))
					}
				default:
					b.WriteString("  (special file)")
				}
				b.WriteByte('\n')
			}
			return &Result{Content: b.String(), Untrusted: true, Sources: []string{source(p)}}, nil
		},
	}, nil
}

// size formats a byte count for a listing.
func size(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
