package tool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"unicode"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/scope"
)

// Builtins returns the built-in tools in DESIGN.md order: list_dir, read_file, write_file,
// edit_file, delete_path, move_path, glob, grep, bash, web_fetch, update_plan, ask_user.
func Builtins() []Tool {
	return []Tool{ListDir{}, ReadFile{}, WriteFile{}, EditFile{}, DeletePath{}, MovePath{}, Glob{}, Grep{}, Bash{}, WebFetch{}, UpdatePlan{}, AskUser{}, SpawnSubagents{}}
}

// Limits of the built-in tools.
const (
	// MaxReadBytes is the most read_file returns in one call.
	MaxReadBytes = 256 << 10
	// MaxEditBytes is the largest file edit_file changes.
	MaxEditBytes = 16 << 20
	// MaxListEntries is the most entries list_dir shows.
	MaxListEntries = 1000
	// MaxGlobResults is the most paths glob returns.
	MaxGlobResults = 500
	// MaxGrepMatches is the most matching lines grep returns.
	MaxGrepMatches = 200
	// MaxGrepFileBytes is the largest file grep searches; larger ones are skipped and counted.
	MaxGrepFileBytes = 2 << 20
	// maxTreeEntries bounds the walks that classify a delete or a move of a folder (protected
	// paths inside) and record its files' digests. Past it a folder counts as holding a
	// protected path (fail closed) and the digests recorded stop.
	maxTreeEntries = 10000
	// maxFileChanges bounds the FileChange records of one call.
	maxFileChanges = 1000
)

func spec(name, description, schema string) model.ToolSpec {
	return model.ToolSpec{Name: name, Description: strings.TrimSpace(description), InputSchema: json.RawMessage(schema)}
}

// decode unmarshals schema-valid input strictly.
func decode(name string, input json.RawMessage, v any) error {
	if len(bytes.TrimSpace(input)) == 0 {
		input = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Refusef("arguments for %s: %v", name, err)
	}
	return nil
}

// refusal turns an error into a *Refusal the model can act on. scope errors already carry a
// message for it.
func refusal(err error) error {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	var se *scope.Error
	if errors.As(err, &se) {
		return &Refusal{Msg: se.Msg}
	}
	return &Refusal{Msg: err.Error()}
}

// failed is the Result of a call that failed or was refused while running.
func failed(err error) (*Result, error) {
	return &Result{Content: refusal(err).Error(), IsError: true}, nil
}

func session(env *Env) (*scope.Session, error) {
	if env == nil || env.Session == nil {
		return nil, Refusef("no session: file tools are unavailable")
	}
	return env.Session, nil
}

// resolved is a path the agent gave, lexically (as) and with links evaluated (real). Policy
// judges real, the file the call would touch; a protected lexical path stays protected.
type resolved struct {
	as, real scope.Path
}

// resolve resolves p for a tool. followLast evaluates a final link too (reads and writes act
// on the file it points to); without it the link itself is the target (delete, move).
// resolveWritable is resolve for a path the call will change: a read-only grant or the
// uploads are refused here, before anything is classified.
func resolveWritable(env *Env, p string, followLast bool) (resolved, error) {
	r, err := resolve(env, p, followLast)
	if err != nil {
		return r, err
	}
	if err := r.real.Writable(); err != nil {
		return r, refusal(err)
	}
	return r, nil
}

func resolve(env *Env, p string, followLast bool) (resolved, error) {
	s, err := session(env)
	if err != nil {
		return resolved{}, err
	}
	as, err := s.Resolve(p)
	if err != nil {
		return resolved{}, refusal(err)
	}
	var real scope.Path
	if followLast {
		real, err = as.EvalSymlinks()
	} else {
		real, err = as.EvalDir()
	}
	if err != nil {
		return resolved{}, refusal(err)
	}
	return resolved{as: as, real: real}, nil
}

// protected reports whether the call touches a protected path by either name.
func (r resolved) protected() bool { return scope.Protected(r.as.Rel) || scope.Protected(r.real.Rel) }

// label is how a summary names the path: "a/notes.md", plus the link it went through.
func (r resolved) label() string {
	if r.as == r.real {
		return quote(r.real.String())
	}
	return quote(r.real.String()) + " (via " + quote(r.as.String()) + ")"
}

func target(p scope.Path, exists, protected bool) *policy.Target {
	return &policy.Target{
		Grant:     p.Mount.Name,
		Rel:       p.Rel,
		Virtual:   p.Virtual(),
		Protected: protected || scope.Protected(p.Rel),
		Exists:    exists,
	}
}

// source names a file or folder content came from, for Result.Sources.
func source(p scope.Path) string { return "file:" + p.String() }

// quote leaves a path as it is unless it holds spaces or control characters, which could make a
// summary line or a listing misleading.
func quote(s string) string {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}

// shown is how output names a path: relative to the default mount when the agent's own input
// was relative (so the path can be fed back as is), else the full virtual path.
func shown(s *scope.Session, p scope.Path, relative bool) string {
	if relative && p.Mount == s.Default() {
		return quote(p.Rel)
	}
	return quote(p.Virtual())
}

func isRelative(paths ...string) bool {
	for _, p := range paths {
		if path.IsAbs(p) {
			return false
		}
	}
	return true
}

// treeFile is one regular file found under a folder, with its path relative to the folder.
type treeFile struct {
	rel  string
	path scope.Path
}

// tree describes what is at and under p (not following links).
type tree struct {
	files, dirs, others int
	list                []treeFile // regular files, at most maxFileChanges
	protected           string     // first protected path found in the tree, if any
	protectedTo         string     // first protected path the tree would have under mapTo, if any
	complete            bool       // false when the walk stopped at maxTreeEntries
}

// walkTree walks p. mapTo, when set, also checks the paths the entries would have under it (the
// destination of a move) for protection.
func walkTree(p scope.Path, mapTo *scope.Path) (tree, error) {
	t := tree{complete: true}
	n := 0
	err := p.Walk(func(q scope.Path, d fs.DirEntry) error {
		n++
		if n > maxTreeEntries {
			t.complete = false
			return fs.SkipAll
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(q.Rel, p.Rel), "/")
		if t.protected == "" && scope.Protected(q.Rel) {
			t.protected = q.String()
		}
		if t.protectedTo == "" && mapTo != nil && scope.Protected(path.Join(mapTo.Rel, rel)) {
			t.protectedTo = mapTo.Join(rel).String()
		}
		switch {
		case d.IsDir():
			t.dirs++
		case d.Type().IsRegular():
			t.files++
			if len(t.list) < maxFileChanges {
				t.list = append(t.list, treeFile{rel: rel, path: q})
			}
		default:
			t.others++
		}
		return nil
	})
	return t, err
}

// anyProtected is a tree's protection: a protected path in it, or a walk cut short.
func (t tree) anyProtected() bool { return t.protected != "" || !t.complete }

// anyProtectedTo is the protection of the tree's paths under mapTo.
func (t tree) anyProtectedTo() bool { return t.protectedTo != "" || !t.complete }

// digests records the current digest of each listed file.
func (t tree) digests() map[string]string {
	m := make(map[string]string, len(t.list))
	for _, f := range t.list {
		if d, _, err := f.path.Digest(); err == nil {
			m[f.rel] = d
		}
	}
	return m
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// started returns ctx's error if the call was cancelled before it ran.
func started(ctx context.Context) error { return ctx.Err() }

func scopeNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
