package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const testToken = "session-token-123"

// env is a proxy in front of two loopback upstreams: an HTTPS one (every name's port 443 and
// any other port but 80) and an HTTP one (port 80). Names resolve through a table to
// public-looking addresses (TEST-NET-2) and Dial routes every checked address to the
// upstreams, so the proxy's own address policy is exercised unchanged.
type env struct {
	t        *testing.T
	p        *Proxy
	addr     string
	upCA     *ca
	tlsAddr  string // the HTTPS upstream, for direct requests
	mu       sync.Mutex
	resolved []string
	dialed   []string
	entries  []Entry
}

// echo is what the upstreams report back.
type echo struct {
	Host, Method, Path, Query, APIKey, Auth string
	Body                                    int
	Resumed                                 bool // a TLS session was resumed
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/redir" {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		return
	}
	if r.URL.Path == "/bulk" {
		writeBulk(w)
		return
	}
	n, _ := io.Copy(io.Discard, r.Body)
	json.NewEncoder(w).Encode(echo{Host: r.Host, Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
		APIKey: r.Header.Get("X-Api-Key"), Auth: r.Header.Get("Authorization"), Body: int(n),
		Resumed: r.TLS != nil && r.TLS.DidResume})
}

var names = map[string][]netip.Addr{
	"api.test":      {netip.MustParseAddr("198.51.100.1")},
	"other.test":    {netip.MustParseAddr("198.51.100.2")},
	"a.x.test":      {netip.MustParseAddr("198.51.100.3")},
	"a.b.x.test":    {netip.MustParseAddr("198.51.100.3")},
	"rebind.test":   {netip.MustParseAddr("127.0.0.1")},
	"mixed.test":    {netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("198.51.100.4")},
	"intranet.test": {netip.MustParseAddr("10.0.0.5")},
	"meta.test":     {netip.MustParseAddr("169.254.169.254")},
	"meta6.test":    {netip.MustParseAddr("fd00:ec2::254")},
	"cgnat.test":    {netip.MustParseAddr("100.64.1.1")},
	"nat64.test":    {netip.MustParseAddr("64:ff9b::7f00:1")},
	"mapped.test":   {netip.MustParseAddr("::ffff:192.168.1.1")},
}

func newEnv(t testing.TB, cfg Config) *env {
	tt, _ := t.(*testing.T)
	e := &env{t: tt}
	var err error
	if e.upCA, err = newCA(); err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(echoHandler))
	tlsSrv.TLS = &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := h.ServerName
		if name == "" {
			name = "127.0.0.1"
		}
		return e.upCA.leaf(name)
	}}
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	e.tlsAddr = tlsSrv.Listener.Addr().String()
	httpSrv := httptest.NewServer(http.HandlerFunc(echoHandler))
	t.Cleanup(httpSrv.Close)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.upCA.pem)
	cfg.Token = testToken
	cfg.UpstreamRootCAs = pool
	cfg.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
		e.mu.Lock()
		e.resolved = append(e.resolved, host)
		e.mu.Unlock()
		if a, ok := names[host]; ok {
			return a, nil
		}
		return nil, errors.New("no such host")
	}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		e.mu.Lock()
		e.dialed = append(e.dialed, addr)
		e.mu.Unlock()
		_, port, _ := net.SplitHostPort(addr)
		target := tlsSrv.Listener.Addr().String()
		if port == "80" {
			target = httpSrv.Listener.Addr().String()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}
	cfg.Audit = func(en Entry) {
		e.mu.Lock()
		e.entries = append(e.entries, en)
		e.mu.Unlock()
	}
	e.p, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	go e.p.Serve(l)
	t.Cleanup(func() { e.p.Close() })
	return e
}

// client is a real HTTP client configured with the proxy, trusting the session CA.
func (e *env) client(token string) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.p.CAPEM())
	pool.AppendCertsFromPEM(e.upCA.pem) // tunnelled hosts present the upstream's own certificate
	pu := &url.URL{Scheme: "http", Host: e.addr}
	if token != "" {
		pu.User = url.UserPassword("keepup", token)
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
}

func (e *env) get(c *http.Client, u string) (int, echo, string, error) {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(c, req)
}

func (e *env) do(c *http.Client, req *http.Request) (int, echo, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, echo{}, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ec echo
	if resp.StatusCode == 200 {
		json.Unmarshal(b, &ec)
	}
	return resp.StatusCode, ec, string(b), nil
}

// raw sends one raw request head to the proxy and returns the status line and body.
func (e *env) raw(head string) (int, string) {
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second)) // a hang is a failure naming the request
	io.WriteString(c, head)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		e.t.Fatalf("%q: %v", head, err)
	}
	if resp.StatusCode == 200 {
		return 200, ""
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Errorf("%q: reading the refusal: %v", head, err)
	}
	return resp.StatusCode, string(b)
}

func connectHead(host string) string {
	return "CONNECT " + host + " HTTP/1.1\r\nHost: " + host + "\r\nProxy-Authorization: Bearer " + testToken + "\r\n\r\n"
}

func (e *env) wasResolved(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.resolved {
		if r == name {
			return true
		}
	}
	return false
}

// lastEntry waits up to a few seconds for an audit entry (a tunnel's arrives when it ends).
func (e *env) lastEntry(pred func(Entry) bool) (Entry, bool) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		e.mu.Lock()
		for i := len(e.entries) - 1; i >= 0; i-- {
			if pred(e.entries[i]) {
				en := e.entries[i]
				e.mu.Unlock()
				return en, true
			}
		}
		e.mu.Unlock()
	}
	return Entry{}, false
}

func TestAllowedAndDenied(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{{Host: "api.test", Ports: []int{80, 443}}}})
	c := e.client(testToken)

	st, ec, _, err := e.get(c, "https://api.test/ok")
	if err != nil || st != 200 || ec.Path != "/ok" {
		t.Fatalf("https allowed host: %d %v %+v", st, err, ec)
	}
	st, ec, _, err = e.get(c, "http://api.test/plain")
	if err != nil || st != 200 || ec.Host != "api.test" || ec.Path != "/plain" {
		t.Fatalf("http allowed host: %d %v %+v", st, err, ec)
	}
	if _, _, _, err := e.get(c, "https://other.test/"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("https denied host: err %v", err)
	}
	st, _, body, err := e.get(c, "http://other.test/")
	if err != nil || st != 403 || !strings.Contains(body, "host not allowed") {
		t.Fatalf("http denied host: %d %v %q", st, err, body)
	}
	if e.wasResolved("other.test") {
		t.Fatal("the proxy resolved a denied name")
	}
	c.CloseIdleConnections()
	en, ok := e.lastEntry(func(en Entry) bool { return en.Kind == "connection" && en.Host == "api.test" })
	if !ok || en.Decision != "allow" || en.Mode != "tunnel" || en.BytesDown == 0 || en.BytesUp == 0 || en.Rule == "" || en.Addr == "" {
		t.Fatalf("tunnel audit entry: %+v", en)
	}
	en, ok = e.lastEntry(func(en Entry) bool { return en.Host == "other.test" })
	if !ok || en.Decision != "deny" || en.Reason != ReasonHostNotAllowed {
		t.Fatalf("denied audit entry: %+v", en)
	}
}

func TestNoRulesNothingAllowed(t *testing.T) {
	e := newEnv(t, Config{})
	if st, _ := e.raw(connectHead("api.test:443")); st != 403 {
		t.Fatalf("no rules: CONNECT got %d", st)
	}
	if st, _, _, _ := e.get(e.client(testToken), "http://api.test/"); st != 403 {
		t.Fatalf("no rules: http got %d", st)
	}
	if e.wasResolved("api.test") {
		t.Fatal("resolved with no rules")
	}
}

func TestHostSpellings(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{
		{Host: "api.test"},
		{Host: "*.x.test"},
		{Host: "a.x.test", Ports: []int{8443}, Deny: true},
	}})
	cases := []struct {
		target string
		want   int
	}{
		{"api.test:443", 200},
		{"API.Test:443", 200},
		{"api.test.:443", 200},
		{"api.test", 200}, // no port: 443
		{"api.test..:443", 403},
		{"api.test:444", 403},
		{"a.x.test:443", 200},
		{"A.X.TEST.:443", 200},
		{"a.b.x.test:443", 200},
		{"a.x.test:8443", 403}, // deny rule first
		{"x.test:443", 403},
		{"evilx.test:443", 403},
		{"a.x.test.evil.test:443", 403},
		{"api.test.evil.test:443", 403},
		{"xapi.test:443", 403},
		{"127.0.0.1:443", 403},
		{"127.1:443", 403},
		{"2130706433:443", 403},
		{"0x7f000001:443", 403},
		{"0x7f.1:443", 403},
		{"0177.0.0.1:443", 403},
		{"017700000001:443", 403},
		{"[::1]:443", 403},
		{"[::ffff:127.0.0.1]:443", 403},
		{"[::ffff:7f00:1]:443", 403},
		{"[fe80::1%25eth0]:443", 403},
		{"169.254.169.254:443", 403},
		{"198.51.100.1:443", 403}, // api.test's address, but no rule names it
		{"api.test@other.test:443", 403},
		{"api_test:443", 403},
		{"xn--e1afmkfd.test:443", 403},
		{"пример.test:443", 403},
	}
	for _, c := range cases {
		st, body := e.raw(connectHead(c.target))
		if st != c.want {
			t.Errorf("CONNECT %s: got %d %q, want %d", c.target, st, body, c.want)
		}
	}
	for _, n := range []string{"x.test", "evilx.test", "api.test.evil.test", "a.x.test.evil.test", "xapi.test", "xn--e1afmkfd.test"} {
		if e.wasResolved(n) {
			t.Errorf("denied name %s was resolved", n)
		}
	}
}

func TestIPRules(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{{Host: "127.0.0.1"}, {Host: "[::1]"}}})
	for _, target := range []string{"127.0.0.1:443", "127.1:443", "2130706433:443", "0x7f000001:443", "[::1]:443", "[::ffff:127.0.0.1]:443"} {
		if st, body := e.raw(connectHead(target)); st != 200 {
			t.Errorf("CONNECT %s with an IP rule naming it: %d %q", target, st, body)
		}
	}
	for _, target := range []string{"127.0.0.2:443", "10.0.0.1:443", "localhost:443"} {
		if st, _ := e.raw(connectHead(target)); st != 403 {
			t.Errorf("CONNECT %s: %d, want 403", target, st)
		}
	}
}

func TestUserinfoAndSchemes(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{{Host: "api.test", Ports: []int{80, 443}}}})
	auth := "Proxy-Authorization: Bearer " + testToken + "\r\n"
	for _, c := range []struct {
		head string
		want int
	}{
		{"GET http://api.test@other.test/ HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", 403},
		{"GET http://api.test:80@other.test/ HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", 403},
		{"GET http://other.test/ HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", 403},
		{"GET https://api.test/ HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", 400},
		{"GET /relative HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", 400},
		{"GET ftp://api.test/ HTTP/1.1\r\nHost: api.test\r\n" + auth + "\r\n", 400},
		{"GET http://api.test/ HTTP/1.1\r\nHost: other.test\r\n" + auth + "\r\n", 200},
	} {
		if st, body := e.raw(c.head); st != c.want {
			t.Errorf("%q: got %d %q, want %d", c.head, st, body, c.want)
		}
	}
	if e.wasResolved("other.test") {
		t.Fatal("resolved other.test")
	}
	// The Host header inside an allowed request cannot move it: the URL's host wins.
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.dialed {
		if !strings.HasPrefix(d, "198.51.100.1:") {
			t.Errorf("dialed %s", d)
		}
	}
}

func TestPrivateAddressesAfterResolution(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{
		{Host: "rebind.test"}, {Host: "meta.test", AllowPrivate: true}, {Host: "meta6.test", AllowPrivate: true},
		{Host: "cgnat.test"}, {Host: "nat64.test"}, {Host: "mapped.test"}, {Host: "mixed.test"},
		{Host: "intranet.test", AllowPrivate: true},
	}})
	for _, c := range []struct {
		target, reason string
	}{
		{"rebind.test:443", ReasonPrivateAddress},
		{"meta.test:443", ReasonMetadataAddress},
		{"meta6.test:443", ReasonMetadataAddress},
		{"cgnat.test:443", ReasonPrivateAddress},
		{"nat64.test:443", ReasonPrivateAddress},
		{"mapped.test:443", ReasonPrivateAddress},
	} {
		st, body := e.raw(connectHead(c.target))
		if st != 403 || !strings.Contains(body, c.reason) {
			t.Errorf("CONNECT %s: %d %q, want 403 %s", c.target, st, body, c.reason)
		}
	}
	// A name answering a private and a public address: only the public one is dialled.
	if st, body := e.raw(connectHead("mixed.test:443")); st != 200 {
		t.Errorf("mixed.test: %d %q", st, body)
	}
	if st, body := e.raw(connectHead("intranet.test:443")); st != 200 {
		t.Errorf("intranet.test with AllowPrivate: %d %q", st, body)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.dialed {
		if d != "198.51.100.4:443" && d != "10.0.0.5:443" {
			t.Errorf("dialed an address that was refused: %s", d)
		}
	}
}

func TestRebindingThroughHTTPClient(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{{Host: "rebind.test", Ports: []int{80, 443}}}})
	c := e.client(testToken)
	st, _, body, err := e.get(c, "http://rebind.test/")
	if err != nil || st != 403 || !strings.Contains(body, "private address") {
		t.Fatalf("http rebinding: %d %v %q", st, err, body)
	}
	if _, _, _, err := e.get(c, "https://rebind.test/"); err == nil {
		t.Fatal("https rebinding: allowed")
	}
	if len(e.dialed) != 0 {
		t.Fatalf("dialed %v", e.dialed)
	}
}

func TestRedirectToDeniedHost(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{{Host: "api.test", Ports: []int{80, 443}}}})
	c := e.client(testToken)
	st, _, body, err := e.get(c, "http://api.test/redir?to=http://other.test/stolen")
	if err != nil || st != 403 || !strings.Contains(body, "host not allowed") {
		t.Fatalf("http redirect: %d %v %q", st, err, body)
	}
	if _, _, _, err := e.get(c, "https://api.test/redir?to=https://other.test/stolen"); err == nil {
		t.Fatal("https redirect to a denied host was followed")
	}
	st, ec, _, err := e.get(c, "https://api.test/redir?to=/landed")
	if err != nil || st != 200 || ec.Path != "/landed" {
		t.Fatalf("redirect within the allowed host: %d %v %+v", st, err, ec)
	}
	if e.wasResolved("other.test") {
		t.Fatal("resolved the redirect's denied host")
	}
}

func TestProxyToken(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{{Host: "api.test", Ports: []int{80, 443}}}})
	for _, tok := range []string{"", "wrong"} {
		c := e.client(tok)
		st, _, body, err := e.get(c, "http://api.test/")
		if err != nil || st != 407 || !strings.Contains(body, "token") {
			t.Errorf("token %q, http: %d %v %q", tok, st, err, body)
		}
		if _, _, _, err := e.get(c, "https://api.test/"); err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
			t.Errorf("token %q, https: %v", tok, err)
		}
	}
	if e.wasResolved("api.test") {
		t.Fatal("resolved for an unauthenticated client")
	}
	st, _ := e.raw("CONNECT api.test:443 HTTP/1.1\r\nHost: api.test\r\nProxy-Authorization: Basic " + "a2VlcHVwOnNlc3Npb24tdG9rZW4tMTIz" + "\r\n\r\n")
	if st != 200 {
		t.Fatalf("Basic token: %d", st)
	}
}

func TestCredentialPinning(t *testing.T) {
	e := newEnv(t, Config{
		Rules:       []Rule{{Host: "api.test", Ports: []int{80, 443}}},
		Credentials: map[string]Credential{"API.test.": {Header: "x-api-key", Value: "KEEPUP-OWN-KEY", Placeholders: []string{"placeholder"}}},
	})
	c := e.client(testToken)
	for _, scheme := range []string{"https", "http"} {
		base := scheme + "://api.test"
		// No credential from inside: keepup's own is injected.
		st, ec, body, err := e.get(c, base+"/v1/messages?x=1")
		if err != nil || st != 200 || ec.APIKey != "KEEPUP-OWN-KEY" || ec.Query != "x=1" {
			t.Fatalf("%s injection: %d %v %+v %q", scheme, st, err, ec, body)
		}
		// Placeholders and keepup's own value are replaced, not refused.
		for _, h := range [][2]string{{"X-Api-Key", "placeholder"}, {"Authorization", "Bearer placeholder"}, {"X-Api-Key", "KEEPUP-OWN-KEY"}} {
			req, _ := http.NewRequest("GET", base+"/v1/x?api_key=placeholder&y=2", nil)
			req.Header.Set(h[0], h[1])
			st, ec, body, err := e.do(c, req)
			if err != nil || st != 200 || ec.APIKey != "KEEPUP-OWN-KEY" || ec.Auth != "" || ec.Query != "y=2" {
				t.Fatalf("%s own %v: %d %v %+v %q", scheme, h, st, err, ec, body)
			}
		}
		// Foreign credentials in headers and query parameters are refused.
		for _, f := range []struct{ header, value, query string }{
			{"X-Api-Key", "ATTACKER-KEY", ""},
			{"Authorization", "Bearer ATTACKER-KEY", ""},
			{"Api-Key", "ATTACKER-KEY", ""},
			{"X-Goog-Api-Key", "ATTACKER-KEY", ""},
			{"", "", "key=ATTACKER-KEY"},
			{"", "", "a=1&api_key=ATTACKER-KEY"},
			{"", "", "ACCESS_TOKEN=ATTACKER-KEY"},
			{"", "", "a=1;token=ATTACKER-KEY"},
		} {
			u := base + "/v1/files"
			if f.query != "" {
				u += "?" + f.query
			}
			req, _ := http.NewRequest("POST", u, strings.NewReader("the user's files"))
			if f.header != "" {
				req.Header.Set(f.header, f.value)
			}
			st, _, body, err := e.do(c, req)
			if err != nil || st != 403 || !strings.Contains(body, "foreign credential") {
				t.Fatalf("%s foreign %+v: %d %v %q", scheme, f, st, err, body)
			}
			en, ok := e.lastEntry(func(en Entry) bool { return en.Kind == "request" })
			if !ok || en.Decision != "deny" || !strings.HasPrefix(en.Reason, ReasonForeignCredential) || en.Host != "api.test" || en.Method != "POST" {
				t.Fatalf("%s foreign %+v audit: %+v", scheme, f, en)
			}
		}
	}
	c.CloseIdleConnections()
	en, _ := e.lastEntry(func(en Entry) bool { return en.Kind == "connection" })
	if en.Mode != "terminate" {
		t.Fatalf("a credentialed host must be terminated: %+v", en)
	}
}

func TestBodyCap(t *testing.T) {
	e := newEnv(t, Config{
		Rules:        []Rule{{Host: "api.test", Ports: []int{80, 443}, Methods: []string{"POST"}}},
		MaxBodyBytes: 1024,
	})
	c := e.client(testToken)
	for _, scheme := range []string{"http", "https"} {
		u := scheme + "://api.test/upload"
		for _, c2 := range []struct {
			n       int
			chunked bool
			want    int
		}{{1024, false, 200}, {1025, false, 413}, {1024, true, 200}, {4096, true, 413}, {1 << 20, true, 413}} {
			var body io.Reader = strings.NewReader(strings.Repeat("a", c2.n))
			if c2.chunked {
				body = io.MultiReader(body) // hides the length: chunked
			}
			req, _ := http.NewRequest("POST", u, body)
			st, ec, text, err := e.do(c, req)
			if err != nil || st != c2.want || (st == 200 && ec.Body != c2.n) {
				t.Errorf("%s %d bytes chunked=%v: %d %v %q", scheme, c2.n, c2.chunked, st, err, text)
			}
		}
	}
	en, _ := e.lastEntry(func(en Entry) bool { return en.Kind == "request" && en.Status == 413 })
	if en.Reason != ReasonBodyTooLarge {
		t.Fatalf("audit: %+v", en)
	}
}

func TestRequestLevelRules(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{
		{Host: "api.test", Methods: []string{"GET"}, PathPrefixes: []string{"/v1/models"}},
		{Host: "api.test", Methods: []string{"post"}, PathPrefixes: []string{"/v1/messages", "/static/"}},
		{Host: "api.test", Deny: true, PathPrefixes: []string{"/v1/messages/admin"}},
		{Host: "other.test"},
	}})
	c := e.client(testToken)
	for _, r := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/models", 200},
		{"GET", "/v1/models/claude", 200},
		{"POST", "/v1/messages", 200},
		{"POST", "/v1/messages?beta=1", 200},
		{"POST", "/static/x/y", 200},
		{"POST", "/static", 403},
		{"DELETE", "/v1/messages", 403},
		{"GET", "/v1/messages", 403},
		{"GET", "/v1/modelsX", 403},
		{"GET", "/v1/models/../../admin", 403},
		{"GET", "/v1/models/%2e%2e/%2e%2e/admin", 403},
		{"GET", "/v1/models%2f..%2fadmin", 403},
		{"GET", "/v1/models//x", 403},
		{"GET", "/v1/models;/../admin", 403},
		{"POST", "/v1/messages/admin", 403},
		{"POST", "/v1/messages/admin/x", 403},
		{"POST", "/v1/messages/%61dmin", 403},
		{"GET", "/", 403},
	} {
		u, _ := url.Parse("https://api.test")
		u.Opaque = "//api.test" + strings.SplitN(r.path, "?", 2)[0]
		if q := strings.SplitN(r.path, "?", 2); len(q) == 2 {
			u.RawQuery = q[1]
		}
		req := &http.Request{Method: r.method, URL: u, Header: http.Header{}, Host: "api.test"}
		st, ec, body, err := e.do(c, req)
		if err != nil || st != r.want {
			t.Errorf("%s %s: %d %v %q, want %d", r.method, r.path, st, err, body, r.want)
		}
		if st == 200 && ec.Method != r.method {
			t.Errorf("%s %s reached upstream as %+v", r.method, r.path, ec)
		}
	}
	// A host with only connection-level rules is tunnelled, not terminated.
	if _, _, _, err := e.get(c, "https://other.test/"); err != nil {
		t.Fatal(err)
	}
	c.CloseIdleConnections()
	en, _ := e.lastEntry(func(en Entry) bool { return en.Kind == "connection" && en.Host == "other.test" })
	if en.Mode != "tunnel" {
		t.Fatalf("other.test: %+v", en)
	}
	en, _ = e.lastEntry(func(en Entry) bool { return en.Kind == "connection" && en.Host == "api.test" })
	if en.Mode != "terminate" {
		t.Fatalf("api.test: %+v", en)
	}
}

func TestRuleValidation(t *testing.T) {
	for _, c := range []struct {
		rules []Rule
		want  string
	}{
		{[]Rule{{Host: "ok.test"}, {Host: ""}}, "rules[1]"},
		{[]Rule{{Host: "*"}}, "rules[0]"},
		{[]Rule{{Host: "*.com"}}, "too broad"},
		{[]Rule{{Host: "a.*.com"}}, "wildcard"},
		{[]Rule{{Host: "api.test", Ports: []int{0}}}, "port 0"},
		{[]Rule{{Host: "127.1"}}, "canonical form"},
		{[]Rule{{Host: "https://api.test"}}, "rules[0]"},
		{[]Rule{{Host: "api.test/path"}}, "rules[0]"},
		{[]Rule{{Host: "пример.test"}}, "punycode"},
		{[]Rule{{Host: "api.test", PathPrefixes: []string{"v1"}}}, "must start with /"},
		{[]Rule{{Host: "api.test", PathPrefixes: []string{"/v1/../x"}}}, "clean"},
		{[]Rule{{Host: "api.test", Methods: []string{"GE T"}}}, "method"},
		{[]Rule{{Host: "api.test", Deny: true, AllowPrivate: true}}, "deny"},
	} {
		_, err := New(Config{Token: "t", Rules: c.rules})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.rules, err, c.want)
		}
	}
	if _, err := New(Config{Rules: []Rule{{Host: "api.test"}}}); err == nil {
		t.Error("no token accepted")
	}
	if _, err := New(Config{Token: "t", Credentials: map[string]Credential{"api.test": {Header: "x-api-key"}}}); err == nil {
		t.Error("empty credential accepted")
	}
}

func TestCanonicalHost(t *testing.T) {
	for in, want := range map[string]string{
		"API.Test.": "api.test", "127.1": "127.0.0.1", "2130706433": "127.0.0.1", "0x7f000001": "127.0.0.1",
		"0177.0.0.1": "127.0.0.1", "0x7f.0.0.1": "127.0.0.1", "10.1": "10.0.0.1", "[::FFFF:7f00:1]": "127.0.0.1",
		"::1": "::1", "1.2.3.4.": "1.2.3.4", "0": "0.0.0.0",
	} {
		h, err := canonicalHost(in)
		if err != nil || h.String() != want {
			t.Errorf("canonicalHost(%q) = %v, %v; want %s", in, h, err, want)
		}
	}
	for _, in := range []string{"", ".", "256.1.1.1", "1.2.3.4.5", "09.1.1.1", "a..b", "-a.test", "a b", "[::1", "1.2.3.256"} {
		if h, err := canonicalHost(in); err == nil {
			t.Errorf("canonicalHost(%q) = %v, want an error", in, h)
		}
	}
}

func TestCloseStopsServe(t *testing.T) {
	p, err := New(Config{Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("client connection still open after Close")
	}
	block, _ := pem.Decode(p.CAPEM())
	if block == nil {
		t.Fatal("CAPEM is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.IsCA {
		t.Fatalf("CAPEM: %v %v", err, cert)
	}
}

func TestParseHostRule(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		host string
		port int
		err  string
	}{
		{"api.example.com", "api.example.com", 0, ""},
		{"*.example.com", "*.example.com", 0, ""},
		{"api.example.com:8443", "api.example.com", 8443, ""},
		{"[2001:db8::1]:443", "2001:db8::1", 443, ""},
		{"*", "", 0, "wildcard"},
		{"*.com", "", 0, "too broad"},
		{"a.*.com", "", 0, "leading"},
		{"127.1", "", 0, "canonical"},
		{"api.example.com:http", "", 0, "not a number"},
		{"api.example.com:70000", "", 0, "out of range"},
	} {
		r, err := ParseHostRule(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want error containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || r.Host != c.host || (c.port != 0 && (len(r.Ports) != 1 || r.Ports[0] != c.port)) {
			t.Errorf("%q: %+v %v", c.in, r, err)
		}
	}
}

// TestConnectionCap: a client connection beyond MaxConns is answered 503 at once and audited,
// while the open ones keep working; when one closes, there is room again.
func TestConnectionCap(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{{Host: "api.test"}}, MaxConns: 3})
	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// The proxy accepts in arrival order, so the three are counted before the fourth.
	if st, body := e.raw(connectHead("api.test:443")); st != 503 || !strings.Contains(body, ReasonTooManyConns) {
		t.Fatalf("a fourth connection: %d %q, want 503 %q", st, body, ReasonTooManyConns)
	}
	if _, ok := e.lastEntry(func(en Entry) bool {
		return en.Kind == "connection" && en.Decision == "deny" && en.Status == 503 && en.Reason == ReasonTooManyConns
	}); !ok {
		t.Errorf("no audit entry for the refused connection")
	}
	// An open connection still works.
	held[0].SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(held[0], connectHead("api.test:443"))
	resp, err := http.ReadResponse(bufio.NewReader(held[0]), &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT on a held connection: %v %v", resp, err)
	}
	// Room again once one closes (the proxy notices the close a moment later).
	held[1].Close()
	c := e.client(testToken)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, _, body, err := e.get(c, "https://api.test/r")
		if err == nil && st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a connection closed: %d %v %q", st, err, body)
		}
	}
}

// flakyListener fails its first n accepts with EMFILE, as a process out of descriptors does.
type flakyListener struct {
	net.Listener
	n atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestServeWaitsOutAcceptErrors: accept errors other than a closed listener do not end Serve
// (a sandbox's only way out), and closing the listener does.
func TestServeWaitsOutAcceptErrors(t *testing.T) {
	p, err := New(Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &flakyListener{Listener: inner}
	l.n.Store(3)
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "GET http://x.test/ HTTP/1.1\r\nHost: x.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("after three failed accepts: %v %v, want 407 from a proxy still serving", resp, err)
	}
	inner.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve after its listener closed: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its listener closed")
	}
}
