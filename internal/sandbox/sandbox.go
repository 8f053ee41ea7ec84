// Package sandbox owns the isolation boundary every command of a session runs in: the Backend
// interface (start a session environment, run commands in it with streamed stdio, time out,
// kill, tear down), the session Spec (mounts, protected paths, environment allowlist, limits,
// network) and the names of the backends. Backends live in subpackages (bwrap for Linux). It
// must never fall back to running a command unconfined: a backend that cannot start fails.
package sandbox

import (
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// Mount is a host folder made visible inside the sandbox.
type Mount struct {
	Host string // absolute host path (a directory)
	Dest string // path inside: /sessions/<id>/mnt/<name>
	RW   bool
	// Protect lists paths relative to Host that must stay read-only inside even though the
	// mount is rw, whether or not they exist (DESIGN.md protected paths). Only for RW mounts.
	Protect []string
}

// Limits are per-session resource limits. Zero fields take the backend's defaults.
type Limits struct {
	Pids        int   // processes (cgroup pids.max, else RLIMIT_NPROC)
	MemoryBytes int64 // memory (cgroup memory.max, else RLIMIT_AS per process)
	CPUPercent  int   // cgroup cpu.max as a percentage of one core (cgroup only)
	OpenFiles   int   // RLIMIT_NOFILE
	FileBytes   int64 // RLIMIT_FSIZE
}

// Network says what the sandbox may reach. The zero value is no network but its own loopback.
type Network struct {
	// Serve, when set, is the session's egress proxy: the backend calls it once with a listener
	// on the proxy address inside the sandbox (a socket of the sandbox's network namespace,
	// accepted on the host), and closes the listener when the session ends or Serve returns.
	// Serve returns when the listener fails. Nil: no network at all.
	Serve func(l net.Listener) error
	// ProxyToken is the proxy's per-session token; commands find it in the proxy URL of their
	// environment (HTTP_PROXY and the rest, set by the backend).
	ProxyToken string
	// ProxyCA is the proxy's CA certificate (PEM), which the backend adds to the trust store
	// commands see.
	ProxyCA []byte
	// Env is added to every command's environment when the proxy is reachable, after the
	// backend's own proxy settings.
	Env map[string]string
}

// Enabled reports whether the sandbox reaches an egress proxy.
func (n *Network) Enabled() bool { return n.Serve != nil }

// Spec describes one session's sandbox.
type Spec struct {
	SessionID string
	Mounts    []Mount
	// Workdir is the default working directory of commands (the first grant's Dest).
	Workdir string
	// Env is added to the allowlisted base environment of every command.
	Env     map[string]string
	Limits  Limits
	Network Network
	// OneCommand says the session will run a single command (keepup sandbox exec): the backend
	// may then prefer what is cheaper to set up and tear down over what is cheaper per command.
	OneCommand bool
}

// Command is one command to run in a session.
type Command struct {
	Args    []string // Args[0] is looked up in the sandbox's PATH
	Dir     string   // working directory inside; "" means Spec.Workdir
	Env     []string // extra KEY=VALUE entries (still filtered by the allowlist rules)
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Timeout time.Duration // 0: no timeout beyond ctx
}

// Result is how a command ended.
type Result struct {
	ExitCode int // the command's exit code; 128+N when killed by signal N
	Signal   string
	TimedOut bool
	Duration time.Duration
	// Quarantined lists the protected paths (sandbox paths) that commands made in read-write
	// mounts, where the start's binds did not reach, and that were moved out of the
	// sandbox's reach when this command ended (see the backend).
	Quarantined []string
}

// Session is a started sandbox.
type Session interface {
	// Run runs one command to completion (or timeout/ctx cancellation, which kill its whole
	// process tree), streaming its output. Commands may run concurrently.
	Run(ctx context.Context, cmd Command) (Result, error)
	// Close kills everything the session started and discards its home and /tmp.
	Close() error
}

// Backend starts sessions.
type Backend interface {
	Name() string
	Start(ctx context.Context, spec Spec) (Session, error)
}

// ErrUnavailable is wrapped by errors saying a backend cannot run on this machine; the message
// carries the remedy.
var ErrUnavailable = errors.New("sandbox unavailable")
