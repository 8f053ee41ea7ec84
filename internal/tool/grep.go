package tool

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/scope"
)

//go:embed grep.md
var grepDescription string

// Grep is the grep tool: {pattern, path?, glob?}.
type Grep struct{}

const grepSchema = `{
  "type": "object",
  "properties": {
    "pattern": {"type": "string", "minLength": 1, "description": "Go (RE2) regular expression matched against each line."},
    "path": {"type": "string", "description": "File or folder to search (default: the first granted folder)."},
    "glob": {"type": "string", "minLength": 1, "description": "Only search files matching this glob, e.g. *.md or docs/**/*.txt."}
  },
  "required": ["pattern"],
  "additionalProperties": false
}`

// maxGrepLine is the most of one matching line grep shows.
const maxGrepLine = 300

func (Grep) Spec() model.ToolSpec { return spec("grep", grepDescription, grepSchema) }

func (Grep) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		Pattern string `json:"pattern"`
		Path    string `json:"path"`
		Glob    string `json:"glob"`
	}
	if err := decode("grep", input, &in); err != nil {
		return nil, err
	}
	s, err := session(env)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(in.Pattern)
	if err != nil {
		return nil, Refusef("pattern is not a valid Go regular expression: %v", err)
	}
	var filter []string
	if in.Glob != "" {
		filter = cleanPattern(strings.Split(in.Glob, "/"))
		for _, p := range filter {
			if _, err := path.Match(p, ""); err != nil {
				return nil, Refusef("glob %s: element %s is malformed: %v", quote(in.Glob), quote(p), err)
			}
		}
	}
	r, err := resolve(env, in.Path, true)
	if err != nil {
		return nil, err
	}
	root := r.real
	if _, err := root.Stat(); err != nil {
		return nil, refusal(err)
	}
	relative := isRelative(in.Path)
	summary := "grep " + quote(in.Pattern) + " in " + r.label()
	if in.Glob != "" {
		summary += " (files " + quote(in.Glob) + ")"
	}
	return &Call{
		Action: policy.Action{
			Tool:    "grep",
			Ops:     []policy.Op{{Effect: policy.EffectRead, Target: target(root, true, r.protected()), Subject: "grep"}},
			Summary: summary,
		},
		ReadOnly:   true,
		Idempotent: true,
		Run: func(ctx context.Context) (*Result, error) {
			if err := started(ctx); err != nil {
				return nil, err
			}
			var out strings.Builder
			var sources []string
			matches, big, binary := 0, 0, 0
			capped := false
			skipGit := !strings.Contains(root.Rel, ".git")
			err := root.Walk(func(p scope.Path, d fs.DirEntry) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				if d.IsDir() {
					if skipGit && d.Name() == ".git" && p != root {
						return fs.SkipDir
					}
					return nil
				}
				if !d.Type().IsRegular() {
					return nil
				}
				if filter != nil && p != root {
					rel := strings.TrimPrefix(p.Rel, prefixOf(root))
					if len(filter) == 1 {
						rel = path.Base(rel) // a bare name pattern matches at any depth
					}
					if !matchSegs(filter, strings.Split(rel, "/")) {
						return nil
					}
				}
				if info, err := d.Info(); err == nil && info.Size() > MaxGrepFileBytes {
					big++
					return nil
				}
				data, _, truncated, err := p.ReadFile(0, 0, MaxGrepFileBytes)
				switch {
				case err != nil:
					return nil // gone or replaced since it was listed
				case truncated:
					big++
					return nil
				case bytes.IndexByte(data[:min(len(data), 8<<10)], 0) >= 0:
					binary++
					return nil
				}
				found := false
				for i, line := range bytes.Split(data, []byte("\n")) {
					if !re.Match(line) {
						continue
					}
					if matches == MaxGrepMatches {
						capped = true
						return fs.SkipAll
					}
					matches++
					found = true
					fmt.Fprintf(&out, "%s:%d: %s\n", shown(s, p, relative), i+1, cutLine(line))
				}
				if found {
					sources = append(sources, source(p))
				}
				return nil
			})
			if err != nil {
				return failed(err)
			}
			if matches == 0 {
				out.WriteString("no matches for " + quote(in.Pattern))
				if in.Glob != "" {
					out.WriteString(" in files matching " + quote(in.Glob))
				}
				out.WriteString("\n")
			}
			if capped {
				fmt.Fprintf(&out, "[grep: stopped at %d matches; narrow the pattern, path or glob]\n", MaxGrepMatches)
			}
			if big > 0 || binary > 0 {
				fmt.Fprintf(&out, "[grep: skipped %s over %d MiB and %s]\n", plural(big, "file", "files"), MaxGrepFileBytes>>20, plural(binary, "binary file", "binary files"))
			}
			return &Result{Content: out.String(), Untrusted: true, Sources: sources}, nil
		},
	}, nil
}

// cutLine shortens a matching line for display, on a UTF-8 boundary, without its line end.
func cutLine(line []byte) string {
	line = bytes.TrimRight(line, "\r")
	if len(line) <= maxGrepLine {
		return string(line)
	}
	cut := maxGrepLine
	for cut > 0 && !utf8.RuneStart(line[cut]) {
		cut--
	}
	return string(line[:cut]) + " [...]"
}
