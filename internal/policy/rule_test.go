package policy

import (
	"strings"
	"testing"
)

func target(grant, rel string) *Target {
	return &Target{Grant: grant, Rel: rel, Virtual: "/sessions/s/mnt/" + grant + "/" + rel}
}

func TestPathMatching(t *testing.T) {
	tests := []struct {
		pattern string
		grant   string
		rel     string
		want    bool
	}{
		// basename at any depth
		{"*.pem", "docs", "key.pem", true},
		{"*.pem", "docs", "a/b/key.pem", true},
		{"*.pem", "docs", "a/b/key.pem.bak", false},
		{"*.pem", "docs", "a/b/keypem", false},
		{"secret.txt", "docs", "deep/er/secret.txt", true},
		{"secret.txt", "docs", "deep/er/secret.txt2", false},
		{"?.md", "docs", "x/a.md", true},
		{"?.md", "docs", "x/ab.md", false},
		{"[ab].md", "docs", "b.md", true},
		{"[ab].md", "docs", "c.md", false},
		// a basename pattern naming a directory covers what is inside (gitignore)
		{"node_modules", "code", "web/node_modules/x/y.js", true},
		// `*` matches everything, the root included
		{"*", "docs", "a/b/c", true},
		{"*", "docs", ".", true},
		{"**", "docs", "a", true},
		// case-sensitive
		{"*.PEM", "docs", "key.pem", false},
		{"Reports/**", "docs", "reports/a", false},
		// anchored at the grant root
		{"reports/**", "docs", "reports/q1.md", true},
		{"reports/**", "docs", "reports/2024/q1.md", true},
		{"reports/**", "docs", "reports", false},
		{"reports/**", "docs", "old/reports/q1.md", false},
		{"reports/*.md", "docs", "reports/q1.md", true},
		{"reports/*.md", "docs", "reports/2024/q1.md", false},
		{"reports/q1.md", "docs", "reports/q1.md", true},
		{"reports/q1.md", "docs", "x/reports/q1.md", false},
		{"a/b", "docs", "a/b/c/d", true}, // parent matches
		// `*` never crosses `/`
		{"a/*", "docs", "a/b", true},
		{"a/*", "docs", "a/b/c", true}, // a/b matches, so its contents do
		{"a/*.txt", "docs", "a/b/c.txt", false},
		// `**/x` at any depth, `a/**/b` zero or more directories
		{"**/x", "docs", "x", true},
		{"**/x", "docs", "a/b/x", true},
		{"**/x", "docs", "a/b/y", false},
		{"**/*.key", "docs", "a/b/c.key", true},
		{"a/**/b", "docs", "a/b", true},
		{"a/**/b", "docs", "a/x/y/b", true},
		{"a/**/b", "docs", "a/x/y/c", false},
		{"a/**/**/b", "docs", "a/x/b", true},
		// trailing slash: a directory and everything below, at any depth
		{"drafts/", "docs", "drafts", true},
		{"drafts/", "docs", "drafts/one.md", true},
		{"drafts/", "docs", "x/drafts/one.md", true},
		{"drafts/", "docs", "draftsx/one.md", false},
		{"reports/old/", "docs", "reports/old/a", true},
		{"reports/old/", "docs", "x/reports/old/a", false},
		// leading slash: the mount root, grant name first
		{"/outputs/**", "outputs", "report.md", true},
		{"/outputs/**", "outputs", "a/b/report.md", true},
		{"/outputs/**", "docs", "report.md", false},
		{"/outputs/**", "docs", "outputs/report.md", false},
		{"/outputs/**", "outputs", ".", false},
		{"/outputs/", "outputs", ".", true},
		{"/outputs", "outputs", "x/y", true},
		{"/docs/*.md", "docs", "a.md", true},
		{"/docs/*.md", "docs", "sub/a.md", false},
		{"/*/secret", "anything", "secret", true},
		{"/**/secret", "g", "a/b/secret", true},
		// dotfiles are matched like any other name
		{"*", "docs", ".env", true},
		{".env*", "docs", "app/.env.local", true},
	}
	for _, tt := range tests {
		pp, err := compilePath(tt.pattern)
		if err != nil {
			t.Errorf("compilePath(%q): %v", tt.pattern, err)
			continue
		}
		if got := pp.match(tt.grant, tt.rel); got != tt.want {
			t.Errorf("%q vs %s:%s = %v, want %v", tt.pattern, tt.grant, tt.rel, got, tt.want)
		}
	}
}

func TestParseRule(t *testing.T) {
	ok := []struct {
		in      string
		kind    Kind
		pattern string
	}{
		{"Read", KindRead, ""},
		{"  Read  ", KindRead, ""},
		{"Read(*.pem)", KindRead, "*.pem"},
		{"Write( reports/** )", KindWrite, "reports/**"},
		{"Edit(notes.md)", KindEdit, "notes.md"},
		{"Overwrite(notes.md)", KindOverwrite, "notes.md"},
		{"Create(/outputs/**)", KindCreate, "/outputs/**"},
		{"Delete(*)", KindDelete, "*"},
		{"Move(drafts/)", KindMove, "drafts/"},
		{"Bash", KindBash, ""},
		{"Bash(git status)", KindBash, "git status"},
		{"Bash(npm run:*)", KindBash, "npm run:*"},
		{`Bash(echo ")")`, KindBash, `echo ")"`},
		{"Bash(echo (a))", KindBash, "echo (a)"},
		{"WebFetch", KindWebFetch, ""},
		{"WebFetch(domain:example.com)", KindWebFetch, "domain:example.com"},
		{"WebFetch(domain:*.example.com)", KindWebFetch, "domain:*.example.com"},
		{"Tool(ask_user)", KindTool, "ask_user"},
		{"Tool(mcp__github__*)", KindTool, "mcp__github__*"},
		{"Read((x))", KindRead, "(x)"},
	}
	for _, tt := range ok {
		r, err := ParseRule(tt.in)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tt.in, err)
			continue
		}
		if r.Kind != tt.kind || r.Pattern != tt.pattern {
			t.Errorf("ParseRule(%q) = %q %q, want %q %q", tt.in, r.Kind, r.Pattern, tt.kind, tt.pattern)
		}
		r2, err := ParseRule(r.String())
		if err != nil || !r2.Equal(r) {
			t.Errorf("ParseRule(%q).String() = %q does not re-parse: %v", tt.in, r.String(), err)
		}
	}

	bad := []struct{ in, want string }{
		{"", "empty rule"},
		{"Delet(*)", `unknown rule kind "Delet" in "Delet(*)"`},
		{"read(*)", `unknown rule kind "read" in "read(*)"`},
		{"(x)", `missing rule kind in "(x)"`},
		{"Read(a", `unbalanced parentheses in "Read(a"`},
		{"Read a)", `unbalanced parentheses in "Read a)"`},
		{"Read(a)b)", `unbalanced parentheses in "Read(a)b)"`},
		{"Read(a(b)", `unbalanced parentheses in "Read(a(b)"`},
		{"Read(a)b", `text after the closing parenthesis in "Read(a)b"`},
		{"Read()", `empty pattern in "Read()"`},
		{"Read(  )", `empty pattern in "Read(  )"`},
		{"Read(/)", `empty pattern in "Read(/)"`},
		{"Read([)", `bad glob "[": syntax error in pattern in "Read([)"`},
		{"Read(a//b)", `bad glob "a//b": empty path segment in "Read(a//b)"`},
		{"Read(../x)", `bad glob "../x": ".." segments are not allowed in "Read(../x)"`},
		{"Bash(:*)", `empty command prefix in "Bash(:*)"`},
		{"WebFetch(example.com)", `WebFetch pattern must be domain:HOST, e.g. domain:example.com in "WebFetch(example.com)"`},
		{"WebFetch(domain:)", `empty domain in "WebFetch(domain:)"`},
		{"WebFetch(domain:ex ample.com)", `bad domain "ex ample.com"`},
		{"Tool", `Tool needs a tool name, e.g. Tool(ask_user) in "Tool"`},
		{"Tool(a b)", `bad tool name "a b" in "Tool(a b)"`},
	}
	for _, tt := range bad {
		_, err := ParseRule(tt.in)
		if err == nil {
			t.Errorf("ParseRule(%q): no error, want %q", tt.in, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseRule(%q) = %q, want %q", tt.in, err, tt.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseRule(%q): error is not one line: %q", tt.in, err)
		}
	}
}

func TestRuleMatches(t *testing.T) {
	tests := []struct {
		rule   string
		tool   string
		op     Op
		strict bool
		want   bool
	}{
		{"Read", "read_file", Op{Effect: EffectRead, Target: target("docs", "a")}, true, true},
		{"Read", "write_file", Op{Effect: EffectCreate, Target: target("docs", "a")}, true, false},
		{"Read(*.md)", "read_file", Op{Effect: EffectRead}, true, false}, // no target
		{"Write(reports/**)", "write_file", Op{Effect: EffectCreate, Target: target("docs", "reports/a.md")}, true, true},
		{"Write(reports/**)", "write_file", Op{Effect: EffectOverwrite, Target: target("docs", "reports/a.md")}, true, true},
		{"Write(reports/**)", "x", Op{Effect: EffectDelete, Target: target("docs", "reports/a.md")}, true, false},
		{"Create(*)", "x", Op{Effect: EffectOverwrite, Target: target("docs", "a")}, true, false},
		{"Edit(*)", "x", Op{Effect: EffectOverwrite, Target: target("docs", "a")}, true, true},
		{"Edit(*)", "x", Op{Effect: EffectCreate, Target: target("docs", "a")}, true, false},
		{"Delete(*)", "x", Op{Effect: EffectDelete, Target: target("docs", "a")}, true, true},
		{"Move", "x", Op{Effect: EffectMove, Target: target("docs", "a")}, true, true},
		{"Move", "x", Op{Effect: EffectMoveOut, Target: target("docs", "a")}, true, true},
		{"Move", "x", Op{Effect: EffectUnknown, Target: target("docs", "a")}, true, false},
		{"Tool(ask_user)", "ask_user", Op{Effect: EffectNone}, true, true},
		{"Tool(ask_user)", "update_plan", Op{Effect: EffectNone}, true, false},
		{"Tool(mcp__*)", "mcp__gh__issue", Op{Effect: EffectUnknown}, true, true},
		// Bash: exact and prefix
		{"Bash", "bash", Op{Effect: EffectExec, Subject: "rm -rf /"}, true, true},
		{"Bash(git status)", "bash", Op{Effect: EffectExec, Subject: "git status"}, true, true},
		{"Bash(git status)", "bash", Op{Effect: EffectExec, Subject: "  git   status "}, true, true},
		{"Bash(git status)", "bash", Op{Effect: EffectExec, Subject: "git status --short"}, true, false},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm run"}, true, true},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm run build"}, true, true},
		{"Bash(npm run *)", "bash", Op{Effect: EffectExec, Subject: "npm run build"}, true, true},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm runx"}, true, false},
		{"Bash(npm run:*)", "web_fetch", Op{Effect: EffectEgress, Subject: "npm run"}, true, false},
		{"Bash(rm:*)", "bash", Op{Effect: EffectDelete, Subject: "rm -rf build"}, true, true},
		{"Bash(rm:*)", "bash", Op{Effect: EffectDelete, Subject: "git clean -fdx"}, true, false},
		{"Bash(rm:*)", "delete_path", Op{Effect: EffectDelete, Subject: "rm -rf build"}, true, false},
		// an allow does not cover a chained or substituted command
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm run build && rm -rf /"}, true, false},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm run build; npm run test"}, true, true},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm run $(rm -rf /)"}, true, false},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm run `rm -rf /`"}, true, false},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm run x > ~/.bashrc"}, true, false},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm run 'a;b'"}, true, true},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "npm run 'a"}, true, false},
		{"Bash(npm run:*)", "bash", Op{Effect: EffectExec, Subject: "FOO=1 npm run x"}, true, false},
		{"Bash(make > log.txt)", "bash", Op{Effect: EffectExec, Subject: "make > log.txt"}, true, true},
		// a deny or ask covers any part of a chain
		{"Bash(rm:*)", "bash", Op{Effect: EffectExec, Subject: "ls && rm -rf x"}, false, true},
		{"Bash(rm:*)", "bash", Op{Effect: EffectExec, Subject: "echo $(rm -rf x)"}, false, true},
		{"Bash(rm:*)", "bash", Op{Effect: EffectExec, Subject: "(rm -rf x)"}, false, true},
		{"Bash(rm:*)", "bash", Op{Effect: EffectExec, Subject: "FOO=1 rm -rf x"}, false, true},
		{"Bash(rm:*)", "bash", Op{Effect: EffectExec, Subject: "ls | grep rm"}, false, false},
		{"Bash(git push:*)", "bash", Op{Effect: EffectExec, Subject: "git status\ngit push origin"}, false, true},
		// WebFetch
		{"WebFetch", "web_fetch", Op{Effect: EffectEgress, Subject: "evil.com"}, true, true},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "example.com"}, true, true},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "Example.COM"}, true, true},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "https://example.com:8443/x"}, true, true},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "example.com:443"}, true, true},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "example.com/path?q=1"}, false, true},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "example.com."}, false, true},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "https://example.com@evil.com/"}, true, false},
		{"WebFetch(domain:evil.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "https://example.com@evil.com/"}, false, true},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "api.example.com"}, true, false},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "badexample.com"}, true, false},
		{"WebFetch(domain:*.example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "api.example.com"}, true, true},
		{"WebFetch(domain:*.example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "a.b.example.com"}, true, true},
		{"WebFetch(domain:*.example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "example.com"}, true, false},
		{"WebFetch(domain:*.example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: "badexample.com"}, true, false},
		{"WebFetch(domain:*)", "web_fetch", Op{Effect: EffectEgress, Subject: "x.org"}, true, true},
		{"WebFetch(domain:example.com)", "web_fetch", Op{Effect: EffectEgress, Subject: ""}, true, false},
	}
	for _, tt := range tests {
		r := MustParseRule(tt.rule)
		if got := r.matches(tt.tool, tt.op, tt.strict); got != tt.want {
			t.Errorf("%s matches %s %+v (strict=%v) = %v, want %v", tt.rule, tt.tool, tt.op, tt.strict, got, tt.want)
		}
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		"Read", "Read(*.pem)", "Write(reports/**)", "Edit(a/b)", "Create(/outputs/**)",
		"Delete(*)", "Move(drafts/)", "Bash(git status)", "Bash(npm run:*)", "Bash(echo \")\")",
		"WebFetch(domain:*.example.com)", "Tool(ask_user)", "Read(a", "Read()", "Delet(*)",
		"Read([)", "Read(**/x)", "Read(a//b)", " Bash ( ls :* ) ", "Read((x))", "Tool(*)",
		"Bash(a 'b)", "Read(\\)", "Read([a-)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(s, "\n") {
				t.Fatalf("ParseRule(%q): multi-line error %q", s, err)
			}
			return
		}
		r2, err := ParseRule(r.String())
		if err != nil {
			t.Fatalf("ParseRule(%q).String() = %q: %v", s, r.String(), err)
		}
		if !r2.Equal(r) || r2.String() != r.String() {
			t.Fatalf("ParseRule(%q) = %q, re-parsed as %q", s, r.String(), r2.String())
		}
		// Matching must not panic either.
		op := Op{Effect: EffectCreate, Target: &Target{Grant: "g", Rel: "a/b.c"}, Subject: s}
		for _, e := range []Effect{EffectCreate, EffectExec, EffectEgress, EffectRead, EffectMove} {
			op.Effect = e
			r.matches("t", op, true)
			r.matches("t", op, false)
		}
	})
}
