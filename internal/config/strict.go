package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// fieldError is a problem at a field path such as "permissions.deny[2]".
type fieldError struct {
	path string
	msg  string
}

func (e *fieldError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func errAt(path, format string, args ...any) error {
	return &fieldError{path: path, msg: fmt.Sprintf(format, args...)}
}

// fileError names the file in front of a field error or a JSON syntax error.
func fileError(file string, data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := position(data, se.Offset)
		return fmt.Errorf("%s: line %d, column %d (offset %d): %v", file, line, col, se.Offset, se)
	}
	return fmt.Errorf("%s: %v", file, err)
}

// position returns the 1-based line and column of the byte before offset (where a syntax
// error was noticed).
func position(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	if offset > 0 {
		offset-- // the offending byte
	}
	before := data[:offset]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// checkSyntax reports a JSON syntax error (with its offset), trailing data included.
func checkSyntax(data []byte) error {
	var raw json.RawMessage
	return json.Unmarshal(data, &raw)
}

type member struct {
	key string
	val json.RawMessage
}

// object decodes raw as a JSON object, keeping member order and refusing duplicate keys.
func object(raw json.RawMessage, path string) ([]member, error) {
	if kind(raw) != "an object" {
		return nil, errAt(path, "expected an object, got %s", kind(raw))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return nil, errAt(path, "%v", err)
	}
	var out []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errAt(path, "%v", err)
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errAt(join(path, key), "%v", err)
		}
		if seen[key] {
			return nil, errAt(join(path, key), "duplicate field")
		}
		seen[key] = true
		out = append(out, member{key, v})
	}
	return out, nil
}

func unknownField(path, key string, known ...string) error {
	sort.Strings(known)
	return errAt(join(path, key), "unknown field %q (known fields: %s)", key, strings.Join(known, ", "))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// kind names the JSON type of raw for messages.
func kind(raw json.RawMessage) string {
	b := bytes.TrimLeft(raw, " \t\r\n")
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func decodeBool(raw json.RawMessage, path string) (bool, error) {
	var b bool
	if kind(raw) != "a boolean" || json.Unmarshal(raw, &b) != nil {
		return false, errAt(path, "expected true or false, got %s", kind(raw))
	}
	return b, nil
}

func decodeString(raw json.RawMessage, path string) (string, error) {
	var s string
	if kind(raw) != "a string" || json.Unmarshal(raw, &s) != nil {
		return "", errAt(path, "expected a string, got %s", kind(raw))
	}
	return s, nil
}

func decodeStrings(raw json.RawMessage, path string) ([]string, error) {
	var items []json.RawMessage
	if kind(raw) != "a list" || json.Unmarshal(raw, &items) != nil {
		return nil, errAt(path, "expected a list of strings, got %s", kind(raw))
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, err := decodeString(it, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func decodePositiveInt(raw json.RawMessage, path string) (int, error) {
	var n int
	if kind(raw) != "a number" || json.Unmarshal(raw, &n) != nil || n <= 0 {
		return 0, errAt(path, "expected a positive whole number, got %s", strings.TrimSpace(string(raw)))
	}
	return n, nil
}
