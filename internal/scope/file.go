package scope

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
)

// File operations. Every one goes through the mount's os.Root, so no path, however it was
// built and whatever links are swapped in meanwhile, is opened outside the grant. Checks on
// what a file is are made on the opened descriptor (fstat), not on a separate lookup; where a
// lookup comes first it only avoids opening devices and FIFOs at all.

// testHookBeforeOpen, when set by a test, runs between the type check on a path and its open,
// where a swap would slip in.
var testHookBeforeOpen func(p Path)

// rel is p.Rel in the form os.Root takes.
func (p Path) rel() string {
	if p.Rel == "" {
		return "."
	}
	return p.Rel
}

// Stat returns what p names, following symbolic links inside the mount.
func (p Path) Stat() (fs.FileInfo, error) {
	fi, err := p.Mount.Root.Stat(p.rel())
	return fi, wrapErr(p.Virtual(), "stat", err)
}

// Lstat returns what p names without following a final symbolic link.
func (p Path) Lstat() (fs.FileInfo, error) {
	fi, err := p.Mount.Root.Lstat(p.rel())
	return fi, wrapErr(p.Virtual(), "lstat", err)
}

// Exists reports whether p names anything (a dangling link counts).
func (p Path) Exists() (bool, error) {
	_, err := p.Lstat()
	if errIsNotExist(err) {
		return false, nil
	}
	return err == nil, err
}

// kindOf names a file type for messages.
func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsRegular():
		return "a regular file"
	}
	return "not a regular file"
}

func notRegular(virtual string, m fs.FileMode, what string) *Error {
	return refuse(virtual, fmt.Sprintf("is %s; %s", kindOf(m), what))
}

// Open opens p, a regular file, for reading. Anything else (directory, FIFO, device, socket)
// is refused without blocking: the type is checked before opening, the open is non-blocking,
// and the opened descriptor is checked again with fstat.
func (p Path) Open() (*os.File, fs.FileInfo, error) {
	v := p.Virtual()
	r := p.Mount.Root
	fi, err := r.Stat(p.rel())
	if err != nil {
		return nil, nil, wrapErr(v, "open", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, notRegular(v, fi.Mode(), "only regular files can be read")
	}
	if testHookBeforeOpen != nil {
		testHookBeforeOpen(p)
	}
	f, err := r.OpenFile(p.rel(), os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, nil, wrapErr(v, "open", err)
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, wrapErr(v, "fstat", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, notRegular(v, fi.Mode(), "only regular files can be read")
	}
	return f, fi, nil
}

// ReadFile reads p, a regular file, from byte offset: at most limit bytes (all when limit <= 0)
// and never more than maxBytes (no cap when maxBytes <= 0). size is the file's size; truncated
// reports that the data stops before the end of the file.
func (p Path) ReadFile(offset, limit, maxBytes int64) (data []byte, size int64, truncated bool, err error) {
	if offset < 0 {
		return nil, 0, false, refuse(p.Virtual(), "negative offset")
	}
	f, fi, err := p.Open()
	if err != nil {
		return nil, 0, false, err
	}
	defer f.Close()
	size = fi.Size()
	n := max(size-offset, 0)
	if limit > 0 && limit < n {
		n = limit
	}
	if maxBytes > 0 && maxBytes < n {
		n = maxBytes
	}
	data = make([]byte, n)
	got, err := io.ReadFull(io.NewSectionReader(f, offset, n), data)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, size, false, wrapErr(p.Virtual(), "read", err)
	}
	data = data[:got]
	return data, size, offset+int64(got) < size, nil
}

// ReadDir lists p, a directory, sorted by name. Entries describe what is in the directory
// (a symbolic link is listed as a link, not followed).
func (p Path) ReadDir() ([]fs.DirEntry, error) {
	v := p.Virtual()
	r := p.Mount.Root
	fi, err := r.Stat(p.rel())
	if err != nil {
		return nil, wrapErr(v, "list", err)
	}
	if !fi.IsDir() {
		return nil, notRegular(v, fi.Mode(), "not a directory")
	}
	f, err := r.OpenFile(p.rel(), os.O_RDONLY|openNonblock|openDirectory, 0)
	if err != nil {
		return nil, wrapErr(v, "list", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		return nil, refuse(v, "is not a directory")
	}
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, wrapErr(v, "list", err)
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return ents, nil
}

// Digest returns the hex SHA-256 of p's content and whether p exists. Things that are not
// regular files (directories, links, FIFOs, devices) exist but have no digest ("").
func (p Path) Digest() (string, bool, error) {
	fi, err := p.Mount.Root.Lstat(p.rel())
	if errIsNotExist(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, wrapErr(p.Virtual(), "stat", err)
	}
	if !fi.Mode().IsRegular() {
		return "", true, nil
	}
	f, _, err := p.Open()
	if err != nil {
		return "", true, err
	}
	defer f.Close()
	sum, err := digest(f)
	return sum, true, wrapErr(p.Virtual(), "read", err)
}

func digest(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DigestBytes is the hex SHA-256 of b, as Digest and WriteAtomic report it.
func DigestBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// WriteAtomic replaces p's content with data, or creates p (and missing parent folders). It
// writes a temporary file in the same directory (created with O_EXCL), syncs it and renames it
// over p, so p is never seen half-written and a link swapped in for p is replaced, not written
// through. It refuses read-only mounts, the mount's root, and an existing p that is not a
// regular file or has more than one hard link (writing would break the link to a file that may
// live outside the grant). An existing file keeps its permission bits; a new one gets perm.
// before and after are hex SHA-256 ("" before when p did not exist).
func (p Path) WriteAtomic(data []byte, perm fs.FileMode) (before, after string, created bool, err error) {
	return p.WriteAtomicCheck(data, perm, nil)
}

// WriteAtomicCheck is WriteAtomic with a last check: check is called with p's current digest
// (and whether it exists) right before the write, and the write happens only if it returns nil.
// Callers use it to refuse a write when p changed since they decided on it.
func (p Path) WriteAtomicCheck(data []byte, perm fs.FileMode, check func(before string, exists bool) error) (before, after string, created bool, err error) {
	return p.writeFrom(bytes.NewReader(data), perm, check)
}

func (p Path) writeFrom(src io.Reader, perm fs.FileMode, check func(string, bool) error) (before, after string, created bool, err error) {
	v := p.Virtual()
	if err := p.Writable(); err != nil {
		return "", "", false, err
	}
	if p.IsRoot() {
		return "", "", false, refuse(v, "is the granted folder itself; name a file inside it")
	}
	r := p.Mount.Root
	dir, base := path.Dir(p.Rel), path.Base(p.Rel)
	if dir != "." {
		if err := r.MkdirAll(dir, 0o755); err != nil {
			return "", "", false, wrapErr(v, "create parent folders", err)
		}
	}
	// Everything below is relative to the parent directory, opened once.
	d, err := r.OpenRoot(dir)
	if err != nil {
		return "", "", false, wrapErr(v, "open parent folder", err)
	}
	defer d.Close()

	mode := perm.Perm()
	exists := false
	if fi, err := d.Lstat(base); err == nil {
		if err := writableTarget(v, fi); err != nil {
			return "", "", false, err
		}
		if testHookBeforeOpen != nil {
			testHookBeforeOpen(p)
		}
		f, err := d.OpenFile(base, os.O_RDONLY|openNonblock, 0)
		if err != nil {
			return "", "", false, wrapErr(v, "open", err)
		}
		fi, err = f.Stat()
		if err == nil {
			err = writableTarget(v, fi)
		}
		if err == nil {
			before, err = digest(f)
			err = wrapErr(v, "read", err)
		}
		f.Close()
		if err != nil {
			return "", "", false, err
		}
		exists = true
		mode = fi.Mode().Perm()
	} else if !errIsNotExist(err) {
		return "", "", false, wrapErr(v, "stat", err)
	}
	if check != nil {
		if err := check(before, exists); err != nil {
			return "", "", false, err
		}
	}

	tmp := ".keepup-" + randHex(8) + ".tmp"
	t, err := d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return "", "", false, wrapErr(v, "create temporary file", err)
	}
	ok := false
	defer func() {
		if !ok {
			t.Close()
			d.Remove(tmp)
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(t, h), src); err != nil {
		return "", "", false, wrapErr(v, "write", err)
	}
	if exists {
		// The umask may have narrowed the new file's mode; keep the old file's bits.
		if err := t.Chmod(mode); err != nil {
			return "", "", false, wrapErr(v, "chmod", err)
		}
	}
	if err := t.Sync(); err != nil {
		return "", "", false, wrapErr(v, "sync", err)
	}
	if err := t.Close(); err != nil {
		return "", "", false, wrapErr(v, "close", err)
	}
	if err := d.Rename(tmp, base); err != nil {
		return "", "", false, wrapErr(v, "rename", err)
	}
	ok = true
	if df, err := d.Open("."); err == nil {
		df.Sync() // make the rename durable; best effort (some file systems refuse)
		df.Close()
	}
	return before, hex.EncodeToString(h.Sum(nil)), !exists, nil
}

// writableTarget refuses to replace anything but a regular file with a single link.
func writableTarget(virtual string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return notRegular(virtual, fi.Mode(), "only regular files are written")
	}
	if n := nlink(fi); n > 1 {
		return refuse(virtual, fmt.Sprintf("has %d hard links; writing it would break the link to a file that may be outside the granted folders; refused", n))
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Remove deletes p. A directory needs recursive unless it is empty; recursive removal never
// follows links (a link is removed, not what it points to). The mount's root cannot be removed.
func (p Path) Remove(recursive bool) error {
	v := p.Virtual()
	if err := p.Writable(); err != nil {
		return err
	}
	if p.IsRoot() {
		return refuse(v, "is the granted folder itself; it cannot be deleted")
	}
	r := p.Mount.Root
	fi, err := r.Lstat(p.rel())
	if err != nil {
		return wrapErr(v, "delete", err)
	}
	if fi.IsDir() && recursive {
		return wrapErr(v, "delete", r.RemoveAll(p.rel()))
	}
	err = r.Remove(p.rel())
	if fi.IsDir() && (errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST)) {
		return refuse(v, "is a directory that is not empty; delete it with recursive set to delete everything in it")
	}
	return wrapErr(v, "delete", err)
}

// Move renames from to to. Within one mount it is a rename; across mounts the file or folder is
// copied and then removed (a folder holding links or special files is refused). An existing
// destination is replaced only when overwrite is set and it is a regular file; a directory is
// never replaced. Missing parent folders of to are created. Both mounts must be writable.
func Move(from, to Path, overwrite bool) error {
	fv, tv := from.Virtual(), to.Virtual()
	if err := from.Writable(); err != nil {
		return err
	}
	if err := to.Writable(); err != nil {
		return err
	}
	if from.IsRoot() {
		return refuse(fv, "is the granted folder itself; it cannot be moved")
	}
	if to.IsRoot() {
		return refuse(tv, "is a granted folder itself; name a path inside it")
	}
	same := from.Mount == to.Mount
	if same && (to.Rel == from.Rel || strings.HasPrefix(to.Rel, from.Rel+"/")) {
		return refuse(tv, "is "+fv+" or inside it; a folder cannot be moved into itself")
	}
	sfi, err := from.Mount.Root.Lstat(from.rel())
	if err != nil {
		return wrapErr(fv, "move", err)
	}
	if dfi, err := to.Mount.Root.Lstat(to.rel()); err == nil {
		switch {
		case !overwrite:
			return refuse(tv, "already exists")
		case dfi.IsDir():
			return refuse(tv, "is a directory and is never replaced; name a path inside it")
		case !dfi.Mode().IsRegular():
			return notRegular(tv, dfi.Mode(), "only regular files are replaced")
		case sfi.IsDir():
			return refuse(tv, "is a file; a directory cannot replace it")
		}
	} else if !errIsNotExist(err) {
		return wrapErr(tv, "stat", err)
	}
	if dir := path.Dir(to.Rel); dir != "." {
		if err := to.Mount.Root.MkdirAll(dir, 0o755); err != nil {
			return wrapErr(tv, "create parent folders", err)
		}
	}
	if same {
		return wrapErr(fv, "move to "+tv, from.Mount.Root.Rename(from.rel(), to.rel()))
	}
	switch {
	case sfi.Mode().IsRegular():
		if err := copyFile(from, to, sfi.Mode().Perm(), overwrite); err != nil {
			return err
		}
	case sfi.IsDir():
		if err := copyTree(from, to); err != nil {
			to.Mount.Root.RemoveAll(to.rel()) // it did not exist before
			return err
		}
	default:
		return notRegular(fv, sfi.Mode(), "only files and folders move between granted folders")
	}
	return wrapErr(fv, "remove after copying to "+tv, from.Mount.Root.RemoveAll(from.rel()))
}

func copyFile(from, to Path, perm fs.FileMode, overwrite bool) error {
	f, _, err := from.Open()
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, _, err = to.writeFrom(f, perm, func(_ string, exists bool) error {
		if exists && !overwrite {
			return refuse(to.Virtual(), "already exists")
		}
		return nil
	})
	return err
}

// copyTree copies the folder from to to, which must not exist. It checks the whole tree first so
// that nothing is copied when something cannot be.
func copyTree(from, to Path) error {
	var dirs, files []string
	err := from.Walk(func(p Path, d fs.DirEntry) error {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.Rel, from.Rel), "/")
		switch {
		case d.IsDir():
			dirs = append(dirs, rel)
		case d.Type().IsRegular():
			files = append(files, rel)
		default:
			return notRegular(p.Virtual(), d.Type(), "only files and folders move between granted folders")
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Walk skips links; refuse them here rather than lose them.
	if link, err := findLink(from); err != nil {
		return err
	} else if link != "" {
		return refuse(link, "is a symbolic link; folders holding links do not move between granted folders")
	}
	for _, d := range dirs {
		if err := to.Mount.Root.MkdirAll(to.Join(d).rel(), 0o755); err != nil {
			return wrapErr(to.Join(d).Virtual(), "mkdir", err)
		}
	}
	for _, f := range files {
		src := from.Join(f)
		fi, err := src.Lstat()
		if err != nil {
			return err
		}
		if err := copyFile(src, to.Join(f), fi.Mode().Perm(), false); err != nil {
			return err
		}
	}
	return nil
}

// findLink returns the virtual path of the first symbolic link under p, or "".
func findLink(p Path) (string, error) {
	ents, err := p.ReadDir()
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		c := p.Join(e.Name())
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			return c.Virtual(), nil
		case e.IsDir():
			if l, err := findLink(c); err != nil || l != "" {
				return l, err
			}
		}
	}
	return "", nil
}

// maxDepth bounds Walk's recursion.
const maxDepth = 256

// Walk calls fn for p and, if p is a directory, for everything under it in lexical order. It
// never follows a symbolic link: links below p are skipped (not reported), so nothing outside
// the folder is ever visited. fn may return fs.SkipDir (for a directory: do not descend; for a
// file: skip the rest of its directory) or fs.SkipAll. Unreadable directories are skipped.
func (p Path) Walk(fn func(p Path, d fs.DirEntry) error) error {
	fi, err := p.Stat()
	if err != nil {
		return err
	}
	err = fn(p, fs.FileInfoToDirEntry(fi))
	if err == nil && fi.IsDir() {
		err = p.walk(fn, 0)
	}
	if err == fs.SkipDir || err == fs.SkipAll {
		return nil
	}
	return err
}

func (p Path) walk(fn func(Path, fs.DirEntry) error, depth int) error {
	if depth >= maxDepth {
		return nil
	}
	ents, err := p.ReadDir()
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		c := p.Join(e.Name())
		err := fn(c, e)
		if err == fs.SkipDir {
			if e.IsDir() {
				continue
			}
			return nil
		}
		if err != nil {
			return err
		}
		if e.IsDir() {
			if err := c.walk(fn, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
