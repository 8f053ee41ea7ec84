package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"io/fs"
	"path"
	"strings"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/scope"
)

//go:embed move_path.md
var movePathDescription string

// MovePath is the move_path tool: {from, to}.
type MovePath struct{}

const movePathSchema = `{
  "type": "object",
  "properties": {
    "from": {"type": "string", "description": "File or folder to move: relative to the first granted folder, or absolute under /sessions/<id>/mnt/."},
    "to": {"type": "string", "description": "New path; an existing folder receives from inside it."}
  },
  "required": ["from", "to"],
  "additionalProperties": false
}`

func (MovePath) Spec() model.ToolSpec { return spec("move_path", movePathDescription, movePathSchema) }

func (MovePath) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		From string `json:"from"`
		To   string `json:"to"`
	}
	if err := decode("move_path", input, &in); err != nil {
		return nil, err
	}
	rf, err := resolveWritable(env, in.From, false)
	if err != nil {
		return nil, err
	}
	from := rf.real
	if from.IsRoot() {
		return nil, Refusef("%s is a granted folder itself; it cannot be moved", rf.as.Virtual())
	}
	sfi, err := from.Lstat()
	if err != nil {
		return nil, refusal(err)
	}
	// An existing folder at to receives from inside it, like mv.
	rt, err := resolve(env, in.To, true)
	if err != nil {
		return nil, err
	}
	if fi, err := rt.real.Stat(); err == nil && fi.IsDir() {
		rt.as, rt.real = rt.as.Join(path.Base(from.Rel)), rt.real.Join(path.Base(from.Rel))
	}
	if rt.real, err = rt.real.EvalDir(); err != nil {
		return nil, refusal(err)
	}
	to := rt.real
	if err := to.Writable(); err != nil {
		return nil, refusal(err)
	}
	if to.IsRoot() {
		return nil, Refusef("%s is a granted folder itself; name a path inside it", rt.as.Virtual())
	}
	if to.Mount == from.Mount && (to.Rel == from.Rel || strings.HasPrefix(to.Rel, from.Rel+"/")) {
		return nil, Refusef("%s is %s or inside it; a folder cannot be moved into itself", to.Virtual(), from.Virtual())
	}
	if to.Mount != from.Mount && !sfi.Mode().IsRegular() && !sfi.IsDir() {
		return nil, Refusef("%s is not a regular file or folder; only files and folders move between granted folders", from.Virtual())
	}
	destExists, err := to.Exists()
	if err != nil {
		return nil, refusal(err)
	}
	if destExists {
		dfi, err := to.Lstat()
		if err != nil {
			return nil, refusal(err)
		}
		switch {
		case dfi.IsDir():
			return nil, Refusef("%s is a folder and is never replaced; name a path inside it", to.Virtual())
		case !dfi.Mode().IsRegular():
			return nil, Refusef("%s exists and is not a regular file; it is never replaced", to.Virtual())
		case sfi.IsDir():
			return nil, Refusef("%s is a file; a folder cannot replace it", to.Virtual())
		}
	}
	// What the move changes: every path in from's tree disappears, and reappears under to.
	t := tree{complete: true}
	if sfi.Mode()&fs.ModeSymlink == 0 {
		if t, err = walkTree(from, &to); err != nil {
			return nil, refusal(err)
		}
	}
	fromProtected := rf.protected() || t.anyProtected()
	toProtected := rt.protected() || t.anyProtectedTo()
	effect := policy.EffectMove
	summary := "move " + rf.label() + " -> " + rt.label()
	if to.Mount != from.Mount {
		effect = policy.EffectMoveOut
		summary += " (out of " + from.Mount.Name + ")"
	}
	destEffect := policy.EffectCreate
	if destExists {
		destEffect = policy.EffectOverwrite
		summary += ", replacing " + quote(to.String())
	}
	return &Call{
		Action: policy.Action{
			Tool: "move_path",
			Ops: []policy.Op{
				{Effect: effect, Target: target(from, true, fromProtected), Subject: "move_path"},
				{Effect: destEffect, Target: target(to, destExists, toProtected), Subject: "move_path"},
			},
			Summary: summary,
		},
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			var moved tree
			var sums map[string]string
			if sfi.Mode()&fs.ModeSymlink == 0 {
				if moved, err = walkTree(from, nil); err != nil {
					return failed(err)
				}
				sums = moved.digests()
			}
			destBefore, _, _ := to.Digest()
			if err := scope.Move(from, to, destExists); err != nil {
				return failed(err)
			}
			var changes []FileChange
			for _, f := range moved.list {
				changes = append(changes,
					FileChange{Path: f.path.String(), Before: sums[f.rel]},
					FileChange{Path: to.Join(f.rel).String(), After: sums[f.rel]})
			}
			if len(changes) == 0 {
				changes = []FileChange{{Path: from.String()}, {Path: to.String()}}
			} else if destBefore != "" {
				changes[1].Before = destBefore
			}
			return &Result{Content: "moved " + shown(env.Session, from, isRelative(in.From)) + " to " + shown(env.Session, to, isRelative(in.To)), Files: changes}, nil
		},
	}, nil
}
