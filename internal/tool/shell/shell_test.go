package shell

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/policy"
)

const cwd = "/sessions/s/mnt/docs"

// show is a compact view of a classification: "effect path" per op, paths relative to cwd
// ("." for cwd itself), "?word" for a word that is not a literal path, "-> dest" for moves.
func show(c Classification) string {
	var out []string
	for _, o := range c.Ops {
		s := string(o.Effect)
		switch {
		case o.Path != "":
			s += " " + rel(o.Path)
		case o.Word != "" && o.Effect != policy.EffectRead:
			s += " ?" + o.Word
		}
		if o.Effect == policy.EffectMove || o.Effect == policy.EffectMoveOut {
			d := "?" + o.DestWord
			if o.Dest != "" {
				d = rel(o.Dest)
			}
			s += " -> " + d
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, "; ")
}

func rel(p string) string {
	switch {
	case p == cwd:
		return "."
	case strings.HasPrefix(p, cwd+"/"):
		return strings.TrimPrefix(p, cwd+"/")
	}
	return p
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct{ cmd, want string }{
		// read
		{"ls -la", "read"},
		{"cat notes.txt | grep -n alpha | sort | uniq -c | head -5", "read"},
		{"wc -l *.md; pwd; echo done", "read"},
		{"rg TODO src", "read"},
		{"find . -name '*.go' -type f", "read"},
		{"stat a; file b; du -sh .; df -h; which go; type ls; date +%F; id; whoami; uname -a", "read"},
		{"diff a b; cmp a b; sha256sum a; md5sum b; jq .x f.json; basename a/b; dirname a/b", "read"},
		{"realpath x; readlink -f y; tree -L 2; column -t f; nl f; test -f x; [ -d y ]; true; false; seq 3; sleep 1", "read"},
		{"env", "read"},
		{"printenv HOME", "read"},
		{"git status", "read"},
		{"git log --oneline -5 && git diff HEAD~1 && git show HEAD:f", "read"},
		{"git branch", "read"},
		{"git branch -a -v", "read"},
		{"git ls-files; git rev-parse HEAD; git blame f; git grep foo", "read"},
		{"git --no-pager log", "read"},
		{"git tag -l 'v*'", "read"},
		{"git config --get user.name", "read"},
		{"git stash list", "read"},
		{"sed -n '1,5p' f", "read"},
		{"sed 's/a/b/g; /x/d' f", "read"},
		{"awk '{print $1}' f", "read"},
		{"awk -F: -v n=1 '{print $n}' /etc/passwd", "read"},
		{"sort -k2 f", "read"},
		{"x=1; echo $x", "read"},
		{"[[ -f a ]] && echo yes", "read"},
		{"(( n = 1 + 2 ))", "read"},
		{"export FOO=bar LANG=C", "read"},
		{"# only a comment", "read"},
		{"", "read"},
		{"echo hi > /dev/null 2>&1", "read"},
		{"ls 2>/dev/null >/dev/stderr", "read"},
		{"cat < in.txt", "read"},
		{"cat <<EOF\nhello\nEOF", "read"},
		{"cat <<< hello", "read"},
		{"ls 2>&1 | cat", "read"},
		{"exec 2>&1", "read"},
		{"command -v git", "read"},
		{"dd if=/dev/zero bs=1 count=1", "read"},
		{"tar -tzf a.tgz", "read"},
		{"unzip -l a.zip", "read"},
		{"git clean -n", "read"},
		{"git rm -n x", "read"},
		{"trap - EXIT", "read"},

		// delete
		{"rm -rf build", "delete build"},
		{"rm -- -weird", "delete -weird"},
		{"rm a b/c /sessions/s/mnt/outputs/x", "delete a; delete b/c; delete /sessions/s/mnt/outputs/x"},
		{"rmdir empty; unlink l; shred -n 3 -u secret; truncate -s 0 log", "delete empty; delete l; delete secret; delete log"},
		{"rm *.log", "delete *.log"},
		{"rm 'a*b' \"c?\"", `delete a*b; delete c?`},
		{"rm x/*.tmp y/'[1]'*", `delete x/*.tmp; delete y/\[1]*`},
		{"rm {a,b}.txt", "delete a.txt; delete b.txt"},
		{"rm ../x", "delete /sessions/s/mnt/x"},
		{"rm /etc/passwd", "delete /etc/passwd"},
		{"rm ~/x", "delete ?~/x"},
		{"rm $F", "delete ?$F"},
		{"rm \"$dir/x\"", `delete ?"$dir/x"`},
		{"rm", "delete"},
		{"find . -name x -delete", "delete ."},
		{"find build tmp -name '*.o' -delete", "delete build; delete tmp"},
		{"find . -name '*.tmp' -exec rm {} \\;", "delete ."},
		{"find src -type f -exec rm -f {} +", "delete src"},
		{"find . -exec grep -l x {} \\;", "read"},
		{"git clean -fdx", "delete ."},
		{"git clean -fd build", "delete build"},
		{"git rm -r old", "delete old"},
		{"echo hi > out.txt", "delete out.txt; read"},
		{"echo hi >| out.txt", "delete out.txt; read"},
		{"make &> build.log", "delete build.log; exec"},
		{"ls >& all.log", "delete all.log; read"},
		{"ls 2> err.log", "delete err.log; read"},
		{"> empty.txt", "delete empty.txt"},
		{"echo $(rm secret)", "delete secret; read"},
		{"echo `rm secret`", "delete secret; read"},
		{"x=$(rm -f lock)", "delete lock"},
		{"cat <(rm a) >(rm b)", "delete a; delete b; read"},
		{"make > >(tee build.log) 2> >(grep err >&2)", "overwrite build.log; read; exec"},
		{"cat <<EOF\n$(rm z)\nEOF", "delete z; read"},
		{"bash -c 'rm x'", "delete x"},
		{"sh -c \"rm -rf build && ls\"", "delete build; read"},
		{"bash -ec 'cd sub; rm x'", "read; delete sub/x"},
		{"sh -c 'sh -c \"rm deep\"'", "delete deep"},
		{"sudo rm x", "delete x"},
		{"sudo -u bob -- rm -rf /sessions/s/mnt/docs/y", "delete y"},
		{"nice -n 10 rm x; nohup rm y; timeout 5 rm z; timeout -s KILL 5s rm w", "delete x; delete y; delete z; delete w"},
		{"env FOO=1 rm x", "delete x"},
		{"env -i rm x", "delete x"},
		{"command rm x; builtin cd /; exec rm y", "delete x; read; delete /y"},
		{"xargs rm", "delete"},
		{"find . -name '*.bak' | xargs rm -f", "read; delete"},
		{"xargs rm -f keep", "delete keep; delete"},
		{"xargs -I{} rm {}", "delete ?{}"},
		{"/bin/rm x", "delete x"},
		{"\\rm x; 'rm' y", "delete x; delete y"},
		{"rsync -a --delete src/ dst/", "overwrite dst; delete dst"},
		{"tar --remove-files -czf a.tgz logs", "overwrite a.tgz; delete logs"},

		// move
		{"mv a b", "move a -> b"},
		{"mv a b dir/", "move a -> dir; move b -> dir"},
		{"mv -t dir a b", "move a -> dir; move b -> dir"},
		{"mv a /sessions/s/mnt/outputs/a", "move_out a -> /sessions/s/mnt/outputs/a"},
		{"mv a /tmp/a", "move_out a -> /tmp/a"},
		{"mv a $D", "move_out a -> ?$D"},
		{"mv $S b", "move_out ?$S -> b"},
		{"mv *.log logs/", "move *.log -> logs"},
		{"git mv old new", "move old -> new"},
		{"find . -name '*.txt' -exec mv {} out/ \\;", "move . -> out"},

		// write
		{"cp a b", "overwrite b"},
		{"cp -r a b c/", "overwrite c"},
		{"cp -t dir a b", "overwrite dir"},
		{"cp a $X", "exec ?$X"},
		{"touch new.txt; mkdir -p x/y", "overwrite new.txt; overwrite x/y"},
		{"echo hi | tee a.txt b.txt", "read; overwrite a.txt; overwrite b.txt"},
		{"echo hi | tee /dev/null", "read"},
		{"echo hi >> log.txt", "overwrite log.txt; read"},
		{"echo hi &>> log.txt", "overwrite log.txt; read"},
		{"echo hi >> $LOG", "exec ?$LOG; read"},
		{"ln -s target link", "overwrite link"},
		{"ln -s ../shared/lib", "overwrite lib"},
		{"chmod +x run.sh; chmod -x a b; chmod -R 755 dir; chmod --reference=r f", "overwrite run.sh; overwrite a; overwrite b; overwrite dir; overwrite f"},
		{"chown -R me:me dir; chgrp staff f", "overwrite dir; overwrite f"},
		{"sed -i 's/a/b/' f1 f2", "overwrite f1; overwrite f2"},
		{"sed -i.bak -e 's/a/b/' f", "overwrite f"},
		{"sed --in-place=.orig 's/a/b/' f", "overwrite f"},
		{"sed -ni 's/a/b/p' f", "overwrite f"},
		{"dd if=a of=b bs=1M", "overwrite b"},
		{"install -m 755 bin /sessions/s/mnt/outputs/bin", "overwrite /sessions/s/mnt/outputs/bin"},
		{"install -d a b", "overwrite a; overwrite b"},
		{"tar -xzf a.tgz", "overwrite ."},
		{"tar xzf a.tgz -C out", "overwrite out"},
		{"tar --extract --file=a.tar --directory out", "overwrite out"},
		{"tar -czf out.tgz src", "overwrite out.tgz"},
		{"tar czf out.tgz src", "overwrite out.tgz"},
		{"unzip a.zip", "overwrite ."},
		{"unzip -o a.zip -d out", "overwrite out"},
		{"sort -o sorted.txt f", "overwrite sorted.txt"},
		{"uniq in.txt out.txt", "overwrite out.txt"},
		{"tree -o tree.txt", "overwrite tree.txt"},
		{"git checkout -- a b", "overwrite a; overwrite b"},
		{"git checkout .", "overwrite ."},
		{"git checkout HEAD~1 f", "overwrite f"},
		{"git restore f", "overwrite f"},
		{"git reset --hard", "overwrite ."},
		{"git config user.name me", "overwrite .git/config"},
		{"git log --output=log.txt", "overwrite log.txt"},
		{"git add . && git commit -m msg", "exec"},
		{"git stash", "exec"},
		{"git checkout main", "exec"},
		{"git branch -D old", "exec"},
		{"git branch new-feature", "exec"},
		{"git tag v1", "exec"},
		{"rsync -a src/ dst/", "overwrite dst"},
		{"command time -o t.txt ls; /usr/bin/time -o t2.txt ls", "overwrite t.txt; read; overwrite t2.txt"},
		{"time -p ls", "read"},
		{"find . -fprint list.txt", "overwrite list.txt"},

		// exec
		{"go test ./...", "exec"},
		{"python3 script.py", "exec"},
		{"make -j4 && ./bin/app", "exec"},
		{"./run.sh", "exec"},
		{"bash build.sh", "exec ?build.sh"},
		{"npm install", "exec"},
		{"awk '{ system(\"rm \" $1) }' f", `exec ?'{ system("rm " $1) }'`},
		{"awk '{ print > \"out\" }' f", `exec ?'{ print > "out" }'`},
		{"awk '{ print | \"sh\" }' f", `exec ?'{ print | "sh" }'`},
		{"awk -f prog.awk f", "exec"},
		{"awk --sandbox '{ print > \"x\" }'", "read"},
		{"sed 's/a/b/e' f", "exec ?'s/a/b/e'"},
		{"sed '1e rm x' f", "exec ?'1e rm x'"},
		{"sed -n 'w out' f", "exec ?'w out'"},
		{"sed -f script.sed f", "exec"},
		{"sed \"$S\" f", `exec ?"$S"`},
		{"sed --sandbox 's/a/b/e' f", "read"},
		{"git -c core.pager=less log", "exec ?core.pager=less; read"},
		{"PATH=./bin:$PATH ls", "exec ?PATH=./bin:$PATH; read"},
		{"export PATH=$PATH:/opt/bin", "exec ?PATH=$PATH:/opt/bin"},
		{"GIT_PAGER=cat git log", "exec ?GIT_PAGER=cat; read"},
		{"less +!rm f", "exec"},
		{"rg --pre ./pre.sh x", "exec"},
		{"f() { go build; }; f", "exec"},
		{"for f in *.txt; do wc -l $f; done", "read"},
		{"while read l; do echo $l; done < list", "read"},
		{"if [ -f x ]; then rm x; else touch x; fi", "read; delete x; overwrite x"},
		{"case $1 in a) rm a;; b) mv b c;; esac", "delete a; move b -> c"},
		{"(cd sub && rm x); rm y", "read; delete sub/x; delete y"},
		{"cd sub; rm x", "read; delete sub/x"},
		{"cd /sessions/s/mnt/outputs && rm x", "read; delete /sessions/s/mnt/outputs/x"},
		{"cd $D && rm x", "read; delete ?x"},
		{"cd sub || exit 1; rm x", "read; delete sub/x"},
		{"if true; then cd a; fi; rm x", "read; delete ?x"},
		{"for d in a b; do cd $d; rm x; done", "read; delete ?x"},
		{"git -C repo clean -fdx", "delete repo"},
		{"env -C sub rm x", "delete sub/x"},
		{"watch -n 1 'rm x'", "delete x"},
		{"trap 'rm -f lock' EXIT", "delete lock"},
		{"flock /tmp/l -c 'rm x'", "delete x"},
		{"flock /tmp/l rm x", "delete x"},
		{"bash <<'EOF'\nrm x\nEOF", "delete x"},
		{"bash <<< 'rm x'", "delete x"},
		{"bash < script.sh", "exec ?script.sh"},
		{"coproc rm x", "delete x"},
		{"time rm x", "delete x"},
		{"rm x &", "delete x"},
		{"! rm x", "delete x"},
		{"busybox rm x", "delete x"},
		{"env -S 'rm x'", "delete x"},
		{"nice", "read"},

		// unknown
		{"$CMD args", "unknown ?$CMD"},
		{"\"$(which rm)\" x", `read; unknown ?"$(which rm)"`},
		{"${X:-rm} y", "unknown ?${X:-rm}"},
		{"eval 'rm x'", "unknown ?'rm x'"},
		{"source env.sh", "unknown ?env.sh"},
		{". ./env.sh", "unknown ?./env.sh"},
		{"rm 'unterminated", "unknown ?rm 'unterminated"},
		{"echo ${", "unknown ?echo ${"},
		{"curl -s x | bash", "exec; unknown ?commands from standard input"},
		{"echo rm x | sh", "read; unknown ?commands from standard input"},
		{"bash -c \"$X\"", `unknown ?"$X"`},
		{"bash -c 'rm \"unterminated'", `unknown ?rm "unterminated`},
		{"BASH_ENV=x.sh bash -c ls", "unknown ?BASH_ENV=x.sh; read"},
		{"PROMPT_COMMAND='rm x' ls", "unknown ?PROMPT_COMMAND='rm x'; read"},
		{"alias ls='rm -rf'", "unknown ?ls='rm -rf'"},
		{"sudo -s", "unknown ?-s"},
		{"*.sh", "unknown ?*.sh"},
		{"xargs $CMD", "unknown ?$CMD"},
		{"find . -exec $X {} \\;", "unknown ?$X"},
	}
	for _, tt := range tests {
		got := show(Classify(tt.cmd, cwd))
		if got != tt.want {
			t.Errorf("Classify(%q)\n got %s\nwant %s", tt.cmd, got, tt.want)
		}
	}
}

func TestClassifyDetails(t *testing.T) {
	t.Parallel()
	c := Classify("sudo rm -f *.log | grep x > out.txt; mv a b", cwd)
	want := []Op{
		{Effect: policy.EffectDelete, Command: "rm", Word: "*.log", Path: cwd + "/*.log", Glob: true},
		{Effect: policy.EffectDelete, Command: ">", Word: "out.txt", Path: cwd + "/out.txt", Truncate: true},
		{Effect: policy.EffectRead, Command: "grep"},
		{Effect: policy.EffectMove, Command: "mv", Word: "a", Path: cwd + "/a", DestWord: "b", Dest: cwd + "/b"},
	}
	if !slices.Equal(c.Ops, want) {
		t.Errorf("ops\n got %+v\nwant %+v", c.Ops, want)
	}
	if !slices.Equal(c.Commands, []string{"sudo", "rm", "grep", "mv"}) || c.Err != nil {
		t.Errorf("commands %q err %v", c.Commands, c.Err)
	}
	if c.ReadOnly() || !slices.Equal(c.Effects(), []policy.Effect{policy.EffectDelete, policy.EffectRead, policy.EffectMove}) {
		t.Errorf("read-only %v effects %v", c.ReadOnly(), c.Effects())
	}
	if c := Classify("ls | wc -l", cwd); !c.ReadOnly() || !slices.Equal(c.Commands, []string{"ls", "wc"}) {
		t.Errorf("ls | wc: %+v", c)
	}
	// Unparseable: one unknown op and the parse error.
	if c := Classify("rm 'unterminated", cwd); c.Err == nil || len(c.Ops) != 1 || c.Ops[0].Effect != policy.EffectUnknown || c.ReadOnly() {
		t.Errorf("unparseable: %+v", c)
	}
	// Without a working directory, relative paths have none; absolute ones keep theirs.
	if got := show(Classify("rm a /sessions/s/mnt/docs/b", "")); got != "delete ?a; delete b" {
		t.Errorf("no cwd: %s", got)
	}
	if got := show(Classify("rm a", "relative/dir")); got != "delete ?a" {
		t.Errorf("relative cwd: %s", got)
	}
	// A function declared in the line is classified where it is declared, even if never called.
	if got := show(Classify("cleanup() { rm -rf tmp; }", cwd)); got != "delete tmp" {
		t.Errorf("function: %s", got)
	}
	// A function named like a read-only command does not hide its body.
	if got := show(Classify("ls() { rm x; }; ls", cwd)); got != "delete x" {
		t.Errorf("shadowing function: %s", got)
	}
	// Nesting is bounded.
	deep := "rm x"
	for range maxDepth + 1 {
		deep = "sh -c " + shellQuote(deep)
	}
	if got := Classify(deep, cwd); got.Effects()[0] != policy.EffectUnknown {
		t.Errorf("deep nesting: %s", show(got))
	}
	// Loops that change the working directory are walked twice; nesting them is bounded.
	loops := "rm x"
	for i := range 24 {
		loops = fmt.Sprintf("while :; do %s; cd /a%d; done", loops, i)
	}
	start := time.Now()
	if got := show(Classify(loops, cwd)); !strings.Contains(got, "unknown ?too complex to classify") || time.Since(start) > 10*time.Second {
		t.Errorf("nested loops: %s in %v", got, time.Since(start))
	}
	// Brace expansions are bounded.
	if got := show(Classify("rm {1..1000}", cwd)); got != "delete ?{1..1000}" {
		t.Errorf("huge brace expansion: %s", got)
	}
	if got := show(Classify("rm f{1..3}", cwd)); got != "delete f1; delete f2; delete f3" {
		t.Errorf("brace sequence: %s", got)
	}
}

func TestMountOf(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]string{
		"/sessions/s/mnt/docs":       "/sessions/s/mnt/docs",
		"/sessions/s/mnt/docs/a/b":   "/sessions/s/mnt/docs",
		"/sessions/s/mnt":            "",
		"/sessions/s/other/docs/a":   "",
		"/tmp/x":                     "",
		"":                           "",
		"/sessions//mnt/docs":        "",
		"/sessions/s/mnt/outputs/xy": "/sessions/s/mnt/outputs",
	} {
		if got := mountOf(p); got != want {
			t.Errorf("mountOf(%q) = %q, want %q", p, got, want)
		}
	}
}

func TestSedRuns(t *testing.T) {
	t.Parallel()
	for script, want := range map[string]bool{
		"s/a/b/":                 false,
		"s/a/b/g":                false,
		"s|a/b|c|gI":             false,
		`s/a\/b/c/`:              false,
		"1,5p":                   false,
		"/^#/d; s/x/y/":          false,
		"$!N; P; D":              false,
		"1~2d":                   false,
		`\,x,d`:                  false,
		"/a/,/b/{ s/x/y/; p }":   false,
		"y/abc/xyz/":             false,
		"a\\\nappended text":     false,
		"1i hello":               false,
		":a;N;$!ba;s/\\n/ /g":    false,
		"r other.txt":            false,
		"# comment\np":           false,
		"5q":                     false,
		"s/a/b/e":                true,
		"s/a/b/w out.txt":        true,
		"s/a/b/gw out.txt":       true,
		"e rm x":                 true,
		"1e date":                true,
		"w out":                  true,
		"/x/W out":               true,
		"s/a/b":                  true, // unterminated
		"/unterminated":          true,
		"pw x":                   true,
		"v":                      true, // not understood
		"":                       false,
		"s/a/b/;e":               true,
		"/a/!{p;w x\n}":          true,
		"s/[/]/x/":               false,
		"2,+3d; 4,~4d":           false,
		"s/a/b/2p":               false,
		"l 40":                   false,
		"F;=":                    false,
		"z; T end; :end":         false,
		"b end;e x":              true,
		"s/a/b/ ; s/c/d/ # done": false,
	} {
		if got := sedRuns(script); got != want {
			t.Errorf("sedRuns(%q) = %v, want %v", script, got, want)
		}
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"rm -rf build", "find . -exec rm {} \\;", "tar xzf a -C", "sed -i",
		"git -C", "xargs -I", "mv", "cp -t", "env -S", "awk -f", "sed -e", "bash -c", "cat <<EOF\nx\nEOF",
		"chmod --", "flock f -c", "dd of=", "unzip -d", "rsync a b:c", "timeout", "sudo -D"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Classify(s, cwd)
		if len(c.Ops) == 0 {
			t.Fatalf("no ops for %q", s)
		}
	})
}
