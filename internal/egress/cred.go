package egress

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// credentialHeaders are request headers that carry credentials. For a host whose credential
// keepup holds, they are removed (or, holding a foreign value, make the request refused).
var credentialHeaders = []string{
	"Authorization", "Proxy-Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key",
	"X-Auth-Token", "X-Access-Token", "Private-Token", "X-Functions-Key",
	"Ocp-Apim-Subscription-Key", "X-Amz-Security-Token", "Anthropic-Api-Key", "Openai-Api-Key",
}

// credentialParams are query parameters (compared lowercase) that carry credentials.
var credentialParams = map[string]bool{
	"key": true, "api_key": true, "apikey": true, "api-key": true, "access_token": true,
	"token": true, "auth_token": true, "x-api-key": true, "client_secret": true,
}

type credential struct {
	header string // canonical header name
	value  string
	own    map[string]bool
}

func compileCredential(c Credential) (*credential, error) {
	if c.Header == "" || !isToken(c.Header) {
		return nil, errors.New("the header must be an HTTP header name")
	}
	if c.Value == "" || strings.ContainsAny(c.Value, "\r\n") {
		return nil, errors.New("the value must be non-empty and on one line")
	}
	cc := &credential{header: http.CanonicalHeaderKey(c.Header), value: c.Value, own: map[string]bool{c.Value: true}}
	if scheme, rest, ok := strings.Cut(c.Value, " "); ok && isToken(scheme) {
		cc.own[strings.TrimSpace(rest)] = true // the bare key of "Bearer KEY"
	} else {
		cc.own["Bearer "+c.Value] = true
	}
	for _, ph := range c.Placeholders {
		if ph == "" {
			return nil, errors.New("empty placeholder")
		}
		cc.own[ph] = true
		cc.own["Bearer "+ph] = true
	}
	return cc, nil
}

func (c *credential) isOwn(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" || c.own[v] {
		return true
	}
	if scheme, rest, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "bearer") {
		return c.own[strings.TrimSpace(rest)]
	}
	return false
}

// pin strips every credential from h and u and injects keepup's own. It reports where a
// foreign credential was found ("" if none); then the request must be refused.
func (c *credential) pin(h http.Header, u *url.URL) (foreign string) {
	check := func(name string) {
		for _, v := range h.Values(name) {
			if foreign == "" && !c.isOwn(v) {
				foreign = "header " + name
			}
		}
		h.Del(name)
	}
	for _, name := range credentialHeaders {
		check(name)
	}
	check(c.header)
	if u.RawQuery != "" {
		// ";" is a separator to some servers: treat it as one (and rejoin with "&").
		parts := strings.FieldsFunc(u.RawQuery, func(r rune) bool { return r == '&' || r == ';' })
		kept := parts[:0]
		removed := false
		for _, part := range parts {
			k, v, _ := strings.Cut(part, "=")
			if uk, err := url.QueryUnescape(k); err == nil {
				k = uk
			}
			if !credentialParams[strings.ToLower(strings.TrimSpace(k))] {
				kept = append(kept, part)
				continue
			}
			removed = true
			if uv, err := url.QueryUnescape(v); err == nil {
				v = uv
			}
			if foreign == "" && !c.isOwn(v) {
				foreign = "query parameter " + k
			}
		}
		if removed {
			u.RawQuery = strings.Join(kept, "&")
			u.ForceQuery = false
		}
	}
	h.Set(c.header, c.value)
	return foreign
}
