// Package egress owns the per-session egress proxy: the only way anything inside a session's
// sandbox reaches the network. It is an HTTP forward proxy (absolute-form http:// requests and
// CONNECT for everything else) and, on the same listener, a SOCKS5 proxy for "socks5h://"
// clients (CONNECT by name; socks.go). It checks every connection and request against the
// session's capability rules, resolves names itself (the sandbox has no DNS), refuses private,
// loopback, link-local and cloud-metadata addresses after resolution and connects to the very
// address it checked, terminates TLS with a per-session CA for hosts that have request-level
// rules or a credential keepup holds, pins those credentials (a foreign one is refused: R4),
// caps request bodies, and reports every connection and request as an audit Entry.
//
// It never resolves a denied name and never lets out a request that no rule allows: with no
// rules, nothing is allowed.
package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxBodyBytes is the request-body cap when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 10 << 20

// DefaultMaxConns is the cap on open client connections when Config.MaxConns is 0: the
// sandbox's processes must not be able to spend the host process's descriptors and memory.
const DefaultMaxConns = 256

// Credential is a header keepup injects into requests to one host. The sandbox never sees
// Value.
type Credential struct {
	Header string // e.g. "x-api-key" or "Authorization"
	Value  string // e.g. "sk-..." or "Bearer sk-..."
	// Placeholders are values tools inside may send in its place (SDKs insist on having a key);
	// they count as keepup's own and are replaced. Any other value is a foreign credential.
	Placeholders []string
}

// Config configures one session's proxy.
type Config struct {
	// Rules are the session's capabilities; none means nothing is allowed.
	Rules []Rule
	// Credentials maps a host (canonicalised like rule hosts; exact names or IPs) to the
	// credential keepup injects for it. Holding a credential for a host does not allow it:
	// a rule must.
	Credentials map[string]Credential
	// Token is the per-session secret every request to the proxy must carry in
	// Proxy-Authorization, as "Bearer TOKEN" or Basic with TOKEN as the user or the password;
	// SOCKS5 clients send it as the username or the password (RFC 1929).
	Token string
	// Resolve resolves a name; nil uses net.DefaultResolver. It is only ever called for a
	// name some rule allows.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Dial connects to an already checked "ip:port"; nil uses a net.Dialer. Tests use it to
	// route public-looking addresses to loopback servers.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// UpstreamRootCAs verifies upstream servers of terminated hosts; nil: the system roots.
	UpstreamRootCAs *x509.CertPool
	// MaxBodyBytes caps request bodies (413 beyond it); 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxConns caps the client connections open at once; each one beyond it is answered
	// 503, closed and audited. 0 means DefaultMaxConns.
	MaxConns int
	// Audit receives one Entry per connection and per request. It must not block for long.
	Audit func(Entry)
}

// Entry is one audited connection or request.
type Entry struct {
	Time time.Time `json:"time"`
	// Kind is "connection" (a CONNECT tunnel, at its end) or "request".
	Kind string `json:"kind"`
	// Conn numbers client connections to the proxy, linking a tunnel's requests to it.
	Conn uint64 `json:"conn"`
	// Proto is "socks5" for a client that spoke SOCKS5 (its tunnel is otherwise audited like
	// an HTTP CONNECT, Method "CONNECT" and the Status an HTTP proxy would have answered);
	// empty for HTTP.
	Proto string `json:"proto,omitempty"`
	// Mode is "tunnel" (bytes passed through), "terminate" (TLS terminated, requests
	// checked) or "forward" (a plain http:// request).
	Mode      string `json:"mode,omitempty"`
	Host      string `json:"host"`
	Port      int    `json:"port,omitempty"`
	Addr      string `json:"addr,omitempty"` // the address connected to
	Method    string `json:"method,omitempty"`
	Path      string `json:"path,omitempty"`
	Status    int    `json:"status,omitempty"`
	BytesUp   int64  `json:"bytes_up"`
	BytesDown int64  `json:"bytes_down"`
	Decision  string `json:"decision"` // allow | deny
	Rule      string `json:"rule,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// Reasons used in entries and in the bodies of refusals.
const (
	ReasonToken             = "missing or wrong proxy token"
	ReasonInvalidHost       = "invalid host"
	ReasonHostNotAllowed    = "host not allowed"
	ReasonPortNotAllowed    = "port not allowed"
	ReasonDeniedByRule      = "denied by rule"
	ReasonRequestNotAllowed = "method or path not allowed"
	ReasonPrivateAddress    = "private address"
	ReasonMetadataAddress   = "cloud-metadata address"
	ReasonForeignCredential = "foreign credential"
	ReasonBodyTooLarge      = "request body too large"
	ReasonUserinfo          = "userinfo in URL"
	ReasonScheme            = "unsupported scheme (use CONNECT for https)"
	ReasonResolve           = "cannot resolve host"
	ReasonUpstream          = "upstream error"
	ReasonTooManyConns      = "too many connections to the proxy"
)

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("egress: proxy closed")

// Proxy is one session's egress proxy.
type Proxy struct {
	rules      []*rule
	creds      map[string]*credential
	token      string
	resolve    func(ctx context.Context, host string) ([]netip.Addr, error)
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	maxBody    int64
	maxConn    int
	audit      func(Entry)
	ca         *ca
	tr         *http.Transport
	up         upstreams // see predial.go
	predialTTL time.Duration
	connSeq    atomic.Uint64

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
}

// New validates cfg and builds a proxy with a fresh CA. Errors name the offending rule index.
func New(cfg Config) (*Proxy, error) {
	if cfg.Token == "" {
		return nil, errors.New("egress: Config.Token is empty; every session needs a token")
	}
	p := &Proxy{
		token:      cfg.Token,
		resolve:    cfg.Resolve,
		dial:       cfg.Dial,
		maxBody:    cfg.MaxBodyBytes,
		maxConn:    cfg.MaxConns,
		audit:      cfg.Audit,
		creds:      map[string]*credential{},
		listeners:  map[net.Listener]struct{}{},
		conns:      map[net.Conn]struct{}{},
		predialTTL: predialTTL,
		up:         upstreams{live: map[string]int{}, busy: map[string]int{}, ahead: map[string]*predial{}},
	}
	if p.maxBody < 0 {
		return nil, fmt.Errorf("egress: MaxBodyBytes %d is negative", p.maxBody)
	}
	if p.maxConn <= 0 {
		p.maxConn = DefaultMaxConns
	}
	if p.maxBody == 0 {
		p.maxBody = DefaultMaxBodyBytes
	}
	for i, r := range cfg.Rules {
		c, err := compileRule(i, r)
		if err != nil {
			return nil, err
		}
		p.rules = append(p.rules, c)
	}
	for h, c := range cfg.Credentials {
		hk, err := canonicalHost(h)
		if err != nil {
			return nil, fmt.Errorf("egress: Credentials[%q]: %v", h, err)
		}
		cc, err := compileCredential(c)
		if err != nil {
			return nil, fmt.Errorf("egress: Credentials[%q]: %v", h, err)
		}
		if p.creds[hk.String()] != nil {
			return nil, fmt.Errorf("egress: Credentials[%q]: a second credential for %s", h, hk)
		}
		p.creds[hk.String()] = cc
	}
	if p.resolve == nil {
		p.resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if p.dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		p.dial = d.DialContext
	}
	var err error
	if p.ca, err = newCA(); err != nil {
		return nil, fmt.Errorf("egress: session CA: %v", err)
	}
	p.tr = &http.Transport{
		Proxy:       nil, // never chain to the host's proxy settings
		DialContext: p.transportDial,
		// HTTPS: the TLS handshake is dialTLS's, with this TLSClientConfig, so that it can be
		// made ahead of a request (predial).
		DialTLSContext: p.transportDialTLS,
		TLSClientConfig: &tls.Config{
			RootCAs:    cfg.UpstreamRootCAs,
			MinVersion: tls.VersionTLS12,
			// Resume TLS sessions with upstreams when a new connection is needed.
			ClientSessionCache: tls.NewLRUClientSessionCache(64),
		},
		TLSHandshakeTimeout:   15 * time.Second,
		DisableCompression:    true,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 5 * time.Minute,
	}
	return p, nil
}

// CAPEM is the session CA's certificate in PEM, for the sandbox's trust store.
func (p *Proxy) CAPEM() []byte { return append([]byte(nil), p.ca.pem...) }

// Serve accepts proxy clients on l until l is closed (then net.ErrClosed) or Close is called
// (then ErrClosed). Other accept errors (EMFILE and the like) are waited out.
func (p *Proxy) Serve(l net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.Close()
		return ErrClosed
	}
	p.listeners[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.listeners, l)
		p.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Anything else (EMFILE, a timeout, a connection aborted before it was accepted)
			// passes: a sandbox's only way out must not end because keepup ran short once.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		switch p.track(c) {
		case trackClosed:
			c.Close()
			return ErrClosed
		case trackFull:
			p.refuseConn(c)
			continue
		}
		go p.serveConn(c)
	}
}

// Close stops every listener and connection of the proxy.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for l := range p.listeners {
		l.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.tr.CloseIdleConnections()
	p.closeAhead()
	return nil
}

// track outcomes.
const (
	tracked = iota
	trackClosed
	trackFull
)

// track records an accepted client connection, unless the proxy is closed or already holds
// maxConn of them.
func (p *Proxy) track(c net.Conn) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return trackClosed
	}
	if len(p.conns) >= p.maxConn {
		return trackFull
	}
	p.conns[c] = struct{}{}
	return tracked
}

// refuseConn answers a client connection over the cap with a 503 and closes it, without
// waiting for anything: the accept loop must keep up with a flood. (A client that had sent a
// request may see a reset instead of the answer.)
func (p *Proxy) refuseConn(c net.Conn) {
	id := p.connSeq.Add(1)
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	writeRefusal(c, http.StatusServiceUnavailable, ReasonTooManyConns)
	c.Close()
	p.record(Entry{Kind: "connection", Conn: id, Decision: "deny", Status: http.StatusServiceUnavailable, Reason: ReasonTooManyConns})
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) record(e Entry) {
	if p.audit != nil {
		e.Time = time.Now()
		p.audit(e)
	}
}

// authorised checks the session token in Proxy-Authorization.
func (p *Proxy) authorised(h http.Header) bool {
	v := h.Get("Proxy-Authorization")
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok {
		return false
	}
	rest = strings.TrimSpace(rest)
	switch strings.ToLower(scheme) {
	case "bearer":
		return p.tokenIs(rest)
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return false
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		return p.tokenIs(pass) || p.tokenIs(user)
	}
	return false
}

// connDecision is the outcome of checking a host:port.
type connDecision struct {
	host      hostKey
	port      int
	defPort   int
	allow     bool
	status    int
	reason    string
	rule      *rule // the deciding rule
	dialRule  *rule // the allow rule whose address policy applies
	terminate bool  // TLS must be terminated (request rules or a held credential)
	cred      *credential
}

func (d *connDecision) ruleText() string {
	if d.rule == nil {
		return ""
	}
	return d.rule.text
}

// decideConn checks host:port against the rules; defPort is the scheme's default port.
func (p *Proxy) decideConn(h hostKey, port, defPort int) *connDecision {
	d := &connDecision{host: h, port: port, defPort: defPort, status: http.StatusForbidden}
	for _, r := range p.rules {
		if r.Deny && !r.requests && r.matchesHost(h) && r.matchesPort(port, defPort) {
			d.rule, d.reason = r, ReasonDeniedByRule
			return d
		}
	}
	hostMatched := false
	for _, r := range p.rules {
		if !r.matchesHost(h) {
			continue
		}
		if r.Deny {
			if r.matchesPort(port, defPort) {
				d.terminate = true // a request-level deny rule must be enforced
			}
			continue
		}
		hostMatched = true
		if !r.matchesPort(port, defPort) {
			continue
		}
		if d.rule == nil {
			d.rule = r
		}
		if d.dialRule == nil || (r.AllowPrivate && !d.dialRule.AllowPrivate) {
			d.dialRule = r
		}
		if r.requests {
			d.terminate = true
		}
	}
	if d.rule == nil {
		d.reason = ReasonHostNotAllowed
		if hostMatched {
			d.reason = ReasonPortNotAllowed
		}
		d.terminate = false
		return d
	}
	if c := p.creds[h.String()]; c != nil {
		d.cred, d.terminate = c, true
	}
	d.allow, d.status = true, 0
	return d
}

// decideRequest checks a request to an allowed host:port against the request-level rules.
func (p *Proxy) decideRequest(d *connDecision, method string, u urlPath) (bool, *rule) {
	for _, r := range p.rules {
		if !r.Deny || !r.matchesHost(d.host) || !r.matchesPort(d.port, d.defPort) {
			continue
		}
		if !r.requests {
			return false, r
		}
		if r.methods != nil && !r.methods[method] {
			continue
		}
		if len(r.PathPrefixes) == 0 || !u.canonical || r.matchesRequest(method, u.path) {
			return false, r // an uncheckable path is treated as matching a deny rule
		}
	}
	for _, r := range p.rules {
		if r.Deny || !r.matchesHost(d.host) || !r.matchesPort(d.port, d.defPort) {
			continue
		}
		if len(r.PathPrefixes) > 0 && !u.canonical {
			continue
		}
		if r.matchesRequest(method, u.path) {
			return true, r
		}
	}
	return false, nil
}

// denyError is a refusal carrying its status and reason.
type denyError struct {
	status int
	reason string
	detail string
}

func (e *denyError) Error() string {
	if e.detail != "" {
		return e.reason + ": " + e.detail
	}
	return e.reason
}

// dialChecked resolves (for names) and connects to the first permitted address.
func (p *Proxy) dialChecked(ctx context.Context, d *connDecision) (net.Conn, error) {
	if !d.allow {
		return nil, &denyError{status: d.status, reason: d.reason}
	}
	var addrs []netip.Addr
	if d.host.ip.IsValid() {
		addrs = []netip.Addr{d.host.ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		as, err := p.resolve(rctx, d.host.name)
		cancel()
		if err != nil || len(as) == 0 {
			detail := "no addresses"
			if err != nil {
				detail = err.Error()
			}
			return nil, &denyError{status: http.StatusBadGateway, reason: ReasonResolve, detail: detail}
		}
		addrs = as
	}
	var refused string
	var lastErr error
	for _, a := range addrs {
		a = a.Unmap()
		if ok, why := permitted(a, d.dialRule); !ok {
			refused = why
			continue
		}
		c, err := p.dial(ctx, "tcp", netip.AddrPortFrom(a, uint16(d.port)).String())
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	if lastErr != nil {
		return nil, &denyError{status: http.StatusBadGateway, reason: ReasonUpstream, detail: lastErr.Error()}
	}
	if refused == "" {
		refused = ReasonPrivateAddress
	}
	return nil, &denyError{status: http.StatusForbidden, reason: refused}
}

type decisionKey struct{}

// transportDial is the upstream Transport's dialer: it only connects for a request whose
// decision travels in the context, and only to the checked address.
func (p *Proxy) transportDial(ctx context.Context, network, addr string) (net.Conn, error) {
	d, _ := ctx.Value(decisionKey{}).(*connDecision)
	if d == nil {
		return nil, &denyError{status: http.StatusForbidden, reason: ReasonHostNotAllowed, detail: "no decision for " + addr}
	}
	return p.dialChecked(ctx, d)
}

// writeRefusal writes a short plain-text error response that closes the connection.
func writeRefusal(w io.Writer, status int, reason string) {
	body := "keepup egress: " + reason + "\n"
	extra := ""
	if status == http.StatusProxyAuthRequired {
		extra = "Proxy-Authenticate: Basic realm=\"keepup\"\r\n"
	}
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\nX-Keepup-Egress: %s\r\n%s\r\n%s",
		status, http.StatusText(status), len(body), strings.ReplaceAll(reason, "\r\n", " "), extra, body)
}

// serveConn reads requests from one client connection.
func (p *Proxy) serveConn(c net.Conn) {
	defer p.untrack(c)
	defer c.Close()
	id := p.connSeq.Add(1)
	lr := &headerLimitReader{r: c}
	br := bufio.NewReaderSize(lr, 16<<10)
	for first := true; ; first = false {
		lr.n = maxHeaderBytes
		c.SetReadDeadline(time.Now().Add(idleTimeout))
		if b, err := br.Peek(1); first && err == nil && b[0] == socksVersion {
			p.serveSOCKS(c, br, id)
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		lr.n = -1
		c.SetReadDeadline(time.Time{})
		if !p.authorised(req.Header) {
			host := req.Host
			if req.Method != http.MethodConnect && req.URL != nil {
				host = req.URL.Host
			}
			p.record(Entry{Kind: "request", Conn: id, Host: host, Method: req.Method, Path: pathOf(req), Status: http.StatusProxyAuthRequired, Decision: "deny", Reason: ReasonToken})
			writeRefusal(c, http.StatusProxyAuthRequired, ReasonToken)
			linger(c)
			return
		}
		if req.Method == http.MethodConnect {
			p.serveConnect(c, br, req, id)
			return
		}
		if !p.serveForward(c, req, id) {
			return
		}
	}
}

const (
	maxHeaderBytes = 1 << 20
	idleTimeout    = 5 * time.Minute
)

// headerLimitReader bounds how much a request head may read (n >= 0); n < 0 is unlimited.
type headerLimitReader struct {
	r io.Reader
	n int64
}

func (l *headerLimitReader) Read(b []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(b)
	}
	if l.n == 0 {
		return 0, errors.New("egress: request head too large")
	}
	if int64(len(b)) > l.n {
		b = b[:l.n]
	}
	n, err := l.r.Read(b)
	l.n -= int64(n)
	return n, err
}

func pathOf(req *http.Request) string {
	if req.URL == nil || req.Method == http.MethodConnect {
		return ""
	}
	return req.URL.EscapedPath()
}
