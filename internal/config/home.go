package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Home returns KEEPUP_HOME: $KEEPUP_HOME if set, else $XDG_DATA_HOME/keepup (an XDG path
// that is not absolute is ignored, as the XDG spec says), else $HOME/.local/share/keepup.
// env is os.Getenv or a stand-in. A relative KEEPUP_HOME is made absolute.
func Home(env func(string) string) (string, error) {
	if h := env("KEEPUP_HOME"); h != "" {
		abs, err := filepath.Abs(h)
		if err != nil {
			return "", fmt.Errorf("KEEPUP_HOME %s: %v", h, err)
		}
		return abs, nil
	}
	if x := env("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "keepup"), nil
	}
	if h := env("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "share", "keepup"), nil
	}
	return "", errors.New("cannot place KEEPUP_HOME: none of KEEPUP_HOME, XDG_DATA_HOME or HOME is set to an absolute path")
}

// EnsureHome creates dir (mode 0700, parents included) if it does not exist and checks that
// keepup can write in it. An existing directory's mode is left alone.
func EnsureHome(dir string) error {
	fail := func(err error) error { return fmt.Errorf("KEEPUP_HOME %s is not writable: %v", dir, err) }
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fail(err)
	}
	if !fi.IsDir() {
		return fail(errors.New("not a directory"))
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fail(err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("ok"))
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fail(err)
	}
	return nil
}
