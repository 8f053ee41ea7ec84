package bwrap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/keepup/keepup/internal/sandbox/inside"
)

// Bounds of the walk that finds protected paths and hard-linked files below the top of a
// read-write mount. A mount the walk cannot finish within them is refused (ErrTooLarge): the
// sandbox would otherwise leave unguarded what the file tools refuse. How long a walk takes
// depends on the folders more than the files: `keepup sandbox exec` took 1.7 s on 999,999
// files in 999 folders, 1.1 s on 300,000 entries in 15,000 folders (ext4, cached, 2 cores). A
// folder past the bound is better granted read-only, or in parts.
const (
	walkDepth = 64
	maxLinked = 1000
)

// walkEntries bounds the files and folders the walk lists (a variable for tests).
var walkEntries = 1_000_000

// ErrTooLarge is returned by Start for a read-write mount too large or too deep to guard.
var ErrTooLarge = errors.New("too large to guard")

// knownDirs are protected names that are directories even when the list does not end them
// with "/": a placeholder for them is an empty directory, not an empty file.
var knownDirs = []string{"hooks", ".claude", ".keepup", ".vscode", ".idea", ".git"}

// guardKind says what a guard bind does.
type guardKind int

const (
	// guardPin binds an existing directory read-write onto itself: a mountpoint cannot be
	// renamed or removed (EBUSY), so a directory holding protected paths cannot be moved
	// aside and recreated without them.
	guardPin guardKind = iota
	// guardRO binds an existing protected path read-only onto itself.
	guardRO
	// guardPlaceholder binds an empty read-only directory or file over a protected path that
	// does not exist; bwrap creates the mountpoint on the host, and Close removes it.
	guardPlaceholder
)

// guard is one extra mount inside a read-write mount.
type guard struct {
	rel  string // slash-separated, relative to the mount
	kind guardKind
	dir  bool     // placeholder: a directory (else a file)
	f    *os.File // pin, ro: the host path opened O_PATH without following symlinks
	// noPin: the folders above need no pins (a hard-linked file: moving its folder does not
	// reach the file's other name).
	noPin bool
}

// guardPlan is what protecting one read-write mount takes.
type guardPlan struct {
	guards []guard
	// created lists the placeholder mountpoints bwrap will create on the host.
	created []placeholder
	// guarded lists every guarded path (pins, read-only binds, placeholders).
	guarded []placeholder
	// listed counts the files and folders the walk listed.
	listed int
}

func (p *guardPlan) close() {
	for _, g := range p.guards {
		if g.f != nil {
			g.f.Close()
		}
	}
}

// planGuards works out the guards of the read-write mount of host (a directory, symlinks
// resolved) for the protected list protect (paths relative to the mount; a trailing "/" marks
// a directory). Each entry is guarded at the top of the mount whether or not it exists, and in
// every folder below it (a bounded walk) that holds any protected name already — a nested
// repository, a folder with a .vscode — whether or not it exists there. A folder without any
// protected name, or made during the session, gets no guards: bind mounts protect what exists
// when the session starts. Regular files with more than one name found by the walk are kept
// read-only too (up to maxLinked): the other name may be outside the grant. The walk stops
// when ctx is done.
func planGuards(ctx context.Context, host string, protect []string) (*guardPlan, error) {
	var entries []string
	for _, p := range protect {
		c, err := cleanRel(p)
		if err != nil {
			return nil, fmt.Errorf("protected path %q: %w", p, err)
		}
		entries = append(entries, c)
	}
	// A dir hint per cleaned entry.
	dirHint := map[string]bool{}
	for i, p := range protect {
		if strings.HasSuffix(p, "/") || slices.Contains(knownDirs, strings.ToLower(path.Base(entries[i]))) {
			dirHint[entries[i]] = true
		}
	}
	pl := &guardPlan{}
	seen := map[string]bool{} // rel -> planned
	add := func(g guard) bool {
		if seen[g.rel] {
			if g.f != nil {
				g.f.Close()
			}
			return false
		}
		seen[g.rel] = true
		pl.guards = append(pl.guards, g)
		return true
	}
	guardAt := func(base string, e string, placeholders bool) error {
		return planEntry(host, base, e, dirHint[e], placeholders, add, &pl.created)
	}
	for _, e := range entries {
		if err := guardAt("", e, true); err != nil {
			pl.close()
			return nil, err
		}
	}
	// The walk below the top: a tree past a bound (walkEntries, walkDepth, maxLinked) is
	// refused whatever the order it is walked in.
	firsts := map[string]bool{} // lower-cased first components
	for _, e := range entries {
		f, _, _ := strings.Cut(e, "/")
		firsts[strings.ToLower(f)] = true
	}
	// The walk runs on several goroutines; what it finds is collected under mu, and planned
	// after it in the order of the paths, so that a plan does not depend on the walk's order.
	top, err := openNoFollow(host, "")
	if err != nil {
		pl.close()
		return nil, err
	}
	defer top.Close()
	type project struct {
		rel     string
		spelled []string // protected names as spelled on disk
	}
	type linkedFile struct {
		rel string
		f   *os.File
	}
	var (
		mu       sync.Mutex
		projects []project
		links    []linkedFile
		listed   int
	)
	errTooMany := fmt.Errorf("%w: more than %d files and folders; grant a smaller folder, or this one read-only (:ro)", ErrTooLarge, walkEntries)
	err = walkTree(int(top.Fd()), true, nil, func(d walkFolder, ents []dirEntry) ([]dirEntry, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var spelled []string
		var descend []dirEntry
		var linked []linkedFile
		for _, ent := range ents {
			if firsts[strings.ToLower(ent.name)] {
				spelled = append(spelled, ent.name)
				continue // never descend into a protected name
			}
			if ent.linked {
				// A hard link into the grant may name a file outside it (or in a read-only
				// grant): writing through it would reach that file. Read-only, as the file
				// tools refuse to write such files.
				// One gone or replaced since it was listed has nothing to guard; any other
				// failure would leave it writable.
				rel := path.Join(d.rel, ent.name)
				fd, err := unix.Openat(d.fd, ent.name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				switch {
				case err == nil:
					linked = append(linked, linkedFile{rel, os.NewFile(uintptr(fd), filepath.Join(host, rel))})
				case !skippable(err):
					for _, l := range linked {
						l.f.Close()
					}
					return nil, fmt.Errorf("open %s: %w", rel, err)
				}
				continue
			}
			if ent.dir {
				if d.depth+1 >= walkDepth {
					for _, l := range linked {
						l.f.Close()
					}
					return nil, fmt.Errorf("%w: folders nested deeper than %d; grant a smaller folder, or this one read-only (:ro)", ErrTooLarge, walkDepth)
				}
				descend = append(descend, ent)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		links = append(links, linked...)
		if listed += len(ents); listed > walkEntries {
			return nil, errTooMany
		}
		if len(links) > maxLinked {
			return nil, fmt.Errorf("%w: more than %d hard-linked files; grant a smaller folder, or this one read-only (:ro)", ErrTooLarge, maxLinked)
		}
		if d.rel != "." && len(spelled) > 0 {
			projects = append(projects, project{d.rel, spelled})
		}
		return descend, nil
	})
	if err != nil {
		for _, l := range links {
			l.f.Close()
		}
		pl.close()
		return nil, err
	}
	pl.listed = listed
	slices.SortFunc(links, func(a, b linkedFile) int { return strings.Compare(a.rel, b.rel) })
	for _, l := range links {
		add(guard{rel: l.rel, kind: guardRO, f: l.f, noPin: true})
	}
	// Below the top, a folder holding any protected name (a nested repository's .git, a
	// .vscode) is a project root, guarded like the top, placeholders included.
	slices.SortFunc(projects, func(a, b project) int { return strings.Compare(a.rel, b.rel) })
	for _, d := range projects {
		for _, e := range entries {
			f, rest, _ := strings.Cut(e, "/")
			variants := []string{e}
			for _, sp := range d.spelled {
				if sp != f && strings.EqualFold(sp, f) {
					// Another spelling on disk (a case-insensitive tool may use it) is guarded too.
					variants = append(variants, path.Join(sp, rest))
				}
			}
			for _, v := range variants {
				if err := planEntry(host, d.rel, v, dirHint[e], true, add, &pl.created); err != nil {
					pl.close()
					return nil, err
				}
			}
		}
	}
	// Pins of every folder that holds a guard (shallowest first), so none can be renamed
	// aside; then the guards, shallowest first so a deeper mount is never hidden by a later
	// shallower one.
	var pins []guard
	pinned := map[string]bool{}
	for _, g := range pl.guards {
		if g.noPin {
			continue
		}
		for a := path.Dir(g.rel); a != "."; a = path.Dir(a) {
			if pinned[a] || seen[a] {
				continue
			}
			pinned[a] = true
			f, err := openNoFollow(host, a)
			if err != nil {
				pl.close()
				closeGuards(pins)
				return nil, fmt.Errorf("protected path %s: %w", filepath.Join(host, a), err)
			}
			pins = append(pins, guard{rel: a, kind: guardPin, f: f})
		}
	}
	pl.guards = append(pins, pl.guards...)
	for _, g := range pl.guards {
		pl.guarded = append(pl.guarded, placeholder{Root: host, Rel: g.rel})
	}
	slices.SortStableFunc(pl.guards, func(a, b guard) int {
		return strings.Count(a.rel, "/") - strings.Count(b.rel, "/")
	})
	return pl, nil
}

func closeGuards(gs []guard) {
	for _, g := range gs {
		if g.f != nil {
			g.f.Close()
		}
	}
}

// ErrSymlinkProtected is wrapped by Start's error when a protected path in a read-write mount
// is (or goes through) a symlink: a bind mount cannot keep a symlink from being replaced, so
// the session does not start.
var ErrSymlinkProtected = errors.New("a protected path is a symlink")

// planEntry guards base/e: a read-only bind if it exists, else (when placeholders is set) a
// placeholder at its first missing component.
func planEntry(host, base, e string, dirHint, placeholders bool, add func(guard) bool, created *[]placeholder) error {
	comps := strings.Split(e, "/")
	cur := base
	for i, c := range comps {
		cur = path.Join(cur, c)
		last := i == len(comps)-1
		fi, err := os.Lstat(filepath.Join(host, cur))
		if errors.Is(err, fs.ErrNotExist) {
			if placeholders && add(guard{rel: cur, kind: guardPlaceholder, dir: !last || dirHint}) {
				*created = append(*created, placeholder{Root: host, Rel: cur})
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("protected path %s: %w", filepath.Join(host, cur), err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%w: %s (replace it with what it points to, or grant the folder read-only)", ErrSymlinkProtected, filepath.Join(host, cur))
		}
		if last || !fi.IsDir() {
			// A file where a folder is expected (a worktree's .git file) is guarded whole.
			f, err := openNoFollow(host, cur)
			if err != nil {
				return fmt.Errorf("protected path %s: %w", filepath.Join(host, cur), err)
			}
			add(guard{rel: cur, kind: guardRO, f: f})
			return nil
		}
	}
	return nil
}

// openNoFollow opens host/rel with O_PATH, without following a symlink (inside.OpenNoFollow).
func openNoFollow(host, rel string) (*os.File, error) { return inside.OpenNoFollow(host, rel) }

// cleanRel checks that p is a relative path that stays inside its mount.
func cleanRel(p string) (string, error) {
	if p == "" || strings.HasPrefix(p, "/") {
		return "", errors.New("want a non-empty relative path")
	}
	c := path.Clean(p)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", errors.New("leaves the mount")
	}
	return c, nil
}

// placeholder is a mountpoint bwrap creates on the host for a missing protected path.
type placeholder struct {
	Root string `json:"root"` // the mount's host folder
	Rel  string `json:"rel"`  // slash-separated, inside Root
}

// removePlaceholders removes placeholders, deepest first (see removePlaceholder).
func removePlaceholders(created []placeholder) error {
	var errs []error
	sorted := slices.Clone(created)
	slices.SortFunc(sorted, func(a, b placeholder) int { return strings.Count(b.Rel, "/") - strings.Count(a.Rel, "/") })
	for _, p := range sorted {
		if _, err := removePlaceholder(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removePlaceholder removes a placeholder mountpoint bwrap created on the host if it is still
// an empty directory or an empty regular file: anything else was put there by someone else and
// is left alone. The path is resolved without following symlinks, so nothing outside the
// mount is touched. It reports whether the placeholder is gone (removed now or before).
func removePlaceholder(p placeholder) (gone bool, err error) {
	dir, err := openNoFollow(p.Root, path.Dir(p.Rel))
	if err != nil {
		return true, nil // its folder is gone, or replaced by a symlink: not ours to touch
	}
	defer dir.Close()
	name := path.Base(p.Rel)
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return true, nil
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		// Removes only an empty directory, atomically.
		err = unix.Unlinkat(int(dir.Fd()), name, unix.AT_REMOVEDIR)
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return false, nil
		}
	case st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0:
		err = unix.Unlinkat(int(dir.Fd()), name, 0)
	default:
		return false, nil
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("remove placeholder %s: %w", filepath.Join(p.Root, p.Rel), err)
	}
	return true, nil
}
