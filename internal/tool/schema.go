package tool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"
)

// schema is a compiled JSON Schema of the subset tools use to describe their input: type,
// properties, required, additionalProperties, items, enum, const, the numeric, length and item
// count bounds, and pattern; annotations (description, title, default, examples, $schema) are
// ignored. A keyword outside the subset is a compile error, so a schema is never enforced
// more weakly than it reads. Stricter than the standard in one place: a number written with
// a fraction or exponent (2.0) is not an integer. (A full validator's package init cost every keepup process,
// sandbox helpers included, several milliseconds.)
type schema struct {
	types      []string
	properties map[string]*schema
	required   []string
	closed     bool    // additionalProperties: false
	additional *schema // additionalProperties: {schema}
	items      *schema
	enum       []any
	hasConst   bool
	constVal   any
	minimum    *float64
	maximum    *float64
	exclMin    *float64
	exclMax    *float64
	minLength  *int
	maxLength  *int
	minItems   *int
	maxItems   *int
	pattern    *regexp.Regexp
}

var annotations = map[string]bool{"description": true, "title": true, "default": true, "examples": true, "$schema": true, "$id": true, "$comment": true}

// compileSchema parses and checks a schema document.
func compileSchema(raw []byte) (*schema, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	return compileValue(v, "")
}

func compileValue(v any, at string) (*schema, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: a schema must be an object", where(at))
	}
	s := &schema{}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := m[k]
		here := at + "/" + k
		var err error
		switch k {
		case "type":
			switch t := val.(type) {
			case string:
				s.types = []string{t}
			case []any:
				for _, x := range t {
					str, ok := x.(string)
					if !ok {
						return nil, fmt.Errorf("%s: types must be strings", here)
					}
					s.types = append(s.types, str)
				}
			default:
				return nil, fmt.Errorf("%s: must be a string or an array of strings", here)
			}
			for _, t := range s.types {
				switch t {
				case "object", "array", "string", "integer", "number", "boolean", "null":
				default:
					return nil, fmt.Errorf("%s: unknown type %q", here, t)
				}
			}
		case "properties":
			pm, ok := val.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: must be an object", here)
			}
			s.properties = map[string]*schema{}
			for name, ps := range pm {
				if s.properties[name], err = compileValue(ps, here+"/"+name); err != nil {
					return nil, err
				}
			}
		case "required":
			arr, ok := val.([]any)
			if !ok {
				return nil, fmt.Errorf("%s: must be an array of strings", here)
			}
			for _, x := range arr {
				str, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("%s: must be an array of strings", here)
				}
				s.required = append(s.required, str)
			}
		case "additionalProperties":
			switch a := val.(type) {
			case bool:
				s.closed = !a
			default:
				if s.additional, err = compileValue(a, here); err != nil {
					return nil, err
				}
			}
		case "items":
			if s.items, err = compileValue(val, here); err != nil {
				return nil, err
			}
		case "enum":
			arr, ok := val.([]any)
			if !ok || len(arr) == 0 {
				return nil, fmt.Errorf("%s: must be a non-empty array", here)
			}
			s.enum = arr
		case "const":
			s.hasConst, s.constVal = true, val
		case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
			f, ok := number(val)
			if !ok {
				return nil, fmt.Errorf("%s: must be a number", here)
			}
			*map[string]**float64{"minimum": &s.minimum, "maximum": &s.maximum, "exclusiveMinimum": &s.exclMin, "exclusiveMaximum": &s.exclMax}[k] = &f
		case "minLength", "maxLength", "minItems", "maxItems":
			f, ok := number(val)
			if !ok || f < 0 || f != math.Trunc(f) {
				return nil, fmt.Errorf("%s: must be a non-negative integer", here)
			}
			n := int(f)
			*map[string]**int{"minLength": &s.minLength, "maxLength": &s.maxLength, "minItems": &s.minItems, "maxItems": &s.maxItems}[k] = &n
		case "pattern":
			str, ok := val.(string)
			if !ok {
				return nil, fmt.Errorf("%s: must be a string", here)
			}
			if s.pattern, err = regexp.Compile(str); err != nil {
				return nil, fmt.Errorf("%s: %v", here, err)
			}
		default:
			if !annotations[k] {
				return nil, fmt.Errorf("%s: keyword %q is not supported", where(here), k)
			}
		}
	}
	return s, nil
}

func where(at string) string {
	if at == "" {
		return "schema"
	}
	return "schema " + at
}

// decodeJSON decodes one JSON value, keeping numbers exact (json.Number) and refusing
// trailing data.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if rest := bytes.TrimSpace(raw[dec.InputOffset():]); len(rest) > 0 {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	}
	return 0, false
}

func typeOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "integer"
		}
		// 2.0 counts as a number, not an integer: the tools decode integers into Go ints,
		// which refuse it.
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// validate checks v against s; the error names the first place that is wrong, as a JSON
// pointer into the input.
func (s *schema) validate(v any, at string) error {
	loc := at
	if loc == "" {
		loc = "/"
	}
	if len(s.types) > 0 {
		t := typeOf(v)
		ok := false
		for _, want := range s.types {
			if want == t || want == "number" && t == "integer" {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("%s: got %s, want %s", loc, t, strings.Join(s.types, " or "))
		}
	}
	if s.hasConst && !equalJSON(v, s.constVal) {
		return fmt.Errorf("%s: must be %s", loc, show(s.constVal))
	}
	if len(s.enum) > 0 {
		ok := false
		for _, e := range s.enum {
			if equalJSON(v, e) {
				ok = true
			}
		}
		if !ok {
			opts := make([]string, len(s.enum))
			for i, e := range s.enum {
				opts[i] = show(e)
			}
			return fmt.Errorf("%s: %s is not one of %s", loc, show(v), strings.Join(opts, ", "))
		}
	}
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		switch {
		case s.minimum != nil && f < *s.minimum:
			return fmt.Errorf("%s: %s is less than %v", loc, x, *s.minimum)
		case s.maximum != nil && f > *s.maximum:
			return fmt.Errorf("%s: %s is more than %v", loc, x, *s.maximum)
		case s.exclMin != nil && f <= *s.exclMin:
			return fmt.Errorf("%s: %s must be more than %v", loc, x, *s.exclMin)
		case s.exclMax != nil && f >= *s.exclMax:
			return fmt.Errorf("%s: %s must be less than %v", loc, x, *s.exclMax)
		}
	case string:
		n := utf8.RuneCountInString(x)
		switch {
		case s.minLength != nil && n < *s.minLength:
			return fmt.Errorf("%s: shorter than %d characters", loc, *s.minLength)
		case s.maxLength != nil && n > *s.maxLength:
			return fmt.Errorf("%s: longer than %d characters", loc, *s.maxLength)
		case s.pattern != nil && !s.pattern.MatchString(x):
			return fmt.Errorf("%s: does not match %s", loc, s.pattern)
		}
	case []any:
		switch {
		case s.minItems != nil && len(x) < *s.minItems:
			return fmt.Errorf("%s: fewer than %d items", loc, *s.minItems)
		case s.maxItems != nil && len(x) > *s.maxItems:
			return fmt.Errorf("%s: more than %d items", loc, *s.maxItems)
		}
		if s.items != nil {
			for i, it := range x {
				if err := s.items.validate(it, fmt.Sprintf("%s/%d", at, i)); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		for _, r := range s.required {
			if _, ok := x[r]; !ok {
				return fmt.Errorf("%s: missing property %q", loc, r)
			}
		}
		names := make([]string, 0, len(x))
		for k := range x {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			here := at + "/" + k
			if ps, ok := s.properties[k]; ok {
				if err := ps.validate(x[k], here); err != nil {
					return err
				}
				continue
			}
			if s.closed {
				return fmt.Errorf("%s: unknown property %q", loc, k)
			}
			if s.additional != nil {
				if err := s.additional.validate(x[k], here); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func equalJSON(a, b any) bool {
	if na, ok := a.(json.Number); ok {
		if nb, ok := b.(json.Number); ok {
			fa, _ := na.Float64()
			fb, _ := nb.Float64()
			return fa == fb
		}
		return false
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func show(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
