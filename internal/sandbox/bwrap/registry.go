package bwrap

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// registry records, under Config.StateDir, the placeholders sessions made on the host, so that
// concurrent sessions on one folder share them: a session that finds another's placeholder
// guards it like any existing path, and the last session using a placeholder removes it. Each
// entry is a file every session using the placeholder holds a shared flock on; whoever gets
// the exclusive lock at its end is the last, and removes the placeholder (if still empty) and
// the entry. A dead keepup's locks are free, so the next New cleans up after it.
//
// Sessions of keepups with different state folders do not see each other's entries: one may
// remove a placeholder the other is guarding, and the other's guard goes with it.
type registry struct {
	dir string
}

// held is a registry entry a session holds a shared lock on.
type held struct {
	p placeholder
	f *os.File
}

func (r *registry) entryPath(p placeholder) string {
	sum := sha256.Sum256([]byte(p.Root + "\x00" + p.Rel))
	return filepath.Join(r.dir, hex.EncodeToString(sum[:16])+".json")
}

// has reports whether p is a registered placeholder: one a session of this state folder made,
// or is about to make, and guards.
func (r *registry) has(p placeholder) bool {
	_, err := os.Stat(r.entryPath(p))
	return err == nil
}

// hold registers the placeholders a session is about to create and adopts the registered
// ones among the paths it guards.
func (r *registry) hold(created, guarded []placeholder) ([]held, error) {
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, err
	}
	var hs []held
	isCreated := map[placeholder]bool{}
	for _, p := range created {
		isCreated[p] = true
		f, err := r.lock(p, true, unix.LOCK_SH)
		if err != nil {
			release(hs)
			return nil, fmt.Errorf("placeholder registry: %w", err)
		}
		hs = append(hs, held{p, f})
	}
	for _, p := range guarded {
		if isCreated[p] {
			continue
		}
		f, err := r.lock(p, false, unix.LOCK_SH)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a path of the folder's own, not a placeholder
		}
		if err != nil {
			release(hs)
			return nil, fmt.Errorf("placeholder registry: %w", err)
		}
		hs = append(hs, held{p, f})
	}
	return hs, nil
}

// lock opens p's entry (creating it when create is set) and flocks it with how. It retries
// when the entry was removed while it waited for the lock.
func (r *registry) lock(p placeholder, create bool, how int) (*os.File, error) {
	path := r.entryPath(p)
	for range 100 {
		flags := unix.O_RDWR | unix.O_CLOEXEC
		if create {
			flags |= unix.O_CREAT
		}
		// Opened directly: os.OpenFile would try (and fail) to put the file in the poller, four
		// more system calls for each of a session's dozens of entries.
		fd, err := unix.Open(path, flags, 0o600)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		f := os.NewFile(uintptr(fd), path)
		if err := unix.Flock(int(f.Fd()), how); err != nil {
			f.Close() // not locked
			return nil, err
		}
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) == nil && unix.Stat(path, &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev {
			if create {
				data, _ := json.Marshal(p)
				if _, err := f.WriteAt(data, 0); err != nil {
					unlock(f)
					return nil, err
				}
			}
			return f, nil
		}
		unlock(f) // removed by its last user while we waited: look again
		if !create {
			return nil, fs.ErrNotExist
		}
	}
	return nil, errors.New("entry keeps changing")
}

// release ends a session's use of its entries, deepest first: where it was the last user it
// removes the placeholder (if still empty) and the entry.
func (r *registry) release(hs []held) error {
	slices.SortStableFunc(hs, func(a, b held) int { return strings.Count(b.p.Rel, "/") - strings.Count(a.p.Rel, "/") })
	var errs []error
	for _, h := range hs {
		unlock(h.f)
		if err := r.removeIfLast(h.p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeIfLast removes p and its entry if no session holds the entry.
func (r *registry) removeIfLast(p placeholder) error {
	f, err := r.lock(p, false, unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.EWOULDBLOCK) {
			return nil // gone, or still in use by another session
		}
		return err
	}
	defer unlock(f)
	// Whether removed or filled by someone (then no longer a placeholder), the entry goes.
	_, rerr := removePlaceholder(p)
	os.Remove(r.entryPath(p))
	return rerr
}

// cleanStale removes the placeholders no live session holds (their keepup died).
func (r *registry) cleanStale() {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return
	}
	var ps []placeholder
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name()))
		var p placeholder
		if err != nil || json.Unmarshal(b, &p) != nil || p.Root == "" || r.entryPath(p) != filepath.Join(r.dir, e.Name()) {
			continue
		}
		ps = append(ps, p)
	}
	slices.SortStableFunc(ps, func(a, b placeholder) int { return strings.Count(b.Rel, "/") - strings.Count(a.Rel, "/") })
	for _, p := range ps {
		_ = r.removeIfLast(p)
	}
}

func release(hs []held) {
	for _, h := range hs {
		unlock(h.f)
	}
}

// unlock drops f's lock and closes it. The explicit unlock matters: a child forked by another
// goroutine holds a copy of f until it execs, and closing alone would leave the lock held
// through that copy.
func unlock(f *os.File) {
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	f.Close()
}
