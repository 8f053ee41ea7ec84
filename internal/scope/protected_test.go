package scope

import (
	"strings"
	"testing"
)

func TestProtected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rel  string
		want bool
	}{
		{".git/hooks/pre-commit", true},
		{".git/hooks", true},
		{"sub/.git/hooks/x", true},
		{".git/config", true},
		{"vendor/lib/.git/config", true},
		{".GIT/Config", true},
		{".git/HOOKS/post-checkout", true},
		{".gitmodules", true},
		{".bashrc", true},
		{"home/.bash_profile", true},
		{".zshrc", true},
		{".zprofile", true},
		{".profile", true},
		{"x/.gitconfig", true},
		{".mcp.json", true},
		{".MCP.JSON", true},
		{".claude", true},
		{".claude/settings.json", true},
		{"a/b/.claude/commands/x.md", true},
		{".keepup/config.json", true},
		{".vscode/settings.json", true},
		{".VSCode/tasks.json", true},
		{".idea/workspace.xml", true},
		{"proj/.idea", true},
		{".bashrc/x", true},

		{".", false},
		{"notes.txt", false},
		{".git", false},
		{".git/HEAD", false},
		{".git/objects/ab/cdef", false},
		{".git/configs", false},
		{"config", false},
		{"hooks/pre-commit", false},
		{"git/hooks/x", false},
		{".bashrc.bak", false},
		{"my.bashrc", false},
		{".profile.d/x", false},
		{".vscode-server/x", false},
		{"claude/x", false},
		{".ideas/x", false},
		{"docs/.mcp.json.example", false},
	}
	for _, tt := range tests {
		if got := Protected(tt.rel); got != tt.want {
			t.Errorf("Protected(%q) = %v, want %v", tt.rel, got, tt.want)
		}
	}
}

func TestProtectedRootsAreProtected(t *testing.T) {
	t.Parallel()
	roots := ProtectedRoots()
	if len(roots) != 14 {
		t.Errorf("%d protected roots, want the 14 of DESIGN.md: %v", len(roots), roots)
	}
	for _, r := range roots {
		if !Protected(strings.TrimSuffix(r, "/")) {
			t.Errorf("%s is listed but not Protected", r)
		}
	}
}
