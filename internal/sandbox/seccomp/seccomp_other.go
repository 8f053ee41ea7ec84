//go:build !linux

package seccomp

// Program returns ErrUnsupportedArch: seccomp exists only on Linux.
func Program() ([]byte, error) { return nil, ErrUnsupportedArch }

// Install returns ErrUnsupportedArch: seccomp exists only on Linux.
func Install() error { return ErrUnsupportedArch }

// Denied returns nil: there is no filter on this OS.
func Denied() []string { return nil }
