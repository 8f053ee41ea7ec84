//go:build linux && !amd64 && !arm64

package seccomp

// No system-call table for this architecture: Filter, Program and Install return
// ErrUnsupportedArch, and callers must not run sandboxed commands without the filter.
var arch = archTable{}
