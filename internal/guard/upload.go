package guard

import (
	"path"
	"regexp"
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// uploadedFiles returns the files a command line sends out whole, whose bytes are therefore not
// in the command text for R3 to find: curl's -d/--data*/--json @FILE, --data-urlencode
// [name]@FILE, -F name=@FILE or name=<FILE, -T/--upload-file FILE; wget's --post-file and
// --body-file; scp, rsync and sftp sources when the last argument is remote (host:path); and a
// file redirected into nc, ncat, netcat, socat or telnet. "-" (stdin) is not a file. A command
// that does not parse gives nothing here (the bash tool already treats it as most dangerous).
func uploadedFiles(command string) []string {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(command), "")
	if err != nil {
		return nil
	}
	var out []string
	add := func(p string) {
		if p != "" && p != "-" {
			out = append(out, p)
		}
	}
	syntax.Walk(f, func(n syntax.Node) bool {
		st, ok := n.(*syntax.Stmt)
		if !ok {
			return true
		}
		call, ok := st.Cmd.(*syntax.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		args := make([]string, len(call.Args))
		for i, w := range call.Args {
			args[i] = wordText(w)
		}
		switch path.Base(args[0]) {
		case "curl":
			curlUploads(args[1:], add)
		case "wget":
			for i := 1; i < len(args); i++ {
				for _, opt := range []string{"--post-file", "--body-file"} {
					if v, ok := strings.CutPrefix(args[i], opt+"="); ok {
						add(v)
					} else if args[i] == opt && i+1 < len(args) {
						i++
						add(args[i])
					}
				}
			}
		case "scp", "rsync", "sftp":
			var plain []string
			for _, a := range args[1:] {
				if !strings.HasPrefix(a, "-") {
					plain = append(plain, a)
				}
			}
			if len(plain) >= 2 && reRemote.MatchString(plain[len(plain)-1]) {
				for _, p := range plain[:len(plain)-1] {
					if !reRemote.MatchString(p) {
						add(p)
					}
				}
			}
		case "nc", "ncat", "netcat", "socat", "telnet":
			for _, r := range st.Redirs {
				if r.Op == syntax.RdrIn && r.Word != nil {
					add(wordText(r.Word))
				}
			}
		}
		return true
	})
	return out
}

// reRemote matches scp/rsync's remote operand: [user@]host:path (not a Windows-style C:\).
var reRemote = regexp.MustCompile(`^([^/@:]+@)?[A-Za-z0-9._-]{2,}:`)

func curlUploads(args []string, add func(string)) {
	dataAt := func(v string) {
		if p, ok := strings.CutPrefix(v, "@"); ok {
			add(p)
		}
	}
	urlencode := func(v string) {
		// [name]@file sends the file; name=content and =content do not.
		if i := strings.IndexByte(v, '@'); i >= 0 && !strings.Contains(v[:i], "=") {
			add(v[i+1:])
		}
	}
	form := func(v string) {
		_, val, ok := strings.Cut(v, "=")
		if !ok {
			return
		}
		if p, ok := strings.CutPrefix(val, "@"); ok {
			add(strings.SplitN(p, ";", 2)[0])
		} else if p, ok := strings.CutPrefix(val, "<"); ok {
			add(strings.SplitN(p, ";", 2)[0])
		}
	}
	long := map[string]func(string){
		"--data": dataAt, "--data-binary": dataAt, "--data-ascii": dataAt, "--json": dataAt,
		"--data-urlencode": urlencode, "--form": form, "--form-string": nil, "--upload-file": add,
	}
	short := map[byte]func(string){'d': dataAt, 'F': form, 'T': add}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "--") {
			name, val, hasVal := strings.Cut(a, "=")
			fn, known := long[name]
			if !known || fn == nil {
				continue
			}
			if !hasVal {
				if i+1 >= len(args) {
					return
				}
				i++
				val = args[i]
			}
			fn(val)
			continue
		}
		if len(a) >= 2 && a[0] == '-' {
			// Short options may be bundled; the last one may take the value, attached or next.
			for j := 1; j < len(a); j++ {
				fn, ok := short[a[j]]
				if !ok {
					continue
				}
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return
					}
					i++
					val = args[i]
				}
				fn(val)
				break
			}
		}
	}
}

// wordText is a word's text with quotes removed; parts that are not literal (expansions) are
// kept as written, so that "@$F" still names something.
func wordText(w *syntax.Word) string {
	var sb strings.Builder
	for _, p := range w.Parts {
		switch x := p.(type) {
		case *syntax.Lit:
			sb.WriteString(x.Value)
		case *syntax.SglQuoted:
			sb.WriteString(x.Value)
		case *syntax.DblQuoted:
			for _, q := range x.Parts {
				if l, ok := q.(*syntax.Lit); ok {
					sb.WriteString(l.Value)
				} else {
					sb.WriteString("$")
				}
			}
		default:
			sb.WriteString("$")
		}
	}
	return sb.String()
}
