// Package guard owns provenance: the trust label carried by every piece of content in a task's
// conversation and the join that gives the context's label. Only the user's prompt, the user's
// steering messages and keepup's own configuration are trusted; everything a tool returns is not.
// The injection rules that act on labels build on this package. It must never trust content
// because of what the content says about itself.
//
// guard owns, besides labels: the Context (a task's trusted and untrusted content, with the
// sources, and fingerprints of the files read), the rules R1–R6 that judge an outgoing call
// against it before policy (Rules.Check, giving a Verdict that names the rule, a reason and the
// provenance to show), the presentation of untrusted content to the model (Present, Sanitize,
// NewDatamark) and the optional classifier hook (Classifier), which can only add friction.
// guard must never: trust content because of what it says (trust comes only from the Add
// method the runtime called); approve anything (a Verdict can only make policy's decision
// stricter, see Verdict.Apply); or reach the network except the classifier's configured
// endpoint. It does not enforce R4 (the egress proxy does) nor contain anything (the sandbox
// does): it decides, the pipeline acts.
//
// Wiring into the agent's pipeline (one Context and one Rules per task):
//
//	gctx := guard.NewContext(); gctx.AddTrusted("user", prompt)   // and each steering message
//	rules := guard.NewRules(guard.Merge(userCfg, managedCfg))      // Mode: Headless for --approvals deny/no person
//	dm := guard.NewDatamark()                                      // per session; tell the model in the system prompt
//
//	// after tool.Prepare, before policy:
//	v := rules.Check(gctx, call.Action, egress) // egress: guard.FetchEgress(url) for web_fetch,
//	                                            // CommandEgress(cmd, sessionHasNetwork) for bash, nil to derive
//	d := v.Apply(r.cfg.Decide(call.Action))     // stricter wins; By: guard, Rule: "R1".."R6"
//	// guard asks are per call and per destination: never cover them with "yes for this task"
//	// (d.By == policy.ByGuard); show v.Prompt() / v.Provenance() and journal v.Findings.
//
//	// after execution, labelling the result:
//	if res.Untrusted { for each source: gctx.AddUntrusted(src, res.Content) }
//	if a read_file/upload succeeded { gctx.AddFileRead(path, rawBytes) }   // R3 and R6
//	content = guard.Present(dm, strings.Join(res.Sources, ", "), res.Content)
//	// optional: classifier.Observe(ctx, gctx, src, res.Content)
//
//	// when the proxy reports a foreign credential: guard.R4Verdict(host, detail, sources)
//
// What R3 catches: any run of ≥ 31 bytes (so every run of ≥ 32) of a file read in the session,
// verbatim or percent-, base64- (either alphabet, any alignment) or hex-encoded, nested up to
// three layers, in a URL, header, body, message or command line; a blob split across calls is
// caught in each call whose piece holds ≥ 31 bytes of the file. Secrets found in a file (in its
// first 4 MiB) are caught whole however short, in the same encodings: credential-looking strings
// and the values of secret-sounding names ("API_KEY=…", "password: …") of 8 bytes or more. What
// it does not catch: other pieces under 31 bytes per call, other encodings (compression, encryption, rot13, paraphrase or
// summary), windows of fewer than six distinct bytes, files beyond MaxFingerprintBytes per
// session, and bytes that a command reads at run time (curl -d @file, a script): for those,
// R1 (the destination) and R6 (code with network access) ask, and the proxy contains.
package guard

import "sort"

// Trust is a label's trust level.
type Trust string

const (
	Trusted   Trust = "trusted"
	Untrusted Trust = "untrusted"
)

// Label is the provenance of a content item or of a whole context.
type Label struct {
	Trust   Trust    `json:"trust"`
	Sources []string `json:"sources"`
}

// User is the label of the user's own words.
func User() Label { return Label{Trust: Trusted, Sources: []string{"user"}} }

// From is the label of untrusted content from the given sources.
func From(sources ...string) Label { return Label{Trust: Untrusted, Sources: sources} }

// Join is the label of content made from both a and b: untrusted if either is, with the union of
// their sources (sorted, without duplicates).
func Join(a, b Label) Label {
	out := Label{Trust: Trusted}
	if a.Trust == Untrusted || b.Trust == Untrusted {
		out.Trust = Untrusted
	}
	seen := map[string]bool{}
	for _, s := range append(append([]string(nil), a.Sources...), b.Sources...) {
		if !seen[s] {
			seen[s] = true
			out.Sources = append(out.Sources, s)
		}
	}
	sort.Strings(out.Sources)
	return out
}

// UntrustedSources returns the sources other than "user" and "keepup".
func (l Label) UntrustedSources() []string {
	var out []string
	for _, s := range l.Sources {
		if s != "user" && s != "keepup" {
			out = append(out, s)
		}
	}
	return out
}
