package guard

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// unfiltered are the extractions without their prefilters: what the prefiltered ones must
// equal.
func unfilteredHosts(text string) []string { return reHost().FindAllString(text, -1) }

func unfilteredCredentials(text string) []string {
	var out []string
	for _, sh := range credentialPatterns() {
		out = append(out, sh.re.FindAllString(text, -1)...)
	}
	for _, m := range reBearer().FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	out = append(out, reLongHex().FindAllString(text, -1)...)
	for _, m := range reLongB64().FindAllString(text, -1) {
		if mixedToken(m) {
			out = append(out, m)
		}
	}
	return out
}

func unfilteredFileSecrets(text string) []string {
	out := unfilteredCredentials(text)
	for _, m := range reSecretAssign().FindAllStringSubmatch(text, -1) {
		if v := m[1]; len(v) >= minSecret && distinctBytes(v) >= 5 {
			out = append(out, v)
		}
	}
	return out
}

var indicatorSeeds = []string{
	"", "plain words only.", "see https://Evil.Example/x?y=1 and mail bob@corp.example",
	"foo_bar.example.com baz-.qux.io a.b c..d .e.com f.com.", "K\u212Aey=abcdefgh12 pa\u017F\u017Fword: S3cr3t-value!",
	"Authorization: Bearer abcdefghijklmnop0123 BASIC qwertyuiopasdfgh", "ba\u017Fic abcdefghijklmnopqrstu",
	"AKIAIOSFODNN7EXAMPLE sk-ant-api03-abcdefghijklmnop ghp_" + strings.Repeat("a1B", 11) + " xoxb-1234567890-abc",
	"eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeK " + strings.Repeat("0f", 20) + " " + strings.Repeat("aB3", 12),
	"api_key = 'k3y-v4lu3-0k'\nDB_PASSWORD=hunter2-Blue!\npassword\n= not-on-one-line\ntoken:\tt0k3n-9f8e7d",
	"héllo.wörld.com naïve@exämple.com ünïcode_host.example.org", "x.y\u212A.com sub.\u017Fite.net",
}

func checkIndicators(t *testing.T, text string) {
	if got, want := findHosts(text), unfilteredHosts(text); !slices.Equal(got, want) {
		t.Errorf("findHosts(%q) = %q, want %q", text, got, want)
	}
	if got, want := credentials(text), unfilteredCredentials(text); !slices.Equal(got, want) {
		t.Errorf("credentials(%q) = %q, want %q", text, got, want)
	}
	if got, want := fileSecrets(text), unfilteredFileSecrets(text); !slices.Equal(got, want) {
		t.Errorf("fileSecrets(%q) = %q, want %q", text, got, want)
	}
}

// TestPrefiltersKeepMatches: the prefilters in front of the indicator and secret patterns
// (they only skip texts or words that cannot match) find exactly what the patterns alone
// find, on crafted texts and on random mixes of their pieces.
func TestPrefiltersKeepMatches(t *testing.T) {
	t.Parallel()
	for _, s := range indicatorSeeds {
		checkIndicators(t, s)
	}
	pieces := strings.Fields(strings.Join(indicatorSeeds, " "))
	seps := []string{" ", "\n", "_", ".", "-", "=", ": ", "\t", "\u212A", "\u017F", "é", "/", "\""}
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		var b strings.Builder
		for range r.IntN(12) {
			p := pieces[r.IntN(len(pieces))]
			if cut := r.IntN(len(p) + 1); r.IntN(3) == 0 {
				p = p[:cut]
			}
			b.WriteString(p)
			b.WriteString(seps[r.IntN(len(seps))])
		}
		checkIndicators(t, b.String())
	}
}

func FuzzPrefilters(f *testing.F) {
	for _, s := range indicatorSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkIndicators(t, s) })
}
