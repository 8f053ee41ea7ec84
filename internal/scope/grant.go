package scope

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// nameRE is what a mount name (and a session id) must look like.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidName reports whether s can name a mount.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ParseGrant parses the CLI form of a grant, [NAME=]PATH[:ro|:rw] (DESIGN.md "CLI"). The grant
// is named after the folder's base name unless NAME= is given (characters a name cannot hold
// become '-'), and is read-write unless :ro. PATH is made absolute and cleaned; whether it exists
// is checked by Open. A prefix before the first '=' counts as NAME only when it holds no path
// separator, so "/data/a=b" is a path.
func ParseGrant(spec string) (Grant, error) {
	fail := func(format string, args ...any) (Grant, error) {
		return Grant{}, fmt.Errorf("grant %q: %s", spec, fmt.Sprintf(format, args...))
	}
	rest := spec
	g := Grant{Mode: RW}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		switch suffix := rest[i+1:]; {
		case suffix == string(RO) || suffix == string(RW):
			g.Mode = Mode(suffix)
			rest = rest[:i]
		case len(suffix) > 0 && len(suffix) <= 5 && isLetters(suffix):
			return fail("unknown access mode %q (want :ro or :rw)", suffix)
		}
	}
	if i := strings.IndexByte(rest, '='); i >= 0 && !strings.ContainsAny(rest[:i], `/\`) {
		g.Name = rest[:i]
		rest = rest[i+1:]
		if !ValidName(g.Name) {
			return fail("name %q is not valid (letters, digits, '.', '_' and '-', starting with a letter or digit)", g.Name)
		}
	}
	if rest == "" {
		return fail("no folder path given")
	}
	if strings.ContainsRune(rest, 0) {
		return fail("path contains a NUL byte")
	}
	abs, err := filepath.Abs(rest)
	if err != nil {
		return fail("cannot make the path absolute: %v", err)
	}
	g.Path = filepath.Clean(abs)
	if g.Name == "" {
		g.Name = nameFromBase(filepath.Base(g.Path))
		if g.Name == "" {
			return fail("cannot name a grant after %q; give one as NAME=PATH", filepath.Base(g.Path))
		}
	}
	return g, nil
}

func isLetters(s string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// nameFromBase turns a folder's base name into a mount name: runs of characters a name cannot
// hold become one '-', and leading punctuation is dropped ("My Documents" -> "My-Documents",
// ".config" -> "config"). It returns "" when nothing usable is left.
func nameFromBase(base string) string {
	var b strings.Builder
	dash := false
	for _, r := range base {
		ok := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-'
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimLeft(b.String(), "._-")
	name = strings.TrimRight(name, "-")
	if !ValidName(name) {
		return ""
	}
	return name
}
