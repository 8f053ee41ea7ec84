package scope

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Config says what a session sees. Open validates all of it before anything is written.
type Config struct {
	// ID is the session id; NewID() when empty. It must be a valid mount name.
	ID string
	// Grants are the user's folders, mounted in this order; the first is where relative paths
	// resolve.
	Grants []Grant
	// Outputs is the host folder mounted read-write as "outputs"; created if missing. Required.
	Outputs string
	// Uploads are host files the user attached; they are copied into UploadsDir, which is
	// mounted read-only as "uploads". No uploads, no uploads mount.
	Uploads []string
	// UploadsDir is the host folder the uploads are copied into (created; must be empty).
	// Required when Uploads is not empty.
	UploadsDir string
	// Reopen opens the session of a task that already ran (a queued task continuing): the
	// outputs folder and UploadsDir, when given, must exist, and UploadsDir is mounted as it
	// is (no uploads are copied).
	Reopen bool
	// Home is KEEPUP_HOME: it, anything inside it and any folder containing it are never
	// grantable. Empty skips that check (tests).
	Home string
}

// Reserved mount names.
const (
	OutputsName = "outputs"
	UploadsName = "uploads"
)

// Open validates cfg and opens every mount as an os.Root. Nothing is created or copied until
// every grant and upload has been checked. Each error is one line naming the grant or upload and
// what is wrong with it.
func Open(cfg Config) (*Session, error) {
	id := cfg.ID
	if id == "" {
		id = NewID()
	}
	if !ValidName(id) {
		return nil, fmt.Errorf("session id %q is not valid (letters, digits, '.', '_' and '-')", id)
	}
	if cfg.Outputs == "" {
		return nil, errors.New("session: no outputs folder given")
	}
	outputs, err := filepath.Abs(cfg.Outputs)
	if err != nil {
		return nil, fmt.Errorf("outputs folder %q: %v", cfg.Outputs, err)
	}
	var uploadsDir string
	if cfg.Reopen && len(cfg.Uploads) > 0 {
		return nil, errors.New("session: a reopened session takes no new uploads")
	}
	if len(cfg.Uploads) > 0 || cfg.Reopen && cfg.UploadsDir != "" {
		if cfg.UploadsDir == "" {
			return nil, errors.New("session: uploads given but no uploads folder")
		}
		if uploadsDir, err = filepath.Abs(cfg.UploadsDir); err != nil {
			return nil, fmt.Errorf("uploads folder %q: %v", cfg.UploadsDir, err)
		}
	}

	// Validate, writing nothing.
	var home string
	if cfg.Home != "" {
		home = realPath(cfg.Home)
	}
	seen := map[string]string{}
	reals := make([]string, len(cfg.Grants))
	for i, g := range cfg.Grants {
		real, err := checkGrant(g, home)
		if err != nil {
			return nil, err
		}
		for _, other := range []struct{ what, dir string }{{"the outputs folder", outputs}, {"the uploads folder", uploadsDir}} {
			if other.dir != "" && overlaps(real, realPath(other.dir)) {
				return nil, fmt.Errorf("grant %s (%s): overlaps %s of the session", g.Name, g.Path, other.what)
			}
		}
		key := strings.ToLower(g.Name)
		if key == OutputsName || key == UploadsName {
			return nil, fmt.Errorf("grant %s (%s): the name %q is reserved; give another as NAME=PATH", g.Name, g.Path, g.Name)
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("grant %s (%s): name already used by the grant of %s; give another as NAME=PATH", g.Name, g.Path, prev)
		}
		seen[key] = g.Path
		reals[i] = real
	}
	uploadNames := map[string]string{}
	for _, u := range cfg.Uploads {
		fi, err := os.Stat(u)
		switch {
		case err != nil:
			return nil, fmt.Errorf("upload %s: %v", u, describe(err))
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("upload %s: not a regular file", u)
		}
		base := filepath.Base(u)
		if prev, dup := uploadNames[base]; dup {
			return nil, fmt.Errorf("upload %s: another upload (%s) has the same name %q", u, prev, base)
		}
		uploadNames[base] = u
	}
	if fi, err := os.Stat(outputs); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("outputs folder %s: not a directory", outputs)
	}
	if cfg.Reopen {
		for _, d := range []string{outputs, uploadsDir} {
			if d == "" {
				continue
			}
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("session %s: folder %s is gone; the task cannot continue", id, d)
			}
		}
	} else if uploadsDir != "" {
		if ents, err := os.ReadDir(uploadsDir); err == nil && len(ents) > 0 {
			return nil, fmt.Errorf("uploads folder %s: not empty; uploads go into a fresh folder", uploadsDir)
		}
	}

	// Open.
	s := &Session{ID: id}
	fail := func(err error) (*Session, error) {
		s.Close()
		return nil, err
	}
	for i, g := range cfg.Grants {
		r, err := os.OpenRoot(g.Path)
		if err != nil {
			return fail(fmt.Errorf("grant %s (%s): %s", g.Name, g.Path, describe(err)))
		}
		s.addMount(&Mount{Grant: g, Kind: KindGrant, Root: r, real: reals[i]})
		if err := readable(r); err != nil {
			return fail(fmt.Errorf("grant %s (%s): cannot read it: %s", g.Name, g.Path, describe(err)))
		}
	}
	if err := os.MkdirAll(outputs, 0o755); err != nil {
		return fail(fmt.Errorf("outputs folder %s: %s", outputs, describe(err)))
	}
	r, err := os.OpenRoot(outputs)
	if err != nil {
		return fail(fmt.Errorf("outputs folder %s: %s", outputs, describe(err)))
	}
	s.addMount(&Mount{Grant: Grant{Name: OutputsName, Path: outputs, Mode: RW}, Kind: KindOutputs, Root: r, real: realPath(outputs)})
	if uploadsDir != "" {
		if err := os.MkdirAll(uploadsDir, 0o755); err != nil {
			return fail(fmt.Errorf("uploads folder %s: %s", uploadsDir, describe(err)))
		}
		r, err := os.OpenRoot(uploadsDir)
		if err != nil {
			return fail(fmt.Errorf("uploads folder %s: %s", uploadsDir, describe(err)))
		}
		s.addMount(&Mount{Grant: Grant{Name: UploadsName, Path: uploadsDir, Mode: RO}, Kind: KindUploads, Root: r, real: realPath(uploadsDir)})
		for _, u := range cfg.Uploads {
			if err := copyUpload(r, u); err != nil {
				return fail(fmt.Errorf("upload %s: %v", u, err))
			}
		}
	}
	return s, nil
}

func (s *Session) addMount(m *Mount) {
	m.virtual = s.MountRoot() + "/" + m.Name
	s.Mounts = append(s.Mounts, m)
}

// checkGrant checks one grant without writing anything and returns its real path.
func checkGrant(g Grant, home string) (string, error) {
	where := fmt.Sprintf("grant %s (%s)", g.Name, g.Path)
	if !ValidName(g.Name) {
		return "", fmt.Errorf("%s: name %q is not valid (letters, digits, '.', '_' and '-', starting with a letter or digit)", where, g.Name)
	}
	if g.Mode != RO && g.Mode != RW {
		return "", fmt.Errorf("%s: mode %q is not ro or rw", where, g.Mode)
	}
	if !filepath.IsAbs(g.Path) {
		return "", fmt.Errorf("%s: path is not absolute", where)
	}
	fi, err := os.Stat(g.Path)
	if err != nil {
		return "", fmt.Errorf("%s: %s", where, describe(err))
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s: not a directory", where)
	}
	real, err := filepath.EvalSymlinks(g.Path)
	if err != nil {
		return "", fmt.Errorf("%s: %s", where, describe(err))
	}
	if real == string(filepath.Separator) {
		return "", fmt.Errorf("%s: the whole file system cannot be granted", where)
	}
	if home != "" && overlaps(real, home) {
		return "", fmt.Errorf("%s: it overlaps KEEPUP_HOME (%s), keepup's own data, which is never granted", where, home)
	}
	return real, nil
}

// realPath is p made absolute with symlinks evaluated as far as p exists.
func realPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	var tail []string
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(append([]string{r}, tail...)...)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs
		}
		tail = append([]string{filepath.Base(cur)}, tail...)
		cur = parent
	}
}

// overlaps reports whether a and b (absolute, clean) are the same folder or one contains the other.
func overlaps(a, b string) bool { return within(a, b) || within(b, a) }

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	if p == dir {
		return true
	}
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

func readable(r *os.Root) error {
	f, err := r.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadDir(1)
	if err == io.EOF {
		err = nil
	}
	return err
}

// copyUpload copies the host file src into the uploads root. src is a path the user named on the
// command line, not one from the agent.
func copyUpload(dst *os.Root, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return errors.New(describe(err))
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return errors.New(describe(err))
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	out, err := dst.OpenFile(filepath.Base(src), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return errors.New(describe(err))
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return errors.New(describe(err))
	}
	return out.Close()
}

// Close closes every mount's root.
func (s *Session) Close() error {
	var errs []error
	for _, m := range s.Mounts {
		if m.Root != nil {
			errs = append(errs, m.Root.Close())
		}
	}
	return errors.Join(errs...)
}

// MountRoot is the folder that holds the mounts as the agent sees it: /sessions/<id>/mnt.
func (s *Session) MountRoot() string { return "/sessions/" + s.ID + "/mnt" }

// Mount returns the mount of that name, or nil.
func (s *Session) Mount(name string) *Mount {
	for _, m := range s.Mounts {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Default is the mount relative paths resolve against: the first user grant, else outputs.
func (s *Session) Default() *Mount {
	for _, m := range s.Mounts {
		if m.Kind == KindGrant {
			return m
		}
	}
	for _, m := range s.Mounts {
		if m.Kind == KindOutputs {
			return m
		}
	}
	if len(s.Mounts) > 0 {
		return s.Mounts[0]
	}
	return nil
}

// Virtual is the mount's folder as the agent sees it: /sessions/<id>/mnt/<name>.
func (m *Mount) Virtual() string { return m.virtual }

// Resolve maps a path the agent gave to a mount and a clean path inside it. Relative paths
// resolve against Default(); absolute ones must lie under /sessions/<id>/mnt/<name>. A path
// that climbs out of its mount with "..", names no granted folder, or holds a NUL byte is
// refused with an *Error listing the granted folders. Resolve is lexical: symlinks are dealt
// with by EvalSymlinks and, whatever happens, by the mount's os.Root.
func (s *Session) Resolve(p string) (Path, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return Path{}, &Error{Path: p, Msg: fmt.Sprintf("path %q contains a NUL byte", p)}
	}
	if !path.IsAbs(p) {
		def := s.Default()
		if def == nil {
			return Path{}, &Error{Path: p, Msg: "no folder is granted in this session"}
		}
		rel := path.Clean(p)
		if rel == ".." || strings.HasPrefix(rel, "../") {
			return Path{}, s.outside(p)
		}
		return Path{Mount: def, Rel: rel}, nil
	}
	clean := path.Clean(p)
	if clean == s.MountRoot() {
		return Path{}, &Error{Path: p, Msg: fmt.Sprintf("path %s holds the granted folders and is not one itself; %s", p, s.granted())}
	}
	rest, ok := strings.CutPrefix(clean, s.MountRoot()+"/")
	if !ok {
		return Path{}, s.outside(p)
	}
	name, rel, _ := strings.Cut(rest, "/")
	m := s.Mount(name)
	if m == nil {
		return Path{}, &Error{Path: p, Msg: fmt.Sprintf("path %s: no folder named %q is granted; %s", p, name, s.granted())}
	}
	if rel == "" {
		rel = "."
	}
	return Path{Mount: m, Rel: rel}, nil
}

func (s *Session) outside(p string) *Error {
	return &Error{Path: p, Msg: fmt.Sprintf("path %s is outside the granted folders; %s", p, s.granted())}
}

// granted lists the mounts for a message the model can act on.
func (s *Session) granted() string {
	var b strings.Builder
	b.WriteString("granted: ")
	for i, m := range s.Mounts {
		if i > 0 {
			b.WriteString(", ")
		}
		mode := "read-write"
		if m.Mode == RO || m.Kind == KindUploads {
			mode = "read-only"
		}
		fmt.Fprintf(&b, "%s (%s)", m.Virtual(), mode)
	}
	if def := s.Default(); def != nil {
		fmt.Fprintf(&b, "; relative paths resolve against %s", def.Virtual())
	}
	return b.String()
}

// errIsNotExist is errors.Is(err, fs.ErrNotExist), kept short.
func errIsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
