// Package policy owns the decision for every action the agent would take: the rule language
// (Claude Code style, `Kind` or `Kind(pattern)`), the layers (managed policy first, then the
// user's configuration), the defaults per effect, protected paths, deletion protection and the
// approval modes (ask, deny, auto). It turns a classified Action into one Decision: allow, ask
// or deny, with the rule that decided it and who made it.
//
// It is pure: it must never touch the file system, the network or a person, never read
// configuration (internal/config does that), and never let a lower layer or a mode widen what
// the managed policy decided. It must fail closed: an effect it does not know is asked about,
// in every mode.
package policy
