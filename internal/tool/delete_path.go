package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
)

//go:embed delete_path.md
var deletePathDescription string

// DeletePath is the delete_path tool: {path, recursive?}.
type DeletePath struct{}

const deletePathSchema = `{
  "type": "object",
  "properties": {
    "path": {"type": "string", "description": "File or folder to delete: relative to the first granted folder, or absolute under /sessions/<id>/mnt/."},
    "recursive": {"type": "boolean", "description": "Delete a non-empty folder and everything in it (default false)."}
  },
  "required": ["path"],
  "additionalProperties": false
}`

func (DeletePath) Spec() model.ToolSpec {
	return spec("delete_path", deletePathDescription, deletePathSchema)
}

func (DeletePath) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Path      string `json:"path"`
		Recursive bool   `json:"recursive"`
	}
	if err := decode("delete_path", input, &in); err != nil {
		return nil, err
	}
	r, err := resolveWritable(env, in.Path, false)
	if err != nil {
		return nil, err
	}
	p := r.real
	if p.IsRoot() {
		return nil, Refusef("%s is a granted folder itself; it cannot be deleted", r.as.Virtual())
	}
	fi, err := p.Lstat()
	if err != nil {
		return nil, refusal(err)
	}
	t := tree{complete: true}
	if fi.Mode()&fs.ModeSymlink == 0 {
		if t, err = walkTree(p, nil); err != nil {
			return nil, refusal(err)
		}
	}
	summary := "delete " + r.label()
	if fi.IsDir() {
		if !in.Recursive && (t.files+t.dirs-1+t.others) > 0 {
			return nil, Refusef("%s is a folder holding %s and %s; set recursive to delete it with everything in it", p.Virtual(), plural(t.files, "file", "files"), plural(t.dirs-1, "folder", "folders"))
		}
		if in.Recursive {
			more := ""
			if !t.complete {
				more = " or more"
			}
			summary += fmt.Sprintf(" (recursive: %s, %s%s)", plural(t.files, "file", "files"), plural(t.dirs-1, "folder", "folders"), more)
		}
	}
	return &Call{
		Action: policy.Action{
			Tool:    "delete_path",
			Ops:     []policy.Op{{Effect: policy.EffectDelete, Target: target(p, true, r.protected() || t.anyProtected()), Subject: "delete_path"}},
			Summary: summary,
		},
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			var changes []FileChange
			if fi.Mode()&fs.ModeSymlink == 0 {
				now, err := walkTree(p, nil)
				if err != nil {
					return failed(err)
				}
				for _, f := range now.list {
					d, _, _ := f.path.Digest()
					changes = append(changes, FileChange{Path: f.path.String(), Before: d})
				}
			}
			if len(changes) == 0 {
				changes = []FileChange{{Path: p.String()}} // a link, an empty folder, a special file
			}
			if err := p.Remove(in.Recursive); err != nil {
				return failed(err)
			}
			msg := "deleted " + shown(env.Session, p, isRelative(in.Path))
			if fi.IsDir() && in.Recursive {
				msg += " and everything in it"
			}
			return &Result{Content: msg, Files: changes}, nil
		},
	}, nil
}
