package policy

import (
	"errors"
	"path"
	"strings"
)

// pathPattern is a compiled gitignore-like path pattern.
//
//   - `*` and `?` never cross `/`; `[...]` is a character class; `\` escapes.
//   - `**` as a whole segment crosses directories: a leading `**/` and an inner `/**/` match
//     zero or more directories, a trailing `/**` matches everything inside (one or more).
//   - A pattern with no `/` (other than a trailing one) matches a basename at any depth.
//   - A pattern containing `/` is anchored at the grant root.
//   - A leading `/` anchors at the mount root: the first segment is the grant name.
//   - A trailing `/` names a directory; like a pattern without it, it matches the directory and
//     everything below (the policy cannot tell directories from files that do not exist yet).
//   - As in gitignore, a path also matches when one of its parent directories matches.
//   - `*` and `**` alone match everything, the grant root included.
type pathPattern struct {
	segs      []string
	anchored  bool // matched from the grant root (or the mount root)
	mountRoot bool // leading `/`: the first segment is the grant name
	all       bool // `*` or `**`: everything
}

func compilePath(p string) (pathPattern, error) {
	var pp pathPattern
	s := p
	if strings.HasPrefix(s, "/") {
		pp.mountRoot = true
		s = s[1:]
	}
	s = strings.TrimSuffix(s, "/")
	if s == "" {
		return pp, errors.New("empty pattern")
	}
	pp.segs = strings.Split(s, "/")
	for _, seg := range pp.segs {
		switch seg {
		case "":
			return pp, errors.New("bad glob " + quote(p) + ": empty path segment")
		case ".", "..":
			return pp, errors.New("bad glob " + quote(p) + ": " + quote(seg) + " segments are not allowed")
		}
		if _, err := path.Match(seg, ""); err != nil {
			return pp, errors.New("bad glob " + quote(p) + ": " + err.Error())
		}
	}
	// Consecutive `**` segments mean the same as one; collapsing them keeps matching linear.
	segs := pp.segs[:0:0]
	for _, seg := range pp.segs {
		if seg == "**" && len(segs) > 0 && segs[len(segs)-1] == "**" {
			continue
		}
		segs = append(segs, seg)
	}
	pp.segs = segs
	pp.anchored = pp.mountRoot || len(pp.segs) > 1
	pp.all = !pp.mountRoot && len(pp.segs) == 1 && (pp.segs[0] == "*" || pp.segs[0] == "**")
	return pp, nil
}

// match reports whether the target grant/rel matches. rel is the clean slash-separated path
// inside the grant, "." (or "") for its root.
func (pp pathPattern) match(grant, rel string) bool {
	if pp.all {
		return true
	}
	var subj []string
	if pp.mountRoot {
		subj = append(subj, grant)
	}
	if rel != "" && rel != "." {
		subj = append(subj, strings.Split(strings.Trim(rel, "/"), "/")...)
	}
	if !pp.anchored {
		// A basename pattern at any depth: some component (the path's own name or one of its
		// parents') matches.
		for _, s := range subj {
			if ok, _ := path.Match(pp.segs[0], s); ok {
				return true
			}
		}
		return false
	}
	// The path or one of its parents matches the whole pattern.
	for n := len(subj); n >= 1; n-- {
		if matchSegs(pp.segs, subj[:n]) {
			return true
		}
	}
	return false
}

func matchSegs(pat, subj []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			if len(pat) == 1 {
				return len(subj) >= 1 // trailing /**: everything inside
			}
			for i := 0; i <= len(subj); i++ {
				if matchSegs(pat[1:], subj[i:]) {
					return true
				}
			}
			return false
		}
		if len(subj) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], subj[0]); !ok {
			return false
		}
		pat, subj = pat[1:], subj[1:]
	}
	return len(subj) == 0
}
