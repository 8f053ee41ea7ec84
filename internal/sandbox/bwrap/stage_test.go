package bwrap_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepup/keepup/internal/sandbox/bwrap"
	"github.com/keepup/keepup/internal/sandbox/inside"
)

// TestGuardStageNestedRepositories: a grant holding many repositories has more guards than
// bwrap should bind (stageMinGuards), so the guard stage makes them, and each repository's
// protected paths hold as at the top: existing ones read-only and pinned, missing ones
// uncreatable; the rest stays writable, and the host keeps no mount and no placeholder.
func TestGuardStageNestedRepositories(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	requireGuardStage(t, tb.backend)
	const repos = 8
	for i := range repos {
		for rel, content := range map[string]string{"/.git/config": "[core]\n", "/.git/hooks/pre-commit.sample": "#!/bin/sh\n", "/notes.txt": "notes\n"} {
			p := filepath.Join(tb.rw, fmt.Sprintf("r%d", i)+rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := tb.start(t)
	if n := bwrap.StagedGuards(s); n < repos*13 {
		t.Fatalf("the guard stage made %d guards, want every one (over %d)", n, repos*13)
	}
	for i := range repos {
		r := fmt.Sprintf("r%d", i)
		for _, script := range []string{
			"echo evil >> " + r + "/.git/config",
			"echo evil > " + r + "/.git/hooks/pre-commit",
			"mv " + r + "/.git/hooks " + r + "/h",
			"mv " + r + "/.git " + r + "/g",
			"mv " + r + " " + r + "-aside",
			"echo evil > " + r + "/.bashrc",
			"mkdir -p " + r + "/.vscode && echo '{}' > " + r + "/.vscode/tasks.json",
		} {
			if res := sh(t, s, script); res.ExitCode == 0 {
				t.Errorf("%q succeeded", script)
			}
		}
		mustSh(t, s, fmt.Sprintf("echo more >> r%d/notes.txt && echo x > r%d/.git/index", i, i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range repos {
		if b, err := os.ReadFile(filepath.Join(tb.rw, fmt.Sprintf("r%d/.git/config", i))); err != nil || string(b) != "[core]\n" {
			t.Errorf("r%d/.git/config: %q, %v", i, b, err)
		}
		for _, p := range []string{".bashrc", ".vscode", ".claude", ".git/hooks/pre-commit"} {
			if _, err := os.Lstat(filepath.Join(tb.rw, fmt.Sprintf("r%d", i), p)); err == nil {
				t.Errorf("r%d/%s is on the host after the session", i, p)
			}
		}
	}
	// Nothing the stage mounted is in the host's mount table.
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4]+"/", tb.rw+"/") {
			t.Errorf("a mount in the grant reached the host: %s", l)
		}
	}
}

// TestGuardStageFallsBack: when the guard stage cannot make a guard (here its plan names an
// inode that is not there), the session starts all the same, with bwrap making every guard,
// and nothing of the failed attempt is left on the host.
func TestGuardStageFallsBack(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	requireGuardStage(t, tb.backend)
	bwrap.SetGuardStage(tb.backend, true)
	faults := 0
	bwrap.SetGuardPlanFault(tb.backend, func(p *inside.GuardPlan) {
		faults++
		p.Guards[len(p.Guards)-1].Ino++
	})
	s := tb.start(t)
	if faults != 1 {
		t.Fatalf("the stage was tried %d times, want once", faults)
	}
	if n := bwrap.StagedGuards(s); n != 0 {
		t.Fatalf("the stage made %d guards, want none (bwrap makes them after the stage failed)", n)
	}
	for _, script := range []string{"echo evil > .bashrc", "mkdir -p .git/hooks", "mkdir .vscode"} {
		if r := sh(t, s, script); r.ExitCode == 0 {
			t.Errorf("%q succeeded", script)
		}
	}
	mustSh(t, s, "echo ok > notes.txt")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The backend's folders stay, empty: no session folder, registry entry or baseline.
	for _, name := range stateEntries(tb.state) {
		ents, err := os.ReadDir(filepath.Join(tb.state, name))
		if (name != "baselines" && name != "placeholders") || err != nil || len(ents) != 0 {
			t.Errorf("the state folder keeps %s (%d entries)", name, len(ents))
		}
	}
	ents, _ := os.ReadDir(tb.rw)
	if len(ents) != 1 || ents[0].Name() != "notes.txt" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the folder holds %v, want notes.txt alone", names)
	}
}
