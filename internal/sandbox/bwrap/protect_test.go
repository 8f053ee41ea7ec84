package bwrap

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPlanGuards(t *testing.T) {
	t.Parallel()
	protect := []string{".git/hooks/", ".git/config", ".bashrc", ".claude/"}
	for _, tc := range []struct {
		name  string
		files []string // created before planning; a trailing "/" makes a folder
		want  []string // guards as "kind rel"
	}{
		{
			name: "empty grant: placeholders at the first missing component",
			want: []string{"placeholder-dir .git", "placeholder-file .bashrc", "placeholder-dir .claude"},
		},
		{
			name:  "repository without hooks",
			files: []string{".git/config", ".git/HEAD"},
			want:  []string{"placeholder-file .bashrc", "placeholder-dir .claude", "pin .git", "placeholder-dir .git/hooks", "ro .git/config"},
		},
		{
			name:  "everything exists",
			files: []string{".git/hooks/pre-commit", ".git/config", ".bashrc", ".claude/settings.json"},
			want:  []string{"ro .bashrc", "ro .claude", "pin .git", "ro .git/hooks", "ro .git/config"},
		},
		{
			name:  "nested repository is a project root",
			files: []string{".bashrc", ".claude/", ".git/hooks/", ".git/config", "a/b/.git/config", "a/plain/x"},
			want: []string{"ro .bashrc", "ro .claude", "pin .git", "pin a", "ro .git/hooks", "ro .git/config",
				"pin a/b", "pin a/b/.git", "placeholder-file a/b/.bashrc", "placeholder-dir a/b/.claude",
				"placeholder-dir a/b/.git/hooks", "ro a/b/.git/config"},
		},
		{
			name:  "a worktree's .git file is guarded whole",
			files: []string{".git", ".bashrc", ".claude/"},
			want:  []string{"ro .git", "ro .bashrc", "ro .claude"},
		},
		{
			name:  "hard-linked files are read-only, without pins",
			files: []string{".bashrc", ".claude/", ".git/hooks/", ".git/config", "a/b/linked", "a/b/plain", "link:a/b/linked=a/other"},
			want:  []string{"ro .bashrc", "ro .claude", "pin .git", "ro .git/hooks", "ro .git/config", "ro a/b/linked", "ro a/other"},
		},
		{
			name:  "a nested repository deep down",
			files: []string{".bashrc", ".claude/", ".git/hooks/", ".git/config", "1/2/3/4/.git/config"},
			want: []string{"pin .git", "pin 1", "pin 1/2", "pin 1/2/3", "pin 1/2/3/4", "pin 1/2/3/4/.git", "placeholder-dir 1/2/3/4/.claude",
				"placeholder-dir 1/2/3/4/.git/hooks", "placeholder-file 1/2/3/4/.bashrc", "ro .bashrc", "ro .claude", "ro .git/config", "ro .git/hooks", "ro 1/2/3/4/.git/config"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			makeTree(t, root, tc.files...)
			pl, err := planGuards(t.Context(), root, protect)
			if err != nil {
				t.Fatal(err)
			}
			defer pl.close()
			var got []string
			for _, g := range pl.guards {
				kind := map[guardKind]string{guardPin: "pin", guardRO: "ro", guardPlaceholder: "placeholder"}[g.kind]
				if g.kind == guardPlaceholder {
					kind += map[bool]string{true: "-dir", false: "-file"}[g.dir]
				}
				got = append(got, kind+" "+g.rel)
			}
			// Mount order: a guard never precedes one of its parent folder.
			for i := 1; i < len(pl.guards); i++ {
				if strings.Count(pl.guards[i].rel, "/") < strings.Count(pl.guards[i-1].rel, "/") {
					t.Errorf("guard %q after the deeper %q", pl.guards[i].rel, pl.guards[i-1].rel)
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("guards\n got %q\nwant %q", got, want)
			}
			for _, p := range pl.created {
				if p.Root != root {
					t.Errorf("placeholder outside the mount: %+v", p)
				}
			}
		})
	}
}

func TestPlanGuardsRefusesSymlinks(t *testing.T) {
	t.Parallel()
	for _, link := range []string{".bashrc", ".git", "sub/.claude"} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "sub"), 0o755)
		os.WriteFile(filepath.Join(root, "sub", ".bashrc"), nil, 0o644)
		if err := os.Symlink("/etc", filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
		if _, err := planGuards(t.Context(), root, []string{".git/hooks/", ".bashrc", ".claude/"}); !errors.Is(err, ErrSymlinkProtected) {
			t.Errorf("symlink %s: %v", link, err)
		}
	}
}

func TestPlanGuardsRejectsEscapes(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"../x", "/etc/passwd", "", "a/../../x", "."} {
		if _, err := planGuards(t.Context(), t.TempDir(), []string{p}); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestRemovePlaceholders(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mk := func(rel string, dir bool, content string) {
		p := filepath.Join(root, rel)
		if dir {
			os.MkdirAll(p, 0o755)
		} else {
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(content), 0o644)
		}
	}
	mk("empty-dir", true, "")
	mk("full-dir/x", false, "x")
	mk("empty-file", false, "")
	mk("full-file", false, "data")
	mk("outside/victim", false, "")
	os.Symlink(filepath.Join(root, "outside"), filepath.Join(root, "link"))
	var ps []placeholder
	for _, rel := range []string{"empty-dir", "full-dir", "empty-file", "full-file", "link/victim", "missing"} {
		ps = append(ps, placeholder{Root: root, Rel: rel})
	}
	if err := removePlaceholders(ps); err != nil {
		t.Fatal(err)
	}
	for rel, exists := range map[string]bool{"empty-dir": false, "empty-file": false, "full-dir/x": true, "full-file": true, "outside/victim": true} {
		if _, err := os.Lstat(filepath.Join(root, rel)); (err == nil) != exists {
			t.Errorf("%s: exists=%v, want %v", rel, err == nil, exists)
		}
	}
}

// TestPlanGuardsRefusesWhatItCannotWalk: a mount too deep or too large to walk is refused, not
// half guarded.
func TestPlanGuardsRefusesWhatItCannotWalk(t *testing.T) {
	t.Parallel()
	deep := t.TempDir()
	p := deep
	for i := 0; i < walkDepth+1; i++ {
		p = filepath.Join(p, "d")
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := planGuards(t.Context(), deep, []string{".bashrc"}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("deep tree: %v, want ErrTooLarge", err)
	}
	shallow := t.TempDir()
	os.MkdirAll(filepath.Join(shallow, "d"), 0o755)
	pl, err := planGuards(t.Context(), shallow, []string{".bashrc"})
	if err != nil {
		t.Fatalf("small tree: %v", err)
	}
	pl.close()
}
