package guard

import (
	"net"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// Indicators are the strings in a text that can steer data out: where it could go (URLs, hosts,
// e-mail addresses) and what could authorise it (credential-looking strings). Extraction is
// deliberately generous: a false indicator costs at most a confirmation, a missed one costs a
// leak. All values are lower-cased except credentials, which are kept verbatim.
type Indicators struct {
	URLs        []string
	Hosts       []string // from URLs, e-mail addresses and bare host names
	Emails      []string
	Credentials []string
}

var (
	reURL   = lazyRE(`(?i)\b(?:https?|ftps?|wss?|sftp|ssh|git|rsync|smtp|imaps?)://[^\s"'<>\x60(){}\[\]\\^|]+`)
	reEmail = lazyRE(`(?i)\b[a-z0-9._%+-]+@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\b`)
	reHost  = lazyRE(`(?i)\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]\b`)
	reIPv4  = lazyRE(`\b(?:\d{1,3}\.){3}\d{1,3}\b`)

	// credentialPatterns are the shapes of API keys and tokens, each with the literals one of
	// which every match holds (the pattern runs only on a text that has one: Go's regexp
	// engine has no DFA, and each pattern over a long text costs). The generic ones (long hex,
	// long mixed base64) are separate and filtered by mixedToken.
	credentialPatterns = sync.OnceValue(func() []shape {
		return []shape{
			{regexp.MustCompile(`\bsk-[A-Za-z0-9_-]{16,}`), []string{"sk-"}},                                         // OpenAI, Anthropic (sk-ant-...)
			{regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`), []string{"AKIA", "ASIA"}},                          // AWS access key id
			{regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{30,}\b`), []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}}, // GitHub tokens
			{regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{20,}\b`), []string{"github_pat_"}},                        // GitHub fine-grained
			{regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}`), []string{"xox"}},                                 // Slack
			{regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}\b`), []string{"AIza"}},                                      // Google API key
			{regexp.MustCompile(`\bglpat-[A-Za-z0-9_-]{20,}\b`), []string{"glpat-"}},                                 // GitLab
			{regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`), []string{"eyJ"}}, // JWT
		}
	})
	reBearer  = lazyRE(`(?i)\b(?:bearer|token|basic)\s+([A-Za-z0-9._~+/=-]{16,})`)
	reLongHex = lazyRE(`\b[0-9a-fA-F]{32,}\b`)
	reLongB64 = lazyRE(`[A-Za-z0-9+/_-]{32,}={0,2}`)
)

// notTLDs are endings that make a dotted word a file name rather than a host ("notes.txt").
var notTLDs = setOf("txt", "md", "csv", "tsv", "doc", "docx", "pdf", "html", "htm", "json", "xml",
	"yaml", "yml", "toml", "ini", "cfg", "conf", "log", "py", "go", "sh", "bash", "zsh", "js", "mjs",
	"cjs", "ts", "tsx", "jsx", "rs", "c", "h", "cc", "cpp", "hpp", "java", "kt", "rb", "pl", "php",
	"swift", "lock", "sum", "mod", "bak", "tmp", "old", "out", "svg", "css", "scss", "env", "exe",
	"bin", "o", "so", "a", "db", "sqlite", "zip", "gz", "tgz", "tar", "bz2", "xz", "zst", "7z",
	"png", "jpg", "jpeg", "gif", "webp", "bmp", "ico", "xls", "xlsx", "ppt", "pptx", "odt", "ods",
	"rtf", "mp3", "mp4", "wav", "mov", "avi", "pem", "key", "crt", "pub", "ipynb", "sql", "dat",
	"jar", "class", "whl", "egg", "deb", "rpm", "dmg", "iso", "img", "wasm", "map", "patch", "diff")

// commonTLDs make a two-label dotted word a host ("evil.com"); with three labels or more any
// ending that is not a file extension counts ("files.corp.internal").
var commonTLDs = setOf("com", "net", "org", "io", "dev", "ai", "co", "app", "us", "uk", "de", "fr",
	"info", "biz", "me", "xyz", "example", "test", "invalid", "localhost", "cloud", "site", "online",
	"tech", "ru", "cn", "eu", "nl", "ch", "se", "no", "jp", "in", "br", "au", "ca", "es", "it", "pl",
	"gov", "edu", "mil", "int", "top", "pw", "tk", "ml", "ga", "cf", "gq", "cc", "tv", "ly", "gg",
	"to", "is", "at", "be", "dk", "fi", "ie", "nz", "sg", "hk", "kr", "tw", "onion", "zone", "live",
	"link", "click", "store", "shop", "news", "page", "run", "sh", "ws", "su", "internal", "corp",
	"lan", "local", "home", "email", "mail", "space", "fun", "pro", "website", "host", "ngrok")

func setOf(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// shape is a credential pattern and the literals one of which each of its matches holds.
type shape struct {
	re   *regexp.Regexp
	lits []string
}

// folded is text lower-cased for the case-insensitive patterns' prefilters, with the one
// non-ASCII letter whose case-folding is an ASCII letter that strings.ToLower keeps (ſ, which
// (?i) matches as s; the Kelvin sign, the other, ToLower makes k).
func folded(text string) string {
	return strings.ReplaceAll(strings.ToLower(text), "ſ", "s")
}

// containsAny reports whether s holds any of subs.
func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// hasTokenRun reports whether text holds a run of at least n characters of the base64
// alphabets (hex digits included): what reLongHex and reLongB64 need.
func hasTokenRun(text string, n int) bool {
	run := 0
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '_' || c == '-' {
			if run++; run >= n {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

// findHosts is reHost().FindAllString(text, -1), searching only the words that hold a dot. A
// match holds only ASCII letters, digits, dots and hyphens (and under (?i) the Kelvin sign and
// ſ), so it lies within a run of those, underscores (word characters, which \b must see) and
// non-ASCII bytes; the byte before and after such a run is neither, so \b sees the run's ends
// as it sees the text's.
func findHosts(text string) []string {
	var out []string
	inWord := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c >= 0x80
	}
	for i := 0; i < len(text); {
		if !inWord(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && inWord(text[j]) {
			j++
		}
		if w := text[i:j]; strings.IndexByte(w, '.') >= 0 {
			out = append(out, reHost().FindAllString(w, -1)...)
		}
		i = j
	}
	return out
}

// Extract returns the indicators in text.
func Extract(text string) Indicators {
	var in Indicators
	seen := map[string]bool{}
	add := func(list *[]string, kind, v string) {
		if v == "" || seen[kind+v] {
			return
		}
		seen[kind+v] = true
		*list = append(*list, v)
	}
	var urls []string
	if strings.Contains(text, "://") {
		urls = reURL().FindAllString(text, -1)
	}
	for _, u := range urls {
		u = strings.TrimRight(u, ".,;:!?")
		add(&in.URLs, "u", strings.ToLower(u))
		if h := hostOfURL(u); h != "" {
			add(&in.Hosts, "h", h)
		}
	}
	var emails []string
	if strings.Contains(text, "@") {
		emails = reEmail().FindAllString(text, -1)
	}
	for _, e := range emails {
		e = strings.ToLower(e)
		add(&in.Emails, "e", e)
		add(&in.Hosts, "h", e[strings.LastIndexByte(e, '@')+1:])
	}
	for _, h := range findHosts(text) {
		if h = strings.ToLower(h); looksLikeHost(h) {
			add(&in.Hosts, "h", h)
		}
	}
	for _, ip := range reIPv4().FindAllString(text, -1) {
		if net.ParseIP(ip) != nil {
			add(&in.Hosts, "h", ip)
		}
	}
	for _, c := range credentials(text) {
		add(&in.Credentials, "c", c)
	}
	return in
}

// credentials returns the credential-looking strings in text.
func credentials(text string) []string {
	return credentialsFolded(text, folded(text))
}

// credentialsFolded is credentials, given folded(text) too.
func credentialsFolded(text, fold string) []string {
	var out []string
	for _, sh := range credentialPatterns() {
		if containsAny(text, sh.lits...) {
			out = append(out, sh.re.FindAllString(text, -1)...)
		}
	}
	if containsAny(fold, "bearer", "token", "basic") {
		for _, m := range reBearer().FindAllStringSubmatch(text, -1) {
			out = append(out, m[1])
		}
	}
	if hasTokenRun(text, 32) {
		out = append(out, reLongHex().FindAllString(text, -1)...)
		for _, m := range reLongB64().FindAllString(text, -1) {
			if mixedToken(m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// reSecretAssign finds values assigned to secret-sounding names in configuration and notes
// ("API_KEY=…", "password: …", "db_token = '…'"): short secrets that neither the credential
// shapes nor R3's 31-byte windows find.
var reSecretAssign = lazyRE(`(?i)\b[a-z0-9_.-]*(?:api[_-]?key|secret|token|passw(?:or)?d|passwd|pwd|passphrase|credential|private[_-]?key|access[_-]?key|auth)[a-z0-9_.-]*["']?[ \t]*[:=][ \t]*["']?([^\s"',;#]{8,256})`)

// secretWords are literals one of which every reSecretAssign match holds, folded.
var secretWords = []string{"key", "secret", "token", "passw", "pwd", "passphrase", "credential", "auth"}

// minSecret is the length of the shortest file secret remembered.
const minSecret = 8

// fileSecrets returns the secrets in a file's text for R3: the credential-looking strings
// (credentials), and the values assigned to secret-sounding names. Values of fewer than
// minSecret bytes or five distinct bytes are left out ("password=********").
func fileSecrets(text string) []string {
	fold := folded(text)
	out := credentialsFolded(text, fold)
	if !containsAny(fold, secretWords...) {
		return out
	}
	// A match lies within one line: only the lines that hold a secret word are searched.
	for line := range strings.Lines(text) {
		if !containsAny(folded(line), secretWords...) {
			continue
		}
		for _, m := range reSecretAssign().FindAllStringSubmatch(line, -1) {
			if v := m[1]; len(v) >= minSecret && distinctBytes(v) >= 5 {
				out = append(out, v)
			}
		}
	}
	return out
}

// distinctBytes counts the distinct bytes of s.
func distinctBytes(s string) int {
	var seen [256]bool
	n := 0
	for i := 0; i < len(s); i++ {
		if !seen[s[i]] {
			seen[s[i]] = true
			n++
		}
	}
	return n
}

// mixedToken reports whether a long base64-alphabet word looks like a random token rather than
// a word or a path: it has upper case, lower case and digits, and is not a hex string (those
// have their own pattern).
func mixedToken(s string) bool {
	var up, low, dig bool
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z':
			up = true
		case r >= 'a' && r <= 'z':
			low = true
		case r >= '0' && r <= '9':
			dig = true
		}
	}
	return up && low && dig
}

// looksLikeHost tells a dotted word that names a host from a file name or a version number.
func looksLikeHost(h string) bool {
	labels := strings.Split(strings.TrimSuffix(h, "."), ".")
	if len(labels) < 2 {
		return false
	}
	tld := labels[len(labels)-1]
	if notTLDs[tld] {
		return false
	}
	if strings.Trim(tld, "0123456789") == "" {
		return false // 1.2.3 or an IP (handled apart)
	}
	return commonTLDs[tld] || len(labels) >= 3
}

// hostOfURL returns the canonical host of a URL ("" when it has none).
func hostOfURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		// Fall back to the text between "://" and the next '/', '?' or '#'.
		i := strings.Index(raw, "://")
		if i < 0 {
			return ""
		}
		rest := raw[i+3:]
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			rest = rest[:j]
		}
		if j := strings.LastIndexByte(rest, '@'); j >= 0 {
			rest = rest[j+1:]
		}
		return CanonicalHost(rest)
	}
	return CanonicalHost(u.Hostname())
}

// CanonicalHost lower-cases a host, drops a port, brackets and the trailing dot.
func CanonicalHost(h string) string {
	h = strings.TrimSpace(h)
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// mentions reports whether text (already lower-cased) names s (lower-cased) as a whole token:
// not as part of a longer host name, word or e-mail address.
func mentions(text, s string) bool {
	if s == "" {
		return false
	}
	for off := 0; ; {
		i := strings.Index(text[off:], s)
		if i < 0 {
			return false
		}
		i += off
		end := i + len(s)
		if (i == 0 || !hostChar(text[i-1])) && (end == len(text) || !hostChar(text[end]) || (text[end] == '.' && (end+1 == len(text) || !hostChar(text[end+1])))) {
			return true
		}
		off = i + 1
	}
}

func hostChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '@'
}

// lazyRE compiles pattern on first use: keepup starts often (the sandbox's exec stub is keepup
// too), and compiling the guard's patterns at init cost every start half a millisecond.
func lazyRE(pattern string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(pattern) })
}
