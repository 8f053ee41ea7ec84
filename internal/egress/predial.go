package egress

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"sync"
	"time"
)

// Upstream connections made ahead of a terminated tunnel's first request.
//
// A client that opens a tunnel the proxy terminates sends its first request only after its TLS
// handshake with the proxy, and the proxy then needed the upstream's TCP and TLS handshakes
// before it could forward it: the two handshakes one after the other. When no idle upstream
// connection to the host is at hand, the proxy now starts the upstream's handshakes as soon as
// it accepts the tunnel, side by side with the client's, under the tunnel's decision (the same
// checks as any dial of the tunnel's requests: the host was allowed, the addresses the proxy
// resolved are permitted by the rule). The tunnel's first request, or any request to that
// address, takes the connection when the upstream Transport dials (DialTLSContext); one not
// taken within predialTTL is closed. A request that the rules refuse (or a client that goes
// away) costs the upstream that connection, to an allowed host, and nothing else: no byte of
// the client's goes on it before a request of the client's is allowed.

// predialTTL is how long a connection made ahead waits for a request to take it (the default
// of Proxy.predialTTL, which tests change). A client sends its first request milliseconds
// after its tunnel opens; one that waits longer gets a new connection, since an upstream may
// close a connection that carries no request after some seconds, and the Transport does not
// retry a request on a new connection that fails.
const predialTTL = time.Second

// upstreams counts, per upstream address (host:port as the Transport dials it), the TLS
// connections open and the requests in flight, whose difference is the idle connections the
// Transport can reuse, and keeps the connections made ahead until a dial takes them.
type upstreams struct {
	mu    sync.Mutex
	live  map[string]int
	busy  map[string]int
	ahead map[string]*predial
}

// predial is an upstream connection being made, or made, ahead of a request.
type predial struct {
	done chan struct{} // closed when conn or err is set
	conn net.Conn
	err  error
}

// upstreamKey is the address the Transport dials for d's requests: host:port as
// net.JoinHostPort writes it (an IPv6 host in brackets), the port always given. Host names are
// lower-case ASCII already (canonicalHost), which the Transport's IDNA step leaves alone.
func upstreamKey(d *connDecision) string {
	return net.JoinHostPort(d.host.String(), strconv.Itoa(d.port))
}

// predial starts making an upstream connection for the tunnel of d, unless the Transport has
// one idle for it or one is being made already.
func (p *Proxy) predial(d *connDecision) {
	key := upstreamKey(d)
	u := &p.up
	u.mu.Lock()
	if u.ahead[key] != nil || u.live[key]-u.busy[key] > 0 {
		u.mu.Unlock()
		return
	}
	pd := &predial{done: make(chan struct{})}
	u.ahead[key] = pd
	u.mu.Unlock()
	go func() {
		ctx := context.WithValue(context.Background(), decisionKey{}, d)
		pd.conn, pd.err = p.dialTLS(ctx, key)
		close(pd.done)
		if pd.err != nil || p.isClosed() {
			p.dropAhead(key, pd)
			return
		}
		time.AfterFunc(p.predialTTL, func() { p.dropAhead(key, pd) })
	}()
}

// dropAhead forgets and closes pd if no dial has taken it.
func (p *Proxy) dropAhead(key string, pd *predial) {
	u := &p.up
	u.mu.Lock()
	mine := u.ahead[key] == pd
	if mine {
		delete(u.ahead, key)
	}
	u.mu.Unlock()
	if mine && pd.conn != nil {
		pd.conn.Close()
	}
}

// transportDialTLS is the upstream Transport's dialer for HTTPS: a connection made ahead for
// addr if there is one (waiting for it if it is being made), else a new one.
func (p *Proxy) transportDialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	u := &p.up
	u.mu.Lock()
	pd := u.ahead[addr]
	delete(u.ahead, addr)
	u.mu.Unlock()
	if pd != nil {
		<-pd.done
		if pd.err == nil {
			return pd.conn, nil
		}
	}
	return p.dialTLS(ctx, addr)
}

// dialTLS connects to addr as transportDial does and makes the TLS handshake the Transport
// would make with its TLSClientConfig.
func (p *Proxy) dialTLS(ctx context.Context, addr string) (net.Conn, error) {
	raw, err := p.transportDial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	cfg := p.tr.TLSClientConfig.Clone()
	cfg.ServerName = host
	hctx, cancel := context.WithTimeout(ctx, p.tr.TLSHandshakeTimeout)
	defer cancel()
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, err
	}
	u := &p.up
	u.mu.Lock()
	u.live[addr]++
	u.mu.Unlock()
	return &upstreamConn{Conn: tc, up: u, addr: addr}, nil
}

// upstreamConn is an upstream TLS connection, counted in upstreams.live until it is closed.
type upstreamConn struct {
	net.Conn
	up   *upstreams
	addr string
	once sync.Once
}

func (c *upstreamConn) Close() error {
	c.once.Do(func() {
		c.up.mu.Lock()
		c.up.live[c.addr]--
		if c.up.live[c.addr] <= 0 {
			delete(c.up.live, c.addr)
		}
		c.up.mu.Unlock()
	})
	return c.Conn.Close()
}

// begin and end bracket a request to key: from its round trip to its response's end, its
// connection is not idle.
func (u *upstreams) begin(key string) {
	u.mu.Lock()
	u.busy[key]++
	u.mu.Unlock()
}

func (u *upstreams) end(key string) {
	u.mu.Lock()
	u.busy[key]--
	if u.busy[key] <= 0 {
		delete(u.busy, key)
	}
	u.mu.Unlock()
}

// closeAhead closes the connections made ahead that no dial took (the proxy is closing).
func (p *Proxy) closeAhead() {
	u := &p.up
	u.mu.Lock()
	ahead := u.ahead
	u.ahead = map[string]*predial{}
	u.mu.Unlock()
	for _, pd := range ahead {
		go func() {
			<-pd.done
			if pd.conn != nil {
				pd.conn.Close()
			}
		}()
	}
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}
