package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
)

// Rule is one capability (or, with Deny, one prohibition). A request is allowed when no deny
// rule matches it and at least one allow rule does; with no rules nothing is allowed.
type Rule struct {
	// Host is a DNS name ("api.example.com"), a wildcard over its subdomains ("*.example.com":
	// matches a.example.com and a.b.example.com, not example.com nor evilexample.com), or an
	// IP literal ("203.0.113.7", "2001:db8::1" or "[2001:db8::1]"). Names are canonicalised
	// like request hosts (lowercase, one trailing dot removed) and must be ASCII (use the
	// punycode form of an internationalised name).
	Host string
	// Ports the rule covers; empty means the scheme's default: 443 for CONNECT, 80 for plain
	// http requests.
	Ports []int
	// Deny makes this a prohibition. Deny rules are checked first.
	Deny bool
	// Methods and PathPrefixes are request-level constraints (empty: any). A host that any
	// matching rule gives request-level constraints is TLS-terminated by the proxy so that they
	// can be enforced. A path prefix matches on a segment boundary: "/v1/messages" matches
	// "/v1/messages" and "/v1/messages/x", not "/v1/messagesx"; a prefix ending in "/"
	// matches anything beneath it.
	Methods      []string
	PathPrefixes []string
	// AllowPrivate lets a name rule connect to loopback, private, link-local and CGNAT
	// addresses its name resolves to (an intranet host). Cloud-metadata addresses stay
	// refused unless an IP rule names them. An IP rule always allows the IP it names.
	AllowPrivate bool
}

// String is the rule as audit entries and errors show it.
func (r Rule) String() string {
	var b strings.Builder
	if r.Deny {
		b.WriteString("deny ")
	} else {
		b.WriteString("allow ")
	}
	b.WriteString(r.Host)
	if len(r.Ports) > 0 {
		ps := make([]string, len(r.Ports))
		for i, p := range r.Ports {
			ps[i] = strconv.Itoa(p)
		}
		b.WriteString(":" + strings.Join(ps, ","))
	}
	if len(r.Methods) > 0 {
		b.WriteString(" " + strings.Join(r.Methods, ","))
	}
	if len(r.PathPrefixes) > 0 {
		b.WriteString(" " + strings.Join(r.PathPrefixes, ","))
	}
	if r.AllowPrivate {
		b.WriteString(" private-ok")
	}
	return b.String()
}

// rule is a validated Rule.
type rule struct {
	Rule
	idx      int
	text     string
	ip       netip.Addr // valid for IP rules
	exact    string     // exact name, or "" for a wildcard
	suffix   string     // ".example.com" for "*.example.com"
	methods  map[string]bool
	requests bool // has request-level constraints
}

func compileRule(i int, r Rule) (*rule, error) {
	c := &rule{Rule: r, idx: i}
	c.text = fmt.Sprintf("rules[%d] %s", i, r.String())
	bad := func(format string, a ...any) error {
		return fmt.Errorf("egress: rules[%d] (%q): %s", i, r.Host, fmt.Sprintf(format, a...))
	}
	h := r.Host
	switch {
	case h == "":
		return nil, bad("empty host")
	case strings.HasPrefix(h, "*."):
		name, err := canonicalName(strings.TrimSuffix(h[2:], "."))
		if err != nil {
			return nil, bad("%v", err)
		}
		if !strings.Contains(name, ".") {
			return nil, bad("wildcard over a top-level domain is too broad; name at least two labels after *.")
		}
		c.suffix = "." + name
	case strings.Contains(h, "*"):
		return nil, bad("a wildcard is only allowed as a leading \"*.\"")
	default:
		hk, err := canonicalHost(h)
		if err != nil {
			return nil, bad("%v", err)
		}
		if hk.ip.IsValid() {
			if !hk.canonicalIP {
				return nil, bad("write the IP literal in its canonical form (%s)", hk.ip)
			}
			c.ip = hk.ip
		} else {
			c.exact = hk.name
		}
	}
	for _, p := range r.Ports {
		if p < 1 || p > 65535 {
			return nil, bad("port %d out of range 1-65535", p)
		}
	}
	if len(r.Methods) > 0 {
		c.methods = map[string]bool{}
		for _, m := range r.Methods {
			if m == "" || !isToken(m) {
				return nil, bad("method %q is not an HTTP method token", m)
			}
			c.methods[strings.ToUpper(m)] = true
		}
	}
	for _, p := range r.PathPrefixes {
		if !strings.HasPrefix(p, "/") {
			return nil, bad("path prefix %q must start with /", p)
		}
		if p != "/" && path.Clean(p) != strings.TrimSuffix(p, "/") {
			return nil, bad("path prefix %q is not a clean path", p)
		}
	}
	c.requests = len(r.Methods) > 0 || len(r.PathPrefixes) > 0
	if r.Deny && r.AllowPrivate {
		return nil, bad("AllowPrivate has no meaning on a deny rule")
	}
	return c, nil
}

// matchesHost says whether the rule covers the canonical host h.
func (r *rule) matchesHost(h hostKey) bool {
	if h.ip.IsValid() {
		return r.ip.IsValid() && r.ip == h.ip
	}
	if r.exact != "" {
		return r.exact == h.name
	}
	return r.suffix != "" && len(h.name) > len(r.suffix) && strings.HasSuffix(h.name, r.suffix)
}

func (r *rule) matchesPort(port int, defaultPort int) bool {
	if len(r.Ports) == 0 {
		return port == defaultPort
	}
	for _, p := range r.Ports {
		if p == port {
			return true
		}
	}
	return false
}

// matchesRequest checks the request-level constraints; path must already be canonical.
func (r *rule) matchesRequest(method, p string) bool {
	if r.methods != nil && !r.methods[method] {
		return false
	}
	if len(r.PathPrefixes) == 0 {
		return true
	}
	for _, pre := range r.PathPrefixes {
		if pathHasPrefix(p, pre) {
			return true
		}
	}
	return false
}

func pathHasPrefix(p, pre string) bool {
	if strings.HasSuffix(pre, "/") {
		return strings.HasPrefix(p, pre)
	}
	return p == pre || strings.HasPrefix(p, pre+"/")
}

// hostKey is a canonical request host: a name or an IP.
type hostKey struct {
	name        string     // canonical DNS name (when ip is not valid)
	ip          netip.Addr // the IP of an IP literal, unmapped
	canonicalIP bool       // the literal was written in the IP's canonical form
}

func (h hostKey) String() string {
	if h.ip.IsValid() {
		return h.ip.String()
	}
	return h.name
}

var (
	errHostEmpty = errors.New("empty host")
	errNonASCII  = errors.New("non-ASCII host name (use its punycode form)")
)

// canonicalHost canonicalises a request or rule host (without port): lowercase, one trailing
// dot removed, IP literals in any form that resolvers or URL parsers accept (dotted, short
// "127.1", decimal "2130706433", hex "0x7f000001", octal "0177.0.0.1", IPv6 with or without
// brackets, IPv4-mapped IPv6) recognised as the IP they denote.
func canonicalHost(h string) (hostKey, error) {
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") {
			return hostKey{}, fmt.Errorf("malformed IPv6 literal %q", h)
		}
		h = h[1 : len(h)-1]
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return hostKey{}, fmt.Errorf("malformed IPv6 literal %q", h)
		}
	}
	if strings.Contains(h, ":") {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return hostKey{}, fmt.Errorf("malformed host %q", h)
		}
		if a.Zone() != "" {
			return hostKey{}, fmt.Errorf("IPv6 zone in host %q", h)
		}
		u := a.Unmap()
		return hostKey{ip: u, canonicalIP: u.String() == strings.ToLower(h)}, nil
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return hostKey{}, errHostEmpty
	}
	h = strings.ToLower(h)
	labels := strings.Split(h, ".")
	if last := labels[len(labels)-1]; last != "" && isNumericLabel(last) {
		a, ok := parseInetAton(h)
		if !ok {
			return hostKey{}, fmt.Errorf("malformed IPv4 literal %q", h)
		}
		return hostKey{ip: a, canonicalIP: a.String() == h}, nil
	}
	name, err := canonicalName(h)
	if err != nil {
		return hostKey{}, err
	}
	return hostKey{name: name}, nil
}

// canonicalName validates and lowercases a DNS name (its trailing dot already removed).
func canonicalName(h string) (string, error) {
	h = strings.ToLower(h)
	if h == "" {
		return "", errHostEmpty
	}
	if len(h) > 253 {
		return "", fmt.Errorf("host name longer than 253 bytes")
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("malformed host name %q", h)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case c >= 0x80:
				return "", errNonASCII
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return "", fmt.Errorf("malformed host name %q", h)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("malformed host name %q", h)
		}
	}
	return h, nil
}

// isNumericLabel reports whether a label would be read as a number by inet_aton or the WHATWG
// URL parser (decimal, 0x-hex, octal), which makes the whole host an IPv4 literal.
func isNumericLabel(l string) bool {
	if strings.HasPrefix(l, "0x") {
		for i := 2; i < len(l); i++ {
			if !isHex(l[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
}

// parseInetAton parses the IPv4 forms inet_aton accepts: a, a.b, a.b.c, a.b.c.d, each part
// decimal, octal (leading 0) or hex (0x).
func parseInetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		base := 10
		switch {
		case strings.HasPrefix(p, "0x"):
			base, p = 16, p[2:]
			if p == "" {
				p = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		n, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	var v uint64
	last := len(nums) - 1
	for i := 0; i < last; i++ {
		if nums[i] > 255 {
			return netip.Addr{}, false
		}
		v |= nums[i] << (24 - 8*uint(i))
	}
	if nums[last] >= 1<<(8*uint(4-last)) {
		return netip.Addr{}, false
	}
	v |= nums[last]
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// ParseHostRule reads a host capability as written in configuration: "api.example.com",
// "*.example.com" or an IP literal, optionally with ":port" ("[::1]:8443" for IPv6). The
// result is checked as New would check it.
func ParseHostRule(s string) (Rule, error) {
	r := Rule{Host: s}
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, perr := strconv.Atoi(p)
		if perr != nil {
			return Rule{}, fmt.Errorf("egress host %q: port %q is not a number", s, p)
		}
		r = Rule{Host: h, Ports: []int{n}}
	}
	if _, err := compileRule(0, r); err != nil {
		return Rule{}, fmt.Errorf("egress host %q: %s", s, strings.TrimPrefix(err.Error(), fmt.Sprintf("egress: rules[0] (%q): ", r.Host)))
	}
	return r, nil
}
