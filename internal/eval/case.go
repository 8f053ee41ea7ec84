package eval

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keepup/keepup/internal/model/script"
)

// Case is one evaluation case as read from its file (the contract of the guardrails issue and
// DESIGN.md "Evaluation cases").
type Case struct {
	File    string              // the file it was read from
	ID      string              // "id"
	Kind    string              // "attack" or "benign"
	Origin  string              // "origin": where the case comes from (optional)
	Prompt  string              // the trusted user prompt
	Files   map[string]FileSpec // placed in one read-write grant named "work"
	Uploads map[string]FileSpec // attached as uploads
	Hosts   map[string]HostSpec // hosts the recorder serves, and the egress capabilities
	Pages   map[string]string   // URL -> body served to web_fetch and curl
	Secrets []string            // strings that must never reach any host
	Script  json.RawMessage     // the scripted model, {"turns": [...]}
	Turns   []script.Turn       // Script parsed
	Expect  Expect
	// PresentFiles and AbsentFiles are paths relative to the grant that must, or must not,
	// exist after the run; PresentOutputs, paths relative to the session's outputs folder.
	PresentFiles, AbsentFiles, PresentOutputs []string
	// Config, when set, is written as the case's KEEPUP_HOME/config.json (the user's
	// configuration: permissions, egress capabilities).
	Config json.RawMessage
}

// FileSpec is a file's content: plain text, a .docx built from visible and hidden paragraphs,
// or HTML.
type FileSpec struct {
	Text *string
	Docx *DocxSpec
	HTML *string
}

// DocxSpec is a Word document: visible paragraphs, then hidden ones (1-point white text).
type DocxSpec struct {
	Visible []string `json:"visible"`
	Hidden  []string `json:"hidden"`
}

// HostSpec is one host of a case. Allow makes it an egress capability; Credential is keepup's
// own credential for it (the proxy pins it: any other is foreign, R4); Rules restrict it to
// those methods and path prefixes.
type HostSpec struct {
	Allow      *bool     `json:"allow"`
	Credential string    `json:"credential"`
	Rules      []ReqRule `json:"rules"`
}

// ReqRule is one request-level rule: a method and a path prefix (either may be empty: any).
type ReqRule struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}

// Expect is what the case expects.
type Expect struct {
	Exfiltrated bool         `json:"exfiltrated"`
	Calls       []ExpectCall `json:"calls"`
}

// ExpectCall is the decision one call must get: turn and call are 0-based indexes into the
// script's turns and that turn's tool calls. Rule, when set, must match the recorded rule (a
// prefix ending in ":" matches any rule starting with it: "mode:").
type ExpectCall struct {
	Turn     int    `json:"turn"`
	Call     int    `json:"call"`
	Decision string `json:"decision"`
	Rule     string `json:"rule,omitempty"`
}

// CaseError is a malformed case: the file, the field and what is wrong.
type CaseError struct {
	File  string
	Field string
	Msg   string
}

func (e *CaseError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Msg)
}

// LoadDir lists the *.json cases of dir, sorted by file name.
func LoadDir(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

// LoadCase reads and validates one case file.
func LoadCase(file string) (*Case, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &CaseError{File: file, Msg: err.Error()}
	}
	return ParseCase(file, data)
}

// ParseCase decodes and validates a case. Unknown keys are ignored; every error names the file
// and the field.
func ParseCase(file string, data []byte) (*Case, error) {
	bad := func(field, format string, a ...any) error {
		return &CaseError{File: file, Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		if err == nil {
			err = fmt.Errorf("not a JSON object")
		}
		return nil, bad("", "invalid JSON: %v", err)
	}
	c := &Case{File: file}
	str := func(key string, required bool) (string, error) {
		raw, ok := top[key]
		if !ok {
			if required {
				return "", bad(key, "missing")
			}
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", bad(key, "must be a string")
		}
		if required && strings.TrimSpace(s) == "" {
			return "", bad(key, "empty")
		}
		return s, nil
	}
	var err error
	if c.ID, err = str("id", true); err != nil {
		return nil, err
	}
	if c.Kind, err = str("kind", true); err != nil {
		return nil, err
	}
	if c.Kind != "attack" && c.Kind != "benign" {
		return nil, bad("kind", "%q: want \"attack\" or \"benign\"", c.Kind)
	}
	if c.Origin, err = str("origin", false); err != nil {
		return nil, err
	}
	if c.Prompt, err = str("prompt", true); err != nil {
		return nil, err
	}
	if c.Files, err = parseFiles(top["files"], "files", bad, true); err != nil {
		return nil, err
	}
	if c.Uploads, err = parseFiles(top["uploads"], "uploads", bad, false); err != nil {
		return nil, err
	}
	if raw, ok := top["hosts"]; ok {
		if err := strictDecode(raw, &c.Hosts); err != nil {
			return nil, bad("hosts", "want {\"host\": {\"allow\": bool, \"credential\": string, \"rules\": [{\"method\", \"path\"}]}}: %v", err)
		}
		for h, hs := range c.Hosts {
			if err := checkHostName(h); err != nil {
				return nil, bad("hosts."+h, "%v", err)
			}
			if strings.ContainsAny(hs.Credential, "\r\n") {
				return nil, bad("hosts."+h+".credential", "must be on one line")
			}
			for i, r := range hs.Rules {
				if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
					return nil, bad(fmt.Sprintf("hosts.%s.rules[%d].path", h, i), "%q must start with /", r.Path)
				}
				if r.Method != "" && strings.ToUpper(r.Method) != r.Method {
					return nil, bad(fmt.Sprintf("hosts.%s.rules[%d].method", h, i), "%q must be upper case", r.Method)
				}
			}
		}
	}
	if raw, ok := top["pages"]; ok {
		if err := json.Unmarshal(raw, &c.Pages); err != nil {
			return nil, bad("pages", "want {\"URL\": \"body\"}")
		}
		for u := range c.Pages {
			pu, err := url.Parse(u)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Hostname() == "" {
				return nil, bad("pages."+u, "not an http or https URL")
			}
			if err := checkHostName(pu.Hostname()); err != nil {
				return nil, bad("pages."+u, "%v", err)
			}
		}
	}
	if raw, ok := top["secrets"]; ok {
		if err := json.Unmarshal(raw, &c.Secrets); err != nil {
			return nil, bad("secrets", "want an array of strings")
		}
		for i, s := range c.Secrets {
			if len(s) < 6 {
				return nil, bad(fmt.Sprintf("secrets[%d]", i), "%q is too short to detect reliably (at least 6 characters)", s)
			}
		}
	}
	if raw, ok := top["config"]; ok {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil || m == nil {
			return nil, bad("config", "must be an object (the user's config.json)")
		}
		c.Config = raw
	}
	raw, ok := top["script"]
	if !ok {
		return nil, bad("script", "missing")
	}
	s, err := script.Parse(raw)
	if err != nil {
		return nil, bad("script", "%v", err)
	}
	if len(s.Turns) == 0 {
		return nil, bad("script.turns", "empty")
	}
	c.Script, c.Turns = raw, s.Turns
	raw, ok = top["expect"]
	if !ok {
		return nil, bad("expect", "missing")
	}
	if err := strictDecode(raw, &c.Expect); err != nil {
		return nil, bad("expect", "want {\"exfiltrated\": bool, \"calls\": [{\"turn\", \"call\", \"decision\", \"rule\"}]}: %v", err)
	}
	for i, ec := range c.Expect.Calls {
		f := fmt.Sprintf("expect.calls[%d]", i)
		if ec.Turn < 0 || ec.Turn >= len(c.Turns) {
			return nil, bad(f+".turn", "%d is not a turn of the script (0-%d)", ec.Turn, len(c.Turns)-1)
		}
		if ec.Call < 0 || ec.Call >= len(c.Turns[ec.Turn].ToolCalls) {
			return nil, bad(f+".call", "turn %d has no tool call %d (it has %d)", ec.Turn, ec.Call, len(c.Turns[ec.Turn].ToolCalls))
		}
		switch ec.Decision {
		case "allow", "ask", "deny":
		default:
			return nil, bad(f+".decision", "%q: want allow, ask or deny", ec.Decision)
		}
	}
	for _, k := range []struct {
		key string
		dst *[]string
	}{{"present_files", &c.PresentFiles}, {"absent_files", &c.AbsentFiles}, {"present_outputs", &c.PresentOutputs}} {
		raw, ok := top[k.key]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, k.dst); err != nil {
			return nil, bad(k.key, "want an array of paths")
		}
		for i, p := range *k.dst {
			if err := checkRel(p); err != nil {
				return nil, bad(fmt.Sprintf("%s[%d]", k.key, i), "%v", err)
			}
		}
	}
	return c, nil
}

func strictDecode(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func parseFiles(raw json.RawMessage, field string, bad func(string, string, ...any) error, nested bool) (map[string]FileSpec, error) {
	if raw == nil {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, bad(field, "want an object of name -> content")
	}
	out := map[string]FileSpec{}
	for name, v := range m {
		f := field + "." + name
		if err := checkRel(name); err != nil {
			return nil, bad(f, "%v", err)
		}
		if !nested && strings.Contains(name, "/") {
			return nil, bad(f, "an upload is a plain file name, without folders")
		}
		var spec FileSpec
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			spec.Text = &s
		} else {
			var o map[string]json.RawMessage
			if err := json.Unmarshal(v, &o); err != nil || len(o) != 1 {
				return nil, bad(f, "want a string, {\"docx\": {\"visible\": [...], \"hidden\": [...]}} or {\"html\": \"...\"}")
			}
			switch {
			case o["docx"] != nil:
				var d DocxSpec
				if err := strictDecode(o["docx"], &d); err != nil {
					return nil, bad(f+".docx", "want {\"visible\": [strings], \"hidden\": [strings]}: %v", err)
				}
				spec.Docx = &d
			case o["html"] != nil:
				var h string
				if err := json.Unmarshal(o["html"], &h); err != nil {
					return nil, bad(f+".html", "must be a string")
				}
				spec.HTML = &h
			default:
				return nil, bad(f, "want a string, {\"docx\": ...} or {\"html\": ...}")
			}
		}
		out[name] = spec
	}
	return out, nil
}

// checkRel accepts a clean relative slash path.
func checkRel(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "\\") {
		return fmt.Errorf("%q must be a clean relative path", p)
	}
	return nil
}

func checkHostName(h string) error {
	if h == "" || strings.ContainsAny(h, "/:@ *") || strings.ToLower(h) != h {
		return fmt.Errorf("%q is not a lower-case host name", h)
	}
	return nil
}
