package scope

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// Error is a refused or failed file operation, worded for the model: Msg names the path as the
// agent sees it (/sessions/<id>/mnt/...) and says what is wrong, never a host path. Tools turn it
// into a tool refusal. Err, when set, is the underlying cause (errors.Is(err, fs.ErrNotExist)
// works through it).
type Error struct {
	Path string // the virtual path concerned, "" if none
	Msg  string // one line, the whole message
	Err  error
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// refuse returns a refusal about p.
func refuse(virtual, msg string) *Error {
	return &Error{Path: virtual, Msg: virtual + ": " + msg}
}

// errEscapes is os.Root's (unexported) error for a path or symlink that leads out of the root.
const errEscapes = "path escapes from parent"

// wrapErr turns an error from an os.Root operation on virtual into an *Error whose message
// carries no host path. Errors that are already *Error pass through.
func wrapErr(virtual, op string, err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	return &Error{Path: virtual, Msg: virtual + ": " + op + ": " + describe(err), Err: err}
}

// describe says what an os error means without the paths os puts in it.
func describe(err error) string {
	switch {
	case strings.Contains(err.Error(), errEscapes):
		return "a symbolic link or path leads outside the granted folder; refused"
	case errors.Is(err, fs.ErrNotExist):
		return "no such file or directory"
	case errors.Is(err, fs.ErrExist):
		return "already exists"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.Is(err, syscall.ENOTDIR):
		return "a path component is not a directory"
	case errors.Is(err, syscall.EISDIR):
		return "is a directory"
	case errors.Is(err, syscall.ENOTEMPTY):
		return "directory not empty"
	case errors.Is(err, syscall.ELOOP):
		return "too many levels of symbolic links"
	case errors.Is(err, syscall.ENOSPC):
		return "no space left on device"
	case errors.Is(err, syscall.EROFS):
		return "read-only file system"
	case errors.Is(err, syscall.EXDEV):
		return "cross-device move"
	case errors.Is(err, syscall.EINVAL):
		return "invalid argument"
	}
	// Strip the *PathError / *LinkError wrappers: their paths are host paths.
	for {
		switch e := err.(type) {
		case *os.PathError:
			err = e.Err
			continue
		case *os.LinkError:
			err = e.Err
			continue
		case *os.SyscallError:
			err = e.Err
			continue
		}
		return err.Error()
	}
}
