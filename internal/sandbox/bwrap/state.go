package bwrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// stateDir is a session's folder under Config.StateDir. Its lock file is held (flock) for the
// session's life, so a later New can tell the folders of sessions whose keepup died and clean
// them up.
type stateDir struct {
	dir  string
	lock *os.File
}

// staleAge is how old an unlocked session folder must be before it is taken for a dead
// session's (younger ones may be being created, before they hold their lock).
var staleAge atomic.Int64 // nanoseconds; 0 means time.Minute

const lockFile = "lock"

// baselineAge is how long a dead keepup's session baseline is kept for the session's reopening.
const baselineAge = 30 * 24 * time.Hour

func newStateDir(base, id string) (*stateDir, error) {
	dir, err := os.MkdirTemp(base, id+"-")
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &stateDir{dir: dir, lock: lock}
	if err := writeStateFiles(dir); err != nil {
		s.remove()
		return nil, err
	}
	return s, nil
}

func (s *stateDir) remove() error {
	err := os.RemoveAll(s.dir)
	_ = unix.Flock(int(s.lock.Fd()), unix.LOCK_UN)
	s.lock.Close()
	if err != nil {
		return fmt.Errorf("remove state folder: %w", err)
	}
	return nil
}

// cleanStale removes the folders and cgroups (in cgroupDirs) of sessions whose keepup is gone
// (their lock is free) and the placeholders no live session holds. Best effort: what cannot be cleaned now is tried again
// next time.
func cleanStale(base string, reg *registry, cgroupDirs []string) {
	defer reg.cleanStale()
	// A dead keepup's session baselines wait for the session to be reopened (newProtectWatch);
	// one not reopened within baselineAge never will be.
	if ents, err := os.ReadDir(filepath.Join(base, baselineDir)); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > baselineAge {
				os.Remove(filepath.Join(base, baselineDir, e.Name()))
			}
		}
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == registryDir || e.Name() == baselineDir {
			continue
		}
		dir := filepath.Join(base, e.Name())
		age := time.Duration(staleAge.Load())
		if age == 0 {
			age = time.Minute
		}
		if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < age {
			continue // may be a session being created right now, before it holds its lock
		}
		lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR, 0)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Never locked: a session that died while being created, or not ours.
				if _, err := os.Stat(filepath.Join(dir, "empty-file")); err == nil {
					os.RemoveAll(dir)
				}
			}
			continue
		}
		if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			lock.Close() // live session
			continue
		}
		// The session's cgroups are named after its folder. What is still in them (a sandbox
		// still dying with its keepup) is killed; a cgroup that cannot be removed keeps the
		// folder, so the next New tries again.
		var errs []error
		for _, parent := range cgroupDirs {
			errs = append(errs, (&cgroup{dir: filepath.Join(parent, "keepup-"+e.Name())}).destroy())
		}
		if errors.Join(errs...) == nil {
			os.RemoveAll(dir)
		}
		_ = unix.Flock(int(lock.Fd()), unix.LOCK_UN)
		lock.Close()
	}
}
