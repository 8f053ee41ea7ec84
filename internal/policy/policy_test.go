package policy

import (
	"strings"
	"testing"
)

func rules(t *testing.T, src string, allow, ask, deny []string) *Rules {
	t.Helper()
	rs, err := ParseRules(allow, ask, deny)
	if err != nil {
		t.Fatal(err)
	}
	rs.Source = src
	return rs
}

func op(e Effect, rel string) Op {
	return Op{Effect: e, Target: target("docs", rel)}
}

func act(tool string, ops ...Op) Action { return Action{Tool: tool, Ops: ops} }

type want struct {
	verdict Verdict
	rule    string
	by      By
}

func check(t *testing.T, name string, d Decision, w want) {
	t.Helper()
	if d.Verdict != w.verdict || d.Rule != w.rule || d.By != w.by {
		t.Errorf("%s: got %s %q by %s, want %s %q by %s (reason %q)", name, d.Verdict, d.Rule, d.By, w.verdict, w.rule, w.by, d.Reason)
	}
}

func TestDefaults(t *testing.T) {
	p := New(nil, nil)
	tests := []struct {
		e    Effect
		want Verdict
	}{
		{EffectRead, Allow}, {EffectCreate, Allow}, {EffectOverwrite, Ask}, {EffectDelete, Ask},
		{EffectMove, Allow}, {EffectMoveOut, Ask}, {EffectExec, Allow}, {EffectEgress, Ask},
		{EffectNone, Allow}, {EffectUnknown, Ask}, {"teleport", Ask},
	}
	for _, tt := range tests {
		if got := Default(tt.e); got != tt.want {
			t.Errorf("Default(%s) = %s, want %s", tt.e, got, tt.want)
		}
		d := p.Decide(act("t", Op{Effect: tt.e, Subject: "x"}), ModeAsk)
		eff := tt.e
		if eff == "teleport" {
			eff = EffectUnknown
		}
		check(t, string(tt.e), d, want{tt.want, "default:" + string(eff), ByRule})
		if d.Effect != eff {
			t.Errorf("%s: effect %s", tt.e, d.Effect)
		}
		if d.Verdict == Ask && d.Reason == "" {
			t.Errorf("%s: ask without a reason", tt.e)
		}
	}
	// An action with no ops is of unknown effect.
	check(t, "no ops", p.Decide(Action{Tool: "mystery"}, ModeAsk), want{Ask, "default:unknown", ByRule})
}

func TestLayers(t *testing.T) {
	tests := []struct {
		name    string
		managed *Rules
		user    *Rules
		op      Op
		want    want
	}{
		{
			"managed deny beats user allow",
			rules(t, "/etc/m.json", nil, nil, []string{"Delete(*)"}),
			rules(t, "", []string{"Delete(*)"}, nil, nil),
			op(EffectDelete, "a.txt"),
			want{Deny, "managed:deny:Delete(*)", ByManaged},
		},
		{
			"user deny narrows managed allow",
			rules(t, "/etc/m.json", []string{"Write"}, nil, nil),
			rules(t, "", nil, nil, []string{"Write(secrets/**)"}),
			op(EffectOverwrite, "secrets/k"),
			want{Deny, "user:deny:Write(secrets/**)", ByRule},
		},
		{
			"user ask narrows managed allow",
			rules(t, "/etc/m.json", []string{"Write"}, nil, nil),
			rules(t, "", nil, []string{"Create(*.csv)"}, nil),
			op(EffectCreate, "data/x.csv"),
			want{Ask, "user:ask:Create(*.csv)", ByRule},
		},
		{
			"managed allow stands when the user layer is silent",
			rules(t, "/etc/m.json", []string{"Write"}, nil, nil),
			nil,
			op(EffectOverwrite, "x"),
			want{Allow, "managed:allow:Write", ByManaged},
		},
		{
			"user allow cannot override managed ask",
			rules(t, "/etc/m.json", nil, []string{"Write(reports/**)"}, nil),
			rules(t, "", []string{"Write(reports/**)"}, nil, nil),
			op(EffectOverwrite, "reports/q.md"),
			want{Ask, "managed:ask:Write(reports/**)", ByManaged},
		},
		{
			"user allow cannot override managed deny of another kind",
			rules(t, "/etc/m.json", nil, nil, []string{"Tool(write_file)"}),
			rules(t, "", []string{"Write"}, nil, nil),
			op(EffectCreate, "x"),
			want{Deny, "managed:deny:Tool(write_file)", ByManaged},
		},
		{
			"user deny and managed deny: managed is named",
			rules(t, "/etc/m.json", nil, nil, []string{"Read(*.pem)"}),
			rules(t, "", nil, nil, []string{"Read(keys/**)"}),
			op(EffectRead, "keys/a.pem"),
			want{Deny, "managed:deny:Read(*.pem)", ByManaged},
		},
		{
			"user allow over default",
			nil,
			rules(t, "", []string{"Write(reports/**)"}, nil, nil),
			op(EffectOverwrite, "reports/q.md"),
			want{Allow, "user:allow:Write(reports/**)", ByRule},
		},
		{
			"user allow elsewhere leaves the default",
			nil,
			rules(t, "", []string{"Write(reports/**)"}, nil, nil),
			op(EffectOverwrite, "notes/q.md"),
			want{Ask, "default:overwrite", ByRule},
		},
		{
			"explicit user allow may allow a deletion",
			nil,
			rules(t, "", []string{"Delete(tmp/**)"}, nil, nil),
			op(EffectDelete, "tmp/x"),
			want{Allow, "user:allow:Delete(tmp/**)", ByRule},
		},
		{
			"explicit managed allow may allow a move out",
			rules(t, "/etc/m.json", []string{"Move(/outputs/**)"}, nil, nil),
			nil,
			Op{Effect: EffectMoveOut, Target: target("outputs", "r.md")},
			want{Allow, "managed:allow:Move(/outputs/**)", ByManaged},
		},
		{
			"Tool deny",
			nil,
			rules(t, "", nil, nil, []string{"Tool(ask_user)"}),
			Op{Effect: EffectNone},
			want{Deny, "user:deny:Tool(ask_user)", ByRule},
		},
		{
			"user ask on reads",
			nil,
			rules(t, "", nil, []string{"Read(private/)"}, nil),
			op(EffectRead, "private/diary.md"),
			want{Ask, "user:ask:Read(private/)", ByRule},
		},
	}
	for _, tt := range tests {
		p := New(tt.managed, tt.user)
		tool := "t"
		if strings.Contains(tt.name, "Tool deny") {
			tool = "ask_user"
		}
		if strings.Contains(tt.name, "another kind") {
			tool = "write_file"
		}
		d := p.Decide(act(tool, tt.op), ModeAsk)
		check(t, tt.name, d, tt.want)
		if d.Verdict == Deny && d.Reason == "" {
			t.Errorf("%s: deny without a reason", tt.name)
		}
	}
}

func TestProtected(t *testing.T) {
	prot := func(e Effect, rel string) Op {
		o := op(e, rel)
		o.Target.Protected = true
		return o
	}
	user := rules(t, "", []string{"Write", "Delete", "Read"}, nil, []string{"Write(.git/hooks/**)"})
	managed := rules(t, "/etc/m.json", []string{"Create(.bashrc)"}, nil, nil)
	p := New(managed, user)
	for _, mode := range []Mode{ModeAsk, ModeAuto} {
		check(t, "allow rule on a protected create "+string(mode), p.Decide(act("t", prot(EffectCreate, ".vscode/settings.json")), mode), want{Ask, "protected", ByRule})
		check(t, "managed allow on a protected create "+string(mode), p.Decide(act("t", prot(EffectCreate, ".bashrc")), mode), want{Ask, "protected", ByRule})
		check(t, "default-allowed create "+string(mode), New(nil, nil).Decide(act("t", prot(EffectCreate, ".mcp.json")), mode), want{Ask, "protected", ByRule})
		check(t, "protected overwrite by default "+string(mode), New(nil, nil).Decide(act("t", prot(EffectOverwrite, ".git/config")), mode), want{Ask, "default:overwrite", ByRule})
		check(t, "protected delete "+string(mode), p.Decide(act("t", prot(EffectDelete, ".gitmodules")), mode), want{Ask, "protected", ByRule})
		check(t, "deny still denies "+string(mode), p.Decide(act("t", prot(EffectCreate, ".git/hooks/pre-commit")), mode), want{Deny, "user:deny:Write(.git/hooks/**)", ByRule})
		// Reading a protected path is not guarded.
		check(t, "protected read "+string(mode), p.Decide(act("t", prot(EffectRead, ".git/config")), mode), want{Allow, "user:allow:Read", ByRule})
	}
	check(t, "protected in deny mode", p.Decide(act("t", prot(EffectCreate, ".zshrc")), ModeDeny), want{Deny, "mode:deny", ByMode})
}

func TestModes(t *testing.T) {
	user := rules(t, "", []string{"Delete(tmp/**)"}, []string{"Bash(git push:*)"}, nil)
	managed := rules(t, "/etc/m.json", nil, []string{"WebFetch(domain:*.internal.example)"}, nil)
	p := New(managed, user)
	exec := func(cmd string) Op { return Op{Effect: EffectExec, Subject: cmd} }
	tests := []struct {
		name string
		op   Op
		mode Mode
		want want
	}{
		{"ask keeps asks", op(EffectOverwrite, "a"), ModeAsk, want{Ask, "default:overwrite", ByRule}},
		{"empty mode is ask", op(EffectOverwrite, "a"), "", want{Ask, "default:overwrite", ByRule}},
		{"deny turns asks into denials", op(EffectOverwrite, "a"), ModeDeny, want{Deny, "mode:deny", ByMode}},
		{"deny leaves allows", op(EffectCreate, "a"), ModeDeny, want{Allow, "default:create", ByRule}},
		{"deny denies a managed ask", Op{Effect: EffectEgress, Subject: "db.internal.example"}, ModeDeny, want{Deny, "mode:deny", ByMode}},
		{"auto allows overwrite", op(EffectOverwrite, "a"), ModeAuto, want{Allow, "mode:auto", ByMode}},
		{"exec is allowed by default", exec("go test ./..."), ModeAsk, want{Allow, "default:exec", ByRule}},
		{"auto allows egress", Op{Effect: EffectEgress, Subject: "example.com"}, ModeAuto, want{Allow, "mode:auto", ByMode}},
		{"auto keeps delete", op(EffectDelete, "a"), ModeAuto, want{Ask, "default:delete", ByRule}},
		{"auto keeps move_out", op(EffectMoveOut, "a"), ModeAuto, want{Ask, "default:move_out", ByRule}},
		{"auto keeps unknown", op(EffectUnknown, "a"), ModeAuto, want{Ask, "default:unknown", ByRule}},
		{"auto keeps an unrecognised effect", op("teleport", "a"), ModeAuto, want{Ask, "default:unknown", ByRule}},
		{"auto keeps a managed ask", Op{Effect: EffectEgress, Subject: "db.internal.example"}, ModeAuto, want{Ask, "managed:ask:WebFetch(domain:*.internal.example)", ByManaged}},
		{"auto keeps a user ask", exec("git push origin main"), ModeAuto, want{Ask, "user:ask:Bash(git push:*)", ByRule}},
		{"auto with an explicit delete allow", op(EffectDelete, "tmp/x"), ModeAuto, want{Allow, "user:allow:Delete(tmp/**)", ByRule}},
		{"bogus mode fails closed", op(EffectOverwrite, "a"), "yolo", want{Deny, "mode:deny", ByMode}},
		{"bogus mode leaves allows", op(EffectRead, "a"), "yolo", want{Allow, "default:read", ByRule}},
	}
	for _, tt := range tests {
		d := p.Decide(act("t", tt.op), tt.mode)
		check(t, tt.name, d, tt.want)
	}
	d := p.Decide(act("t", op(EffectOverwrite, "a")), ModeDeny)
	if !strings.Contains(d.Reason, "not confirmed") || !strings.Contains(d.Reason, "non-interactively") {
		t.Errorf("deny-mode reason = %q", d.Reason)
	}
	d = p.Decide(act("t", op(EffectDelete, "a")), ModeAuto)
	if !strings.Contains(d.Reason, "even in auto mode") {
		t.Errorf("auto delete reason = %q", d.Reason)
	}
}

func TestAllowedModes(t *testing.T) {
	managed := rules(t, "/etc/keepup/managed-policy.json", nil, nil, nil)
	managed.AllowedModes = []Mode{ModeAsk, ModeDeny}
	p := New(managed, nil)
	if err := p.CheckMode(ModeAsk); err != nil {
		t.Error(err)
	}
	err := p.CheckMode(ModeAuto)
	if err == nil || !strings.Contains(err.Error(), `"auto"`) || !strings.Contains(err.Error(), "/etc/keepup/managed-policy.json") {
		t.Errorf("CheckMode(auto) = %v", err)
	}
	if err := p.CheckMode("nope"); err == nil {
		t.Error("CheckMode(nope): no error")
	}
	// A forbidden mode is decided as deny, never as auto.
	check(t, "forbidden auto", p.Decide(act("t", op(EffectOverwrite, "a")), ModeAuto), want{Deny, "mode:deny", ByMode})
	if got := p.AllowedModes(); len(got) != 2 {
		t.Errorf("AllowedModes = %v", got)
	}
	if got := New(nil, nil).AllowedModes(); len(got) != 3 {
		t.Errorf("AllowedModes without managed policy = %v", got)
	}
	// The user layer cannot set allowed modes.
	user := &Rules{AllowedModes: []Mode{ModeDeny}}
	if err := New(nil, user).CheckMode(ModeAuto); err != nil {
		t.Errorf("user layer restricted modes: %v", err)
	}
	for _, s := range []string{"ask", "deny", "auto"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("Auto"); err == nil {
		t.Error("ParseMode(Auto): no error")
	}
}

func TestMostRestrictiveOverOps(t *testing.T) {
	user := rules(t, "", nil, nil, []string{"Create(*.exe)"})
	p := New(nil, user)
	// move_path: write + delete
	mv := act("move_path", op(EffectMove, "a.txt"), op(EffectCreate, "b.txt"))
	d := p.Decide(mv, ModeAsk)
	check(t, "move within grant", d, want{Allow, "default:move", ByRule})
	if d.Op != 0 {
		t.Errorf("op = %d", d.Op)
	}

	mixed := act("t", op(EffectRead, "a"), op(EffectOverwrite, "b"), op(EffectDelete, "c"))
	d = p.Decide(mixed, ModeAsk)
	check(t, "first ask wins a tie", d, want{Ask, "default:overwrite", ByRule})
	if d.Op != 1 || d.Effect != EffectOverwrite || d.Target != "/sessions/s/mnt/docs/b" {
		t.Errorf("deciding op = %d %s %s", d.Op, d.Effect, d.Target)
	}

	d = p.Decide(mixed, ModeAuto)
	check(t, "auto: the delete still asks", d, want{Ask, "default:delete", ByRule})
	if d.Op != 2 {
		t.Errorf("op = %d", d.Op)
	}

	withDeny := act("t", op(EffectOverwrite, "b"), op(EffectCreate, "x.exe"), op(EffectDelete, "c"))
	d = p.Decide(withDeny, ModeAsk)
	check(t, "deny beats ask", d, want{Deny, "user:deny:Create(*.exe)", ByRule})
	if d.Op != 1 || d.Effect != EffectCreate {
		t.Errorf("deciding op = %d %s", d.Op, d.Effect)
	}
}

func TestParseRulesErrorNamesIndex(t *testing.T) {
	_, err := ParseRules(nil, nil, []string{"Read", "Write", "Delet(*)"})
	if err == nil || err.Error() != `deny[2]: unknown rule kind "Delet" in "Delet(*)"` {
		t.Errorf("ParseRules = %v", err)
	}
}

func TestNewCopies(t *testing.T) {
	user := rules(t, "", nil, nil, []string{"Delete(*)"})
	p := New(nil, user)
	user.Deny[0] = MustParseRule("Read(nothing)")
	check(t, "after mutation", p.Decide(act("t", op(EffectDelete, "a")), ModeAsk), want{Deny, "user:deny:Delete(*)", ByRule})
}
