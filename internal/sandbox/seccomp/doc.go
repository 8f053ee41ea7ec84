// Package seccomp owns the seccomp-BPF system-call filter every sandboxed command runs under:
// the declarative rule table (which system calls, with which arguments, are refused and why),
// its compilation to classic BPF for the build's architecture (amd64 and arm64) without cgo or
// libseccomp, the raw serialization that `bwrap --seccomp FD` reads, and installing the filter
// on the current process.
//
// It is a second wall behind the namespaces, mounts and capabilities of the sandbox backend: it
// shrinks the kernel attack surface and closes escape routes (namespace and mount games,
// ptrace, io_uring, BPF, keyrings, terminal injection, foreign-architecture entry points) even
// if another layer is misconfigured. It must never produce a filter that silently allows less
// than the table says is refused: an unsupported architecture, an unknown system-call name or a
// program the kernel would reject is an error, and callers must treat that error as "no
// sandbox" (fail closed), never as "run without the filter". It must never weaken a rule to
// make a program work, and it never loosens a filter already installed (seccomp filters only
// stack).
//
// Filter exists only on Linux; elsewhere Program and Install return ErrUnsupportedArch and
// Denied returns nil, so the package can be imported (e.g. by `keepup doctor`) on any OS.
package seccomp

import (
	"errors"
	"runtime"
)

// ErrUnsupportedArch is returned where this package has no system-call table (any OS but
// Linux, and Linux architectures other than amd64 and arm64).
var ErrUnsupportedArch = errors.New("seccomp: unsupported architecture " + runtime.GOOS + "/" + runtime.GOARCH + " (supported: linux/amd64, linux/arm64)")
