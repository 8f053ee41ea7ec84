package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestHome(t *testing.T) {
	wd, _ := os.Getwd()
	tests := []struct {
		env     map[string]string
		want    string
		wantErr bool
	}{
		{map[string]string{"KEEPUP_HOME": "/srv/kh", "XDG_DATA_HOME": "/x", "HOME": "/home/u"}, "/srv/kh", false},
		{map[string]string{"KEEPUP_HOME": "rel/kh"}, filepath.Join(wd, "rel/kh"), false},
		{map[string]string{"XDG_DATA_HOME": "/x/data", "HOME": "/home/u"}, "/x/data/keepup", false},
		{map[string]string{"XDG_DATA_HOME": "relative", "HOME": "/home/u"}, "/home/u/.local/share/keepup", false},
		{map[string]string{"HOME": "/home/u"}, "/home/u/.local/share/keepup", false},
		{map[string]string{}, "", true},
	}
	for _, tt := range tests {
		got, err := Home(envOf(tt.env))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Home(%v) = %q, %v; want %q (error %v)", tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestEnsureHome(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "keepup")
	if err := EnsureHome(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("stat %s: %v %v", dir, fi.Mode(), err)
	}
	if err := EnsureHome(dir); err != nil {
		t.Fatalf("second EnsureHome: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("EnsureHome left %v behind", entries)
	}

	// Unwritable even for root: a path under a regular file.
	file := filepath.Join(t.TempDir(), "file")
	write(t, file, "x")
	bad := filepath.Join(file, "sub")
	err = EnsureHome(bad)
	if err == nil || !strings.HasPrefix(err.Error(), "KEEPUP_HOME "+bad+" is not writable: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("EnsureHome(%s) = %v", bad, err)
	}
	// KEEPUP_HOME itself a regular file.
	err = EnsureHome(file)
	if err == nil || !strings.HasPrefix(err.Error(), "KEEPUP_HOME "+file+" is not writable: ") {
		t.Errorf("EnsureHome(%s) = %v", file, err)
	}
}
