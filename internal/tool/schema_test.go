package tool

import (
	"strings"
	"testing"
)

func TestSchemaCompileErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{`[]`, "a schema must be an object"},
		{`{"type": "obj"}`, `unknown type "obj"`},
		{`{"type": 3}`, "must be a string or an array"},
		{`{"oneOf": []}`, `keyword "oneOf" is not supported`},
		{`{"properties": {"a": {"$ref": "#"}}}`, `/properties/a/$ref`},
		{`{"minLength": -1}`, "non-negative integer"},
		{`{"pattern": "("}`, "/pattern"},
		{`{"enum": []}`, "non-empty array"},
		{`{"type": "object"} x`, "unexpected data"},
	} {
		if _, err := compileSchema([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("compile %s = %v, want %q", c.in, err, c.want)
		}
	}
}

func TestSchemaValidate(t *testing.T) {
	t.Parallel()
	s, err := compileSchema([]byte(`{
		"type": "object",
		"properties": {
			"path": {"type": "string", "minLength": 1, "maxLength": 5, "description": "x"},
			"n": {"type": "integer", "minimum": 1, "maximum": 10},
			"f": {"type": "number", "exclusiveMinimum": 0},
			"mode": {"enum": ["a", "b"]},
			"k": {"const": 3},
			"id": {"type": "string", "pattern": "^[a-z]+$"},
			"items": {"type": "array", "minItems": 1, "maxItems": 2,
				"items": {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"], "additionalProperties": false}},
			"tags": {"type": "object", "additionalProperties": {"type": "boolean"}},
			"opt": {"type": ["string", "null"]}
		},
		"required": ["path"],
		"additionalProperties": false
	}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, want string }{
		{`{"path": "a"}`, ""},
		{`{"path": "a", "n": 10, "f": 0.5, "mode": "b", "k": 3, "id": "abc", "items": [{"s": "x"}], "tags": {"x": true}, "opt": null}`, ""},
		{`{"path": "a", "n": 2.0}`, "/n: got number, want integer"},
		{`{}`, `/: missing property "path"`},
		{`{"path": "a", "x": 1}`, `/: unknown property "x"`},
		{`{"path": 7}`, "/path: got integer, want string"},
		{`{"path": ""}`, "/path: shorter than 1"},
		{`{"path": "abcdef"}`, "/path: longer than 5"},
		{`{"path": "a", "n": 1.5}`, "/n: got number, want integer"},
		{`{"path": "a", "n": 0}`, "/n: 0 is less than 1"},
		{`{"path": "a", "n": 11}`, "/n: 11 is more than 10"},
		{`{"path": "a", "f": 0}`, "/f: 0 must be more than 0"},
		{`{"path": "a", "mode": "c"}`, `/mode: "c" is not one of "a", "b"`},
		{`{"path": "a", "k": 4}`, "/k: must be 3"},
		{`{"path": "a", "id": "A1"}`, "/id: does not match"},
		{`{"path": "a", "items": []}`, "/items: fewer than 1 items"},
		{`{"path": "a", "items": [{"s": "x"}, {"s": "y"}, {"s": "z"}]}`, "/items: more than 2 items"},
		{`{"path": "a", "items": [{"s": "x"}, {}]}`, `/items/1: missing property "s"`},
		{`{"path": "a", "items": [{"s": 1}]}`, "/items/0/s: got integer, want string"},
		{`{"path": "a", "tags": {"x": "yes"}}`, "/tags/x: got string, want boolean"},
		{`{"path": "a", "opt": 1}`, "/opt: got integer, want string or null"},
		{`[1]`, "/: got array, want object"},
	} {
		v, err := decodeJSON([]byte(c.in))
		if err != nil {
			t.Fatal(err)
		}
		err = s.validate(v, "")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", c.in, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.in, err, c.want)
		}
	}
}

func TestBuiltinSchemasCompile(t *testing.T) {
	t.Parallel()
	for _, tl := range Builtins() {
		if _, err := compileSchema(tl.Spec().InputSchema); err != nil {
			t.Errorf("%s: %v", tl.Spec().Name, err)
		}
	}
}
