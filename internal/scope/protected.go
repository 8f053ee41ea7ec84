package scope

import "strings"

// Protected paths (DESIGN.md "Protected paths"): never written without approval, whether or
// not they exist yet. Matched at any depth and case-insensitively (case-insensitive file
// systems open ".GIT/config" as ".git/config").
var (
	// protectedDirs protect the folder itself and everything under it.
	protectedDirs = []string{".claude", ".keepup", ".vscode", ".idea"}
	// protectedFiles are protected wherever they appear.
	protectedFiles = []string{".gitmodules", ".bashrc", ".bash_profile", ".zshrc", ".zprofile", ".profile", ".gitconfig", ".mcp.json"}
)

// Protected reports whether rel, a slash-separated path inside a mount, is a protected path or
// lies inside one: .git/hooks/, .git/config, .gitmodules, .bashrc, .bash_profile, .zshrc,
// .zprofile, .profile, .gitconfig, .mcp.json, .claude/, .keepup/, .vscode/, .idea/.
func Protected(rel string) bool {
	parts := strings.Split(strings.ToLower(strings.ReplaceAll(rel, `\`, "/")), "/")
	for i, c := range parts {
		for _, d := range protectedDirs {
			if c == d {
				return true
			}
		}
		for _, f := range protectedFiles {
			if c == f {
				return true
			}
		}
		if c == ".git" && i+1 < len(parts) && (parts[i+1] == "hooks" || parts[i+1] == "config") {
			return true
		}
	}
	return false
}

// ProtectedRoots lists the protected paths as they stand at the root of a mount, folders with
// a trailing slash: what a sandbox binds read-only inside every read-write mount, whether or
// not they exist.
func ProtectedRoots() []string {
	out := []string{".git/hooks/", ".git/config"}
	out = append(out, protectedFiles...)
	for _, d := range protectedDirs {
		out = append(out, d+"/")
	}
	return out
}
