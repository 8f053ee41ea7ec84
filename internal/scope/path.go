package scope

import (
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// Virtual is the path as the agent sees it: /sessions/<id>/mnt/<name>[/<rel>].
func (p Path) Virtual() string {
	if p.Rel == "." || p.Rel == "" {
		return p.Mount.virtual
	}
	return p.Mount.virtual + "/" + p.Rel
}

// String is the path as "<mount name>/<rel>" (or just the name for the mount's root): the
// short form used in summaries, sources ("file:" + String()) and audit records.
func (p Path) String() string {
	if p.Rel == "." || p.Rel == "" {
		return p.Mount.Name
	}
	return p.Mount.Name + "/" + p.Rel
}

// Join returns the path of elem inside p (elem is slash-separated and must stay inside p).
func (p Path) Join(elem string) Path {
	return Path{Mount: p.Mount, Rel: path.Join(p.Rel, elem)}
}

// IsRoot reports whether p is its mount's root folder.
func (p Path) IsRoot() bool { return p.Rel == "." || p.Rel == "" }

// Writable returns an *Error if p is in a read-only grant or in the uploads.
func (p Path) Writable() error {
	switch {
	case p.Mount.Kind == KindUploads:
		outputs := strings.TrimSuffix(p.Mount.virtual, p.Mount.Name) + OutputsName
		return refuse(p.Virtual(), fmt.Sprintf("uploads are read-only; write a copy under %s instead", outputs))
	case p.Mount.Mode != RW:
		return refuse(p.Virtual(), fmt.Sprintf("the folder %s is granted read-only; it cannot be changed", p.Mount.Name))
	}
	return nil
}

// maxLinks bounds symlink hops in EvalSymlinks, like the kernel's ELOOP limit.
const maxLinks = 40

// EvalSymlinks returns p with every symbolic link in it resolved, as far as p exists (the
// missing tail is kept as it is). The result names the file an operation on p would really
// touch, which is what policy must judge: a link "notes" -> ".git/config" resolves to
// ".git/config", a protected path. A link leading out of the mount (relative or absolute) is
// refused with an *Error. Absolute link targets inside the mount's host folder are mapped back
// into the mount (os.Root itself never follows absolute links).
//
// The result can go stale if the tree changes afterwards; operations still go through the
// mount's os.Root, so a link swapped in later can never lead out of the grant.
func (p Path) EvalSymlinks() (Path, error) { return p.eval(true) }

// EvalDir is EvalSymlinks without following the last element: it names the directory entry
// itself (what delete and the source of a move act on).
func (p Path) EvalDir() (Path, error) { return p.eval(false) }

func (p Path) eval(followLast bool) (Path, error) {
	todo := splitRel(p.Rel)
	var done []string
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".", "":
			continue
		case "..":
			if len(done) == 0 {
				return Path{}, refuse(p.Virtual(), "a symbolic link in it leads outside the granted folder "+p.Mount.Name+"; refused")
			}
			done = done[:len(done)-1]
			continue
		}
		cur := strings.Join(append(done, c), "/")
		if len(todo) == 0 && !followLast {
			done = append(done, c)
			break
		}
		fi, err := p.Mount.Root.Lstat(cur)
		if err != nil {
			// Missing (or not a directory): the rest cannot be a link; keep it as given,
			// resolving any ".." left over from a link target lexically.
			rel := path.Clean(strings.Join(append(append(done, c), todo...), "/"))
			if rel == ".." || strings.HasPrefix(rel, "../") {
				return Path{}, refuse(p.Virtual(), "a symbolic link in it leads outside the granted folder "+p.Mount.Name+"; refused")
			}
			return Path{Mount: p.Mount, Rel: rel}, nil
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		links++
		if links > maxLinks {
			return Path{}, refuse(p.Virtual(), "too many levels of symbolic links")
		}
		target, err := p.Mount.Root.Readlink(cur)
		if err != nil {
			return Path{}, wrapErr(p.Virtual(), "readlink", err)
		}
		target = filepath.ToSlash(target)
		if path.IsAbs(target) {
			rel, ok := p.Mount.hostRel(target)
			if !ok {
				return Path{}, refuse(Path{Mount: p.Mount, Rel: cur}.Virtual(), "is a symbolic link to a file outside the granted folders; refused")
			}
			done = nil
			todo = append(splitRel(rel), todo...)
			continue
		}
		todo = append(splitRel(target), todo...)
	}
	if len(done) == 0 {
		return Path{Mount: p.Mount, Rel: "."}, nil
	}
	return Path{Mount: p.Mount, Rel: strings.Join(done, "/")}, nil
}

// hostRel maps an absolute host path to a slash path inside the mount.
func (m *Mount) hostRel(host string) (string, bool) {
	host = filepath.Clean(filepath.FromSlash(host))
	for _, base := range []string{m.Path, m.real} {
		if base == "" || !within(host, base) {
			continue
		}
		rel, err := filepath.Rel(base, host)
		if err == nil {
			return filepath.ToSlash(rel), true
		}
	}
	return "", false
}

func splitRel(rel string) []string {
	if rel == "" || rel == "." {
		return nil
	}
	return strings.Split(rel, "/")
}
