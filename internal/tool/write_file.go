package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
)

//go:embed write_file.md
var writeFileDescription string

// WriteFile is the write_file tool: {path, content}. It creates or overwrites a whole file.
type WriteFile struct{}

const writeFileSchema = `{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "File to write: relative to the first granted folder, or absolute under /sessions/<id>/mnt/."},
    "content": {"type": "string", "description": "The file's whole new content."}
  },
  "required": ["path", "content"],
  "additionalProperties": false
}`

func (WriteFile) Spec() model.ToolSpec {
	return spec("write_file", writeFileDescription, writeFileSchema)
}

// newFilePerm is the mode of files the tools create (before the umask).
const newFilePerm = 0o644

func (WriteFile) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Path    string `json:"path"`
		Content string `json:"content"`
	}
	if err := decode("write_file", input, &in); err != nil {
		return nil, err
	}
	r, err := resolveWritable(env, in.Path, true)
	if err != nil {
		return nil, err
	}
	p := r.real
	if p.IsRoot() {
		return nil, Refusef("%s is a granted folder itself; name a file inside it", r.as.Virtual())
	}
	exists, err := p.Exists()
	if err != nil {
		return nil, refusal(err)
	}
	effect, verb := policy.EffectCreate, "create "
	if exists {
		fi, err := p.Lstat()
		if err != nil {
			return nil, refusal(err)
		}
		if !fi.Mode().IsRegular() {
			return nil, Refusef("%s is not a regular file (%s); write_file only writes regular files", p.Virtual(), fi.Mode().Type())
		}
		effect, verb = policy.EffectOverwrite, "overwrite "
	}
	data := []byte(in.Content)
	return &Call{
		Action: policy.Action{
			Tool:    "write_file",
			Ops:     []policy.Op{{Effect: effect, Target: target(p, exists, r.protected()), Subject: "write_file"}},
			Summary: verb + r.label() + fmt.Sprintf(" (%s)", plural(len(data), "byte", "bytes")),
		},
		// Writing the same content again leaves the same file.
		Idempotent: true,
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			before, after, created, err := p.WriteAtomicCheck(data, newFilePerm, func(_ string, nowExists bool) error {
				if nowExists && !exists {
					return Refusef("%s was created by something else since this call was approved as a create; read it, then call write_file again", p.Virtual())
				}
				return nil
			})
			if err != nil {
				return failed(err)
			}
			what := "overwrote"
			if created {
				what = "created"
			}
			return &Result{
				Content: fmt.Sprintf("%s %s (%s)", what, shown(env.Session, p, isRelative(in.Path)), plural(len(data), "byte", "bytes")),
				Files:   []FileChange{{Path: p.String(), Before: before, After: after}},
			}, nil
		},
	}, nil
}
