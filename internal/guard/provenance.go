// Package guard owns provenance: the trust label carried by every piece of content in a task's
// conversation and the join that gives the context's label. Only the user's prompt, the user's
// steering messages and keepup's own configuration are trusted; everything a tool returns is not.
// The injection rules that act on labels build on this package. It must never trust content
// because of what the content says about itself.
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
