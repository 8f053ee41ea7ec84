package tool

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepup/keepup/internal/scope"
)

func sum(s string) string { return scope.DigestBytes([]byte(s)) }

func TestWriteFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Create, with parents.
	c := b.mustPrepare(t, "write_file", `{"path": "`+root+`/outputs/reports/summary.md", "content": "# Summary\n"}`)
	if ops(c) != "create outputs:reports/summary.md" || c.Action.Summary != "create outputs/reports/summary.md (10 bytes)" || c.ReadOnly || !c.Idempotent {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	if tg := c.Action.Ops[0].Target; tg.Virtual != root+"/outputs/reports/summary.md" {
		t.Errorf("target virtual %q", tg.Virtual)
	}
	res := mustRun(t, c)
	if res.Content != "created "+root+"/outputs/reports/summary.md (10 bytes)" || res.Untrusted {
		t.Errorf("content %q", res.Content)
	}
	if len(res.Files) != 1 || res.Files[0] != (FileChange{Path: "outputs/reports/summary.md", After: sum("# Summary\n")}) {
		t.Errorf("files %+v", res.Files)
	}
	if readHost(t, filepath.Join(b.out, "reports", "summary.md")) != "# Summary\n" {
		t.Fatal("not written")
	}
	// Overwrite.
	c = b.mustPrepare(t, "write_file", `{"path": "notes.txt", "content": "new"}`)
	if ops(c) != "overwrite docs:notes.txt exists" || c.Action.Summary != "overwrite docs/notes.txt (3 bytes)" {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res = mustRun(t, c)
	if res.Content != "overwrote notes.txt (3 bytes)" || res.Files[0] != (FileChange{Path: "docs/notes.txt", Before: sum("alpha\nbeta\ngamma\n"), After: sum("new")}) {
		t.Errorf("result %+v", res)
	}
	// A file created by something else between approval (as a create) and run is not clobbered.
	c = b.mustPrepare(t, "write_file", `{"path": "race.txt", "content": "agent"}`)
	writeFile(t, filepath.Join(b.docs, "race.txt"), "user's")
	runFails(t, c, "was created by something else since this call was approved as a create")
	if readHost(t, filepath.Join(b.docs, "race.txt")) != "user's" {
		t.Fatal("clobbered")
	}
	// A file that became a hard link to an outside file by run time is refused.
	c = b.mustPrepare(t, "write_file", `{"path": "hl.txt", "content": "pwned"}`)
	if err := os.Link(filepath.Join(b.outside, "secret.txt"), filepath.Join(b.docs, "hl.txt")); err != nil {
		t.Fatal(err)
	}
	runFails(t, c, "has 2 hard links")
	if readHost(t, filepath.Join(b.outside, "secret.txt")) != "secret\n" {
		t.Fatal("outside file changed")
	}
	_, err := b.prepare(t, "write_file", `{"path": "reports", "content": "x"}`)
	assertRefusal(t, err, "not a regular file")
}

func TestWriteProtected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	writeFile(t, filepath.Join(b.docs, ".git", "config"), "[core]\n")
	mustMkdir(t, filepath.Join(b.docs, ".git", "hooks"))
	if err := os.Symlink(".git/config", filepath.Join(b.docs, "innocent.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".git/hooks", filepath.Join(b.docs, "scripts")); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ input, ops, summary string }{
		{`{"path": ".git/hooks/pre-commit", "content": "x"}`, "create docs:.git/hooks/pre-commit protected", "create docs/.git/hooks/pre-commit (1 byte)"},
		{`{"path": ".git/config", "content": "x"}`, "overwrite docs:.git/config exists protected", "overwrite docs/.git/config (1 byte)"},
		{`{"path": "sub/.vscode/settings.json", "content": "x"}`, "create docs:sub/.vscode/settings.json protected", ""},
		{`{"path": ".bashrc", "content": "x"}`, "create docs:.bashrc protected", ""},
		{`{"path": "` + root + `/outputs/.mcp.json", "content": "x"}`, "create outputs:.mcp.json protected", ""},
		{`{"path": "x/.CLAUDE/settings.json", "content": "x"}`, "create docs:x/.CLAUDE/settings.json protected", ""},
		// Links do not hide a protected path: the target is what is judged.
		{`{"path": "innocent.txt", "content": "x"}`, "overwrite docs:.git/config exists protected", "overwrite docs/.git/config (via docs/innocent.txt) (1 byte)"},
		{`{"path": "scripts/post-checkout", "content": "x"}`, "create docs:.git/hooks/post-checkout protected", "create docs/.git/hooks/post-checkout (via docs/scripts/post-checkout) (1 byte)"},
		{`{"path": "git/config", "content": "x"}`, "create docs:git/config", ""},
	}
	for _, tt := range tests {
		c := b.mustPrepare(t, "write_file", tt.input)
		if ops(c) != tt.ops || (tt.summary != "" && c.Action.Summary != tt.summary) {
			t.Errorf("write_file %s: %s / %q; want %s / %q", tt.input, ops(c), c.Action.Summary, tt.ops, tt.summary)
		}
	}
	// Running the linked write writes the target, as classified.
	mustRun(t, b.mustPrepare(t, "write_file", `{"path": "innocent.txt", "content": "[user]\n"}`))
	if readHost(t, filepath.Join(b.docs, ".git", "config")) != "[user]\n" {
		t.Fatal("link target not written")
	}
	if fi, err := os.Lstat(filepath.Join(b.docs, "innocent.txt")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatal("link replaced")
	}
}

func TestEditFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.mustPrepare(t, "edit_file", `{"path": "reports/q3.md", "old": "revenue: 10", "new": "revenue: 11"}`)
	if ops(c) != "overwrite docs:reports/q3.md exists" || c.Action.Summary != "edit docs/reports/q3.md" || c.Idempotent {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res := mustRun(t, c)
	if res.Content != "edited reports/q3.md: replaced 1 occurrence" || res.Files[0] != (FileChange{Path: "docs/reports/q3.md", Before: sum("# Q3\nrevenue: 10\n"), After: sum("# Q3\nrevenue: 11\n")}) {
		t.Errorf("result %+v", res)
	}
	if readHost(t, filepath.Join(b.docs, "reports", "q3.md")) != "# Q3\nrevenue: 11\n" {
		t.Fatal("not edited")
	}
	// Ambiguity: refused with the lines, then replace_all.
	writeFile(t, filepath.Join(b.docs, "dup.txt"), "x = 1\ny = 2\nx = 1\nx = 1\n")
	runFails(t, b.mustPrepare(t, "edit_file", `{"path": "dup.txt", "old": "x = 1", "new": "x = 3"}`), "old text occurs 3 times in "+root+"/docs/dup.txt (at lines 1, 3, 4); include more surrounding text to make it unique, or set replace_all")
	if readHost(t, filepath.Join(b.docs, "dup.txt")) != "x = 1\ny = 2\nx = 1\nx = 1\n" {
		t.Fatal("ambiguous edit applied")
	}
	mustRun(t, b.mustPrepare(t, "edit_file", `{"path": "dup.txt", "old": "y = 2\nx = 1", "new": "y = 2\nx = 2"}`))
	c = b.mustPrepare(t, "edit_file", `{"path": "dup.txt", "old": "x = 1", "new": "x = 9", "replace_all": true}`)
	if c.Action.Summary != "edit docs/dup.txt (replace all)" {
		t.Errorf("summary %q", c.Action.Summary)
	}
	if res := mustRun(t, c); res.Content != "edited dup.txt: replaced 2 occurrences" {
		t.Errorf("content %q", res.Content)
	}
	if got := readHost(t, filepath.Join(b.docs, "dup.txt")); got != "x = 9\ny = 2\nx = 2\nx = 9\n" {
		t.Fatalf("replace_all: %q", got)
	}
	runFails(t, b.mustPrepare(t, "edit_file", `{"path": "dup.txt", "old": "z = 0", "new": "z = 1"}`), "old text not found in "+root+"/docs/dup.txt; read the file again")
	// CRLF files accept LF in old and keep CRLF.
	writeFile(t, filepath.Join(b.docs, "win.txt"), "one\r\ntwo\r\nthree\r\n")
	mustRun(t, b.mustPrepare(t, "edit_file", `{"path": "win.txt", "old": "one\ntwo", "new": "one\n2"}`))
	if got := readHost(t, filepath.Join(b.docs, "win.txt")); got != "one\r\n2\r\nthree\r\n" {
		t.Fatalf("crlf: %q", got)
	}
	// Deleting text, and mode kept.
	if err := os.Chmod(filepath.Join(b.docs, "win.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, b.mustPrepare(t, "edit_file", `{"path": "win.txt", "old": "three\r\n", "new": ""}`))
	if fi, _ := os.Stat(filepath.Join(b.docs, "win.txt")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	_, err := b.prepare(t, "edit_file", `{"path": "dup.txt", "old": "a", "new": "a"}`)
	assertRefusal(t, err, "old and new are the same text")
	_, err = b.prepare(t, "edit_file", `{"path": "nope.txt", "old": "a", "new": "b"}`)
	assertRefusal(t, err, root+"/docs/nope.txt does not exist; use write_file to create it")
	_, err = b.prepare(t, "edit_file", `{"path": "reports", "old": "a", "new": "b"}`)
	assertRefusal(t, err, "not a regular file")
	// Protected.
	writeFile(t, filepath.Join(b.docs, ".vscode", "settings.json"), "{}")
	if c := b.mustPrepare(t, "edit_file", `{"path": ".vscode/settings.json", "old": "{}", "new": "{\"a\":1}"}`); ops(c) != "overwrite docs:.vscode/settings.json exists protected" {
		t.Errorf("protected edit: %s", ops(c))
	}
}

func TestDeletePath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.mustPrepare(t, "delete_path", `{"path": "notes.txt"}`)
	if ops(c) != "delete docs:notes.txt exists" || c.Action.Summary != "delete docs/notes.txt" || c.ReadOnly || c.Idempotent {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res := mustRun(t, c)
	if res.Content != "deleted notes.txt" || len(res.Files) != 1 || res.Files[0] != (FileChange{Path: "docs/notes.txt", Before: sum("alpha\nbeta\ngamma\n")}) {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(filepath.Join(b.docs, "notes.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("not deleted")
	}
	writeFile(t, filepath.Join(b.docs, "receipts", "old.csv"), "a,b\n")
	writeFile(t, filepath.Join(b.docs, "receipts", "2023", "jan.csv"), "c,d\n")
	_, err := b.prepare(t, "delete_path", `{"path": "receipts"}`)
	assertRefusal(t, err, root+"/docs/receipts is a folder holding 2 files and 1 folder; set recursive")
	c = b.mustPrepare(t, "delete_path", `{"path": "receipts", "recursive": true}`)
	if ops(c) != "delete docs:receipts exists" || c.Action.Summary != "delete docs/receipts (recursive: 2 files, 1 folder)" {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res = mustRun(t, c)
	if res.Content != "deleted receipts and everything in it" || len(res.Files) != 2 || res.Files[0] != (FileChange{Path: "docs/receipts/2023/jan.csv", Before: sum("c,d\n")}) {
		t.Errorf("result %+v", res)
	}
	// An empty folder needs no recursive.
	mustMkdir(t, filepath.Join(b.docs, "empty"))
	mustRun(t, b.mustPrepare(t, "delete_path", `{"path": "empty"}`))
	// A link is deleted itself, and is not followed to classify or to delete.
	if err := os.Symlink(b.outside, filepath.Join(b.docs, "outlink")); err != nil {
		t.Fatal(err)
	}
	c = b.mustPrepare(t, "delete_path", `{"path": "outlink", "recursive": true}`)
	if ops(c) != "delete docs:outlink exists" {
		t.Errorf("link: %s", ops(c))
	}
	mustRun(t, c)
	if readHost(t, filepath.Join(b.outside, "secret.txt")) != "secret\n" {
		t.Fatal("link target deleted")
	}
	// A folder holding protected paths is protected, wherever they are in it.
	writeFile(t, filepath.Join(b.docs, "proj", ".git", "config"), "[core]\n")
	writeFile(t, filepath.Join(b.docs, "proj", "src", "main.go"), "package main\n")
	for _, in := range []string{`{"path": "proj", "recursive": true}`, `{"path": "proj/.git", "recursive": true}`, `{"path": "proj/.git/config"}`} {
		if c := b.mustPrepare(t, "delete_path", in); !c.Action.Ops[0].Target.Protected {
			t.Errorf("delete %s not protected", in)
		}
	}
	if c := b.mustPrepare(t, "delete_path", `{"path": "proj/src", "recursive": true}`); c.Action.Ops[0].Target.Protected {
		t.Error("delete proj/src protected")
	}
	_, err = b.prepare(t, "delete_path", `{"path": "nope"}`)
	assertRefusal(t, err, "no such file or directory")
}

func TestMovePath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Within a grant, to a new path.
	c := b.mustPrepare(t, "move_path", `{"from": "notes.txt", "to": "archive/notes.txt"}`)
	if ops(c) != "move docs:notes.txt exists; create docs:archive/notes.txt" || c.Action.Summary != "move docs/notes.txt -> docs/archive/notes.txt" {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res := mustRun(t, c)
	h := sum("alpha\nbeta\ngamma\n")
	if res.Content != "moved notes.txt to archive/notes.txt" || len(res.Files) != 2 ||
		res.Files[0] != (FileChange{Path: "docs/notes.txt", Before: h}) || res.Files[1] != (FileChange{Path: "docs/archive/notes.txt", After: h}) {
		t.Errorf("result %+v", res)
	}
	// Onto an existing file: move plus overwrite.
	writeFile(t, filepath.Join(b.docs, "draft.txt"), "draft")
	c = b.mustPrepare(t, "move_path", `{"from": "draft.txt", "to": "archive/notes.txt"}`)
	if ops(c) != "move docs:draft.txt exists; overwrite docs:archive/notes.txt exists" || c.Action.Summary != "move docs/draft.txt -> docs/archive/notes.txt, replacing docs/archive/notes.txt" {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res = mustRun(t, c)
	if res.Files[1] != (FileChange{Path: "docs/archive/notes.txt", Before: h, After: sum("draft")}) {
		t.Errorf("files %+v", res.Files)
	}
	// Into an existing folder, like mv.
	c = b.mustPrepare(t, "move_path", `{"from": "archive/notes.txt", "to": "reports"}`)
	if ops(c) != "move docs:archive/notes.txt exists; create docs:reports/notes.txt" {
		t.Fatalf("into folder: %s", ops(c))
	}
	mustRun(t, c)
	if readHost(t, filepath.Join(b.docs, "reports", "notes.txt")) != "draft" {
		t.Fatal("not moved into the folder")
	}
	// Out of the grant into outputs: move_out, plus overwrite of the existing destination.
	writeFile(t, filepath.Join(b.out, "q3.md"), "old output")
	c = b.mustPrepare(t, "move_path", `{"from": "reports/q3.md", "to": "`+root+`/outputs/q3.md"}`)
	if ops(c) != "move_out docs:reports/q3.md exists; overwrite outputs:q3.md exists" || c.Action.Summary != "move docs/reports/q3.md -> outputs/q3.md (out of docs), replacing outputs/q3.md" {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res = mustRun(t, c)
	if res.Content != "moved reports/q3.md to "+root+"/outputs/q3.md" || readHost(t, filepath.Join(b.out, "q3.md")) != "# Q3\nrevenue: 10\n" {
		t.Errorf("move out: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(b.docs, "reports", "q3.md")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("source kept")
	}
	// A whole folder across grants.
	writeFile(t, filepath.Join(b.docs, "set", "a.txt"), "a")
	writeFile(t, filepath.Join(b.docs, "set", "sub", "b.txt"), "b")
	c = b.mustPrepare(t, "move_path", `{"from": "set", "to": "`+root+`/outputs/set"}`)
	if ops(c) != "move_out docs:set exists; create outputs:set" {
		t.Fatalf("folder out: %s", ops(c))
	}
	res = mustRun(t, c)
	if len(res.Files) != 4 || res.Files[3] != (FileChange{Path: "outputs/set/sub/b.txt", After: sum("b")}) {
		t.Errorf("files %+v", res.Files)
	}
	if readHost(t, filepath.Join(b.out, "set", "sub", "b.txt")) != "b" {
		t.Fatal("folder not moved")
	}
	// A destination that appeared after approval (as a create) is not replaced.
	writeFile(t, filepath.Join(b.docs, "c.txt"), "c")
	c = b.mustPrepare(t, "move_path", `{"from": "c.txt", "to": "d.txt"}`)
	writeFile(t, filepath.Join(b.docs, "d.txt"), "user's")
	runFails(t, c, "already exists")
	if readHost(t, filepath.Join(b.docs, "d.txt")) != "user's" {
		t.Fatal("clobbered")
	}
	if err := os.Symlink("c.txt", filepath.Join(b.docs, "c.link")); err != nil {
		t.Fatal(err)
	}
	_, err := b.prepare(t, "move_path", `{"from": "c.link", "to": "`+root+`/outputs/c.link"}`)
	assertRefusal(t, err, "only files and folders move between granted folders")
	mustRun(t, b.mustPrepare(t, "move_path", `{"from": "c.link", "to": "c2.link"}`))
	if target, err := os.Readlink(filepath.Join(b.docs, "c2.link")); err != nil || target != "c.txt" {
		t.Fatalf("link not moved as a link: %q, %v", target, err)
	}
	_, err = b.prepare(t, "move_path", `{"from": "reports", "to": "reports/inner"}`)
	assertRefusal(t, err, "a folder cannot be moved into itself")
	_, err = b.prepare(t, "move_path", `{"from": "reports", "to": "d.txt"}`)
	assertRefusal(t, err, "a folder cannot replace it")
	_, err = b.prepare(t, "move_path", `{"from": "nope", "to": "x"}`)
	assertRefusal(t, err, "no such file or directory")
}

func TestMoveProtected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A folder whose contents would become .git/hooks/* once renamed to .git.
	writeFile(t, filepath.Join(b.docs, "staging", "hooks", "pre-commit"), "#!/bin/sh\n")
	writeFile(t, filepath.Join(b.docs, "plain", "a.txt"), "a")
	writeFile(t, filepath.Join(b.docs, "repo", ".git", "config"), "[core]\n")
	tests := []struct{ input, ops string }{
		{`{"from": "staging", "to": ".git"}`, "move docs:staging exists; create docs:.git protected"},
		{`{"from": "staging", "to": "x/.git"}`, "move docs:staging exists; create docs:x/.git protected"},
		{`{"from": "plain", "to": ".git"}`, "move docs:plain exists; create docs:.git"},
		{`{"from": "plain/a.txt", "to": ".bashrc"}`, "move docs:plain/a.txt exists; create docs:.bashrc protected"},
		{`{"from": "repo", "to": "` + root + `/outputs/repo"}`, "move_out docs:repo exists protected; create outputs:repo protected"},
		{`{"from": "repo/.git/config", "to": "config.bak"}`, "move docs:repo/.git/config exists protected; create docs:config.bak"},
	}
	for _, tt := range tests {
		if c := b.mustPrepare(t, "move_path", tt.input); ops(c) != tt.ops {
			t.Errorf("move_path %s: %s, want %s", tt.input, ops(c), tt.ops)
		}
	}
	if !strings.Contains(b.mustPrepare(t, "move_path", `{"from": "staging", "to": ".git"}`).Action.Summary, "move docs/staging -> docs/.git") {
		t.Error("summary")
	}
}
