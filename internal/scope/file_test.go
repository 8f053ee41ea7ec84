package scope

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mustWrite(t, filepath.Join(b.a, "digits.txt"), "0123456789")
	p := mustResolve(t, b.s, "digits.txt")
	tests := []struct {
		offset, limit, max int64
		want               string
		truncated          bool
	}{
		{0, 0, 0, "0123456789", false},
		{0, 4, 0, "0123", true},
		{2, 3, 0, "234", true},
		{0, 0, 5, "01234", true},
		{8, 0, 5, "89", false},
		{0, 8, 5, "01234", true},
		{10, 0, 0, "", false},
		{20, 0, 0, "", false},
	}
	for _, tt := range tests {
		data, size, truncated, err := p.ReadFile(tt.offset, tt.limit, tt.max)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != tt.want || size != 10 || truncated != tt.truncated {
			t.Errorf("ReadFile(%d, %d, %d) = %q, %d, %v; want %q, 10, %v", tt.offset, tt.limit, tt.max, data, size, truncated, tt.want, tt.truncated)
		}
	}
	if _, _, _, err := p.ReadFile(-1, 0, 0); err == nil {
		t.Error("negative offset accepted")
	}
	_, _, _, err := mustResolve(t, b.s, "sub").ReadFile(0, 0, 0)
	assertRefused(t, err, "is a directory")
	_, _, _, err = mustResolve(t, b.s, "missing.txt").ReadFile(0, 0, 0)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/sessions/brave-loving-maxwell/mnt/a/missing.txt: open: no such file or directory") {
		t.Errorf("missing file: %v", err)
	}
	if strings.Contains(err.Error(), b.a) {
		t.Errorf("error leaks the host path: %v", err)
	}
}

func TestReadDirAndWalk(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mustMkdir(t, filepath.Join(b.a, "sub", "inner"))
	mustWrite(t, filepath.Join(b.a, "sub", "inner", "x.txt"), "x")
	if err := os.Symlink(b.outside, filepath.Join(b.a, "sub", "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("deep.txt", filepath.Join(b.a, "sub", "alias.txt")); err != nil {
		t.Fatal(err)
	}
	ents, err := mustResolve(t, b.s, "sub").ReadDir()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != "alias.txt,deep.txt,inner,out" {
		t.Errorf("ReadDir = %s", got)
	}
	var walked []string
	err = mustResolve(t, b.s, ".").Walk(func(p Path, d fs.DirEntry) error {
		walked = append(walked, p.Rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(walked, ","); got != ".,notes.txt,sub,sub/deep.txt,sub/inner,sub/inner/x.txt" {
		t.Errorf("Walk visited %s (links must be skipped)", got)
	}
	walked = nil
	mustResolve(t, b.s, ".").Walk(func(p Path, d fs.DirEntry) error {
		walked = append(walked, p.Rel)
		if p.Rel == "sub/inner" {
			return fs.SkipDir
		}
		if p.Rel == "sub/deep.txt" {
			return fs.SkipAll
		}
		return nil
	})
	if got := strings.Join(walked, ","); got != ".,notes.txt,sub,sub/deep.txt" {
		t.Errorf("Walk with SkipAll visited %s", got)
	}
	_, err = mustResolve(t, b.s, "notes.txt").ReadDir()
	assertRefused(t, err, "not a directory")
}

func TestWriteAtomic(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := mustResolve(t, b.s, "new/dir/file.txt")
	before, after, created, err := p.WriteAtomic([]byte("one"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if before != "" || after != DigestBytes([]byte("one")) || !created {
		t.Errorf("create: before=%q after=%q created=%v", before, after, created)
	}
	host := filepath.Join(b.a, "new", "dir", "file.txt")
	if got := mustRead(t, host); got != "one" {
		t.Fatalf("content %q", got)
	}
	if err := os.Chmod(host, 0o640); err != nil {
		t.Fatal(err)
	}
	before, after, created, err = p.WriteAtomic([]byte("two"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if before != DigestBytes([]byte("one")) || after != DigestBytes([]byte("two")) || created {
		t.Errorf("overwrite: before=%q after=%q created=%v", before, after, created)
	}
	if fi, _ := os.Stat(host); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after overwrite = %v, want 0640 kept", fi.Mode().Perm())
	}
	if d, ok, err := p.Digest(); err != nil || !ok || d != after {
		t.Errorf("Digest = %q, %v, %v", d, ok, err)
	}
	if d, ok, err := mustResolve(t, b.s, "nope").Digest(); err != nil || ok || d != "" {
		t.Errorf("Digest(missing) = %q, %v, %v", d, ok, err)
	}
	// The check sees the current digest and can stop the write.
	stale := errors.New("changed")
	_, _, _, err = p.WriteAtomicCheck([]byte("three"), 0o600, func(before string, exists bool) error {
		if before != after || !exists {
			t.Errorf("check got %q, %v", before, exists)
		}
		return stale
	})
	if err != stale || mustRead(t, host) != "two" {
		t.Errorf("check error not honoured: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Dir(host))
	if len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
	_, _, _, err = mustResolve(t, b.s, ".").WriteAtomic([]byte("x"), 0o644)
	assertRefused(t, err, "is the granted folder itself")
	_, _, _, err = mustResolve(t, b.s, "sub").WriteAtomic([]byte("x"), 0o644)
	assertRefused(t, err, "is a directory")
	_, _, _, err = mustResolve(t, b.s, "notes.txt/x").WriteAtomic([]byte("x"), 0o644)
	if err == nil {
		t.Error("write under a file succeeded")
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	b := setup(t)
	assertRefused(t, mustResolve(t, b.s, ".").Remove(true), "is the granted folder itself")
	assertRefused(t, mustResolve(t, b.s, "sub").Remove(false), "not empty; delete it with recursive")
	if err := mustResolve(t, b.s, "notes.txt").Remove(false); err != nil {
		t.Fatal(err)
	}
	mustMkdir(t, filepath.Join(b.a, "empty"))
	if err := mustResolve(t, b.s, "empty").Remove(false); err != nil {
		t.Fatal(err)
	}
	if err := mustResolve(t, b.s, "sub").Remove(true); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(b.a); len(ents) != 0 {
		t.Errorf("left: %v", ents)
	}
	err := mustResolve(t, b.s, "gone").Remove(false)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("remove missing: %v", err)
	}
}

func TestMove(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.s
	out := s.MountRoot() + "/outputs/"
	// Within a mount.
	if err := Move(mustResolve(t, s, "notes.txt"), mustResolve(t, s, "moved/notes.txt"), false); err != nil {
		t.Fatal(err)
	}
	if mustRead(t, filepath.Join(b.a, "moved", "notes.txt")) != "hello\n" {
		t.Fatal("not moved")
	}
	mustWrite(t, filepath.Join(b.a, "other.txt"), "other")
	err := Move(mustResolve(t, s, "other.txt"), mustResolve(t, s, "moved/notes.txt"), false)
	assertRefused(t, err, "already exists")
	if err := Move(mustResolve(t, s, "other.txt"), mustResolve(t, s, "moved/notes.txt"), true); err != nil {
		t.Fatal(err)
	}
	if mustRead(t, filepath.Join(b.a, "moved", "notes.txt")) != "other" {
		t.Fatal("not overwritten")
	}
	assertRefused(t, Move(mustResolve(t, s, "moved"), mustResolve(t, s, "moved/inner"), false), "cannot be moved into itself")
	assertRefused(t, Move(mustResolve(t, s, "moved/notes.txt"), mustResolve(t, s, "sub"), true), "is a directory and is never replaced")
	assertRefused(t, Move(mustResolve(t, s, "sub"), mustResolve(t, s, "moved/notes.txt"), true), "a directory cannot replace it")
	assertRefused(t, Move(mustResolve(t, s, "."), mustResolve(t, s, "x"), false), "cannot be moved")

	// Across mounts: a file, then a folder.
	if err := Move(mustResolve(t, s, "moved/notes.txt"), mustResolve(t, s, out+"n.txt"), false); err != nil {
		t.Fatal(err)
	}
	if mustRead(t, filepath.Join(b.outputs, "n.txt")) != "other" {
		t.Fatal("not copied")
	}
	if _, err := os.Stat(filepath.Join(b.a, "moved", "notes.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("source kept")
	}
	mustMkdir(t, filepath.Join(b.a, "sub", "inner"))
	mustWrite(t, filepath.Join(b.a, "sub", "inner", "x.txt"), "x")
	if err := Move(mustResolve(t, s, "sub"), mustResolve(t, s, out+"tree/sub"), false); err != nil {
		t.Fatal(err)
	}
	if mustRead(t, filepath.Join(b.outputs, "tree", "sub", "inner", "x.txt")) != "x" || mustRead(t, filepath.Join(b.outputs, "tree", "sub", "deep.txt")) != "deep\n" {
		t.Fatal("tree not copied")
	}
	if _, err := os.Stat(filepath.Join(b.a, "sub")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("source tree kept")
	}
	// A folder holding a link is not moved across mounts, and nothing is copied.
	mustMkdir(t, filepath.Join(b.a, "withlink"))
	mustWrite(t, filepath.Join(b.a, "withlink", "f"), "f")
	if err := os.Symlink("f", filepath.Join(b.a, "withlink", "l")); err != nil {
		t.Fatal(err)
	}
	assertRefused(t, Move(mustResolve(t, s, "withlink"), mustResolve(t, s, out+"wl"), false), "is a symbolic link")
	if _, err := os.Stat(filepath.Join(b.outputs, "wl")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("partial copy left behind")
	}
	if _, err := os.Stat(filepath.Join(b.a, "withlink", "f")); err != nil {
		t.Error("source damaged")
	}
}

func TestEvalSymlinks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mustMkdir(t, filepath.Join(b.a, ".git"))
	mustWrite(t, filepath.Join(b.a, ".git", "config"), "[core]\n")
	links := map[string]string{
		"cfg":     ".git/config",
		"gitdir":  ".git",
		"chain":   "cfg",
		"up":      "sub/../notes.txt",
		"abs":     filepath.Join(b.a, "sub", "deep.txt"),
		"dangle":  "sub/not-yet.txt",
		"sub/par": "../notes.txt",
		"outrel":  "../outside/secret.txt",
		"outabs":  b.secret,
		"outdir":  b.outside,
		"loop":    "loop",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(b.a, name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		in, want, wantDir string // wantDir: EvalDir's result
		wantErr           string
	}{
		{in: "notes.txt", want: "notes.txt", wantDir: "notes.txt"},
		{in: "cfg", want: ".git/config", wantDir: "cfg"},
		{in: "gitdir/hooks/pre-commit", want: ".git/hooks/pre-commit", wantDir: ".git/hooks/pre-commit"},
		{in: "chain", want: ".git/config", wantDir: "chain"},
		{in: "up", want: "notes.txt", wantDir: "up"},
		{in: "abs", want: "sub/deep.txt", wantDir: "abs"},
		{in: "dangle", want: "sub/not-yet.txt", wantDir: "dangle"},
		{in: "sub/par", want: "notes.txt", wantDir: "sub/par"},
		{in: "missing/x", want: "missing/x", wantDir: "missing/x"},
		{in: ".", want: ".", wantDir: "."},
		{in: "outrel", wantErr: "leads outside the granted folder"},
		{in: "outabs", wantErr: "is a symbolic link to a file outside the granted folders"},
		{in: "outdir/secret.txt", wantErr: "outside the granted folders"},
		{in: "loop", wantErr: "too many levels of symbolic links"},
	}
	for _, tt := range tests {
		p := mustResolve(t, b.s, tt.in)
		got, err := p.EvalSymlinks()
		if tt.wantErr != "" {
			assertRefused(t, err, tt.wantErr)
			continue
		}
		if err != nil || got.Rel != tt.want || got.Mount != p.Mount {
			t.Errorf("EvalSymlinks(%s) = %q, %v; want %q", tt.in, got.Rel, err, tt.want)
		}
		got, err = p.EvalDir()
		if err != nil || got.Rel != tt.wantDir {
			t.Errorf("EvalDir(%s) = %q, %v; want %q", tt.in, got.Rel, err, tt.wantDir)
		}
	}
	// EvalDir leaves an outside link itself alone (deleting it is fine) but not a link on the way.
	if got, err := mustResolve(t, b.s, "outabs").EvalDir(); err != nil || got.Rel != "outabs" {
		t.Errorf("EvalDir(outabs) = %v, %v", got, err)
	}
	if _, err := mustResolve(t, b.s, "outdir/secret.txt").EvalDir(); err == nil {
		t.Error("EvalDir(outdir/secret.txt) went through a link out")
	}
}

// assertRefused fails unless err is a *Error whose message contains want and no host path.
func assertRefused(t *testing.T, err error, want string) {
	t.Helper()
	var se *Error
	if err == nil || !errors.As(err, &se) {
		t.Fatalf("got %v (%T), want *Error containing %q", err, err, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if strings.Contains(err.Error(), os.TempDir()) {
		t.Fatalf("error %q leaks a host path", err)
	}
}
