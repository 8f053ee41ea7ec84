package guard

import (
	"bytes"
	"hash/maphash"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Fingerprint parameters. A file read in the session is remembered as the hashes of its
// ShingleSize-byte windows starting at every ShingleStride-th offset; outgoing data is hashed
// at every offset. Any verbatim run of at least ShingleSize+ShingleStride-1 = 31 bytes of a
// file therefore contains one remembered window and is found (so every run of 32 bytes or more
// is), without keeping the files: memory is about two bytes per byte read.
const (
	ShingleSize   = 24
	ShingleStride = 8
	// MaxFingerprintBytes caps how many bytes of files are fingerprinted per session. Files
	// read beyond it still count as private data (R6) but their bytes are not matched (R3).
	MaxFingerprintBytes = 64 << 20
	// MaxFileSecrets caps how many secrets found in files (credentials, values of secret
	// names) are remembered per session for R3.
	MaxFileSecrets = 10_000
	// maxSecretScan is how much of each file is searched for secrets.
	maxSecretScan = 4 << 20
	// maxUntrustedText caps the untrusted text kept verbatim for R2's "appears in" test;
	// beyond it only the extracted indicators are kept.
	maxUntrustedText = 16 << 20
)

// Context is the runtime's record of one task's content, for the rules: what the user and
// keepup said (trusted), what tools brought in and from where (untrusted), which files were
// read (fingerprints, for R3) and the context's label. The runner feeds it as content enters the
// conversation; Rules.Check reads it. It never trusts a text because of what the text says: trust
// comes only from which Add method the runtime called. Safe for concurrent use.
type Context struct {
	mu        sync.Mutex
	label     Label
	trusted   strings.Builder // lower-cased trusted text, items separated by newlines
	trustedCS strings.Builder // the same, case kept (credentials are case-sensitive)
	trustIn   Indicators
	untrusted []untrustedItem
	kept      int // bytes of untrusted text kept
	files     map[string]bool
	seed      maphash.Seed
	prints    map[uint64]string // window hash -> first file it came from
	printed   int
	// secrets are the secrets found in files read (fileSecrets), by their first minSecret
	// bytes: R3 finds them in outgoing data however short they are.
	secrets  map[string][]fileSecret
	nSecrets int
	flagged  map[string]float64 // source -> classifier score over the threshold
}

// fileSecret is a secret found in a file read in the session.
type fileSecret struct {
	value, path string
}

type untrustedItem struct {
	source string
	lower  string // lower-cased text ("" when over the cap)
	text   string // text as given ("" when over the cap)
	in     Indicators
}

// NewContext returns an empty context labelled as the user's own (trusted, source "user").
func NewContext() *Context {
	return &Context{label: User(), files: map[string]bool{}, seed: maphash.MakeSeed(), prints: map[uint64]string{}, flagged: map[string]float64{}, secrets: map[string][]fileSecret{}}
}

// AddTrusted records text the user or keepup itself wrote: the task prompt, a steering message,
// keepup's configuration. Use source "user" for the person's words and "keepup" for keepup's
// own; destinations and strings named here are "named by the user" for R1–R3.
func (c *Context) AddTrusted(source, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.label = Join(c.label, Label{Trust: Trusted, Sources: []string{source}})
	c.trusted.WriteString(strings.ToLower(text))
	c.trusted.WriteByte('\n')
	c.trustedCS.WriteString(text)
	c.trustedCS.WriteByte('\n')
	in := Extract(text)
	c.trustIn.URLs = append(c.trustIn.URLs, in.URLs...)
	c.trustIn.Hosts = append(c.trustIn.Hosts, in.Hosts...)
	c.trustIn.Emails = append(c.trustIn.Emails, in.Emails...)
	c.trustIn.Credentials = append(c.trustIn.Credentials, in.Credentials...)
}

// AddUntrusted records content that entered the conversation from source ("file:work/a.docx",
// "upload:report.docx", "web:https://…", "bash", "mcp:server/tool", "subagent:…"): everything a
// tool returned. It taints the context. Call it with the text the model sees (after extraction),
// whatever the tool: this is what R2 looks in to tell where a destination or key came from.
func (c *Context) AddUntrusted(source, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.label = Join(c.label, From(source))
	it := untrustedItem{source: source, in: Extract(text)}
	if c.kept+len(text) <= maxUntrustedText {
		it.lower, it.text = strings.ToLower(text), text
		c.kept += len(text)
	}
	c.untrusted = append(c.untrusted, it)
}

// AddFileRead records that the session read the file at path (a virtual or grant-relative path)
// with these bytes: the context now holds private data (R6), and these bytes leaving are R3. It
// keeps fingerprints, not the bytes. It does not taint the context by itself: the runner also
// calls AddUntrusted with what the model was shown. Uploads are files read too.
func (c *Context) AddFileRead(path string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.files[path] = true
	if c.printed < MaxFingerprintBytes {
		for _, v := range fileSecrets(string(data[:min(len(data), maxSecretScan)])) {
			if c.nSecrets >= MaxFileSecrets {
				break
			}
			k := v[:minSecret]
			if !slices.ContainsFunc(c.secrets[k], func(s fileSecret) bool { return s.value == v }) {
				c.secrets[k] = append(c.secrets[k], fileSecret{v, path})
				c.nSecrets++
			}
		}
	}
	for off := 0; off+ShingleSize <= len(data) && c.printed < MaxFingerprintBytes; off += ShingleStride {
		w := data[off : off+ShingleSize]
		if lowVariety(w) {
			continue
		}
		h := maphash.Bytes(c.seed, w)
		if _, ok := c.prints[h]; !ok {
			c.prints[h] = path
		}
		c.printed += ShingleStride
	}
}

// Flag records a classifier score over the threshold for source (see Classifier). While any
// source in the context is flagged, Check turns allow into ask for consequential actions.
func (c *Context) Flag(source string, score float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flagged[source] = score
}

// Label is the context's label: the join of everything added.
func (c *Context) Label() Label {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Label{Trust: c.label.Trust, Sources: append([]string(nil), c.label.Sources...)}
}

// Tainted reports whether the context holds untrusted content.
func (c *Context) Tainted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.label.Trust == Untrusted
}

// Private reports whether the context holds private data: any file read in the session.
func (c *Context) Private() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.files) > 0
}

// FilesRead lists the files read in the session, sorted.
func (c *Context) FilesRead() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.files))
	for f := range c.files {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// namedByUser reports whether trusted text names a destination: a host, a URL or an address.
// A host is named when it appears as a whole token (so naming "example.com" does not name
// "evil-example.com" nor "api.example.com"), or "www." + it does.
func (c *Context) namedByUser(kind DestKind, value string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.trusted.String()
	v := strings.ToLower(value)
	switch kind {
	case DestHost:
		return mentions(t, v) || (strings.HasPrefix(v, "www.") && mentions(t, v[4:]))
	default:
		return mentions(t, v)
	}
}

// trustedHas reports whether trusted text holds s verbatim (case-sensitive: credentials).
func (c *Context) trustedHas(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Contains(c.trustedCS.String(), s)
}

// untrustedSourcesOf returns the untrusted sources whose content names value (a destination,
// lower-cased matching as a token) or holds it verbatim (a credential).
func (c *Context) untrustedSourcesOf(value string, credential bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	lv := strings.ToLower(value)
	for _, it := range c.untrusted {
		hit := false
		if credential {
			hit = strings.Contains(it.text, value) || contains(it.in.Credentials, value)
		} else {
			hit = mentions(it.lower, lv) || contains(it.in.Hosts, lv) || contains(it.in.URLs, lv) || contains(it.in.Emails, lv)
		}
		if hit && !contains(out, it.source) {
			out = append(out, it.source)
		}
	}
	return out
}

// hasSecrets reports whether any secret was found in the files read.
func (c *Context) hasSecrets() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nSecrets > 0
}

// fileBytesIn returns the files whose fingerprinted bytes occur in data (deduplicated).
func (c *Context) fileBytesIn(data []byte) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for off := 0; len(c.prints) > 0 && off+ShingleSize <= len(data); off++ {
		w := data[off : off+ShingleSize]
		if p, ok := c.prints[maphash.Bytes(c.seed, w)]; ok && !lowVariety(w) && !contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// fileSecretsIn returns the file secrets that occur in data, but those the user wrote in
// trusted text.
func (c *Context) fileSecretsIn(data []byte) []fileSecret {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []fileSecret
	for off := 0; len(c.secrets) > 0 && off+minSecret <= len(data); off++ {
		for _, s := range c.secrets[string(data[off:off+minSecret])] {
			if bytes.HasPrefix(data[off:], []byte(s.value)) && !slices.Contains(out, s) && !strings.Contains(c.trustedCS.String(), s.value) {
				out = append(out, s)
			}
		}
	}
	return out
}

// flaggedSources lists the sources a classifier flagged, sorted.
func (c *Context) flaggedSources() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for s := range c.flagged {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// lowVariety reports whether a window has too few distinct bytes to be evidence of a copy
// (runs of spaces, dashes, zeros, repeated short patterns).
func lowVariety(w []byte) bool {
	var seen [256]bool
	n := 0
	for _, b := range w {
		if !seen[b] {
			seen[b] = true
			n++
			if n >= 6 {
				return false
			}
		}
	}
	return true
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// nonFileSources lists the untrusted sources other than the session's files ("file:…"): web
// pages, command output, connector and subagent results.
func (c *Context) nonFileSources() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, it := range c.untrusted {
		for _, src := range strings.Split(it.source, ", ") {
			if !strings.HasPrefix(src, "file:") && !contains(out, src) {
				out = append(out, src)
			}
		}
	}
	return out
}
