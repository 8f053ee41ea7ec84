package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/scope"
)

//go:embed glob.md
var globDescription string

// Glob is the glob tool: {pattern, path?}. It supports "**" (any number of path elements) on
// top of path.Match syntax per element.
type Glob struct{}

const globSchema = `{
  "type": "object",
  "properties": {
    "pattern": {"type": "string", "minLength": 1, "description": "Glob pattern, e.g. **/*.md; ** matches any number of folders."},
    "path": {"type": "string", "description": "Folder to search from (default: the first granted folder)."}
  },
  "required": ["pattern"],
  "additionalProperties": false
}`

func (Glob) Spec() model.ToolSpec { return spec("glob", globDescription, globSchema) }

func (Glob) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Pattern string `json:"pattern"`
		Path    string `json:"path"`
	}
	if err := decode("glob", input, &in); err != nil {
		return nil, err
	}
	s, err := session(env)
	if err != nil {
		return nil, err
	}
	base, pat, err := splitPattern(in.Pattern, in.Path)
	if err != nil {
		return nil, err
	}
	r, err := resolve(env, base, true)
	if err != nil {
		return nil, err
	}
	root := r.real
	exists := true
	if fi, err := root.Stat(); err != nil {
		if !scopeNotExist(err) {
			return nil, refusal(err)
		}
		exists = false // nothing can match; say so when run
	} else if len(pat) > 0 && !fi.IsDir() {
		return nil, Refusef("%s is not a folder; glob searches folders", r.as.Virtual())
	}
	relative := isRelative(in.Pattern, in.Path)
	summary := "glob " + quote(in.Pattern)
	if in.Path != "" {
		summary += " in " + r.label()
	}
	return &Call{
		Action: policy.Action{
			Tool:    "glob",
			Ops:     []policy.Op{{Effect: policy.EffectRead, Target: target(root, exists, r.protected()), Subject: "glob"}},
			Summary: summary,
		},
		ReadOnly:   true,
		Idempotent: true,
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			var out []string
			capped := false
			add := func(p scope.Path, dir bool) {
				name := shown(s, p, relative)
				if dir {
					name += "/"
				}
				out = append(out, name)
			}
			if len(pat) == 0 {
				// A pattern without wildcards names one path.
				if fi, err := root.Stat(); err == nil {
					add(root, fi.IsDir())
				}
			} else if exists {
				skipGit := !mentionsGit(pat)
				err := root.Walk(func(p scope.Path, d fs.DirEntry) error {
					if err := ctx.Err(); err != nil {
						return err
					}
					if p == root {
						return nil
					}
					segs := strings.Split(strings.TrimPrefix(p.Rel, prefixOf(root)), "/")
					if d.IsDir() && skipGit && d.Name() == ".git" {
						return fs.SkipDir
					}
					if matchSegs(pat, segs) {
						if len(out) == MaxGlobResults {
							capped = true
							return fs.SkipAll
						}
						add(p, d.IsDir())
					}
					if d.IsDir() && !matchPrefix(pat, segs) {
						return fs.SkipDir
					}
					return nil
				})
				if err != nil {
					return failed(err)
				}
			}
			if len(out) == 0 {
				return &Result{Content: fmt.Sprintf("no paths match %s", quote(in.Pattern))}, nil
			}
			content := strings.Join(out, "\n") + "\n"
			if capped {
				content += fmt.Sprintf("[glob: stopped at %d results; narrow the pattern or the path]\n", MaxGlobResults)
			}
			return &Result{Content: content, Untrusted: true, Sources: []string{source(root)}}, nil
		},
	}, nil
}

// prefixOf is what to strip from a path under root to make it relative to root.
func prefixOf(root scope.Path) string {
	if root.IsRoot() {
		return ""
	}
	return root.Rel + "/"
}

// splitPattern joins the search path and the pattern, then splits the result into the folder
// holding no wildcards (which Resolve checks like any path) and the pattern elements under it.
func splitPattern(pattern, dir string) (base string, pat []string, err error) {
	full := pattern
	if !path.IsAbs(pattern) {
		full = path.Join(dir, pattern)
	} else if dir != "" {
		return "", nil, Refusef("pattern %s is absolute: give path or an absolute pattern, not both", quote(pattern))
	}
	abs := path.IsAbs(full)
	segs := strings.Split(strings.Trim(full, "/"), "/")
	i := 0
	for i < len(segs) && !hasMeta(segs[i]) {
		i++
	}
	base = strings.Join(segs[:i], "/")
	if abs {
		base = "/" + base
	}
	pat = cleanPattern(segs[i:])
	for _, p := range pat {
		if p == ".." {
			return "", nil, Refusef("pattern %s: \"..\" after a wildcard is not supported", quote(pattern))
		}
		if _, err := path.Match(p, ""); err != nil {
			return "", nil, Refusef("pattern %s: element %s is malformed: %v", quote(pattern), quote(p), err)
		}
	}
	return base, pat, nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// cleanPattern drops empty and "." elements and collapses runs of "**".
func cleanPattern(segs []string) []string {
	var out []string
	for _, s := range segs {
		if s == "" || s == "." || (s == "**" && len(out) > 0 && out[len(out)-1] == "**") {
			continue
		}
		out = append(out, s)
	}
	return out
}

// matchSegs reports whether the path elements name match the pattern elements pat, where "**"
// matches any number of elements (including none) and every other element is a path.Match
// pattern.
func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			if len(pat) == 1 {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// matchPrefix reports whether some path under the folder name could match pat, i.e. whether
// walking into it can find anything.
func matchPrefix(pat, name []string) bool {
	for len(name) > 0 {
		if len(pat) == 0 {
			return false
		}
		if pat[0] == "**" {
			return true
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(pat) > 0
}

// mentionsGit reports whether a pattern names .git explicitly (then .git folders are searched).
func mentionsGit(pat []string) bool {
	for _, p := range pat {
		if strings.HasPrefix(p, ".git") {
			return true
		}
	}
	return false
}
