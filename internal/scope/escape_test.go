package scope

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every way out of a grant is refused, and the file outside stays as it was.

func TestEscapeDotDot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, in := range []string{"../outside/secret.txt", "sub/../../outside/secret.txt", b.s.MountRoot() + "/a/../../../../" + b.secret} {
		if _, err := b.s.Resolve(in); err == nil {
			t.Errorf("Resolve(%q) accepted", in)
		}
	}
	// A Path built by hand, bypassing Resolve, is still held in by os.Root.
	p := Path{Mount: b.s.Mount("a"), Rel: "../outside/secret.txt"}
	if data, _, _, err := p.ReadFile(0, 0, 0); err == nil || strings.Contains(string(data), "secret") {
		t.Errorf("ReadFile through ..: %q, %v", data, err)
	}
	if _, _, _, err := p.WriteAtomic([]byte("pwned"), 0o644); err == nil {
		t.Error("WriteAtomic through .. succeeded")
	}
	if err := p.Remove(false); err == nil {
		t.Error("Remove through .. succeeded")
	}
	if err := Move(p, mustResolve(t, b.s, "stolen.txt"), false); err == nil {
		t.Error("Move from .. succeeded")
	}
	if err := Move(mustResolve(t, b.s, "notes.txt"), Path{Mount: b.s.Mount("a"), Rel: "../outside/new.txt"}, false); err == nil {
		t.Error("Move to .. succeeded")
	}
	b.assertOutsideIntact(t)
}

func TestEscapeAbsolute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, in := range []string{b.secret, b.outside, "/etc/passwd", "/sessions/brave-loving-maxwell/etc", "/sessions/other/mnt/a/notes.txt"} {
		_, err := b.s.Resolve(in)
		var se *Error
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "path "+in+" is outside the granted folders; granted: /sessions/brave-loving-maxwell/mnt/a (read-write)") {
			t.Errorf("Resolve(%q) = %v", in, err)
		}
	}
	// A host path is never treated as one inside the mount, even if it names the grant itself.
	if _, err := b.s.Resolve(filepath.Join(b.a, "notes.txt")); err == nil {
		t.Error("host path of a granted file accepted")
	}
}

func TestEscapeSymlinkFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, target := range map[string]string{"rel.txt": "../outside/secret.txt", "abs.txt": b.secret} {
		if err := os.Symlink(target, filepath.Join(b.a, name)); err != nil {
			t.Fatal(err)
		}
		p := mustResolve(t, b.s, name)
		_, err := p.EvalSymlinks()
		assertRefused(t, err, "outside the granted folder")
		data, _, _, err := p.ReadFile(0, 0, 0)
		assertRefused(t, err, "")
		if len(data) > 0 {
			t.Errorf("read %q through a link out", data)
		}
		_, err = p.Stat()
		assertRefused(t, err, "")
		_, _, _, err = p.WriteAtomic([]byte("pwned"), 0o644)
		assertRefused(t, err, "is a symbolic link; only regular files are written")
		if d, ok, err := p.Digest(); d != "" || !ok || err != nil {
			t.Errorf("Digest of a link out = %q, %v, %v", d, ok, err)
		}
		err = Move(p, mustResolve(t, b.s, "/sessions/brave-loving-maxwell/mnt/outputs/x"), false)
		assertRefused(t, err, "is a symbolic link")
		// Deleting the link deletes the link, not its target.
		if err := p.Remove(false); err != nil {
			t.Fatal(err)
		}
		b.assertOutsideIntact(t)
	}
}

func TestEscapeSymlinkDir(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := os.Symlink(b.outside, filepath.Join(b.a, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside", filepath.Join(b.a, "sub", "out2")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"out", "sub/out2"} {
		_, err := mustResolve(t, b.s, dir).ReadDir()
		assertRefused(t, err, "leads outside the granted folder")
		p := mustResolve(t, b.s, dir+"/secret.txt")
		data, _, _, err := p.ReadFile(0, 0, 0)
		assertRefused(t, err, "leads outside the granted folder")
		if len(data) > 0 {
			t.Errorf("read %q", data)
		}
		_, _, _, err = mustResolve(t, b.s, dir+"/new.txt").WriteAtomic([]byte("pwned"), 0o644)
		assertRefused(t, err, "leads outside the granted folder")
		_, _, _, err = p.WriteAtomic([]byte("pwned"), 0o644)
		assertRefused(t, err, "leads outside the granted folder")
		assertRefused(t, p.Remove(false), "leads outside the granted folder")
		assertRefused(t, mustResolve(t, b.s, dir+"/x/y").Remove(true), "")
		err = Move(mustResolve(t, b.s, "notes.txt"), mustResolve(t, b.s, dir+"/moved.txt"), false)
		assertRefused(t, err, "")
		err = Move(p, mustResolve(t, b.s, "stolen.txt"), false)
		assertRefused(t, err, "")
	}
	var seen []string
	mustResolve(t, b.s, ".").Walk(func(p Path, d fs.DirEntry) error {
		seen = append(seen, p.Rel)
		return nil
	})
	for _, s := range seen {
		if strings.Contains(s, "secret") || strings.Contains(s, "out") {
			t.Errorf("Walk reported %s", s)
		}
	}
	// Recursive delete of the link removes the link only.
	if err := mustResolve(t, b.s, "out").Remove(true); err != nil {
		t.Fatal(err)
	}
	b.assertOutsideIntact(t)
	if _, err := os.Lstat(filepath.Join(b.a, "out")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("link not removed")
	}
}

// A link swapped in after the path was resolved and checked still cannot lead out.
func TestEscapeSwappedSymlink(t *testing.T) {
	t.Parallel()
	b := setup(t)
	victim := filepath.Join(b.a, "victim.txt")
	mustWrite(t, victim, "mine")
	p := mustResolve(t, b.s, "victim.txt")
	if _, err := p.EvalSymlinks(); err != nil {
		t.Fatal(err)
	}
	swap := func(target, at string) {
		t.Helper()
		if err := os.RemoveAll(at); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, at); err != nil {
			t.Fatal(err)
		}
	}
	swap(b.secret, victim)
	data, _, _, err := p.ReadFile(0, 0, 0)
	assertRefused(t, err, "")
	if len(data) > 0 {
		t.Fatalf("read %q through a swapped link", data)
	}
	_, _, _, err = p.WriteAtomic([]byte("pwned"), 0o644)
	assertRefused(t, err, "is a symbolic link")
	b.assertOutsideIntact(t)

	swap("../outside/secret.txt", victim)
	if _, _, _, err := p.WriteAtomic([]byte("pwned"), 0o644); err == nil {
		t.Fatal("write through a swapped relative link succeeded")
	}
	b.assertOutsideIntact(t)

	// The parent folder swapped for a link out.
	q := mustResolve(t, b.s, "sub/new.txt")
	r := mustResolve(t, b.s, "sub/deep.txt")
	swap(b.outside, filepath.Join(b.a, "sub"))
	_, _, _, err = q.WriteAtomic([]byte("pwned"), 0o644)
	assertRefused(t, err, "leads outside the granted folder")
	_, _, _, err = mustResolve(t, b.s, "sub/secret.txt").WriteAtomic([]byte("pwned"), 0o644)
	assertRefused(t, err, "leads outside the granted folder")
	_, _, _, err = r.ReadFile(0, 0, 0)
	assertRefused(t, err, "")
	data, _, _, err = mustResolve(t, b.s, "sub/secret.txt").ReadFile(0, 0, 0)
	if err == nil || len(data) > 0 {
		t.Fatalf("read %q through a swapped folder", data)
	}
	b.assertOutsideIntact(t)
}

func TestEscapeHardLink(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hl := filepath.Join(b.a, "hl.txt")
	if err := os.Link(b.secret, hl); err != nil {
		t.Skipf("cannot hard link: %v", err)
	}
	p := mustResolve(t, b.s, "hl.txt")
	_, _, _, err := p.WriteAtomic([]byte("pwned"), 0o644)
	assertRefused(t, err, "has 2 hard links")
	err = Move(mustResolve(t, b.s, "notes.txt"), mustResolve(t, b.s, "/sessions/brave-loving-maxwell/mnt/outputs/n.txt"), false)
	if err != nil {
		t.Fatal(err)
	}
	b.assertOutsideIntact(t)
	if got := mustRead(t, hl); got != secretContent {
		t.Fatalf("linked file changed: %q", got)
	}
}

func TestReadOnlyMounts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	root := b.s.MountRoot()
	for _, in := range []string{root + "/ro/docs/r.txt", root + "/ro/new.txt", root + "/uploads/up.txt", root + "/uploads/new.txt"} {
		p := mustResolve(t, b.s, in)
		want := "granted read-only"
		if p.Mount.Kind == KindUploads {
			want = "uploads are read-only; write a copy under " + root + "/outputs instead"
		}
		assertRefused(t, p.Writable(), want)
		_, _, _, err := p.WriteAtomic([]byte("x"), 0o644)
		assertRefused(t, err, want)
		assertRefused(t, p.Remove(true), want)
		assertRefused(t, Move(p, mustResolve(t, b.s, "x"), false), want)
		assertRefused(t, Move(mustResolve(t, b.s, "notes.txt"), p, true), want)
	}
	if mustRead(t, filepath.Join(b.ro, "docs", "r.txt")) != "read only\n" {
		t.Fatal("read-only file changed")
	}
	if err := mustResolve(t, b.s, "notes.txt").Writable(); err != nil {
		t.Fatal(err)
	}
}
