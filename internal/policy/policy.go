package policy

import (
	"fmt"
	"strings"
)

// Mode is a task's approvals mode (`--approvals`).
type Mode string

const (
	// ModeAsk: what needs approval is asked of a person.
	ModeAsk Mode = "ask"
	// ModeDeny: nobody is there to ask; whatever needs approval is refused.
	ModeDeny Mode = "deny"
	// ModeAuto: what needs approval by default is allowed, except deletions, moves out of a
	// grant, protected paths, unknown effects and whatever a rule explicitly asks about.
	ModeAuto Mode = "auto"
)

// Modes lists every approvals mode.
var Modes = []Mode{ModeAsk, ModeDeny, ModeAuto}

// ParseMode parses an approvals mode: ask, deny or auto.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown approvals mode %s (want ask, deny or auto)", quote(s))
}

// Layer names where a rule came from; it prefixes the rule text in a Decision.
type Layer string

const (
	LayerManaged Layer = "managed"
	LayerUser    Layer = "user"
)

// Rules is one layer's rule set.
type Rules struct {
	// Source is the file the rules were read from, for messages ("" if none).
	Source string
	Allow  []Rule
	Ask    []Rule
	Deny   []Rule
	// AllowedModes, in the managed layer only, lists the approvals modes a task may run
	// in; empty means every mode. Ignored in the user layer.
	AllowedModes []Mode
}

// ParseRules parses allow/ask/deny lists of rule strings. Errors name the list and index,
// e.g. `deny[2]: unknown rule kind "Delet" in "Delet(*)"`.
func ParseRules(allow, ask, deny []string) (*Rules, error) {
	rs := &Rules{}
	for _, l := range []struct {
		name string
		in   []string
		out  *[]Rule
	}{{"allow", allow, &rs.Allow}, {"ask", ask, &rs.Ask}, {"deny", deny, &rs.Deny}} {
		for i, s := range l.in {
			r, err := ParseRule(s)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", l.name, i, err)
			}
			*l.out = append(*l.out, r)
		}
	}
	return rs, nil
}

// Policy decides actions. It is immutable and safe for concurrent use.
type Policy struct {
	managed Rules
	user    Rules
}

// New returns a policy over the managed layer (which always wins) and the user's layer.
// Either may be nil. The rule sets are copied.
func New(managed, user *Rules) *Policy {
	p := &Policy{}
	if managed != nil {
		p.managed = copyRules(managed)
	}
	if user != nil {
		p.user = copyRules(user)
		p.user.AllowedModes = nil
	}
	return p
}

func copyRules(r *Rules) Rules {
	return Rules{
		Source:       r.Source,
		Allow:        append([]Rule(nil), r.Allow...),
		Ask:          append([]Rule(nil), r.Ask...),
		Deny:         append([]Rule(nil), r.Deny...),
		AllowedModes: append([]Mode(nil), r.AllowedModes...),
	}
}

// AllowedModes returns the approvals modes a task may use.
func (p *Policy) AllowedModes() []Mode {
	if len(p.managed.AllowedModes) == 0 {
		return append([]Mode(nil), Modes...)
	}
	return append([]Mode(nil), p.managed.AllowedModes...)
}

// CheckMode returns an error naming the mode and the managed policy file when the managed
// policy does not allow m, or when m is not a mode.
func (p *Policy) CheckMode(m Mode) error {
	if _, err := ParseMode(string(m)); err != nil {
		return err
	}
	if p.modeAllowed(m) {
		return nil
	}
	src := p.managed.Source
	if src == "" {
		src = "(no file)"
	}
	names := make([]string, len(p.managed.AllowedModes))
	for i, a := range p.managed.AllowedModes {
		names[i] = string(a)
	}
	return fmt.Errorf("approvals mode %s is not allowed by the managed policy %s (allowed: %s)",
		quote(string(m)), src, strings.Join(names, ", "))
}

func (p *Policy) modeAllowed(m Mode) bool {
	if len(p.managed.AllowedModes) == 0 {
		return true
	}
	for _, a := range p.managed.AllowedModes {
		if a == m {
			return true
		}
	}
	return false
}

// Default returns the verdict for an effect when no rule matches: reads, creates, moves
// within a grant, effect-free calls and running code are allowed; overwrites, deletions, moves
// out of a grant, sending data out and anything unknown are asked about. Running code is
// allowed because it only ever runs inside the session's sandbox, with no network and only the
// grants; what a command would delete, move or overwrite is classified as that effect instead,
// so those still ask.
func Default(e Effect) Verdict {
	switch normalEffect(e) {
	case EffectRead, EffectCreate, EffectMove, EffectNone, EffectExec:
		return Allow
	}
	return Ask
}

// sticky reports whether an ask for e survives auto mode (deletion protection, fail closed).
func sticky(e Effect) bool {
	switch e {
	case EffectDelete, EffectMoveOut, EffectUnknown:
		return true
	}
	return false
}

// guarded reports whether a protected target makes e need approval: anything but reading.
func guarded(op Op, e Effect) bool {
	return op.Target != nil && op.Target.Protected && e != EffectRead && e != EffectNone
}

var rank = map[Verdict]int{Allow: 0, Ask: 1, Deny: 2}

// Decide returns the decision for a whole action: the most restrictive over its ops (deny >
// ask > allow; the first op wins a tie), naming the op, effect and rule that decided it. An
// action with no ops is decided as one op of unknown effect (fail closed).
func (p *Policy) Decide(a Action, mode Mode) Decision {
	ops := a.Ops
	if len(ops) == 0 {
		ops = []Op{{Effect: EffectUnknown, Subject: a.Tool}}
	}
	var best Decision
	for i, op := range ops {
		d := p.DecideOp(a.Tool, op, mode)
		d.Op = i
		if i == 0 || rank[d.Verdict] > rank[best.Verdict] {
			best = d
		}
	}
	return best
}

// DecideOp returns the decision for one op of a call to tool:
//
//  1. every rule of both layers matching the op is collected; a deny wins, else an ask, else
//     an allow, else the effect's default. A managed rule decides before a user rule of the
//     same verdict, so the managed layer is what a decision names whenever it took part.
//  2. a protected target (anything but a read) turns an allow into an ask.
//  3. the mode: ask keeps asks; deny turns them into denials; auto turns asks that come from
//     defaults into allows, except for deletions, moves out of a grant, unknown effects and
//     protected targets. "" means ask; a mode that is not one, or that the managed policy
//     does not allow, is decided as deny (fail closed).
func (p *Policy) DecideOp(tool string, op Op, mode Mode) Decision {
	eff := normalEffect(op.Effect)
	d := Decision{Effect: eff}
	if op.Target != nil {
		d.Target = op.Target.Virtual
		if d.Target == "" {
			d.Target = op.Target.Rel
		}
	}
	what := describe(tool, op, eff)

	explicit := false
	if v, layer, r, ok := p.match(tool, op); ok {
		explicit = true
		d.Verdict = v
		d.Rule = string(layer) + ":" + string(v) + ":" + r.String()
		d.By = ByRule
		who := "your configuration"
		if layer == LayerManaged {
			d.By = ByManaged
			who = "the managed policy"
			if p.managed.Source != "" {
				who += " (" + p.managed.Source + ")"
			}
		}
		switch v {
		case Deny:
			d.Reason = fmt.Sprintf("%s is denied by rule %s of %s", what, r, who)
		case Ask:
			d.Reason = fmt.Sprintf("%s needs a person's approval (rule %s of %s)", what, r, who)
		}
	} else {
		d.Verdict = Default(eff)
		d.Rule = "default:" + string(eff)
		d.By = ByRule
		if d.Verdict == Ask {
			d.Reason = fmt.Sprintf("%s needs a person's approval", what)
		}
	}

	protected := guarded(op, eff)
	if protected && d.Verdict == Allow {
		d.Verdict = Ask
		d.Rule = "protected"
		d.By = ByRule
		d.Reason = fmt.Sprintf("%s touches a protected path; it is never changed without a person's approval", what)
	}

	if d.Verdict != Ask {
		return d
	}
	if mode == "" {
		mode = ModeAsk
	}
	effective := mode
	if _, err := ParseMode(string(effective)); err != nil || !p.modeAllowed(effective) {
		effective = ModeDeny
	}
	switch effective {
	case ModeDeny:
		d.Verdict = Deny
		d.Rule = "mode:deny"
		d.By = ByMode
		if mode != ModeDeny {
			d.Reason = fmt.Sprintf("not confirmed: %s needs a person's approval, and approvals mode %s is not allowed, so it was refused; do not retry it — continue without it, or say in your summary that it is needed", what, quote(string(mode)))
		} else {
			d.Reason = fmt.Sprintf("not confirmed: %s needs a person's approval, but this task runs non-interactively (approvals mode deny), so it was refused; do not retry it — continue without it, or say in your summary that it is needed", what)
		}
	case ModeAuto:
		switch {
		case sticky(eff) && eff == EffectUnknown:
			d.Reason += "; an action of unknown effect is always asked about, even in auto mode"
		case sticky(eff):
			d.Reason += "; deletions and moves out of a grant are always asked about, even in auto mode"
		case protected:
			d.Reason += "; protected paths are always asked about, even in auto mode"
		case explicit:
			d.Reason += "; a rule that asks is kept even in auto mode"
		default:
			d.Verdict = Allow
			d.Rule = "mode:auto"
			d.By = ByMode
			d.Reason = ""
		}
	}
	return d
}

// match finds the deciding rule for op: deny over ask over allow, managed before user.
func (p *Policy) match(tool string, op Op) (Verdict, Layer, Rule, bool) {
	layers := []struct {
		name Layer
		r    *Rules
	}{{LayerManaged, &p.managed}, {LayerUser, &p.user}}
	for _, v := range []Verdict{Deny, Ask, Allow} {
		for _, l := range layers {
			list := l.r.Deny
			switch v {
			case Ask:
				list = l.r.Ask
			case Allow:
				list = l.r.Allow
			}
			for _, r := range list {
				if r.matches(tool, op, v == Allow) {
					return v, l.name, r, true
				}
			}
		}
	}
	return "", "", Rule{}, false
}

// describe is a short phrase for an op, for reasons: `delete of "receipts/old.csv"`.
func describe(tool string, op Op, eff Effect) string {
	switch {
	case op.Target != nil:
		p := op.Target.Virtual
		if p == "" {
			p = op.Target.Grant + "/" + op.Target.Rel
		}
		return fmt.Sprintf("%s of %s", eff, p)
	case op.Subject != "" && (eff == EffectExec || eff == EffectEgress):
		s := op.Subject
		if len(s) > 80 {
			s = s[:77] + "..."
		}
		return fmt.Sprintf("%s %s", eff, quote(s))
	case tool != "":
		return fmt.Sprintf("%s (%s)", eff, tool)
	}
	return string(eff)
}
