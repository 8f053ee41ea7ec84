package scope

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// testBundle is a session over real temporary folders: a read-write grant "a" (the default),
// a read-only grant "ro", outputs, uploads (one file, up.txt), and a folder outside every grant
// holding secret.txt.
type testBundle struct {
	s       *Session
	a, ro   string // host paths of the grants
	outputs string
	outside string // host folder outside the grants
	secret  string // host path of outside/secret.txt
	home    string
}

const secretContent = "outside secret\n"

func setup(t *testing.T) *testBundle {
	t.Helper()
	dir := t.TempDir()
	b := &testBundle{
		a:       filepath.Join(dir, "a"),
		ro:      filepath.Join(dir, "ro"),
		outputs: filepath.Join(dir, "home", "outputs", "s1"),
		outside: filepath.Join(dir, "outside"),
		home:    filepath.Join(dir, "home"),
	}
	b.secret = filepath.Join(b.outside, "secret.txt")
	for _, d := range []string{b.a, b.ro, b.outside, filepath.Join(b.a, "sub"), filepath.Join(b.ro, "docs")} {
		mustMkdir(t, d)
	}
	mustWrite(t, b.secret, secretContent)
	mustWrite(t, filepath.Join(b.a, "notes.txt"), "hello\n")
	mustWrite(t, filepath.Join(b.a, "sub", "deep.txt"), "deep\n")
	mustWrite(t, filepath.Join(b.ro, "docs", "r.txt"), "read only\n")
	up := filepath.Join(dir, "up.txt")
	mustWrite(t, up, "uploaded\n")
	s, err := Open(Config{
		ID:         "brave-loving-maxwell",
		Grants:     []Grant{{Name: "a", Path: b.a, Mode: RW}, {Name: "ro", Path: b.ro, Mode: RO}},
		Outputs:    b.outputs,
		Uploads:    []string{up},
		UploadsDir: filepath.Join(dir, "home", "uploads", "s1"),
		Home:       b.home,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b.s = s
	return b
}

func mustMkdir(t *testing.T, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustResolve(t *testing.T, s *Session, p string) Path {
	t.Helper()
	r, err := s.Resolve(p)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", p, err)
	}
	return r
}

// assertSecretIntact fails if the file outside the grants changed or gained neighbours.
func (b *testBundle) assertOutsideIntact(t *testing.T) {
	t.Helper()
	if got := mustRead(t, b.secret); got != secretContent {
		t.Fatalf("outside file changed: %q", got)
	}
	ents, err := os.ReadDir(b.outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("outside folder gained entries: %v", names)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.s
	var got []string
	for _, m := range s.Mounts {
		got = append(got, string(m.Kind)+":"+m.Name+":"+string(m.Mode)+":"+m.Virtual())
	}
	want := []string{
		"grant:a:rw:/sessions/brave-loving-maxwell/mnt/a",
		"grant:ro:ro:/sessions/brave-loving-maxwell/mnt/ro",
		"outputs:outputs:rw:/sessions/brave-loving-maxwell/mnt/outputs",
		"uploads:uploads:ro:/sessions/brave-loving-maxwell/mnt/uploads",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("mounts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fi, err := os.Stat(b.outputs); err != nil || !fi.IsDir() {
		t.Fatalf("outputs folder not created: %v", err)
	}
	data, _, _, err := mustResolve(t, s, "/sessions/brave-loving-maxwell/mnt/uploads/up.txt").ReadFile(0, 0, 0)
	if err != nil || string(data) != "uploaded\n" {
		t.Fatalf("upload: %q, %v", data, err)
	}
	if s.Default().Name != "a" {
		t.Errorf("Default() = %s, want a", s.Default().Name)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenNoGrants(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(Config{Outputs: filepath.Join(dir, "out")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !regexp.MustCompile(`^[a-z]+-[a-z]+-[a-z]+$`).MatchString(s.ID) {
		t.Errorf("generated id %q", s.ID)
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Kind != KindOutputs {
		t.Fatalf("mounts: %+v", s.Mounts)
	}
	p := mustResolve(t, s, "report.md")
	if p.Mount.Kind != KindOutputs || p.Virtual() != s.MountRoot()+"/outputs/report.md" {
		t.Errorf("relative path resolved to %s", p.Virtual())
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	folder := filepath.Join(dir, "folder")
	other := filepath.Join(dir, "other", "folder")
	file := filepath.Join(dir, "file.txt")
	upload := filepath.Join(dir, "up.txt")
	upload2 := filepath.Join(dir, "other", "up.txt")
	for _, d := range []string{home, folder, other, filepath.Join(home, "audit")} {
		mustMkdir(t, d)
	}
	mustWrite(t, file, "x")
	mustWrite(t, upload, "x")
	mustWrite(t, upload2, "x")
	homeLink := filepath.Join(dir, "homelink")
	if err := os.Symlink(home, homeLink); err != nil {
		t.Fatal(err)
	}
	parentLink := filepath.Join(dir, "rootlink")
	if err := os.Symlink("/", parentLink); err != nil {
		t.Fatal(err)
	}
	grant := func(name, p string) Grant { return Grant{Name: name, Path: p, Mode: RW} }

	tests := []struct {
		name    string
		grants  []Grant
		uploads []string
		wantErr string
	}{
		{"missing", []Grant{grant("m", filepath.Join(dir, "nope"))}, nil, "grant m (" + filepath.Join(dir, "nope") + "): no such file or directory"},
		{"not a directory", []Grant{grant("f", file)}, nil, "grant f (" + file + "): not a directory"},
		{"root", []Grant{grant("r", "/")}, nil, "grant r (/): the whole file system cannot be granted"},
		{"root via symlink", []Grant{grant("r", parentLink)}, nil, "the whole file system cannot be granted"},
		{"home", []Grant{grant("h", home)}, nil, "grant h (" + home + "): it overlaps KEEPUP_HOME"},
		{"parent of home", []Grant{grant("p", dir)}, nil, "grant p (" + dir + "): it overlaps KEEPUP_HOME"},
		{"inside home", []Grant{grant("au", filepath.Join(home, "audit"))}, nil, "overlaps KEEPUP_HOME"},
		{"home via symlink", []Grant{grant("h", homeLink)}, nil, "grant h (" + homeLink + "): it overlaps KEEPUP_HOME"},
		{"duplicate name", []Grant{grant("folder", folder), grant("folder", other)}, nil, "grant folder (" + other + "): name already used by the grant of " + folder},
		{"duplicate name, other case", []Grant{grant("Folder", folder), grant("folder", other)}, nil, "name already used"},
		{"reserved outputs", []Grant{grant("outputs", folder)}, nil, `grant outputs (` + folder + `): the name "outputs" is reserved`},
		{"reserved uploads", []Grant{grant("Uploads", folder)}, nil, `the name "Uploads" is reserved`},
		{"bad name", []Grant{grant("a/b", folder)}, nil, `name "a/b" is not valid`},
		{"bad mode", []Grant{{Name: "f", Path: folder, Mode: "rx"}}, nil, `mode "rx" is not ro or rw`},
		{"relative path", []Grant{grant("f", "folder")}, nil, "path is not absolute"},
		{"missing upload", nil, []string{filepath.Join(dir, "nope.txt")}, "upload " + filepath.Join(dir, "nope.txt") + ": no such file or directory"},
		{"upload is a folder", nil, []string{folder}, "upload " + folder + ": not a regular file"},
		{"uploads with one name", nil, []string{upload, upload2}, `upload ` + upload2 + `: another upload (` + upload + `) has the same name "up.txt"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "outputs")
			up := filepath.Join(t.TempDir(), "uploads")
			s, err := Open(Config{Grants: tt.grants, Outputs: out, Uploads: tt.uploads, UploadsDir: up, Home: home})
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error = %q, want one line containing %q", err, tt.wantErr)
			}
			for _, d := range []string{out, up} {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s was created by a refused Open", d)
				}
			}
		})
	}
}

func TestOpenRefusesConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Open(Config{}); err == nil || !strings.Contains(err.Error(), "no outputs folder") {
		t.Errorf("no outputs: %v", err)
	}
	if _, err := Open(Config{ID: "../x", Outputs: dir}); err == nil || !strings.Contains(err.Error(), "session id") {
		t.Errorf("bad id: %v", err)
	}
	mustWrite(t, filepath.Join(dir, "up"), "x")
	if _, err := Open(Config{Outputs: dir, Uploads: []string{filepath.Join(dir, "up")}}); err == nil || !strings.Contains(err.Error(), "no uploads folder") {
		t.Errorf("uploads without folder: %v", err)
	}
	if _, err := Open(Config{Outputs: filepath.Join(dir, "up")}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("outputs is a file: %v", err)
	}
	// A grant overlapping the session's own folders.
	if _, err := Open(Config{Grants: []Grant{{Name: "d", Path: dir, Mode: RW}}, Outputs: filepath.Join(dir, "out")}); err == nil || !strings.Contains(err.Error(), "overlaps the outputs folder") {
		t.Errorf("grant containing outputs: %v", err)
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^([a-z]+)-([a-z]+)-([a-z]+)$`)
	seen := map[string]bool{}
	for range 200 {
		id := NewID()
		m := re.FindStringSubmatch(id)
		if m == nil || !ValidName(id) {
			t.Fatalf("NewID() = %q", id)
		}
		if m[1] == m[2] {
			t.Fatalf("NewID() = %q repeats an adjective", id)
		}
		seen[id] = true
	}
	if len(seen) < 190 {
		t.Errorf("only %d distinct ids in 200", len(seen))
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	s := setup(t).s
	root := s.MountRoot()
	if root != "/sessions/brave-loving-maxwell/mnt" {
		t.Fatalf("MountRoot() = %q", root)
	}
	tests := []struct {
		in      string
		mount   string
		rel     string
		wantErr string
	}{
		{in: "notes.txt", mount: "a", rel: "notes.txt"},
		{in: "", mount: "a", rel: "."},
		{in: ".", mount: "a", rel: "."},
		{in: "./sub//deep.txt", mount: "a", rel: "sub/deep.txt"},
		{in: "sub/../notes.txt", mount: "a", rel: "notes.txt"},
		{in: "sub/", mount: "a", rel: "sub"},
		{in: "..foo", mount: "a", rel: "..foo"},
		{in: root + "/a", mount: "a", rel: "."},
		{in: root + "/a/", mount: "a", rel: "."},
		{in: root + "/ro/docs/r.txt", mount: "ro", rel: "docs/r.txt"},
		{in: root + "/outputs/report.md", mount: "outputs", rel: "report.md"},
		{in: root + "/uploads/up.txt", mount: "uploads", rel: "up.txt"},
		{in: root + "/a/../ro/x", mount: "ro", rel: "x"},
		{in: root + "//a/./x/", mount: "a", rel: "x"},
		{in: "..", wantErr: "path .. is outside the granted folders; granted: " + root + "/a (read-write), " + root + "/ro (read-only), " + root + "/outputs (read-write), " + root + "/uploads (read-only); relative paths resolve against " + root + "/a"},
		{in: "../a/notes.txt", wantErr: "is outside the granted folders"},
		{in: "sub/../../x", wantErr: "is outside the granted folders"},
		{in: "/etc/passwd", wantErr: "path /etc/passwd is outside the granted folders"},
		{in: "/sessions/other-id/mnt/a/x", wantErr: "is outside the granted folders"},
		{in: root, wantErr: "holds the granted folders and is not one itself"},
		{in: root + "/", wantErr: "holds the granted folders"},
		{in: root + "/a/../..", wantErr: "is outside the granted folders"},
		{in: root + "/a/../../../../etc", wantErr: "is outside the granted folders"},
		{in: root + "/nope/x", wantErr: `no folder named "nope" is granted`},
		{in: root + "/A/x", wantErr: `no folder named "A" is granted`},
		{in: "a\x00b", wantErr: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := s.Resolve(tt.in)
			if tt.wantErr != "" {
				var se *Error
				if err == nil || !errors.As(err, &se) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve(%q) = %v, %v; want *Error containing %q", tt.in, p, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.in, err)
			}
			if p.Mount.Name != tt.mount || p.Rel != tt.rel {
				t.Fatalf("Resolve(%q) = %s:%s, want %s:%s", tt.in, p.Mount.Name, p.Rel, tt.mount, tt.rel)
			}
			want := root + "/" + tt.mount
			if tt.rel != "." {
				want += "/" + tt.rel
			}
			if p.Virtual() != want {
				t.Errorf("Virtual() = %s, want %s", p.Virtual(), want)
			}
		})
	}
}

func FuzzResolve(f *testing.F) {
	for _, seed := range []string{
		"", ".", "..", "../..", "notes.txt", "a/../../b", "./x/./y/", "//x", "/",
		"/sessions/brave-loving-maxwell/mnt", "/sessions/brave-loving-maxwell/mnt/a/../../x",
		"/sessions/brave-loving-maxwell/mnt/a/b/../../../..", "/sessions/brave-loving-maxwell/mnt/ro/x",
		"/sessions/brave-loving-maxwell/mnt/outputs/..", "..\\..\\x", "a\x00b", "a/./../..b", "...", "x/..",
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	a := filepath.Join(dir, "a")
	ro := filepath.Join(dir, "ro")
	for _, d := range []string{a, ro} {
		if err := os.Mkdir(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	s, err := Open(Config{ID: "brave-loving-maxwell", Grants: []Grant{{Name: "a", Path: a, Mode: RW}, {Name: "ro", Path: ro, Mode: RO}}, Outputs: filepath.Join(dir, "out")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, in string) {
		p, err := s.Resolve(in)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("Resolve(%q) error %T is not *Error", in, err)
			}
			return
		}
		if p.Mount == nil {
			t.Fatalf("Resolve(%q): no mount", in)
		}
		if p.Rel != path.Clean(p.Rel) {
			t.Fatalf("Resolve(%q).Rel = %q is not clean", in, p.Rel)
		}
		if p.Rel == ".." || strings.HasPrefix(p.Rel, "../") || path.IsAbs(p.Rel) {
			t.Fatalf("Resolve(%q).Rel = %q leaves the mount", in, p.Rel)
		}
		v := p.Virtual()
		if !strings.HasPrefix(v, s.MountRoot()+"/") || path.Clean(v) != v {
			t.Fatalf("Resolve(%q).Virtual() = %q is not under %s", in, v, s.MountRoot())
		}
		if q, err := s.Resolve(v); err != nil || q != p {
			t.Fatalf("Resolve(Virtual()) = %v, %v; want %v", q, err, p)
		}
	})
}
