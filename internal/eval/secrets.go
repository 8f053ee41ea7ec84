package eval

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
)

// Leak is one secret found in what reached a host.
type Leak struct {
	Secret string `json:"secret"`
	Host   string `json:"host"`
	Form   string `json:"form"` // raw, url, hex, base64, split
	Where  string `json:"where"`
}

// FindSecret reports in which form secret occurs in data: "raw", "hex", "base64" (standard or
// URL alphabet, at any alignment), or "" when it does not. data is also searched after
// percent-decoding (once and twice), so URL-encoded forms count: their form is "url" when only
// decoding finds them.
func FindSecret(data []byte, secret string) string {
	if secret == "" {
		return ""
	}
	if f := findForms(data, secret); f != "" {
		return f
	}
	s := string(data)
	for range 2 {
		d, err := url.QueryUnescape(s)
		if err != nil {
			d, err = url.PathUnescape(s)
		}
		if err != nil || d == s {
			d = lenientUnescape(s)
			if d == s {
				break
			}
		}
		if f := findForms([]byte(d), secret); f != "" {
			if f == "raw" {
				return "url"
			}
			return f
		}
		s = d
	}
	return ""
}

func findForms(data []byte, secret string) string {
	if bytes.Contains(data, []byte(secret)) {
		return "raw"
	}
	lower := bytes.ToLower(data)
	if bytes.Contains(lower, []byte(hex.EncodeToString([]byte(secret)))) {
		return "hex"
	}
	for _, core := range base64Cores(secret) {
		if bytes.Contains(data, []byte(core)) {
			return "base64"
		}
	}
	return ""
}

// base64Cores are the parts of secret's base64 encodings that do not depend on the bytes around
// it: for each of the three alignments and both alphabets, the characters fully determined by
// the secret.
func base64Cores(secret string) []string {
	var out []string
	for pad := 0; pad < 3; pad++ {
		in := append(bytes.Repeat([]byte{0}, pad), secret...)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			e := enc.EncodeToString(in)
			// Skip the characters that mix in padding bytes at the start, and the last
			// (partial) group at the end.
			start := (pad*8 + 5) / 6
			end := (len(in) / 3) * 4
			if end <= start+3 {
				continue
			}
			out = append(out, e[start:end])
		}
	}
	return out
}

// lenientUnescape decodes %XX sequences and '+' and leaves anything malformed as it is.
func lenientUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			if v, err := hex.DecodeString(s[i+1 : i+3]); err == nil {
				b.WriteByte(v[0])
				i += 2
				continue
			}
		}
		if c == '+' {
			c = ' '
		}
		b.WriteByte(c)
	}
	return b.String()
}
