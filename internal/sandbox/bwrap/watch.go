package bwrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/keepup/keepup/internal/sandbox"
)

// QuarantineDir is where, below the top of a read-write mount on the host, a session's
// protectWatch moves the protected paths its commands made: QuarantineDir/<session>/<path>. The
// sandbox sees the mount's .keepup as an empty read-only placeholder, so it cannot reach them.
const QuarantineDir = ".keepup/quarantine"

// oneCommandWatchFrom is how many files and folders in its read-write mounts make a session of
// one command watch them (inotify) rather than search them whole when its command ends. The
// watches cost their adding and an SRCU grace period at exit; measured with `sandbox exec`, the
// two ways were even from 5,000 to 50,000 entries, and watching was 10% quicker at 300,000.
const oneCommandWatchFrom = 100_000

// maxSessionWatches bounds one session's watches: the kernel counts them per user, across every
// session (fs.inotify.max_user_watches); the folders past the bound are searched
// after each command instead (see searchUnwatched).
var maxSessionWatches = 1 << 16

// watchMask is what a watched folder reports: names that appear in it.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// protectWatch keeps protected paths out of the read-write mounts below where the binds made at
// the start reach: a command can make a folder and, in it, .git/hooks/pre-commit or
// .vscode/tasks.json. Every folder of each mount is watched (inotify) for names that appear;
// when a command ends, the events are read, each new folder is searched (what was made in it
// before it could be watched too), and every protected path that appeared is moved to
// QuarantineDir at once, before anything on the host could run it. What appeared while no
// command ran was made on the host, and is taken for existing (begin). The sandbox cannot stop
// this: it runs on the host, after the command, and walks the mount through an os.Root. A
// mount whose protected list lacks .keepup (where the quarantine would be within reach) has
// what appears removed instead.
type protectWatch struct {
	reg      *registry // the placeholders sessions make are theirs, not a command's
	baseline string    // where the protected paths taken for existing are kept ("": nowhere)
	mu       sync.Mutex
	fd       int
	session  string
	mounts   []*watchedMount
	wds      map[int32]watchedDir
	found    []string // sandbox paths moved out since the last take
	buf      []byte
	// blind: search every mount whole whenever events are read (nothing is watched, or a
	// search failed). Otherwise only the folders that could not be watched (past the watch
	// limit) are searched, each mount's unwatched.
	blind    bool
	full     bool             // the watch limit was met: the walk under way watches no more folders
	adding   int              // watches being added (see addWatch)
	byID     map[fileID]int32 // the folders watched, by device and inode
	running  int              // commands running
	commands int              // commands started
	closed   bool
}

type watchedMount struct {
	dest    string // inside the sandbox
	host    string // symlinks resolved, as the placeholders name it
	root    *os.Root
	protect [][]string      // each protected path's components, lower-cased
	pre     map[string]bool // protected paths taken for existing, relative to the mount
	keep    bool            // .keepup is protected: quarantine there, rather than remove
	// watched maps the folders watched to their watches; unwatched lists the folders known not
	// to be (the watch limit), which are searched after each command.
	watched   map[string]watchedAs
	unwatched map[string]bool
}

// watchedAs is the watch of a folder, and the folder's inode number: a folder made under the
// name of one watched and moved away is another inode (as its parent's listing tells), and is
// searched.
type watchedAs struct {
	wd  int32
	ino uint64
}

type watchedDir struct {
	m   *watchedMount
	rel string
	id  fileID
}

// fileID tells a folder: its device and inode numbers.
type fileID struct{ dev, ino uint64 }

// newProtectWatch watches the read-write mounts of spec that list protected paths. Protected
// paths that exist already are recorded: the start's binds keep them read-only, and they stay.
// With blind, nothing is watched: the mounts are searched whole when a command ends. A session
// of one command is blind unless its mounts are large (oneCommandWatchFrom): a process that
// ends holding watches waits out an SRCU grace period as it exits (13 to 17 ms here), more
// than searching a usual folder takes.
//
// The protected paths taken for existing are kept in baseline (a file) while the session runs,
// and it is removed when the session ends. Found at the start, it is from a keepup that died
// with this session running: what is now there beyond it appeared while nothing watched (a
// command cut short; or the user, meanwhile), and is moved out (reported with the first
// command's result).
func newProtectWatch(ctx context.Context, spec *sandbox.Spec, reg *registry, baseline string, blind bool) (*protectWatch, error) {
	w := &protectWatch{reg: reg, baseline: baseline, fd: -1, session: spec.SessionID, wds: map[int32]watchedDir{}, byID: map[fileID]int32{}, blind: blind}
	prior := w.loadBaseline()
	if !w.blind {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
		if err != nil {
			return nil, fmt.Errorf("watch for protected paths: %w", err)
		}
		w.fd, w.buf = fd, make([]byte, 64<<10)
	}
	for _, sm := range spec.Mounts {
		if !sm.RW || len(sm.Protect) == 0 {
			continue
		}
		host, err := filepath.EvalSymlinks(sm.Host)
		var root *os.Root
		if err == nil {
			root, err = os.OpenRoot(host)
		}
		if err != nil {
			w.close()
			return nil, fmt.Errorf("watch %s for protected paths: %w", sm.Host, err)
		}
		m := &watchedMount{dest: sm.Dest, host: host, root: root, pre: map[string]bool{}, watched: map[string]watchedAs{}, unwatched: map[string]bool{}}
		for _, p := range sm.Protect {
			if c, err := cleanRel(p); err == nil {
				m.protect = append(m.protect, strings.Split(strings.ToLower(c), "/"))
				m.keep = m.keep || strings.EqualFold(c, ".keepup")
			}
		}
		w.mounts = append(w.mounts, m)
		if err := w.walk(ctx, m, ".", true, false); err != nil {
			w.close()
			return nil, fmt.Errorf("watch %s for protected paths: %w", sm.Host, err)
		}
		if was, ok := prior[m.dest]; ok {
			for _, rel := range sortedTrue(m.pre) {
				if !slices.Contains(was, rel) && !below(rel, was) {
					delete(m.pre, rel)
					w.quarantine(m, rel)
				}
			}
		}
	}
	if err := w.saveBaseline(); err != nil {
		w.close()
		return nil, fmt.Errorf("watch for protected paths: %w", err)
	}
	return w, nil
}

// below reports whether rel lies below one of the paths in was.
func below(rel string, was []string) bool {
	for _, p := range was {
		if strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

func sortedTrue(set map[string]bool) []string {
	var out []string
	for k, v := range set {
		if v {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// loadBaseline reads the baseline a dead keepup left for this session: mount destination ->
// protected paths taken for existing. Nil when there is none.
func (w *protectWatch) loadBaseline() map[string][]string {
	if w.baseline == "" {
		return nil
	}
	data, err := os.ReadFile(w.baseline)
	if err != nil {
		return nil
	}
	var b map[string][]string
	if json.Unmarshal(data, &b) != nil {
		return nil
	}
	return b
}

// saveBaseline writes the protected paths taken for existing, each mount's, to w.baseline.
func (w *protectWatch) saveBaseline() error {
	if w.baseline == "" {
		return nil
	}
	b := map[string][]string{}
	for _, m := range w.mounts {
		b[m.dest] = sortedTrue(m.pre)
	}
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(w.baseline), 0o700); err != nil {
		return err
	}
	tmp := w.baseline + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, w.baseline)
}

// mayEnd reports whether a protected path of m ends with the name name: a cheap test a walk
// makes of every name before the full one (protected).
func (m *watchedMount) mayEnd(name string) bool {
	for _, p := range m.protect {
		if strings.EqualFold(p[len(p)-1], name) {
			return true
		}
	}
	return false
}

// protected reports whether rel (slash-separated, relative to the mount) is or lies below one
// of m's protected paths, at any depth: the file tools' rule.
func (m *watchedMount) protected(rel string) bool {
	parts := strings.Split(strings.ToLower(rel), "/")
	for i := range parts {
		for _, p := range m.protect {
			if i+len(p) <= len(parts) && slices.Equal(parts[i:i+len(p)], p) {
				return true
			}
		}
	}
	return false
}

// watchTree watches rel and every folder below it, and moves out every protected path in it
// that was not taken for existing; with record, it takes them for existing instead (at the
// start, and for what the host made). No walk of the watch is bounded: the guards' walk at the
// session's start refused a mount past the bounds already (the placeholders made since add a
// few entries), and later walks cover what the session's commands made. A folder that cannot
// be watched (the watch limit) is recorded in the mount's unwatched, and
// searched after each command (searchUnwatched). A walk that fails (out of descriptors, say:
// see walkTree) returns its error, and its callers make the watch blind.
func (w *protectWatch) watchTree(m *watchedMount, rel string, record bool) error {
	return w.walk(context.Background(), m, rel, record, false)
}

// walk walks rel of m (see watchTree). With skipWatched, it does not descend into the folders
// watched: their events tell what appears in them, and the unwatched folders below them are
// searched from there (searchUnwatched).
func (w *protectWatch) walk(ctx context.Context, m *watchedMount, rel string, record, skipWatched bool) error {
	top, err := openNoFollow(m.host, rel)
	if err != nil {
		if skippable(err) {
			return nil // gone meanwhile, or replaced by a symlink: the sandbox's user cannot make anything in it either
		}
		return err
	}
	defer top.Close()
	// Each folder is opened once, from its parent without following a symlink, to watch it and
	// then list it. The walk runs on several goroutines; what they share is guarded by mu.
	var mu sync.Mutex
	before := func(d walkFolder) {
		if w.fd < 0 {
			return // nothing is watched: every mount is searched whole
		}
		dir := joinRel(rel, d.rel)
		var st unix.Stat_t
		if unix.Fstat(d.fd, &st) != nil {
			return // cannot happen with an open folder
		}
		id := fileID{dev: st.Dev, ino: st.Ino}
		mu.Lock()
		_, known := w.byID[id]
		full := w.full
		mu.Unlock()
		// A folder watched already (moved since) is watched again, under its new name, past the
		// limit too: that takes no new watch.
		if (known || !full) && w.addWatch(m, dir, d.fd, id, &mu) == nil {
			return
		}
		// Out of watches (they are counted per user, across every session): this folder is
		// searched after each command instead, slower but as sure.
		mu.Lock()
		w.full = true
		m.unwatched[dir] = true
		mu.Unlock()
	}
	return walkTree(int(top.Fd()), false, before, func(d walkFolder, ents []dirEntry) ([]dirEntry, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := joinRel(rel, d.rel)
		var descend []dirEntry
		mu.Lock()
		defer mu.Unlock()
		into := func(e dirEntry) {
			if skipWatched {
				if as, ok := m.watched[joinRel(dir, e.name)]; ok && as.ino != 0 && as.ino == e.ino {
					return
				}
			}
			descend = append(descend, e)
		}
		for _, e := range ents {
			// dir is not protected (it would not be walked), so an entry is protected only
			// where a protected path ends with its name.
			if !m.mayEnd(e.name) {
				if e.dir {
					into(e)
				}
				continue
			}
			p := joinRel(dir, e.name)
			switch {
			case m.protected(p):
				if record {
					m.pre[p] = true
				} else if !m.pre[p] {
					w.quarantine(m, p)
				}
			case e.dir:
				into(e)
			}
		}
		return descend, nil
	})
}

// searchUnwatched searches the folders of m that are not watched, and the folders made in them
// (watching those it can): with record, taking the protected paths found for existing, else
// moving them out. It walks from each unwatched folder whose parent is watched, into every
// folder below that is not. The list is made anew: a folder watched by now (another session's
// watches were freed) leaves it, and one gone is forgotten.
func (w *protectWatch) searchUnwatched(m *watchedMount, record bool) error {
	w.full = false
	var roots []string
	for _, d := range sortedTrue(m.unwatched) {
		if d == "." || !m.unwatched[path.Dir(d)] {
			roots = append(roots, d)
		}
	}
	clear(m.unwatched) // filled again by the walks
	for _, d := range roots {
		if err := w.walk(context.Background(), m, d, record, true); err != nil {
			return err
		}
	}
	return nil
}

// joinRel joins slash-separated relative paths, "." being the top.
func joinRel(dir, name string) string {
	switch {
	case name == ".":
		return dir
	case dir == ".":
		return name
	}
	return dir + "/" + name
}

// addWatch watches the folder rel of m, open as fd; mu guards w.wds and m's maps. A folder
// watched already (moved since) gets its new name.
func (w *protectWatch) addWatch(m *watchedMount, rel string, fd int, id fileID, mu *sync.Mutex) error {
	// A place under the bound is taken before the call, so that walkers adding watches at once
	// do not go past it together; a folder watched already takes none.
	mu.Lock()
	if _, known := w.byID[id]; !known && len(w.wds)+w.adding >= maxSessionWatches {
		mu.Unlock()
		return unix.ENOSPC
	}
	w.adding++
	mu.Unlock()
	wd, err := unix.InotifyAddWatch(w.fd, "/proc/self/fd/"+strconv.Itoa(fd), watchMask)
	mu.Lock()
	defer mu.Unlock()
	w.adding--
	if errors.Is(err, unix.ENOSPC) {
		return err
	}
	if err != nil {
		return nil // not a folder any more
	}
	if old, ok := w.wds[int32(wd)]; ok && old.rel != rel && old.m.watched[old.rel].wd == int32(wd) {
		delete(old.m.watched, old.rel)
	}
	w.wds[int32(wd)] = watchedDir{m: m, rel: rel, id: id}
	w.byID[id] = int32(wd)
	m.watched[rel] = watchedAs{wd: int32(wd), ino: id.ino}
	delete(m.unwatched, rel)
	return nil
}

// quarantine moves the protected path rel of m to QuarantineDir, under a name not taken yet;
// what cannot be moved is removed. A placeholder a session made (this one's, or a concurrent
// one's on the same folder) is left: it is a guard.
func (w *protectWatch) quarantine(m *watchedMount, rel string) {
	if w.reg != nil && w.reg.has(placeholder{Root: m.host, Rel: rel}) {
		m.pre[rel] = true
		return
	}
	if _, err := m.root.Lstat(rel); errors.Is(err, fs.ErrNotExist) {
		return // made and removed again
	}
	w.found = append(w.found, path.Join(m.dest, rel))
	if !m.keep {
		_ = m.root.RemoveAll(rel)
		return
	}
	base := path.Join(QuarantineDir, w.session, rel)
	dst := base
	for i := 1; ; i++ {
		if _, err := m.root.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = base + "~" + strconv.Itoa(i)
	}
	err := m.root.MkdirAll(path.Dir(dst), 0o700)
	if err == nil {
		err = m.root.Rename(rel, dst)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		_ = m.root.RemoveAll(rel)
	}
}

// begin is called as a command starts. When none was running, what appeared since the last
// one ended was made on the host (no process of the sandbox outlives its command), by the user
// or another program: it is taken for existing, not moved.
func (w *protectWatch) begin() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running == 0 && !w.closed {
		before := w.preCount()
		// The first command needs no search: the start's has just been made.
		w.process(false, w.commands == 0)
		if w.preCount() != before {
			_ = w.saveBaseline() // best effort: it only narrows what a restart would move
		}
	}
	w.running++
	w.commands++
}

// busy reports whether a command's watch has begun and not ended.
func (w *protectWatch) busy() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running > 0
}

func (w *protectWatch) preCount() int {
	n := 0
	for _, m := range w.mounts {
		n += len(m.pre)
	}
	return n
}

// end is called as a command ends; it moves out what appeared while it ran and returns the
// sandbox paths moved since the last call.
func (w *protectWatch) end() []string {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running--
	if w.closed {
		return nil
	}
	w.process(true, false)
	out := w.found
	w.found = nil
	return out
}

// process reads the events so far and acts on them: with move, it moves out the protected
// paths that appeared; without, it takes them for existing. Then, unless fresh (the mounts were
// just searched), it searches the folders it does not watch: every mount whole when blind or
// after an overflow of the event queue (lost events), else those past the watch limit.
func (w *protectWatch) process(move, fresh bool) {
	lost := false // the event queue overflowed
	for w.fd >= 0 {
		n, err := unix.Read(w.fd, w.buf)
		if n <= 0 || err != nil {
			break
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			name := strings.TrimRight(string(w.buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			switch {
			case ev.Mask&unix.IN_Q_OVERFLOW != 0:
				lost = true
			case ev.Mask&unix.IN_IGNORED != 0:
				if d, ok := w.wds[ev.Wd]; ok {
					if d.m.watched[d.rel].wd == ev.Wd {
						delete(d.m.watched, d.rel)
					}
					if w.byID[d.id] == ev.Wd {
						delete(w.byID, d.id)
					}
				}
				delete(w.wds, ev.Wd)
			case ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
				d, ok := w.wds[ev.Wd]
				if !ok || name == "" {
					continue
				}
				rel := path.Join(d.rel, name)
				switch {
				case d.m.protected(rel):
					if !move {
						d.m.pre[rel] = true
					} else if !d.m.pre[rel] {
						w.quarantine(d.m, rel)
					}
				case ev.Mask&unix.IN_ISDIR != 0:
					// A folder made or moved in: search it, and watch it and what is below.
					if w.watchTree(d.m, rel, !move) != nil {
						w.blind = true // searched in part: search everything from now on
					}
				}
			}
		}
	}
	switch {
	case lost || (w.blind && !fresh):
		// Whole: what the unwatched list says is rebuilt, and watches are tried again.
		ok := true
		w.full = false
		for _, m := range w.mounts {
			clear(m.unwatched)
			if w.watchTree(m, ".", !move) != nil {
				ok = false
			}
		}
		w.blind = !ok || w.fd < 0
	case !fresh:
		for _, m := range w.mounts {
			if len(m.unwatched) > 0 && w.searchUnwatched(m, !move) != nil {
				w.blind = true // searched in part: search everything from now on
			}
		}
	}
}

// closeDelay is how long after a session's end its inotify descriptor is closed (see close).
const closeDelay = 200 * time.Millisecond

// close ends the watch. The inotify descriptor is closed a little later, in the background:
// closing one that holds watches waits out an SRCU grace period (13 to 17 ms measured here),
// which would otherwise be on the path of every session's end in a long-lived keepup. (A
// process that exits holding watches waits for it all the same: a one-command session has
// none, see newProtectWatch.)
func (w *protectWatch) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// What commands still running made goes before the placeholders do (the quarantine is in
	// one); they are being killed.
	if w.running > 0 {
		w.process(true, false)
	}
	w.closed = true
	if w.baseline != "" {
		_ = os.Remove(w.baseline)
	}
	if fd := w.fd; fd >= 0 {
		time.AfterFunc(closeDelay, func() { unix.Close(fd) })
	}
	for _, m := range w.mounts {
		m.root.Close()
	}
}
