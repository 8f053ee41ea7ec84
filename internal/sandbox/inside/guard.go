package inside

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// GuardCommand makes keepup the guard stage ([GuardMain]).
const GuardCommand = "__sandbox-guard"

// GuardFailed is the guard stage's exit code when it could not make the guards (bwrap never
// ran): the backend then starts the session again with bwrap's own binds.
const GuardFailed = 125

// GuardPlan is what the guard stage does: the guards' mounts, then bwrap.
type GuardPlan struct {
	Bwrap  string       `json:"bwrap"`
	Args   []string     `json:"args"`   // bwrap's arguments
	Guards []GuardMount `json:"guards"` // in order: a folder's guard before those inside it
}

// GuardMount is one guard: a mount over a protected path of a read-write mount.
type GuardMount struct {
	Root string `json:"root"` // the read-write mount's host folder (symlinks resolved)
	Rel  string `json:"rel"`  // the guarded path in it (slash-separated)
	// Src is what is bound there, an empty file or folder of keepup's state folder; "" binds
	// the guarded path onto itself (a pin, or a read-only bind).
	Src string `json:"src,omitempty"`
	RO  bool   `json:"ro,omitempty"`
	// Dev and Ino are the guarded path's, as the backend planned the guard: the stage refuses
	// to guard anything else that may have taken its name since.
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// GuardMain is `keepup __sandbox-guard FD`: the first stage of a session's sandbox, started by
// the backend in a user and mount namespace of its own. It reads a [GuardPlan] from FD, makes
// the guards' mounts at their host paths in its mount namespace (nothing of it reaches the
// host's), and execs bwrap, whose bind of each read-write mount (recursive, as bwrap binds)
// takes the guards inside with it.
//
// It replaces a bwrap bind per guard: for each, bwrap resolves the destination one component
// at a time and reads the whole mount table to remount it read-only, so that a session's start
// took time quadratic in its guards (4.6 s for a folder of 100 repositories, some 1,500
// guards). Here each guard is three system calls: a detached copy of what is bound
// (open_tree), made read-only before anyone can see it (mount_setattr), attached onto the
// guarded path through a descriptor that names the very inode planned (move_mount).
func GuardMain(args []string) int {
	if err := guardMain(args); err != nil {
		fmt.Fprintf(os.Stderr, "keepup sandbox guard: %v\n", err)
		return GuardFailed
	}
	return 0 // not reached: guardMain execs bwrap
}

func guardMain(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want one argument: the plan's descriptor")
	}
	fd, err := strconv.Atoi(args[0])
	if err != nil || fd < 3 {
		return fmt.Errorf("plan descriptor %q: not a descriptor above 2", args[0])
	}
	f := os.NewFile(uintptr(fd), "plan")
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("read the plan: %w", err)
	}
	var plan GuardPlan
	if err := json.Unmarshal(data, &plan); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	if plan.Bwrap == "" {
		return fmt.Errorf("plan: no bwrap")
	}
	// Nothing mounted here propagates anywhere (a namespace its user namespace owns gets slave
	// copies of shared mounts anyway; private says so outright).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	for _, g := range plan.Guards {
		if err := guard(g); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(g.Root, g.Rel), err)
		}
	}
	return syscall.Exec(plan.Bwrap, append([]string{plan.Bwrap}, plan.Args...), []string{})
}

// guard makes one guard's mount.
func guard(g GuardMount) error {
	dst, err := OpenNoFollow(g.Root, g.Rel)
	if err != nil {
		return err
	}
	defer dst.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(dst.Fd()), &st); err != nil {
		return err
	}
	if uint64(st.Dev) != g.Dev || st.Ino != g.Ino {
		return fmt.Errorf("replaced since the session was planned (device %d inode %d, planned %d %d)", st.Dev, st.Ino, g.Dev, g.Ino)
	}
	var tree int
	if g.Src == "" {
		tree, err = unix.OpenTree(int(dst.Fd()), "", unix.AT_EMPTY_PATH|unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	} else {
		tree, err = unix.OpenTree(unix.AT_FDCWD, g.Src, unix.AT_SYMLINK_NOFOLLOW|unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	}
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(tree)
	attr := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if g.RO {
		attr |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: attr}); err != nil {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	if err := unix.MoveMount(tree, "", int(dst.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// OpenNoFollow opens host/rel with O_PATH, refusing a symlink in any component of rel except
// the last, which is opened itself if it is one. The descriptor names exactly the inode that
// was checked, so a rename racing with the start cannot redirect a mount.
func OpenNoFollow(host, rel string) (*os.File, error) {
	fd, err := unix.Open(host, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: host, Err: err}
	}
	if rel != "" && rel != "." {
		comps := strings.Split(rel, "/")
		for i, c := range comps {
			flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC
			if i < len(comps)-1 {
				flags |= unix.O_DIRECTORY
			}
			nfd, err := unix.Openat(fd, c, flags, 0)
			unix.Close(fd)
			if err != nil {
				return nil, &fs.PathError{Op: "open", Path: filepath.Join(host, filepath.Join(comps[:i+1]...)), Err: err}
			}
			fd = nfd
		}
	}
	return os.NewFile(uintptr(fd), filepath.Join(host, rel)), nil
}
