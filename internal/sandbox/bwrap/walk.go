package bwrap

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirEntry is a name in a folder: its inode number (as the listing gives it), whether it is a
// folder (not a symlink to one), and, when the listing was asked to tell, whether it is a
// regular file with more than one name.
type dirEntry struct {
	name   string
	ino    uint64
	dir    bool
	linked bool
}

// walkWorkers is how many folders a walk lists at once. Listing is system calls (getdents,
// openat, fstatat), which run in parallel; more than the CPUs helps where the folders are not
// cached and the disk answers several requests at a time.
var walkWorkers = min(2*runtime.GOMAXPROCS(0), 16)

// walkFolder is a folder a walk has opened: fd is valid for the call it is passed to only.
type walkFolder struct {
	rel   string // slash-separated, relative to the walk's top; "." for the top
	depth int    // the top's is 0
	fd    int
}

// walkTree lists the folder top (a descriptor the caller keeps open: O_PATH will do) and every
// folder below it that visit descends into, with walkWorkers goroutines. Each folder is opened
// from its parent's descriptor with O_NOFOLLOW, one name at a time: a symlink is never
// followed, and a folder swapped for one is skipped, as is one gone meanwhile or unreadable
// (skippable); any other failure to open or list a folder fails the walk.
//
// For each folder, before is called before it is listed (nil: nothing), then visit with its
// entries (with linked set when stat is true); visit returns the entries to descend into.
// Both run concurrently on several folders: they guard what they share. The first error stops
// the walk, and is returned. Nothing stays open after it.
func walkTree(top int, stat bool, before func(walkFolder), visit func(walkFolder, []dirEntry) ([]dirEntry, error)) error {
	w := &walker{stat: stat, before: before, visit: visit}
	w.cond.L = &w.mu
	w.pending = 1
	w.queue = []walkItem{{parent: &dirRef{fd: top, keep: true}, name: ".", rel: "."}}
	w.queue[0].parent.refs.Store(1)
	n := walkWorkers
	var wg sync.WaitGroup
	for range n - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.work()
		}()
	}
	w.work()
	wg.Wait()
	return w.err
}

// walkItem is a folder to list: name in the folder parent.
type walkItem struct {
	parent *dirRef
	name   string
	rel    string
	depth  int
}

// dirRef is an open folder some of whose subfolders are still to be opened; the last of them to
// be opened closes it (unless keep: the walk's top, which its caller closes).
type dirRef struct {
	fd   int
	keep bool
	refs atomic.Int32
}

func (r *dirRef) release() {
	if r.refs.Add(-1) == 0 && !r.keep {
		unix.Close(r.fd)
	}
}

type walker struct {
	stat   bool
	before func(walkFolder)
	visit  func(walkFolder, []dirEntry) ([]dirEntry, error)

	mu      sync.Mutex
	cond    sync.Cond
	queue   []walkItem // last in, first out: the folders open at a time stay few
	pending int        // queued or being listed
	err     error
}

// work lists folders until none is left to list.
func (w *walker) work() {
	buf := make([]byte, 32<<10)
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && w.pending > 0 {
			w.cond.Wait()
		}
		if w.pending == 0 {
			w.mu.Unlock()
			return
		}
		it := w.queue[len(w.queue)-1]
		w.queue = w.queue[:len(w.queue)-1]
		failed := w.err != nil
		w.mu.Unlock()

		var subs []walkItem
		var ref *dirRef
		if !failed {
			subs, ref = w.list(it, buf)
		} else {
			it.parent.release()
		}

		w.mu.Lock()
		if w.err != nil {
			// Stopped (by this folder's visit, or another's): what was found goes unlisted.
			for range subs {
				ref.release()
			}
			subs = nil
		}
		w.queue = append(w.queue, subs...)
		w.pending += len(subs) - 1
		if len(subs) > 0 || w.pending == 0 {
			w.cond.Broadcast()
		}
		w.mu.Unlock()
	}
}

// list opens and lists one folder, and returns the subfolders to list next, which hold ref (the
// folder's descriptor) until each is opened.
func (w *walker) list(it walkItem, buf []byte) ([]walkItem, *dirRef) {
	fd, err := unix.Openat(it.parent.fd, it.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	it.parent.release()
	if err != nil {
		if !skippable(err) {
			w.fail(fmt.Errorf("open folder %s: %w", it.rel, err))
		}
		return nil, nil
	}
	f := walkFolder{rel: it.rel, depth: it.depth, fd: fd}
	if w.before != nil {
		w.before(f)
	}
	ents, err := listFolder(fd, buf, w.stat)
	var subs []dirEntry
	switch {
	case errors.Is(err, unix.ENOENT):
		err = nil // removed since it was opened: nothing in it to see
	case err != nil:
		err = fmt.Errorf("list folder %s: %w", it.rel, err)
	default:
		subs, err = w.visit(f, ents)
	}
	if err != nil {
		w.fail(err)
	}
	if err != nil || len(subs) == 0 {
		unix.Close(fd)
		return nil, nil
	}
	ref := &dirRef{fd: fd}
	ref.refs.Store(int32(len(subs)))
	items := make([]walkItem, len(subs))
	for i, e := range subs {
		items[i] = walkItem{parent: ref, name: e.name, rel: joinRel(it.rel, e.name), depth: it.depth + 1}
	}
	return items, ref
}

// fail records the walk's first error: the walk stops.
func (w *walker) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// skippable reports whether a folder that could not be opened is left out of a walk rather
// than failing it: gone, or swapped for a symlink or a file since it was listed, or not
// readable by keepup's user, which is the sandbox's too. Anything else (out of descriptors or
// memory, an I/O error) would leave unseen a folder the sandbox can reach.
func skippable(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EACCES)
}

// listFolder lists the open folder fd with getdents(2), into buf: the types come with the
// names, where os.File.ReadDir stats every entry of a folder opened in an os.Root. An entry of
// unknown type is stat'ed, without following symlinks; with stat, so is every regular file, to
// tell whether it has more than one name.
func listFolder(fd int, buf []byte, stat bool) ([]dirEntry, error) {
	var out []dirEntry
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		for off := 0; off < n; {
			d := (*unix.Dirent)(unsafe.Pointer(&buf[off]))
			nameBuf := buf[off+int(unsafe.Offsetof(d.Name)) : off+int(d.Reclen)]
			off += int(d.Reclen)
			name := string(nameBuf[:clen(nameBuf)])
			if name == "." || name == ".." {
				continue
			}
			e := dirEntry{name: name, ino: d.Ino, dir: d.Type == unix.DT_DIR}
			if d.Type == unix.DT_UNKNOWN || (stat && d.Type == unix.DT_REG) {
				var st unix.Stat_t
				switch err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); {
				case err == nil:
					e.dir = st.Mode&unix.S_IFMT == unix.S_IFDIR
					e.linked = stat && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1
				case errors.Is(err, unix.ENOENT):
					continue // removed since it was listed
				default:
					return nil, fmt.Errorf("%s: %w", name, err)
				}
			}
			out = append(out, e)
		}
	}
}

// clen is the length of the NUL-terminated string in b.
func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}
