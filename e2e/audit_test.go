package e2e

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// TestAuditTamperingIsDetected: verify passes on an intact chain, then names the first bad
// entry after an entry is edited, deleted, reordered, or the log truncated.
func TestAuditTamperingIsDetected(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		sql  []string
		want string
	}{
		{"edited", []string{`UPDATE audit SET body = CAST(replace(CAST(body AS TEXT), '"tool.call"', '"tool.calm"') AS BLOB) WHERE seq = 7`}, "entry 7"},
		{"deleted", []string{`DELETE FROM audit WHERE seq = 5`}, "entry 5"},
		{"reordered", []string{`UPDATE audit SET seq = -1 WHERE seq = 5`, `UPDATE audit SET seq = 5 WHERE seq = 6`, `UPDATE audit SET seq = 6 WHERE seq = -1`}, "entry 5"},
		{"truncated", []string{`DELETE FROM audit WHERE seq > (SELECT max(seq) - 3 FROM audit)`}, "truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.write("g/a.txt", "a")
			spec := e.script(turn("", "update_plan", planCall("x")), turn("", "read_file", obj{"path": "a.txt"}, "write_file", obj{"path": "b.txt", "content": "b"}), turn("ok"))
			if r := e.run("", "run", "--grant", filepath.Join(e.dir, "g"), "--model", spec, "go"); r.code != 0 {
				t.Fatalf("run: %d %s", r.code, r.stderr)
			}
			if r := e.run("", "audit", "verify"); r.code != 0 {
				t.Fatalf("verify before tampering: %d %s", r.code, r.stderr)
			}
			db, err := sql.Open("sqlite", filepath.Join(e.home, "keepup.db"))
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range c.sql {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			db.Close()
			r := e.run("", "audit", "verify")
			if r.code != 1 {
				t.Fatalf("verify after %s: exit %d, want 1; %s%s", c.name, r.code, r.stdout, r.stderr)
			}
			oneLine(t, r.stderr)
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("verify says %q, want it to name %q", r.stderr, c.want)
			}
		})
	}
}
