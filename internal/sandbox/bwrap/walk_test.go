package bwrap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// treeFDs counts this process's open descriptors of files and folders in the trees at roots.
// Not all of its descriptors: others come and go meanwhile (a session that an earlier test
// ended closes its inotify descriptor a moment later, in the background).
func treeFDs(t *testing.T, roots ...string) int {
	t.Helper()
	var prefixes []string
	for _, r := range roots {
		real, err := filepath.EvalSymlinks(r)
		if err != nil {
			t.Fatal(err)
		}
		prefixes = append(prefixes, real)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue
		}
		for _, p := range prefixes {
			if l == p || strings.HasPrefix(l, p+"/") {
				n++
				break
			}
		}
	}
	return n
}

// makeTree makes folders and files below root: a trailing "/" makes a folder; "link:A=B" makes
// B a hard link to A; "sym:A=T" makes A a symlink to T.
func makeTree(t *testing.T, root string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		var err error
		switch {
		case strings.HasPrefix(p, "link:"):
			a, b, _ := strings.Cut(strings.TrimPrefix(p, "link:"), "=")
			err = os.Link(filepath.Join(root, a), filepath.Join(root, b))
		case strings.HasPrefix(p, "sym:"):
			a, target, _ := strings.Cut(strings.TrimPrefix(p, "sym:"), "=")
			err = os.Symlink(target, filepath.Join(root, a))
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(filepath.Join(root, p), 0o755)
		default:
			if err = os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err == nil {
				err = os.WriteFile(filepath.Join(root, p), nil, 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// openTop opens root as a walk's top, for the test's duration.
func openTop(t *testing.T, root string) int {
	t.Helper()
	top, err := openNoFollow(root, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { top.Close() })
	return int(top.Fd())
}

// walkAll walks root descending into every folder, and returns each entry as "rel" (a
// folder with a trailing "/", a file with more than one name with a trailing "=").
func walkAll(t *testing.T, root string, stat bool) ([]string, error) {
	t.Helper()
	top, err := openNoFollow(root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close() // before the test ends: the tests count what stays open
	var mu sync.Mutex
	var got []string
	err = walkTree(int(top.Fd()), stat, nil, func(d walkFolder, ents []dirEntry) ([]dirEntry, error) {
		var descend []dirEntry
		mu.Lock()
		defer mu.Unlock()
		for _, e := range ents {
			s := joinRel(d.rel, e.name)
			if e.dir {
				s += "/"
				descend = append(descend, e)
			}
			if e.linked {
				s += "="
			}
			got = append(got, s)
		}
		return descend, nil
	})
	slices.Sort(got)
	return got, err
}

// TestWalkTree: the walk lists every entry below the top once, with the right types, finds
// hard-linked files when asked to, follows no symlink (to a folder inside or outside), and
// leaves no descriptor open.
func TestWalkTree(t *testing.T) {
	outside := t.TempDir()
	makeTree(t, outside, "secret/key")
	root := t.TempDir()
	paths := []string{"a/b/c/d.txt", "a/e.txt", "f/", "g.txt", "link:g.txt=a/b/h.txt", "sym:out=" + outside, "sym:in=a", "sym:dangling=nowhere"}
	// Wide and deep enough that several workers take part.
	for i := range 40 {
		paths = append(paths, fmt.Sprintf("w/%d/x/y.txt", i))
	}
	makeTree(t, root, paths...)
	var want []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			rel += "/"
		}
		if rel == "g.txt" || rel == "a/b/h.txt" {
			rel += "="
		}
		want = append(want, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	before := treeFDs(t, root)
	got, err := walkAll(t, root, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("walk:\n got %v\nwant %v", got, want)
	}
	if n := treeFDs(t, root); n != before {
		t.Errorf("%d descriptors open after the walk, %d before", n, before)
	}
	// Without stat, no entry is taken for hard-linked.
	got, _ = walkAll(t, root, false)
	for _, g := range got {
		if strings.HasSuffix(g, "=") {
			t.Errorf("%s hard-linked without stat", g)
		}
	}
}

// TestWalkTreeFollowsNoSymlink: a symlink visit asks to descend into (a folder swapped for one
// after it was listed) is not followed.
func TestWalkTreeFollowsNoSymlink(t *testing.T) {
	outside := t.TempDir()
	makeTree(t, outside, "secret/key")
	root := t.TempDir()
	makeTree(t, root, "sym:out="+outside)
	var mu sync.Mutex
	var seen []string
	err := walkTree(openTop(t, root), false, nil, func(d walkFolder, ents []dirEntry) ([]dirEntry, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, d.rel)
		return []dirEntry{{name: "out"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []string{"."}) {
		t.Errorf("listed %v, want only the top", seen)
	}
}

// TestWalkTreeStops: the first error visit returns ends the walk and is returned, whichever
// worker meets it, and every descriptor is closed.
func TestWalkTreeStops(t *testing.T) {
	root := t.TempDir()
	var paths []string
	for i := range 30 {
		for j := range 5 {
			paths = append(paths, fmt.Sprintf("%d/%d/z/", i, j))
		}
	}
	makeTree(t, root, paths...)
	top := openTop(t, root)
	before := treeFDs(t, root)
	stop := errors.New("stop here")
	for round := range 50 {
		at := fmt.Sprintf("%d/%d", round%30, round%5)
		var mu sync.Mutex
		listed := 0
		err := walkTree(top, false, nil, func(d walkFolder, ents []dirEntry) ([]dirEntry, error) {
			mu.Lock()
			listed++
			mu.Unlock()
			if d.rel == at {
				return nil, stop
			}
			return ents, nil
		})
		if !errors.Is(err, stop) {
			t.Fatalf("round %d: %v, want the error of %s", round, err, at)
		}
		if n := treeFDs(t, root); n != before {
			t.Fatalf("round %d: %d descriptors open after the walk, %d before", round, n, before)
		}
		// The folders the walk had not reached when it stopped stay unlisted (1 + 30 + 150 + 150
		// in all).
		if listed > 331 {
			t.Fatalf("round %d: %d folders listed", round, listed)
		}
	}
	// The top itself stays open: it is the caller's.
	if _, err := unix.FcntlInt(uintptr(top), unix.F_GETFD, 0); err != nil {
		t.Errorf("the top was closed: %v", err)
	}
}

// TestPlanGuardsBounds: a read-write folder past a bound of the walk (entries, hard-linked
// files) is refused, and the refusal leaves nothing open.
func TestPlanGuardsBounds(t *testing.T) {
	// Not parallel: walkEntries is the package's.
	old := walkEntries
	defer func() { walkEntries = old }()
	walkEntries = 50
	root := t.TempDir()
	var paths []string
	for i := range 49 {
		paths = append(paths, fmt.Sprintf("d%d/", i%7)+fmt.Sprint(i))
	}
	makeTree(t, root, paths...) // 49 files in 7 folders: 56 entries
	before := treeFDs(t, root)
	if _, err := planGuards(t.Context(), root, []string{".bashrc"}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "more than 50 files and folders") {
		t.Errorf("56 entries with a bound of 50: %v", err)
	}
	walkEntries = 56
	pl, err := planGuards(t.Context(), root, []string{".bashrc"})
	if err != nil {
		t.Fatalf("56 entries with a bound of 56: %v", err)
	}
	pl.close()
	walkEntries = old

	links := t.TempDir()
	makeTree(t, links, "f")
	for i := range maxLinked {
		makeTree(t, links, fmt.Sprintf("link:f=l%d", i))
	}
	if _, err := planGuards(t.Context(), links, []string{".bashrc"}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "hard-linked") {
		t.Errorf("%d hard-linked files: %v", maxLinked+1, err)
	}
	if n := treeFDs(t, root, links); n != before {
		t.Errorf("%d descriptors open after the refusals, %d before", n, before)
	}
}

// TestWalkTreeWhileChanging: folders made, removed and swapped for symlinks while the walk runs
// neither stop it nor make it leave anything open or step outside the top.
func TestWalkTreeWhileChanging(t *testing.T) {
	outside := t.TempDir()
	makeTree(t, outside, "secret/key")
	root := t.TempDir()
	var paths []string
	for i := range 20 {
		paths = append(paths, fmt.Sprintf("%d/a/b/", i))
	}
	makeTree(t, root, paths...)
	before := treeFDs(t, root, outside)
	stop := make(chan struct{})
	churned := make(chan struct{})
	stopChurn := sync.OnceFunc(func() { close(stop); <-churned })
	defer stopChurn() // also when the test fails early
	go func() {
		defer close(churned)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			d := filepath.Join(root, strconv.Itoa(i%20))
			_ = os.RemoveAll(d)
			if i%3 == 0 {
				_ = os.Symlink(outside, d)
			} else {
				_ = os.MkdirAll(filepath.Join(d, "a", "b"), 0o755)
			}
			if i%3 == 0 {
				_ = os.Remove(d)
				_ = os.MkdirAll(filepath.Join(d, "a", "b"), 0o755)
			}
		}
	}()
	for range 200 {
		got, err := walkAll(t, root, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range got {
			if strings.Contains(g, "secret") {
				t.Fatalf("the walk went outside the top: %s", g)
			}
		}
	}
	stopChurn()
	if n := treeFDs(t, root, outside); n != before {
		t.Errorf("%d descriptors open after the walks, %d before", n, before)
	}
}

// TestPlanGuardsCanceled: planning stops when its context is done (a task canceled while its
// sandbox walks a large folder), and leaves nothing open.
func TestPlanGuardsCanceled(t *testing.T) {
	root := t.TempDir()
	makeTree(t, root, "a/b/c", "d/e")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	before := treeFDs(t, root)
	if _, err := planGuards(ctx, root, []string{".bashrc"}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	if n := treeFDs(t, root); n != before {
		t.Errorf("%d descriptors open after the walk, %d before", n, before)
	}
}

// lowestFreeFD is the descriptor number the next open would get.
func lowestFreeFD(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		// Not the listing's own descriptor, closed since.
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && !strings.HasSuffix(l, "/fd") {
			open[n] = true
		}
	}
	free := 0
	for open[free] {
		free++
	}
	return free
}

// TestWalkTreeFailsClosed: a folder the walk cannot open for want of descriptors (not because
// it is gone or unreadable) fails the walk: skipping it would leave unguarded a folder the
// sandbox can reach.
func TestWalkTreeFailsClosed(t *testing.T) {
	// Not parallel: it lowers this process's descriptor limit for a moment.
	root := t.TempDir()
	makeTree(t, root, "a/b/")
	top := openTop(t, root)
	free := lowestFreeFD(t)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = uint64(free) // no descriptor can be opened
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	err := walkTree(top, false, nil, func(d walkFolder, ents []dirEntry) ([]dirEntry, error) { return nil, nil })
	if rerr := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, unix.EMFILE) {
		t.Errorf("walk without descriptors: %v, want EMFILE", err)
	}
}

// TestPlanGuardsFailsClosedOnLinks: a hard-linked file planning cannot open for want of
// descriptors fails the plan: skipped, it would stay writable in the sandbox.
func TestPlanGuardsFailsClosedOnLinks(t *testing.T) {
	// Not parallel: it lowers this process's descriptor limit for a moment.
	root := t.TempDir()
	makeTree(t, root, "f", "link:f=g")
	free := lowestFreeFD(t)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = uint64(free + 2) // the top, and the folder the walk lists: no more
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	pl, err := planGuards(t.Context(), root, []string{".bashrc"})
	if rerr := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if err == nil {
		pl.close()
	}
	if !errors.Is(err, unix.EMFILE) {
		t.Errorf("hard-linked files without descriptors: %v, want EMFILE", err)
	}
}
