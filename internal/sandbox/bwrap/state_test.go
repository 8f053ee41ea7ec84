package bwrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCleanStale: a session folder whose lock is free is a dead session's however young, and
// goes; a live one (locked) stays; a folder still being created (newPrefix) stays while young,
// locked or not, and goes once old and unlocked.
func TestCleanStale(t *testing.T) {
	base := t.TempDir()
	reg := &registry{dir: filepath.Join(base, registryDir)}
	live, err := newStateDir(base, "live")
	if err != nil {
		t.Fatal(err)
	}
	defer live.remove()
	if name := filepath.Base(live.dir); !strings.HasPrefix(name, "live-") {
		t.Fatalf("session folder %q, want live-DIGITS", name)
	}
	dead, err := newStateDir(base, "dead")
	if err != nil {
		t.Fatal(err)
	}
	unlock(dead.lock) // as when its keepup died
	// Being created: young ones, without and with their lock file (not locked: their keepup
	// is about to), and old ones left by keepups that died before the rename.
	mk := func(name string, lock bool, age time.Duration) {
		dir := filepath.Join(base, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if lock {
			f, err := os.Create(filepath.Join(dir, lockFile))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
		}
		if age > 0 {
			then := time.Now().Add(-age)
			if err := os.Chtimes(dir, then, then); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk(newPrefix+"young-1", false, 0)
	mk(newPrefix+"young-2", true, 0)
	mk(newPrefix+"old-3", true, 2*time.Minute)
	mk(newPrefix+"older-4", false, 2*time.Minute)

	cleanStale(base, reg, nil)
	for name, want := range map[string]bool{
		filepath.Base(live.dir): true, filepath.Base(dead.dir): false,
		newPrefix + "young-1": true, newPrefix + "young-2": true,
		newPrefix + "old-3": false, newPrefix + "older-4": false,
	} {
		if _, err := os.Stat(filepath.Join(base, name)); (err == nil) != want {
			t.Errorf("%s: kept %v, want %v", name, err == nil, want)
		}
	}
}
