package inside

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEarlyDeps: this package imports neither net nor net/netip, directly or not. Go
// initializes a package once its imports are, picking among the ready ones by import path, so
// importing net (initialized late, after much of keepup) delayed early.go's init, and with it
// the start of every helper, exec stub and guard stage, by about half a millisecond.
func TestEarlyDeps(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the package's dependencies")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net" || dep == "net/netip" {
			t.Errorf("package inside depends on %s", dep)
		}
	}
}
