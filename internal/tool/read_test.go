package tool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestListDir(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := os.Symlink("notes.txt", filepath.Join(b.docs, "alias")); err != nil {
		t.Fatal(err)
	}
	c := b.mustPrepare(t, "list_dir", `{"path": "."}`)
	if !c.ReadOnly || !c.Idempotent || ops(c) != "read docs:. exists" || c.Action.Summary != "list docs" {
		t.Fatalf("classification: %s / %q / ro=%v", ops(c), c.Action.Summary, c.ReadOnly)
	}
	res := mustRun(t, c)
	want := ".: 3 entries\nalias@\nnotes.txt  17 B\nreports/\n"
	if res.Content != want {
		t.Errorf("content:\n%s\nwant:\n%s", res.Content, want)
	}
	if !res.Untrusted || strings.Join(res.Sources, ",") != "file:docs" {
		t.Errorf("provenance: %v %v", res.Untrusted, res.Sources)
	}
	res = mustRun(t, b.mustPrepare(t, "list_dir", `{"path": "`+root+`/docs/reports"}`))
	if res.Content != root+"/docs/reports: 1 entry\nq3.md  17 B\n" {
		t.Errorf("absolute listing:\n%s", res.Content)
	}
	_, err := b.prepare(t, "list_dir", `{"path": "notes.txt"}`)
	assertRefusal(t, err, "is not a folder; use read_file")
	_, err = b.prepare(t, "list_dir", `{"path": "nope"}`)
	assertRefusal(t, err, "no such file or directory")
}

func TestReadFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.mustPrepare(t, "read_file", `{"path": "notes.txt"}`)
	if !c.ReadOnly || !c.Idempotent || ops(c) != "read docs:notes.txt exists" || c.Action.Summary != "read docs/notes.txt" {
		t.Fatalf("classification: %s / %q", ops(c), c.Action.Summary)
	}
	res := mustRun(t, c)
	if res.Content != "alpha\nbeta\ngamma\n" || !res.Untrusted || strings.Join(res.Sources, ",") != "file:docs/notes.txt" {
		t.Fatalf("result: %+v", res)
	}
	tests := []struct {
		input, want string
		isErr       bool
	}{
		{`"offset": 2`, "beta\ngamma\n", false},
		{`"offset": 3, "limit": 5`, "gamma\n", false},
		{`"limit": 1`, "alpha\n[read_file: showed lines 1-1; the file goes on: call read_file with offset=2 to read further]", false},
		{`"offset": 2, "limit": 1`, "beta\n[read_file: showed lines 2-2; the file goes on: call read_file with offset=3 to read further]", false},
		{`"offset": 4`, "[read_file: offset 4 is past the end; the file has 3 lines]", true},
		{`"offset": 10`, "[read_file: offset 10 is past the end; the file has 3 lines]", true},
	}
	for _, tt := range tests {
		res, err := b.mustPrepare(t, "read_file", `{"path": "notes.txt", `+tt.input+`}`).Run(t.Context())
		if err != nil || res.Content != tt.want || res.IsError != tt.isErr {
			t.Errorf("read_file {%s} = %q (error %v), %v; want %q", tt.input, res.Content, res.IsError, err, tt.want)
		}
	}
	writeFile(t, filepath.Join(b.docs, "nonl.txt"), "one\ntwo")
	res = mustRun(t, b.mustPrepare(t, "read_file", `{"path": "nonl.txt", "offset": 2}`))
	if res.Content != "two" {
		t.Errorf("last line without newline: %q", res.Content)
	}
	res, _ = b.mustPrepare(t, "read_file", `{"path": "nonl.txt", "offset": 3}`).Run(t.Context())
	if res.Content != "[read_file: offset 3 is past the end; the file has 2 lines]" {
		t.Errorf("past end: %q", res.Content)
	}
	writeFile(t, filepath.Join(b.docs, "empty.txt"), "")
	if res := mustRun(t, b.mustPrepare(t, "read_file", `{"path": "empty.txt"}`)); res.Content != "[read_file: the file is empty]" {
		t.Errorf("empty: %q", res.Content)
	}
	writeFile(t, filepath.Join(b.docs, "bin"), "PK\x03\x04\x00\x00garbage")
	if res := mustRun(t, b.mustPrepare(t, "read_file", `{"path": "bin"}`)); !strings.Contains(res.Content, "binary file of 13 bytes") {
		t.Errorf("binary: %q", res.Content)
	}
	// Uploads are readable (and untrusted).
	res = mustRun(t, b.mustPrepare(t, "read_file", `{"path": "`+root+`/uploads/brief.txt"}`))
	if res.Content != "uploaded brief\n" || !res.Untrusted || res.Sources[0] != "file:uploads/brief.txt" {
		t.Errorf("upload: %+v", res)
	}
	_, err := b.prepare(t, "read_file", `{"path": "reports"}`)
	assertRefusal(t, err, "is a folder; use list_dir")
	_, err = b.prepare(t, "read_file", `{"path": "missing.txt"}`)
	assertRefusal(t, err, root+"/docs/missing.txt: stat: no such file or directory")
	if err := syscall.Mkfifo(filepath.Join(b.docs, "pipe"), 0o644); err == nil {
		_, err = b.prepare(t, "read_file", `{"path": "pipe"}`)
		assertRefusal(t, err, "not a regular file")
	}
}

func TestReadFileTruncation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// 4000 lines of 100 bytes: 400000 bytes, over the 256 KiB cap.
	var sb strings.Builder
	for i := 1; i <= 4000; i++ {
		fmt.Fprintf(&sb, "%-99d\n", i)
	}
	writeFile(t, filepath.Join(b.docs, "big.txt"), sb.String())
	res := mustRun(t, b.mustPrepare(t, "read_file", `{"path": "big.txt"}`))
	const lines = MaxReadBytes / 100 // whole lines that fit
	wantNotice := fmt.Sprintf("[read_file: output truncated at 256 KiB: showed lines 1-%d of a 400000-byte file; call read_file with offset=%d to read further]", lines, lines+1)
	if !strings.HasSuffix(res.Content, "\n"+wantNotice) {
		t.Fatalf("notice: %q", res.Content[len(res.Content)-300:])
	}
	if body := strings.TrimSuffix(res.Content, wantNotice); len(body) != lines*100 || len(body) > MaxReadBytes {
		t.Fatalf("body is %d bytes, want %d", len(body), lines*100)
	}
	// Following the notice reads on from the right line.
	res = mustRun(t, b.mustPrepare(t, "read_file", fmt.Sprintf(`{"path": "big.txt", "offset": %d, "limit": 2}`, lines+1)))
	if want := fmt.Sprintf("%-99d\n%-99d\n", lines+1, lines+2); !strings.HasPrefix(res.Content, want) {
		t.Fatalf("next read: %q", res.Content[:200])
	}
	// One line longer than the cap is cut, and the notice points past it.
	writeFile(t, filepath.Join(b.docs, "long.txt"), "short\n"+strings.Repeat("x", MaxReadBytes+10)+"\nafter\n")
	res = mustRun(t, b.mustPrepare(t, "read_file", `{"path": "long.txt", "offset": 2}`))
	if !strings.HasSuffix(res.Content, "\n[read_file: line 2 is longer than 256 KiB and was cut; call read_file with offset=3 to read the lines after it]") || len(res.Content) > MaxReadBytes+200 {
		t.Fatalf("long line: %d bytes, ends %q", len(res.Content), res.Content[len(res.Content)-150:])
	}
	res = mustRun(t, b.mustPrepare(t, "read_file", `{"path": "long.txt"}`))
	if !strings.HasPrefix(res.Content, "short\n[read_file: output truncated at 256 KiB: showed lines 1-1") {
		t.Fatalf("stop before a long line: %q", res.Content)
	}
	res = mustRun(t, b.mustPrepare(t, "read_file", `{"path": "long.txt", "offset": 3}`))
	if res.Content != "after\n" {
		t.Fatalf("after the long line: %q", res.Content)
	}
}

func TestGlob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, f := range []string{"a.md", "reports/2024/q1.md", "reports/2024/q1.csv", ".git/notes.md", "deep/er/still/x.md"} {
		writeFile(t, filepath.Join(b.docs, f), "x")
	}
	writeFile(t, filepath.Join(b.out, "draft.md"), "x")
	if err := os.Symlink(b.outside, filepath.Join(b.docs, "outlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.md", filepath.Join(b.docs, "link.md")); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ input, want string }{
		{`{"pattern": "**/*.md"}`, "a.md\ndeep/er/still/x.md\nreports/2024/q1.md\nreports/q3.md\n"},
		{`{"pattern": "*.md"}`, "a.md\n"},
		{`{"pattern": "reports/*"}`, "reports/2024/\nreports/q3.md\n"},
		{`{"pattern": "reports/**"}`, "reports/2024/\nreports/2024/q1.csv\nreports/2024/q1.md\nreports/q3.md\n"},
		{`{"pattern": "*/2024/q?.*"}`, "reports/2024/q1.csv\nreports/2024/q1.md\n"},
		{`{"pattern": "**/q[0-9].md", "path": "reports"}`, "reports/2024/q1.md\nreports/q3.md\n"},
		{`{"pattern": "**/still"}`, "deep/er/still/\n"},
		{`{"pattern": ".git/*"}`, ".git/notes.md\n"},
		{`{"pattern": "notes.txt"}`, "notes.txt\n"},
		{`{"pattern": "nothing.txt"}`, "no paths match nothing.txt"},
		{`{"pattern": "**/*.zip"}`, "no paths match **/*.zip"},
		{`{"pattern": "` + root + `/outputs/**/*.md"}`, root + "/outputs/draft.md\n"},
		{`{"pattern": "*.md", "path": "` + root + `/outputs"}`, root + "/outputs/draft.md\n"},
	}
	for _, tt := range tests {
		c := b.mustPrepare(t, "glob", tt.input)
		if !c.ReadOnly || c.Action.Ops[0].Effect != "read" {
			t.Fatalf("classification %s", ops(c))
		}
		if res := mustRun(t, c); res.Content != tt.want {
			t.Errorf("glob %s =\n%s\nwant:\n%s", tt.input, res.Content, tt.want)
		}
	}
	for i := range MaxGlobResults + 5 {
		writeFile(t, filepath.Join(b.out, "many", fmt.Sprintf("f%04d.txt", i)), "")
	}
	res := mustRun(t, b.mustPrepare(t, "glob", `{"pattern": "`+root+`/outputs/many/*"}`))
	if n := strings.Count(res.Content, "\n"); n != MaxGlobResults+1 || !strings.Contains(res.Content, "[glob: stopped at 500 results; narrow the pattern or the path]") {
		t.Errorf("cap: %d lines, ends %q", n, res.Content[len(res.Content)-100:])
	}
	_, err := b.prepare(t, "glob", `{"pattern": "[a-"}`)
	assertRefusal(t, err, "malformed")
	_, err = b.prepare(t, "glob", `{"pattern": "`+root+`/docs/*/../*"}`)
	assertRefusal(t, err, `".." after a wildcard`)
	_, err = b.prepare(t, "glob", `{"pattern": "*", "path": "notes.txt"}`)
	assertRefusal(t, err, "is not a folder")
	_, err = b.prepare(t, "glob", `{"pattern": "`+root+`/docs/*", "path": "reports"}`)
	assertRefusal(t, err, "not both")
}

func TestMatchSegs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pat, name string
		want      bool
	}{
		{"**", "a", true},
		{"**", "a/b/c", true},
		{"**/*.go", "x.go", true},
		{"**/*.go", "a/b/x.go", true},
		{"**/*.go", "a/b/x.txt", false},
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/x/y/b", true},
		{"a/**/b", "a/x/y/c", false},
		{"a/*/c", "a/b/c", true},
		{"a/*/c", "a/b/b/c", false},
		{"*", "a/b", false},
		{"a/**/**/b", "a/b", true},
		{"*.md", ".hidden.md", true},
	}
	for _, tt := range tests {
		pat := cleanPattern(strings.Split(tt.pat, "/"))
		if got := matchSegs(pat, strings.Split(tt.name, "/")); got != tt.want {
			t.Errorf("matchSegs(%q, %q) = %v", tt.pat, tt.name, got)
		}
	}
	if matchPrefix([]string{"a", "*.md"}, []string{"b"}) || !matchPrefix([]string{"a", "*.md"}, []string{"a"}) || matchPrefix([]string{"a"}, []string{"a"}) {
		t.Error("matchPrefix")
	}
}

func TestGrep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	writeFile(t, filepath.Join(b.docs, "reports", "q4.md"), "# Q4\nrevenue: 12\nRevenue again\n")
	writeFile(t, filepath.Join(b.docs, "data.bin"), "revenue\x00\x01")
	writeFile(t, filepath.Join(b.docs, ".git", "COMMIT_EDITMSG"), "revenue\n")
	writeFile(t, filepath.Join(b.docs, "big.log"), strings.Repeat("revenue\n", MaxGrepFileBytes/8+1))
	writeFile(t, filepath.Join(b.outside, "leak.txt"), "revenue\n")
	if err := os.Symlink(b.outside, filepath.Join(b.docs, "outlink")); err != nil {
		t.Fatal(err)
	}
	c := b.mustPrepare(t, "grep", `{"pattern": "revenue"}`)
	if !c.ReadOnly || ops(c) != "read docs:. exists" || c.Action.Summary != "grep revenue in docs" {
		t.Fatalf("classification: %s %q", ops(c), c.Action.Summary)
	}
	res := mustRun(t, c)
	want := "reports/q3.md:2: revenue: 10\nreports/q4.md:2: revenue: 12\n[grep: skipped 1 file over 2 MiB and 1 binary file]\n"
	if res.Content != want {
		t.Errorf("grep =\n%s\nwant:\n%s", res.Content, want)
	}
	if !res.Untrusted || strings.Join(res.Sources, ",") != "file:docs/reports/q3.md,file:docs/reports/q4.md" {
		t.Errorf("provenance: %v %v", res.Untrusted, res.Sources)
	}
	tests := []struct{ input, want string }{
		{`{"pattern": "(?i)^revenue", "glob": "q4.md"}`, "reports/q4.md:2: revenue: 12\nreports/q4.md:3: Revenue again\n"},
		{`{"pattern": "Q\\d", "path": "reports", "glob": "*.md"}`, "reports/q3.md:1: # Q3\nreports/q4.md:1: # Q4\n"},
		{`{"pattern": "Q\\d", "glob": "reports/*3.md"}`, "reports/q3.md:1: # Q3\n"},
		{`{"pattern": "alpha", "path": "notes.txt"}`, "notes.txt:1: alpha\n"},
		{`{"pattern": "beta", "path": "` + root + `/docs/notes.txt"}`, root + "/docs/notes.txt:2: beta\n"},
		{`{"pattern": "zzz", "glob": "*.md"}`, "no matches for zzz in files matching *.md\n"},
	}
	for _, tt := range tests {
		if res := mustRun(t, b.mustPrepare(t, "grep", tt.input)); res.Content != tt.want {
			t.Errorf("grep %s =\n%s\nwant:\n%s", tt.input, res.Content, tt.want)
		}
	}
	writeFile(t, filepath.Join(b.out, "many.txt"), strings.Repeat("hit "+strings.Repeat("y", 400)+"\n", MaxGrepMatches+10))
	res = mustRun(t, b.mustPrepare(t, "grep", `{"pattern": "hit", "path": "`+root+`/outputs"}`))
	lines := strings.Split(strings.TrimSuffix(res.Content, "\n"), "\n")
	if len(lines) != MaxGrepMatches+1 || lines[MaxGrepMatches] != "[grep: stopped at 200 matches; narrow the pattern, path or glob]" {
		t.Errorf("cap: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if !strings.HasSuffix(lines[0], " [...]") || len(lines[0]) > maxGrepLine+100 {
		t.Errorf("long line not cut: %d bytes", len(lines[0]))
	}
	_, err := b.prepare(t, "grep", `{"pattern": "(unclosed"}`)
	assertRefusal(t, err, "not a valid Go regular expression")
	_, err = b.prepare(t, "grep", `{"pattern": "x", "glob": "[x"}`)
	assertRefusal(t, err, "malformed")
}
