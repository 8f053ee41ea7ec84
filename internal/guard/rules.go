package guard

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/scope"
)

// Rule names, as recorded in decisions (policy.Decision.Rule) and shown in approvals.
const (
	R1 = "R1" // tainted context: egress to a destination neither allowlisted nor named by the user
	R2 = "R2" // a destination, recipient or credential that appears only in untrusted content
	R3 = "R3" // bytes of files read in this session leaving to a destination not named by the user
	R4 = "R4" // a foreign credential for a host whose credential keepup holds (the proxy refuses)
	R5 = "R5" // tainted context: self-modification
	R6 = "R6" // untrusted content + private data: code execution with network access
	// RuleClassifier is the optional classifier's friction (allow -> ask, never more).
	RuleClassifier = "classifier"
)

// Mode is how a task runs: with a person to confirm (interactive) or without (headless).
type Mode string

const (
	Interactive Mode = "interactive"
	Headless    Mode = "headless"
)

// Config sets what each rule does when it fires and what counts as allowlisted. The zero Config
// is not useful; start from DefaultConfig. A layer below the managed policy may loosen the
// defaults (R1 to allow, say); Merge with the managed config then takes the stricter of the two
// for every setting, so the managed policy can only tighten.
type Config struct {
	// Verdicts is what each rule gives when it fires (R1, R2, R3, R5, R6, classifier).
	// policy.Allow turns a rule off. A missing rule gets its default.
	Verdicts map[string]policy.Verdict
	// Mode headless makes R2 deny rather than ask: nobody is there to see where the
	// destination came from. (Other asks stay asks; the approvals mode turns them into denies.)
	Mode Mode
	// Allowlist is the static egress allowlist R1 exempts: host patterns, "*.x.com" matching
	// subdomains of x.com (not x.com itself). Allowed, when set, is consulted instead (wire
	// the egress proxy's capability rules here). An allowlist entry exempts a destination from
	// R1 only: it is a capability, not a destination filter, so R2 and R3 still apply.
	Allowlist []string
	Allowed   func(host string) bool
	// ExecNetwork says that code execution in this session has network access (the session
	// has egress capabilities). Used when Check derives the egress from the action.
	ExecNetwork bool
	// SelfPaths are extra glob patterns (path.Match, against a target's grant-relative path and
	// its virtual path, and as substrings of command lines) that R5 protects besides the
	// protected paths: keepup's config and policy files, for instance.
	SelfPaths []string

	allowAlso []func(string) bool // managed allowlists merged in: a host must pass all
}

// DefaultConfig is the default: R1, R3, R6 and R2 ask (R2 denies headless), R5 denies,
// the classifier asks; nothing allowlisted.
func DefaultConfig() Config {
	return Config{Verdicts: defaultVerdicts(), Mode: Interactive}
}

func defaultVerdicts() map[string]policy.Verdict {
	return map[string]policy.Verdict{R1: policy.Ask, R2: policy.Ask, R3: policy.Ask, R5: policy.Deny, R6: policy.Ask, RuleClassifier: policy.Ask}
}

// Merge returns base tightened by managed: for each rule the stricter verdict, headless if
// either is, ExecNetwork if either says so, the union of SelfPaths, and an allowlist that exempts
// a host only if both layers' allowlists do (a managed config with no allowlist leaves base's).
func Merge(base, managed Config) Config {
	out := base
	out.Verdicts = map[string]policy.Verdict{}
	for _, r := range []string{R1, R2, R3, R5, R6, RuleClassifier} {
		out.Verdicts[r] = stricter(base.verdict(r), managed.verdict(r))
	}
	if managed.Mode == Headless {
		out.Mode = Headless
	}
	out.ExecNetwork = base.ExecNetwork || managed.ExecNetwork
	out.SelfPaths = append(append([]string(nil), base.SelfPaths...), managed.SelfPaths...)
	out.allowAlso = append(append([]func(string) bool(nil), base.allowAlso...), managed.allowAlso...)
	if managed.Allowed != nil || managed.Allowlist != nil {
		out.allowAlso = append(out.allowAlso, managed.allowedFunc())
	}
	return out
}

func (c Config) verdict(rule string) policy.Verdict {
	if v, ok := c.Verdicts[rule]; ok && (v == policy.Allow || v == policy.Ask || v == policy.Deny) {
		return v
	}
	return defaultVerdicts()[rule]
}

func (c Config) allowedFunc() func(string) bool {
	if c.Allowed != nil {
		return c.Allowed
	}
	list := c.Allowlist
	return func(h string) bool { return MatchHost(list, h) }
}

func (c Config) allowlisted(host string) bool {
	if !c.allowedFunc()(host) {
		return false
	}
	for _, f := range c.allowAlso {
		if !f(host) {
			return false
		}
	}
	return true
}

// MatchHost reports whether host matches one of patterns: an exact host, or "*.x.com" for the
// subdomains of x.com (not x.com, not evilx.com). Both sides are canonicalised (case, trailing
// dot, port). It is R1's allowlist test, not the proxy's: IP-literal spellings are the proxy's.
func MatchHost(patterns []string, host string) bool {
	h := CanonicalHost(host)
	if h == "" {
		return false
	}
	for _, p := range patterns {
		p = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(p)), ".")
		if rest, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(h, "."+rest) {
				return true
			}
		} else if p == h {
			return true
		}
	}
	return false
}

func rank(v policy.Verdict) int {
	switch v {
	case policy.Allow:
		return 0
	case policy.Ask:
		return 1
	}
	return 2
}

func stricter(a, b policy.Verdict) policy.Verdict {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// Finding is one rule that fired on a call.
type Finding struct {
	Rule     string         `json:"rule"`
	Decision policy.Verdict `json:"decision"`
	Reason   string         `json:"reason"`
	// Destination is what the finding is about, when it is about one (a confirmation covers
	// this call and this destination only).
	Destination string `json:"destination,omitempty"`
	// Sources are the untrusted sources the finding follows from ("file:work/report.docx").
	Sources []string `json:"sources,omitempty"`
}

// Verdict is the guard's answer for one call: the strictest finding's decision, rule and reason,
// the provenance to show, and every finding. A Verdict with Rule "" fired nothing (allow).
type Verdict struct {
	Decision policy.Verdict `json:"decision"`
	Rule     string         `json:"rule,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	// Sources are the untrusted sources to show in the approval: the deciding finding's, else
	// the context's ("this action follows content from report.docx").
	Sources  []string  `json:"sources,omitempty"`
	Findings []Finding `json:"findings,omitempty"`
}

// Fired reports whether any rule fired.
func (v Verdict) Fired() bool { return v.Rule != "" }

// Destinations lists the destinations the findings are about: what a confirmation covers.
func (v Verdict) Destinations() []string {
	var out []string
	for _, f := range v.Findings {
		if f.Destination != "" && !contains(out, f.Destination) {
			out = append(out, f.Destination)
		}
	}
	return out
}

// Provenance is the one line an approval shows: "follows content from report.docx, web:…".
func (v Verdict) Provenance() string {
	if len(v.Sources) == 0 {
		return "follows your request only"
	}
	return "follows content from " + strings.Join(v.Sources, ", ")
}

// Prompt is the approval text for a guard ask: the rule, why, and where it came from, one
// finding per line.
func (v Verdict) Prompt() string {
	if !v.Fired() {
		return ""
	}
	var b strings.Builder
	for i, f := range v.Findings {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s (%s): %s", f.Rule, f.Decision, f.Reason)
		if len(f.Sources) > 0 {
			fmt.Fprintf(&b, " — this action follows content from %s", strings.Join(f.Sources, ", "))
		}
	}
	return b.String()
}

// Decision is the verdict as a policy decision made by the guard (By: guard, Rule: "R2"...)
// for the action's effect.
func (v Verdict) AsDecision(effect policy.Effect) policy.Decision {
	return policy.Decision{Verdict: v.Decision, Effect: effect, Rule: v.Rule, By: policy.ByGuard, Reason: v.Reason}
}

// Apply combines the guard's verdict with policy's decision d for the same call: the stricter
// wins; on a tie between two asks (or two denies) the guard's decision is kept, so that the
// approval names the rule and the provenance and is never covered by an earlier
// "yes for this task" (guard confirmations are per call and per destination). A verdict that
// fired nothing returns d unchanged.
func (v Verdict) Apply(d policy.Decision) policy.Decision {
	if !v.Fired() || rank(v.Decision) < rank(d.Verdict) || v.Decision == policy.Allow {
		return d
	}
	return v.AsDecision(d.Effect)
}

// R4Verdict is the verdict to record when the egress proxy refused a request that carried a
// foreign credential for a host whose credential keepup holds (rule R4: enforced by the proxy,
// not by Check). host is the request's host; detail what the proxy saw ("x-api-key header").
func R4Verdict(host, detail string, sources []string) Verdict {
	f := Finding{Rule: R4, Decision: policy.Deny, Destination: CanonicalHost(host), Sources: sources,
		Reason: fmt.Sprintf("the request to %s carried a credential that is not keepup's (%s); the proxy refused it", CanonicalHost(host), detail)}
	return Verdict{Decision: policy.Deny, Rule: R4, Reason: f.Reason, Sources: sources, Findings: []Finding{f}}
}

// Rules evaluates outgoing actions against the context before policy.
type Rules struct {
	Config Config
}

// NewRules returns rules with cfg (already merged with the managed config).
func NewRules(cfg Config) *Rules { return &Rules{Config: cfg} }

// Check evaluates one call before policy. a is the classified action; eg describes its outbound
// data when known (nil: derived from a's ops — EffectEgress subjects as hosts, EffectExec and
// EffectUnknown subjects as command lines run with Config.ExecNetwork). It never returns a
// verdict looser than allow-with-no-findings, and never approves anything policy would ask or
// deny: combine with Verdict.Apply.
func (r *Rules) Check(ctx *Context, a policy.Action, eg *Egress) Verdict {
	cfg := r.Config
	if eg == nil {
		eg = deriveEgress(a, cfg.ExecNetwork)
	}
	var fs []Finding
	add := func(rule, dest, reason string, sources []string) {
		v := cfg.verdict(rule)
		if rule == R2 && cfg.Mode == Headless && v != policy.Allow {
			v = policy.Deny
		}
		if v == policy.Allow {
			return
		}
		fs = append(fs, Finding{Rule: rule, Decision: v, Destination: dest, Reason: reason, Sources: sources})
	}
	label := ctx.Label()
	ctxSources := label.UntrustedSources()
	tainted := label.Trust == Untrusted
	// Code without network access sends nothing anywhere (the sandbox has no other way out).
	outbound := eg != nil && ((eg.Exec && eg.Network) || (!eg.Exec && (len(eg.Destinations) > 0 || len(eg.Payload) > 0)))

	// R5: self-modification while tainted.
	if tainted {
		if what := selfModification(a, cfg.SelfPaths); what != "" {
			add(R5, "", fmt.Sprintf("%s would change %s while the context holds untrusted content", a.Tool, what), ctxSources)
		}
	}

	if outbound {
		// R1: tainted context, destination neither allowlisted nor named by the user.
		if tainted {
			for _, d := range eg.Destinations {
				if ctx.namedByUser(d.Kind, d.Value) || (d.Kind == DestHost && cfg.allowlisted(d.Value)) {
					continue
				}
				add(R1, d.Value, fmt.Sprintf("sends to %s, which you did not name and is not allowlisted, after reading untrusted content", d.Value), ctxSources)
			}
		}
		// R2: destinations and credentials that only untrusted content names.
		for _, d := range eg.Destinations {
			if ctx.namedByUser(d.Kind, d.Value) {
				continue
			}
			if src := ctx.untrustedSourcesOf(d.Value, false); len(src) > 0 {
				add(R2, d.Value, fmt.Sprintf("the %s %s appears only in untrusted content, not in your request", d.Kind, d.Value), src)
			}
		}
		if len(eg.Destinations) > 0 || !eg.Exec {
			seen := map[string]bool{}
			for _, cred := range credentials(string(eg.Payload)) {
				if seen[cred] || ctx.trustedHas(cred) {
					continue
				}
				seen[cred] = true
				if src := ctx.untrustedSourcesOf(cred, true); len(src) > 0 {
					add(R2, firstOr(eg.hosts(), ""), fmt.Sprintf("sends a credential (%s) that appears only in untrusted content", redact(cred)), src)
				}
			}
		}
		// R3: file bytes leaving to a destination the user did not name. A destination the
		// user named is exempt only while nothing but the session's own files is in the
		// context: once a page, command output or connector result is there, it may be what
		// asked for the send (a page on the very host the user named, telling the model to
		// send a file back to it), so the send is confirmed wherever it goes.
		files, secrets := fileBytesLeaving(ctx, eg.Payload)
		// A secret found in a file (a password, a key) is confirmed wherever it goes, a
		// destination the user named too: asking for a report to be sent there is not asking
		// for the credentials beside it. Only a secret the user wrote themselves is exempt.
		if len(secrets) > 0 {
			var from []string
			for _, s := range secrets {
				if !contains(from, s.path) {
					from = append(from, s.path)
				}
			}
			sort.Strings(from)
			dests := []string{}
			for _, d := range eg.Destinations {
				dests = append(dests, d.Value)
			}
			if len(dests) == 0 {
				dests = append(dests, "")
			}
			for _, d := range dests {
				to := d
				if to == "" {
					to = "the network"
				}
				add(R3, d, fmt.Sprintf("sends a secret (a password, key or token of %d characters) from %s (read in this session) to %s", len(secrets[0].value), strings.Join(from, ", "), to),
					append(from, ctx.nonFileSources()...))
			}
		}
		what := "bytes of " + strings.Join(files, ", ") + " (read in this session)"
		if len(eg.Files) > 0 {
			// Uploading a file sends its bytes whether or not the session read it.
			files = append(files, eg.Files...)
			what = "the file(s) " + strings.Join(files, ", ")
		}
		if len(files) > 0 {
			foreign := ctx.nonFileSources()
			unnamed := []string{}
			for _, d := range eg.Destinations {
				if !ctx.namedByUser(d.Kind, d.Value) || len(foreign) > 0 {
					unnamed = append(unnamed, d.Value)
				}
			}
			if len(eg.Destinations) == 0 {
				unnamed = append(unnamed, "") // code with network access, destination unknown
			}
			for _, d := range unnamed {
				to := d
				if to == "" {
					to = "the network"
				}
				why := "which you did not name"
				if len(foreign) > 0 && ctx.namedByUser(DestHost, d) {
					why = "while content from " + strings.Join(foreign, ", ") + " is in the context"
				}
				add(R3, d, fmt.Sprintf("sends %s to %s, %s", what, to, why), append(files, foreign...))
			}
		}
	}

	// R6: untrusted content + private data + code execution with network access.
	if tainted && ctx.Private() && execWithNetwork(a, eg) {
		add(R6, "", "runs code with network access while the context holds untrusted content and files you read", ctxSources)
	}

	// Classifier friction: only turns allow into ask, for consequential actions.
	if len(fs) == 0 && consequential(a, eg) {
		if fl := ctx.flaggedSources(); len(fl) > 0 {
			if v := cfg.verdict(RuleClassifier); v != policy.Allow {
				fs = append(fs, Finding{Rule: RuleClassifier, Decision: policy.Ask, Reason: "the content classifier flagged content this action may follow", Sources: fl})
			}
		}
	}
	return verdictOf(fs, ctxSources)
}

func verdictOf(fs []Finding, ctxSources []string) Verdict {
	if len(fs) == 0 {
		return Verdict{Decision: policy.Allow}
	}
	// The strictest finding decides; among equally strict ones, the most specific rule (the
	// one whose reason says most about this call): R5, R4, R2, R3, R6, R1, classifier.
	best := 0
	for i, f := range fs {
		if rank(f.Decision) > rank(fs[best].Decision) || (rank(f.Decision) == rank(fs[best].Decision) && specificity(f.Rule) > specificity(fs[best].Rule)) {
			best = i
		}
	}
	v := Verdict{Decision: fs[best].Decision, Rule: fs[best].Rule, Reason: fs[best].Reason, Sources: fs[best].Sources, Findings: fs}
	if len(v.Sources) == 0 {
		v.Sources = ctxSources
	}
	return v
}

func specificity(rule string) int {
	switch rule {
	case R5:
		return 6
	case R4:
		return 5
	case R2:
		return 4
	case R3:
		return 3
	case R6:
		return 2
	case R1:
		return 1
	}
	return 0
}

// deriveEgress builds an Egress from the action's ops when the caller gave none.
func deriveEgress(a policy.Action, network bool) *Egress {
	var eg *Egress
	for _, op := range a.Ops {
		switch op.Effect {
		case policy.EffectEgress:
			if eg == nil {
				eg = &Egress{Via: a.Tool}
			}
			if op.Subject != "" {
				f := FetchEgress(op.Subject)
				eg.Destinations = append(eg.Destinations, f.Destinations...)
				eg.Payload = append(append(eg.Payload, op.Subject...), '\n')
			}
		case policy.EffectExec, policy.EffectUnknown:
			if op.Subject == "" || op.Subject == a.Tool {
				if eg == nil {
					eg = &Egress{Via: a.Tool}
				}
				eg.Exec, eg.Network = true, eg.Network || network
				continue
			}
			c := CommandEgress(op.Subject, network)
			if eg == nil {
				eg = c
				continue
			}
			eg.Exec, eg.Network = true, eg.Network || network
			for _, d := range c.Destinations {
				if !containsDest(eg.Destinations, d) {
					eg.Destinations = append(eg.Destinations, d)
				}
			}
			if !strings.Contains(string(eg.Payload), op.Subject) {
				eg.Payload = append(append(eg.Payload, op.Subject...), '\n')
			}
		}
	}
	return eg
}

func containsDest(ds []Destination, d Destination) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

// fileBytesLeaving returns the files whose bytes occur in payload or in a decoded form of it.
func fileBytesLeaving(ctx *Context, payload []byte) (files []string, secrets []fileSecret) {
	if len(payload) < minSecret || !ctx.Private() {
		return nil, nil
	}
	for _, form := range decodedForms(payload, ctx.hasSecrets()) {
		for _, f := range ctx.fileBytesIn(form) {
			if !contains(files, f) {
				files = append(files, f)
			}
		}
		for _, s := range ctx.fileSecretsIn(form) {
			if !slices.Contains(secrets, s) {
				secrets = append(secrets, s)
			}
		}
	}
	sort.Strings(files)
	return files, secrets
}

// selfModification names the self-modifying target of a, or "" when it has none: a write,
// delete or move of a protected path (DESIGN.md) or of a SelfPaths pattern; or code execution
// whose command line names one (a script can write anywhere its sandbox lets it).
func selfModification(a policy.Action, extra []string) string {
	for _, op := range a.Ops {
		switch op.Effect {
		case policy.EffectCreate, policy.EffectOverwrite, policy.EffectDelete, policy.EffectMove, policy.EffectMoveOut, policy.EffectUnknown, policy.EffectExec:
		default:
			continue
		}
		if t := op.Target; t != nil {
			if t.Protected || scope.Protected(t.Rel) || matchSelf(extra, t.Rel) || matchSelf(extra, t.Virtual) {
				return targetName(t)
			}
		}
		if op.Effect == policy.EffectExec || op.Effect == policy.EffectUnknown || op.Target == nil {
			if w := selfWord(op.Subject, extra); w != "" {
				return w
			}
		}
	}
	return ""
}

func targetName(t *policy.Target) string {
	if t.Virtual != "" {
		return t.Virtual
	}
	return t.Grant + "/" + t.Rel
}

// selfNames are the words that, in a command line, name a self-modification target.
var selfNames = []string{".git/hooks", ".git/config", ".gitmodules", ".bashrc", ".bash_profile", ".zshrc",
	".zprofile", ".profile", ".gitconfig", ".mcp.json", ".claude/", ".keepup", ".vscode/", ".idea/",
	"managed-policy", "keepup/config", "keepup_managed_policy", "keepup_home"}

func selfWord(cmd string, extra []string) string {
	lc := strings.ToLower(cmd)
	for _, n := range selfNames {
		if strings.Contains(lc, n) {
			return n
		}
	}
	for _, p := range extra {
		if lit := strings.Trim(p, "*?"); lit != "" && !strings.ContainsAny(lit, "*?[") && strings.Contains(lc, strings.ToLower(lit)) {
			return lit
		}
	}
	return ""
}

func matchSelf(patterns []string, p string) bool {
	if p == "" {
		return false
	}
	for _, pat := range patterns {
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
		if ok, _ := path.Match(pat, path.Base(p)); ok {
			return true
		}
	}
	return false
}

// execWithNetwork reports whether a runs code with network access.
func execWithNetwork(a policy.Action, eg *Egress) bool {
	if eg != nil && eg.Exec && eg.Network {
		return true
	}
	return false
}

// consequential reports whether a does more than read and plan.
func consequential(a policy.Action, eg *Egress) bool {
	if eg != nil && (len(eg.Destinations) > 0 || eg.Exec) {
		return true
	}
	for _, op := range a.Ops {
		if op.Effect != policy.EffectRead && op.Effect != policy.EffectNone {
			return true
		}
	}
	return false
}

// redact shows a credential's shape without the credential: its first 4 and last 2 characters.
func redact(s string) string {
	if len(s) <= 10 {
		return strings.Repeat("*", len(s))
	}
	return s[:4] + "…" + s[len(s)-2:]
}

func firstOr(xs []string, d string) string {
	if len(xs) > 0 {
		return xs[0]
	}
	return d
}
