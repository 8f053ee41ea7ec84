// Package inside owns the two keepup processes that live inside a session's bubblewrap
// sandbox, and the wire protocol the backend speaks to them:
//
//   - the helper (`keepup __sandbox-helper`, [HelperMain]): one per session, bwrap's child. It
//     reads run and kill requests from the control socket it inherits as fd 3 (the command's
//     stdin, stdout and stderr arrive with each request as SCM_RIGHTS file descriptors), hands
//     each command to an exec stub and replies when the stub reports it ended. It keeps idle
//     stubs ready for the next commands (one started ahead of the first, and those whose
//     command ended cleanly: a stub's start and runtime initialization are then off the
//     command's path), and kills them when it exits. When the control socket closes
//     (the session ends, or keepup died) it exits, and with it the sandbox's pid namespace.
//     When the session has an egress proxy it listens on the proxy address in the sandbox's
//     network namespace before anything runs there, and sends the listening socket to the
//     backend with its ready message (listen.go): the backend accepts and serves the
//     commands' proxy connections on the host.
//   - the exec stub (`keepup __sandbox-exec`, [ExecMain]): runs one command at a time, which
//     it receives (with the command's stdio) on the stream socket it inherits as fd 3. It sets
//     the resource limits, is the child subreaper, starts the command under Landlock (from a
//     thread of its own that dies with the command) in its own process group, enforces the
//     wall-clock timeout, and when the command ends (or times out, or is killed) kills every
//     process the command left behind before it reports how the command ended; then it waits
//     for the next command. Nothing of a command outlives its report, so the next one finds
//     the stub as the first did.
//
// The sandbox's namespaces, mounts and seccomp filter are set up outside, by package bwrap,
// before either process starts; this package adds the per-command confinement (Landlock, on
// the command's thread only, so that under its scoping commands cannot signal or trace the
// helper and the stub; rlimits; the subreaper). Signals still reach the stub through the
// thread it started the command from, which shares the command's domain (and on a kernel
// without the scoping, through any thread of any stub), so a command can stop its stub: the
// helper never hands a command to a stub that is stopped or dead, and kills a stopped stub,
// after what its command started, at the command's timeout or kill request. A command can
// kill its stub too: the helper is the sandbox's child subreaper, so what the command started
// is then reparented to it, and it kills and reaps every child of its own that is not a live
// stub (with their descendants) before it replies for that command, and whenever a child
// exits (reap.go).
//
// This package is meant to be started only by package bwrap, inside a sandbox:
// it trusts its control socket and arguments. It must never start a command when a Landlock
// ruleset it could build cannot be applied (a kernel without Landlock runs commands without
// it, and says so in the reply), never hand a command any descriptor but its stdio, never let
// a command's descendants outlive the reply that says it ended, and never read the host's
// environment or files beyond what the sandbox shows it.
package inside
