package policy

// Effect is the class of what one operation does. Policy rules, defaults and approval modes are
// decided per effect. An operation whose effect is not known is EffectUnknown, the most dangerous
// class (fail closed).
type Effect string

const (
	EffectNone      Effect = "none"      // no effect outside the runtime (update_plan, ask_user)
	EffectRead      Effect = "read"      // reads inside a grant
	EffectCreate    Effect = "create"    // creates a file that did not exist in a rw grant
	EffectOverwrite Effect = "overwrite" // replaces or edits an existing file
	EffectDelete    Effect = "delete"    // removes a file or directory
	EffectMove      Effect = "move"      // renames within one grant (the source disappears)
	EffectMoveOut   Effect = "move_out"  // moves out of its grant into another one
	EffectExec      Effect = "exec"      // runs code (bash; later issues)
	EffectEgress    Effect = "egress"    // sends data out (web_fetch; later issues)
	EffectUnknown   Effect = "unknown"   // not classified: treated as the most dangerous
)

// Target is a path an operation touches, as the policy sees it.
type Target struct {
	Grant     string `json:"grant"`               // grant name ("outputs", "uploads" included)
	Rel       string `json:"rel"`                 // slash-separated path inside the grant, "." for its root
	Virtual   string `json:"path"`                // /sessions/<id>/mnt/<grant>/<rel>
	Protected bool   `json:"protected,omitempty"` // a protected path (DESIGN.md)
	Exists    bool   `json:"exists"`
}

// Op is one effect on one target (or on none, for EffectNone/Exec/Egress).
type Op struct {
	Effect Effect  `json:"effect"`
	Target *Target `json:"target,omitempty"`
	// Subject is what non-path rules match against: a command line for Bash, a host for
	// WebFetch, the tool name otherwise.
	Subject string `json:"subject,omitempty"`
}

// Action is everything one tool call would do, classified. A call is decided as the most
// restrictive decision over its ops.
type Action struct {
	Tool    string `json:"tool"`
	Ops     []Op   `json:"ops"`
	Summary string `json:"summary"` // one line a person can judge: "delete receipts/old.csv"
}

// Verdict is a decision's outcome.
type Verdict string

const (
	Allow Verdict = "allow"
	Ask   Verdict = "ask"
	Deny  Verdict = "deny"
)

// By says who made a decision (DESIGN.md policy.decision "by").
type By string

const (
	ByRule    By = "rule"
	ByUser    By = "user"
	ByMode    By = "mode"
	ByManaged By = "managed"
	ByGuard   By = "guard"
)

// Decision is the outcome for one call.
type Decision struct {
	Verdict Verdict `json:"decision"`
	Effect  Effect  `json:"effect"`
	Rule    string  `json:"rule"` // rule text, or "default:<effect>", or "mode:<mode>"
	By      By      `json:"by"`
	Reason  string  `json:"reason,omitempty"`
	// Op is the index in Action.Ops of the op that decided (0 for DecideOp).
	Op int `json:"op,omitempty"`
	// Target is the path of the deciding op's target, if it has one.
	Target string `json:"target,omitempty"`
}
