// Package bwrap owns keepup's Linux sandbox backend: one long-lived bubblewrap sandbox per
// session, in which every command of the session runs.
//
// It owns the sandbox's shape: the namespaces (user, mapped to the unprivileged "keepup" uid
// 1000 whatever keepup runs as; pid; ipc; uts; network, loopback only, with the session's egress
// proxy at ProxyAddr when Spec.Network reaches one (no resolver: the proxy resolves names); cgroup), the filesystem
// (read-only /usr and system links, a curated read-only /etc with generated passwd, group and
// hosts, a fresh /proc and /dev, tmpfs /tmp and home discarded with the session, the grants at
// their destinations, protected paths of read-write grants kept read-only by binds whether or
// not they exist, the rest of the root read-only), no capabilities, an allowlisted
// environment, the seccomp filter of package seccomp, per-session cgroup limits (v2 when a
// usable hierarchy exists, else writable v1 pids and memory folders, and per-command rlimits
// for what no cgroup bounds), and the control channel to the helper of package inside that runs
// the commands. It also cleans up after a session: bwrap and everything in it dies at Close or
// when keepup dies, and the placeholder mountpoints it made on the host are removed.
//
// It must never run a command outside the sandbox or in a weaker one than asked: a missing
// bwrap, a kernel without user namespaces, a seccomp filter that cannot be built or a
// protected path it cannot guard is an error (sandbox.ErrUnavailable carries the remedy), never
// a fallback. It must never expose the host's environment, home, accounts or keys inside, never
// follow a symlink in a grant to bind something outside it, and never remove a host file it
// did not create.
package bwrap
