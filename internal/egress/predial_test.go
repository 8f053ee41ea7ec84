package egress

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// openTunnel opens a CONNECT tunnel to host:443 and returns the connection, past the proxy's
// 200, before any TLS.
func openTunnel(t *testing.T, e *env, host string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, connectHead(host+":443"))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", host, resp, err)
	}
	return c
}

// getOver makes one GET of path over the tunnel c (TLS with the proxy as host) and returns
// the status.
func getOver(t *testing.T, e *env, c net.Conn, host, path string) int {
	t.Helper()
	tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: caPool(e)})
	req, _ := http.NewRequest("GET", "https://"+host+path, nil)
	if err := req.Write(tc); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (e *env) dials() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.dialed)
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *Proxy) liveUpstreams(key string) int {
	p.up.mu.Lock()
	defer p.up.mu.Unlock()
	return p.up.live[key]
}

// TestPredial: a tunnel the proxy terminates, with no idle upstream connection at hand, has its
// upstream connection made while the client has yet to start TLS, and its first request takes
// that connection (one dial in all); with an idle connection at hand, nothing is made ahead.
func TestPredial(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{
		Rules:       []Rule{{Host: "api.test"}},
		Credentials: map[string]Credential{"api.test": {Header: "x-api-key", Value: "OWN"}},
	})
	c := openTunnel(t, e, "api.test")
	waitFor(t, "no upstream dial before the client's TLS", func() bool { return e.dials() == 1 })
	waitFor(t, "the upstream connection made ahead is not up", func() bool { return e.p.liveUpstreams("api.test:443") == 1 })
	if st := getOver(t, e, c, "api.test", "/a"); st != 200 {
		t.Fatalf("first request: %d", st)
	}
	if n := e.dials(); n != 1 {
		t.Fatalf("%d upstream dials for one request, want the one made ahead", n)
	}
	// The first tunnel keeps its client connection; its upstream connection is idle once the
	// response is read.
	waitFor(t, "the upstream connection did not go idle", func() bool {
		e.p.up.mu.Lock()
		defer e.p.up.mu.Unlock()
		return e.p.up.busy["api.test:443"] == 0
	})
	c2 := openTunnel(t, e, "api.test")
	// Made ahead, it would be dialed at once, as the first tunnel's was.
	time.Sleep(100 * time.Millisecond)
	if n := e.dials(); n != 1 {
		t.Fatalf("%d upstream dials with an idle connection at hand, want 1", n)
	}
	if st := getOver(t, e, c2, "api.test", "/b"); st != 200 {
		t.Fatalf("second request: %d", st)
	}
}

// TestPredialNotTaken: an upstream connection made ahead for a tunnel whose request the rules
// refuse is closed after predialTTL; one still being made when the proxy closes is closed too.
func TestPredialNotTaken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{Rules: []Rule{{Host: "api.test", PathPrefixes: []string{"/ok/"}}}})
	e.p.predialTTL = 100 * time.Millisecond // before any connection
	c := openTunnel(t, e, "api.test")
	waitFor(t, "no connection made ahead", func() bool { return e.p.liveUpstreams("api.test:443") == 1 })
	if st := getOver(t, e, c, "api.test", "/refused"); st != http.StatusForbidden {
		t.Fatalf("a refused path: %d", st)
	}
	waitFor(t, "the connection made ahead is still open", func() bool { return e.p.liveUpstreams("api.test:443") == 0 })

	e.p.predialTTL = time.Hour // the first tunnel's connection is closed: nothing reads it now
	openTunnel(t, e, "api.test")
	waitFor(t, "no connection made ahead", func() bool { return e.p.liveUpstreams("api.test:443") == 1 })
	e.p.Close()
	waitFor(t, "the connection made ahead is still open after Close", func() bool { return e.p.liveUpstreams("api.test:443") == 0 })
}
