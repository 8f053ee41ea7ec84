package bwrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// staleAge is how old a session folder still being created (newPrefix), or one without a lock
// file, must be before it is taken for a dead session's.
var staleAge atomic.Int64 // nanoseconds; 0 means time.Minute

const lockFile = "lock"

// newPrefix starts the name of a session folder until it holds its lock: a folder without it
// whose lock is free is a dead session's, however young.
const newPrefix = ".new-"

// baselineAge is how long a dead keepup's session baseline is kept for the session's reopening.
const baselineAge = 30 * 24 * time.Hour

// newStateDir makes a session's folder, named after the session (id, '-', decimal digits), and
// locks it. It is made under a name with newPrefix, and renamed once locked, so that a New
// never takes a live session's folder for a dead one's.
func newStateDir(base, id string) (*stateDir, error) {
	tmp, err := os.MkdirTemp(base, newPrefix+id+"-")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(base, strings.TrimPrefix(filepath.Base(tmp), newPrefix))
	lock, err := os.OpenFile(filepath.Join(tmp, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			// Without replacing anything: a folder of that name (another session's) is kept.
			err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE)
		}
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
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
		old := false
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) >= age {
			old = true
		}
		creating := strings.HasPrefix(e.Name(), newPrefix)
		if creating && !old {
			continue // may be a session being created right now, before it holds its lock
		}
		lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR, 0)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && old {
				// Never locked: a session that died while being created, or not ours.
				if _, err := os.Stat(filepath.Join(dir, "empty-file")); err == nil || creating {
					os.RemoveAll(dir)
				}
			}
			continue
		}
		if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			lock.Close() // live session
			continue
		}
		if creating {
			// Died between its lock and its rename: it made nothing else yet.
			os.RemoveAll(dir)
			unlock(lock)
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
