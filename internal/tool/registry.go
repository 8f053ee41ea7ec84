package tool

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/keepup/keepup/internal/model"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Registry holds the tools offered in a task and validates calls against their schemas.
type Registry struct {
	tools   map[string]Tool
	schemas map[string]*schema
	order   []string
}

// NewRegistry compiles each tool's schema. A tool whose schema does not compile, or a name used
// twice, is an error.
func NewRegistry(tools ...Tool) (*Registry, error) {
	r := &Registry{tools: map[string]Tool{}, schemas: map[string]*schema{}}
	for _, t := range tools {
		spec := t.Spec()
		if _, dup := r.tools[spec.Name]; dup {
			return nil, fmt.Errorf("tool %q registered twice", spec.Name)
		}
		s, err := compileSchema(spec.InputSchema)
		if err != nil {
			return nil, fmt.Errorf("tool %q: input schema: %w", spec.Name, err)
		}
		r.tools[spec.Name] = t
		r.schemas[spec.Name] = s
		r.order = append(r.order, spec.Name)
	}
	return r, nil
}

// Specs returns the tools' specs in registration order.
func (r *Registry) Specs() []model.ToolSpec {
	out := make([]model.ToolSpec, 0, len(r.order))
	for _, n := range r.order {
		out = append(out, r.tools[n].Spec())
	}
	return out
}

// Names returns the registered tool names, sorted.
func (r *Registry) Names() []string {
	n := append([]string(nil), r.order...)
	sort.Strings(n)
	return n
}

// Lookup returns the named tool.
func (r *Registry) Lookup(name string) (Tool, bool) {
	t, ok := r.tools[name]
	return t, ok
}

// Decode checks a call's raw input: the tool must exist, the input must be JSON and match the
// tool's schema. Errors are written for the model to correct its call.
func (r *Registry) Decode(name, input string) (Tool, json.RawMessage, error) {
	t, ok := r.tools[name]
	if !ok {
		return nil, nil, &Refusal{Msg: fmt.Sprintf("unknown tool %q; available tools: %s", name, strings.Join(r.Names(), ", "))}
	}
	if strings.TrimSpace(input) == "" {
		input = "{}"
	}
	v, err := decodeJSON([]byte(input))
	if err != nil {
		return nil, nil, &Refusal{Msg: fmt.Sprintf("arguments for %s are not valid JSON: %v", name, err)}
	}
	if err := r.schemas[name].validate(v, ""); err != nil {
		return nil, nil, &Refusal{Msg: fmt.Sprintf("arguments for %s do not match its schema: %s", name, oneLine(err.Error()))}
	}
	return t, json.RawMessage(input), nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	return strings.Join(strings.Fields(s), " ")
}
