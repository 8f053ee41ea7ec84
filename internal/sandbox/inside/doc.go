// Package inside owns the two keepup processes that live inside a session's bubblewrap
// sandbox, and the wire protocol the backend speaks to them:
//
//   - the helper (`keepup __sandbox-helper`, [HelperMain]): one per session, bwrap's child. It
//     reads run and kill requests from the control socket it inherits as fd 3 (the command's
//     stdin, stdout and stderr arrive with each request as SCM_RIGHTS file descriptors), starts
//     one exec stub per command and replies when the stub exits. When the control socket closes
//     (the session ends, or keepup died) it exits, and with it the sandbox's pid namespace.
//   - the exec stub (`keepup __sandbox-exec`, [ExecMain]): one per command. It sets the
//     resource limits, becomes the child subreaper, starts the command under Landlock in its own
//     process group, enforces the wall-clock timeout, and when the command ends (or times out,
//     or is killed) kills every process the command left behind before it reports how the
//     command ended.
//
// The sandbox's namespaces, mounts and seccomp filter are set up outside, by package bwrap,
// before either process starts; this package adds the per-command confinement. It must never
// run outside a sandbox (both mains refuse to start without the state bwrap leaves), never run a
// command unconfined when a Landlock ruleset was asked for and cannot be built, never leave a
// command's descendants running after its stub reports, and never hold anything from the host
// but the file descriptors it is handed.
package inside
