package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTunnelByteCounts: the audit entry of a tunnel counts exactly the bytes that passed each
// way, including bytes the client sent along with its CONNECT head, over transfers larger than
// the copy buffer.
func TestTunnelByteCounts(t *testing.T) {
	const up, down = 3<<20 + 7, 5<<20 + 3
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.CopyN(io.Discard, c, up)
		got <- n
		io.CopyN(c, zeros{}, down)
	}()
	var mu sync.Mutex
	var entries []Entry
	p, err := New(Config{
		Token: testToken,
		Rules: []Rule{{Host: "bulk.test"}},
		Resolve: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("198.51.100.9")}, nil
		},
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, l.Addr().String())
		},
		Audit: func(e Entry) {
			mu.Lock()
			entries = append(entries, e)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(pl)
	defer p.Close()

	c, err := net.Dial("tcp", pl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	early := strings.Repeat("e", 1000)
	if _, err := io.WriteString(c, connectHead("bulk.test:443")+early); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(c, zeros{}, up-int64(len(early))); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	n, err := io.Copy(io.Discard, br)
	if err != nil || n != down {
		t.Fatalf("read %d bytes (%v), want %d", n, err, down)
	}
	if n := <-got; n != up {
		t.Fatalf("upstream read %d bytes, want %d", n, up)
	}
	c.Close()
	var en Entry
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && en.Kind == ""; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		for _, e := range entries {
			if e.Kind == "connection" {
				en = e
			}
		}
		mu.Unlock()
	}
	if en.Mode != "tunnel" || en.Decision != "allow" || en.BytesUp != up || en.BytesDown != down {
		t.Fatalf("entry %+v, want a tunnel with %d bytes up and %d down", en, up, down)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestUpstreamReuse: clients that open a new connection for each request (Connection: close)
// to a TLS-terminated host still share one upstream connection, and every request is still
// checked, given keepup's credential and audited.
func TestUpstreamReuse(t *testing.T) {
	e := newEnv(t, Config{
		Rules:       []Rule{{Host: "api.test"}},
		Credentials: map[string]Credential{"api.test": {Header: "x-api-key", Value: "OWN"}},
	})
	c := e.client(testToken)
	c.Transport.(*http.Transport).DisableKeepAlives = true
	for i := range 3 {
		st, ec, body, err := e.get(c, "https://api.test/r")
		if err != nil || st != 200 || ec.APIKey != "OWN" {
			t.Fatalf("request %d: %d %v %+v %q", i, st, err, ec, body)
		}
		// The proxy's transport takes an upstream connection back into its pool from a
		// goroutine of its own, a moment after the response's last byte: a next request sent
		// at once on a loaded machine may race it and dial.
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", "https://api.test/r", nil)
	req.Header.Set("X-Api-Key", "FOREIGN")
	if st, _, _, err := e.do(c, req); err != nil || st != 403 {
		t.Fatalf("a foreign key on a reused upstream: %d %v", st, err)
	}
	e.mu.Lock()
	dialed := len(e.dialed)
	var allowed, refused int
	for _, en := range e.entries {
		if en.Kind == "request" && en.Decision == "allow" && en.Addr != "" && en.Mode == "terminate" {
			allowed++
		}
		if en.Kind == "request" && en.Decision == "deny" && strings.HasPrefix(en.Reason, ReasonForeignCredential) {
			refused++
		}
	}
	e.mu.Unlock()
	if dialed != 1 {
		t.Errorf("the proxy dialed upstream %d times for 3 requests on new client connections, want 1", dialed)
	}
	if allowed != 3 || refused != 1 {
		t.Errorf("audit: %d allowed requests with an address, %d refused for a foreign key; want 3 and 1", allowed, refused)
	}

	// With no idle upstream connection left, the next one resumes the TLS session.
	e.p.tr.CloseIdleConnections()
	st, ec, _, err := e.get(c, "https://api.test/r")
	if err != nil || st != 200 || !ec.Resumed || ec.APIKey != "OWN" {
		t.Fatalf("after closing idle upstream connections: %d %v %+v, want a resumed session", st, err, ec)
	}
}

// TestTerminatedSessionResumption: a client that keeps TLS sessions resumes them with a
// terminated host on its next connection, and a session of one host is never resumed with
// another (the second host presents its own certificate).
func TestTerminatedSessionResumption(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{
		{Host: "api.test", PathPrefixes: []string{"/"}},
		{Host: "other.test", PathPrefixes: []string{"/"}},
	}})
	c := e.client(testToken)
	tr := c.Transport.(*http.Transport)
	tr.DisableKeepAlives = true
	tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	var resumed []bool
	for range 2 {
		resp, err := c.Get("https://api.test/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resumed = append(resumed, resp.TLS.DidResume)
	}
	if resumed[0] || !resumed[1] {
		t.Fatalf("resumed %v, want a full handshake then a resumption", resumed)
	}

	// A client that offers api.test's session to other.test (a cache that ignores the name,
	// and no verification so that the client offers it at all).
	one := &anySession{}
	cs := tlsThroughProxy(t, e, "api.test", &tls.Config{ServerName: "api.test", RootCAs: caPool(e), ClientSessionCache: one})
	if cs.DidResume || one.state == nil {
		t.Fatalf("first connection: resumed %v, session stored %v", cs.DidResume, one.state != nil)
	}
	cs = tlsThroughProxy(t, e, "other.test", &tls.Config{ServerName: "other.test", InsecureSkipVerify: true, ClientSessionCache: one})
	if cs.DidResume {
		t.Fatal("a session of api.test was resumed with other.test")
	}
	if names := cs.PeerCertificates[0].DNSNames; len(names) != 1 || names[0] != "other.test" {
		t.Fatalf("other.test presented a certificate for %v", names)
	}
}

func caPool(e *env) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.p.CAPEM())
	return pool
}

// anySession is a client session cache that hands its one session to every server name.
type anySession struct {
	mu    sync.Mutex
	state *tls.ClientSessionState
}

func (a *anySession) Get(string) (*tls.ClientSessionState, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state, a.state != nil
}

func (a *anySession) Put(_ string, cs *tls.ClientSessionState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cs != nil {
		a.state = cs
	}
}

// tlsThroughProxy opens a CONNECT tunnel to host, makes one HTTP request over TLS with cfg and
// returns the TLS connection's state.
func tlsThroughProxy(t *testing.T, e *env, host string, cfg *tls.Config) tls.ConnectionState {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, connectHead(host+":443"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", host, resp, err)
	}
	tc := tls.Client(c, cfg)
	req, _ := http.NewRequest("GET", (&url.URL{Scheme: "https", Host: host, Path: "/x"}).String(), nil)
	req.Close = true
	if err := req.Write(tc); err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %v %v", host, resp, err)
	}
	// TLS 1.3 tickets arrive after the handshake: read to the end so the client stores one.
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return tc.ConnectionState()
}

// TestCopyConnBulk: a copy large enough to take a bulk buffer passes every byte in order,
// counts them, and gives its slot back; with every slot taken, it copies through the small
// buffer. (Not parallel: it checks the process-wide slots.)
func TestCopyConnBulk(t *testing.T) {
	pair := func() (net.Conn, net.Conn) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		a, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	data := make([]byte, 3*bulkAfter+12345)
	rand.Read(data)
	copyOnce := func() {
		t.Helper()
		srcW, srcR := pair()
		dstW, dstR := pair()
		go func() {
			srcW.Write(data)
			srcW.Close()
		}()
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(dstR)
			got <- b
		}()
		n, err := copyConn(dstW, srcR)
		dstW.Close()
		if err != nil || n != int64(len(data)) {
			t.Fatalf("copyConn: %d bytes, %v; want %d", n, err, len(data))
		}
		if b := <-got; !bytes.Equal(b, data) {
			t.Fatalf("copied %d bytes that differ from the %d sent", len(b), len(data))
		}
	}
	copyOnce()
	if n := len(bulkSlots); n != 0 {
		t.Errorf("%d bulk slots still taken after the copy", n)
	}
	var taken []*[bulkBufSize]byte
	for range cap(bulkSlots) {
		b := takeBulk()
		if b == nil {
			t.Fatal("a bulk slot was not free")
		}
		taken = append(taken, b)
	}
	if takeBulk() != nil {
		t.Fatal("took more bulk buffers than there are slots")
	}
	copyOnce()
	for i := range taken {
		releaseBulk(&taken[i])
	}
	if n := len(bulkSlots); n != 0 {
		t.Errorf("%d bulk slots still taken", n)
	}
}
