package guard

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
)

// DestKind is what a destination names.
type DestKind string

const (
	DestHost      DestKind = "host"      // a network host (from a URL, a command, a proxy request)
	DestRecipient DestKind = "recipient" // an e-mail address or a connector's addressee
)

// Destination is one place a call's data could go.
type Destination struct {
	Kind  DestKind `json:"kind"`
	Value string   `json:"value"` // canonical host, or lower-cased address
}

func (d Destination) String() string { return d.Value }

// Egress describes a call's outbound data as far as it is known before it runs. Build it with
// FetchEgress (web_fetch), CommandEgress (bash and other code execution), MessageEgress (e-mail
// and connector messages) or RequestEgress (a full HTTP request, as the proxy sees it); or fill
// the fields directly for a new kind of tool. A nil *Egress passed to Rules.Check is derived
// from the action's ops (EffectEgress subjects as hosts, EffectExec subjects as command lines).
type Egress struct {
	// Via names the channel for messages: "web_fetch", "bash", "email", "mcp:server/tool".
	Via string `json:"via,omitempty"`
	// Destinations are the hosts and recipients the data goes to. Empty with Network set means
	// "somewhere": code with network access whose destinations cannot be read from its text.
	Destinations []Destination `json:"destinations,omitempty"`
	// URL, Method and Header describe an HTTP request when there is one.
	URL    string      `json:"url,omitempty"`
	Method string      `json:"method,omitempty"`
	Header http.Header `json:"-"`
	// Payload is every outbound byte known in advance: URL, header values, body, command line,
	// message text. R3 looks for file bytes in it (and in its decoded forms); R2 for keys.
	Payload []byte `json:"-"`
	// Exec marks code execution (bash, a script, an interpreter); Network that it runs with
	// network access (the session has egress capabilities). R6 applies to Exec && Network.
	Exec    bool `json:"exec,omitempty"`
	Network bool `json:"network,omitempty"`
	// Files are files the command sends out whole (curl -d @FILE, -F f=@FILE, -T FILE, scp...):
	// their bytes are not in Payload, so R3 counts the upload itself.
	Files []string `json:"files,omitempty"`
}

// FetchEgress describes fetching rawURL (web_fetch): the URL itself is the payload, since its
// path and query carry data.
func FetchEgress(rawURL string) *Egress {
	e := &Egress{Via: "web_fetch", URL: rawURL, Method: http.MethodGet, Payload: []byte(rawURL)}
	if h := hostOfURL(rawURL); h != "" {
		e.Destinations = []Destination{{Kind: DestHost, Value: h}}
	} else if h := CanonicalHost(rawURL); h != "" && !strings.ContainsAny(h, "/ ") {
		e.Destinations = []Destination{{Kind: DestHost, Value: h}} // a bare host
	}
	return e
}

// RequestEgress describes a complete HTTP request (a connector's call, or the proxy asking
// about one): URL, header values and body are all payload.
func RequestEgress(method, rawURL string, header http.Header, body []byte) *Egress {
	e := FetchEgress(rawURL)
	e.Via, e.Method, e.Header = "http", method, header
	for _, vs := range header {
		for _, v := range vs {
			e.Payload = append(append(e.Payload, '\n'), v...)
		}
	}
	e.Payload = append(append(e.Payload, '\n'), body...)
	return e
}

// CommandEgress describes running a command line (bash) with or without network access. Its
// destinations are the URLs, e-mail addresses and host names written in the command text (a
// file name like notes.txt is not a host); the command text is the payload. What the command
// reads at run time (curl -d @file, a script's own logic) is not visible here: that is what R6
// and the egress proxy are for.
func CommandEgress(command string, network bool) *Egress {
	e := &Egress{Via: "bash", Payload: []byte(command), Exec: true, Network: network, Files: uploadedFiles(command)}
	in := Extract(command)
	for _, h := range in.Hosts {
		e.Destinations = append(e.Destinations, Destination{Kind: DestHost, Value: h})
	}
	for _, m := range in.Emails {
		e.Destinations = append(e.Destinations, Destination{Kind: DestRecipient, Value: m})
	}
	return e
}

// MessageEgress describes sending a message (e-mail, a chat or connector post) to recipients
// through via; every text (subject, body, attachments as text) is payload, and every
// recipient's domain is a destination host as well.
func MessageEgress(via string, recipients []string, texts ...string) *Egress {
	e := &Egress{Via: via}
	for _, r := range recipients {
		r = strings.ToLower(strings.TrimSpace(r))
		e.Destinations = append(e.Destinations, Destination{Kind: DestRecipient, Value: r})
		e.Payload = append(append(e.Payload, r...), '\n')
	}
	for _, t := range texts {
		e.Payload = append(append(e.Payload, t...), '\n')
	}
	return e
}

// hosts returns the egress's destination hosts.
func (e *Egress) hosts() []string {
	var out []string
	for _, d := range e.Destinations {
		if d.Kind == DestHost {
			out = append(out, d.Value)
		}
	}
	return out
}

// Decoding of outgoing data, so that file bytes are found base64-, hex- or URL-encoded. The
// short runs are decoded too while the session holds file secrets, which may be as short as
// minSecret bytes (12 base64 or 16 hex characters).
var (
	reB64Run      = lazyRE(`[A-Za-z0-9+/_-]{32,}={0,2}`)
	reHexRun      = lazyRE(`[0-9a-fA-F]{48,}`)
	reB64RunShort = lazyRE(`[A-Za-z0-9+/_-]{12,}={0,2}`)
	reHexRunShort = lazyRE(`[0-9a-fA-F]{16,}`)
)

// maxDecodeDepth bounds nested encodings (URL-encoded base64 of hex, ...).
const maxDecodeDepth = 3

// decodedForms returns data and the forms decoding it can give: percent-decoding (URLs, form
// bodies), base64 (standard and URL alphabets, padded or not, at each of the four alignments,
// since a chunk may start mid-quantum when a blob is split across calls) and hex (both
// alignments), nested up to maxDecodeDepth layers. Decoded candidates shorter than a shingle
// are dropped, unless short: then those shorter than minSecret are.
func decodedForms(data []byte, short bool) [][]byte {
	out := [][]byte{data}
	frontier := [][]byte{data}
	keep := ShingleSize
	if short {
		keep = minSecret
	}
	for depth := 0; depth < maxDecodeDepth && len(frontier) > 0; depth++ {
		var next [][]byte
		for _, d := range frontier {
			for _, f := range decodeOnce(d, short) {
				if len(f) >= keep {
					next = append(next, f)
				}
			}
		}
		out = append(out, next...)
		frontier = next
	}
	return out
}

func decodeOnce(d []byte, short bool) [][]byte {
	b64Run, hexRun, minB64 := reB64Run, reHexRun, 32
	if short {
		b64Run, hexRun, minB64 = reB64RunShort, reHexRunShort, 12
	}
	var out [][]byte
	if strings.ContainsAny(string(d), "%+") {
		if u, err := url.QueryUnescape(string(d)); err == nil && u != string(d) {
			out = append(out, []byte(u))
		} else if u := lenientUnescape(d); string(u) != string(d) {
			out = append(out, u)
		}
	}
	for _, run := range b64Run().FindAll(d, -1) {
		s := strings.TrimRight(string(run), "=")
		for skip := 0; skip < 4 && len(s)-skip >= minB64; skip++ {
			t := s[skip:]
			if len(t)%4 == 1 {
				t = t[:len(t)-1] // a lone trailing character cannot decode
			}
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				if b, err := enc.DecodeString(t); err == nil {
					out = append(out, b)
					break
				}
			}
		}
	}
	for _, run := range hexRun().FindAll(d, -1) {
		for skip := 0; skip < 2; skip++ {
			t := run[skip:]
			t = t[:len(t)-len(t)%2]
			b := make([]byte, len(t)/2)
			if _, err := hex.Decode(b, t); err == nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// lenientUnescape percent-decodes what it can and keeps malformed escapes as they are.
func lenientUnescape(d []byte) []byte {
	out := make([]byte, 0, len(d))
	for i := 0; i < len(d); i++ {
		switch {
		case d[i] == '%' && i+2 < len(d) && isHex(d[i+1]) && isHex(d[i+2]):
			b, _ := hex.DecodeString(string(d[i+1 : i+3]))
			out = append(out, b[0])
			i += 2
		case d[i] == '+':
			out = append(out, ' ')
		default:
			out = append(out, d[i])
		}
	}
	return out
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
