package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serveConnect handles an HTTP CONNECT: refused, tunnelled, or terminated.
func (p *Proxy) serveConnect(c net.Conn, br *bufio.Reader, req *http.Request, id uint64) {
	e := Entry{Kind: "connection", Conn: id, Method: http.MethodConnect, Host: req.Host, Decision: "deny"}
	hostS, portS, err := net.SplitHostPort(req.Host)
	if err != nil {
		hostS, portS = req.Host, "443"
	}
	port, err := strconv.Atoi(portS)
	if err != nil || port < 1 || port > 65535 {
		port = 0
	}
	p.openTunnel(c, br, e, hostS, port, httpTunnel{c})
}

// tunnelReplier answers a tunnel request in the client's protocol (HTTP CONNECT or SOCKS5).
type tunnelReplier interface {
	// refuse tells the client why its tunnel is refused; the connection then ends.
	refuse(status int, reason string)
	// established tells the client that its tunnel is open.
	established() error
}

type httpTunnel struct{ c net.Conn }

func (h httpTunnel) refuse(status int, reason string) { writeRefusal(h.c, status, reason) }

func (h httpTunnel) established() error {
	_, err := io.WriteString(h.c, "HTTP/1.1 200 Connection established\r\n\r\n")
	return err
}

// openTunnel checks an authorised client's tunnel to hostS:port (port 0: invalid) against the
// rules, whatever protocol asked for it, and refuses it, passes its bytes through, or
// terminates its TLS. br holds what the client sent after its request; e is the connection's
// audit entry so far.
func (p *Proxy) openTunnel(c net.Conn, br *bufio.Reader, e Entry, hostS string, port int, r tunnelReplier) {
	deny := func(status int, reason string) {
		e.Status, e.Reason = status, reason
		p.record(e)
		r.refuse(status, reason)
	}
	if port == 0 {
		deny(http.StatusBadRequest, ReasonInvalidHost)
		return
	}
	e.Port = port
	hk, err := canonicalHost(hostS)
	if err != nil {
		deny(http.StatusForbidden, ReasonInvalidHost)
		return
	}
	e.Host = hk.String()
	d := p.decideConn(hk, port, 443)
	e.Rule = d.ruleText()
	if !d.allow {
		deny(d.status, d.reason)
		return
	}
	var early []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		early = append([]byte(nil), b...)
	}
	if d.terminate {
		e.Mode = "terminate"
		if err := r.established(); err != nil {
			return
		}
		cc := &countingConn{Conn: c, r: io.MultiReader(bytes.NewReader(early), c)}
		p.terminate(cc, d, e.Conn)
		e.Decision, e.Status = "allow", http.StatusOK
		e.BytesUp, e.BytesDown = cc.in, cc.out
		p.record(e)
		return
	}
	e.Mode = "tunnel"
	up, err := p.dialChecked(context.Background(), d)
	if err != nil {
		var de *denyError
		if errors.As(err, &de) {
			deny(de.status, de.reason)
		} else {
			deny(http.StatusBadGateway, ReasonUpstream)
		}
		return
	}
	defer up.Close()
	e.Addr = up.RemoteAddr().String()
	if err := r.established(); err != nil {
		return
	}
	e.Decision, e.Status = "allow", http.StatusOK
	if len(early) > 0 {
		n, err := up.Write(early)
		e.BytesUp += int64(n)
		if err != nil {
			p.record(e)
			return
		}
	}
	var wg sync.WaitGroup
	var upN int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		upN, _ = copyConn(up, c)
		closeWrite(up)
	}()
	downN, err := copyConn(c, up)
	if err != nil {
		c.Close() // the other direction's read then ends too
	} else {
		closeWrite(c)
	}
	wg.Wait()
	e.BytesUp += upN
	e.BytesDown = downN
	p.record(e)
}

// copyConn copies src to dst and returns the bytes copied, which the audit entry records. It
// reads and writes through a pooled 256 KiB buffer, and once a connection has moved bulkAfter
// bytes, through a 1 MiB one while one of bulkSlots is free: for a bulk transfer on loopback
// (2 vCPUs) that cut the proxy's share of the CPU enough to carry 15-20% more, and the slots
// bound what a sandbox opening many bulk tunnels can make the host hold. It reads and writes
// itself rather than through io.Copy, which would splice(2) between the two TCP connections:
// through Go's 64 KiB pipes that cost more CPU per byte than large plain reads and writes
// (1.2-1.4x for a 100 MB transfer on Linux 6.18) in every paired run.
func copyConn(dst, src net.Conn) (int64, error) {
	small := tunnelBufs.Get().(*[tunnelBufSize]byte)
	defer tunnelBufs.Put(small)
	buf := small[:]
	var big *[bulkBufSize]byte
	defer releaseBulk(&big)
	var n int64
	for {
		if big == nil && n >= bulkAfter {
			if big = takeBulk(); big != nil {
				buf = big[:]
			}
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// Copy buffers are pooled: every tunnel and response needs one, and making (and zeroing) them
// each time showed in the profiles of short connections. (A connection's request reader is
// not: the upstream Transport may still be reading a request body from it after RoundTrip
// returns, so it must never be handed to another connection.)
const (
	tunnelBufSize = 256 << 10
	bulkBufSize   = 1 << 20
	// bulkAfter is how much a connection moves before it may take a bulk buffer.
	bulkAfter = 4 << 20
)

// bulkSlots bounds the bulk buffers in use in the process (16 MiB).
var bulkSlots = make(chan struct{}, 16)

// takeBulk returns a bulk buffer, or nil when every slot is taken.
func takeBulk() *[bulkBufSize]byte {
	select {
	case bulkSlots <- struct{}{}:
		return bulkBufs.Get().(*[bulkBufSize]byte)
	default:
		return nil
	}
}

// releaseBulk gives *b back, if it was taken.
func releaseBulk(b **[bulkBufSize]byte) {
	if *b != nil {
		bulkBufs.Put(*b)
		*b = nil
		<-bulkSlots
	}
}

var (
	tunnelBufs = sync.Pool{New: func() any { return new([tunnelBufSize]byte) }}
	bulkBufs   = sync.Pool{New: func() any { return new([bulkBufSize]byte) }}
	bodyBufs   = sync.Pool{New: func() any { return new([32 << 10]byte) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
)

// linger half-closes a refused connection and discards what the client is still sending for
// a moment, so that it reads the refusal instead of a reset.
func linger(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(c, 16<<20))
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// terminate serves the requests of a TLS-terminated CONNECT tunnel.
func (p *Proxy) terminate(c net.Conn, d *connDecision, id uint64) {
	cfg, err := p.ca.serverConfig(d.host.String())
	if err != nil {
		return
	}
	// The upstream's handshakes, side by side with the client's (see predial.go).
	p.predial(d)
	tc := tls.Server(c, cfg)
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(15 * time.Second))
	if err := tc.Handshake(); err != nil {
		return
	}
	tc.SetDeadline(time.Time{})
	lr := &headerLimitReader{r: tc}
	br := bufio.NewReaderSize(lr, 16<<10)
	for {
		lr.n = maxHeaderBytes
		tc.SetReadDeadline(time.Now().Add(idleTimeout))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		lr.n = -1
		tc.SetReadDeadline(time.Time{})
		if !p.exchange(tc, req, d, id, "terminate", "https") {
			return
		}
	}
}

// serveForward handles an absolute-form http:// request; it reports whether the client
// connection may carry another request.
func (p *Proxy) serveForward(c net.Conn, req *http.Request, id uint64) bool {
	e := Entry{Kind: "request", Conn: id, Mode: "forward", Method: req.Method, Host: req.URL.Host, Path: req.URL.EscapedPath(), Decision: "deny"}
	deny := func(status int, reason string) bool {
		e.Status, e.Reason = status, reason
		p.record(e)
		writeRefusal(c, status, reason)
		linger(c)
		return false
	}
	if req.URL.Scheme != "http" || req.URL.Host == "" {
		return deny(http.StatusBadRequest, ReasonScheme)
	}
	if req.URL.User != nil {
		return deny(http.StatusForbidden, ReasonUserinfo)
	}
	port := 80
	if ps := req.URL.Port(); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return deny(http.StatusBadRequest, ReasonInvalidHost)
		}
		port = n
	}
	hk, err := canonicalHost(req.URL.Hostname())
	if err != nil {
		return deny(http.StatusForbidden, ReasonInvalidHost)
	}
	// The token was for the proxy; it never goes further.
	req.Header.Del("Proxy-Authorization")
	return p.exchange(c, req, p.decideConn(hk, port, 80), id, "forward", "http")
}

// urlPath is a request path as request-level rules see it.
type urlPath struct {
	path      string // decoded
	canonical bool   // safe to match prefixes against
}

func canonicalPath(u *url.URL) urlPath {
	p := u.Path
	esc := strings.ToLower(u.EscapedPath())
	ok := strings.HasPrefix(p, "/") && !strings.ContainsAny(p, "\\;") &&
		!strings.Contains(esc, "%2f") && !strings.Contains(esc, "%5c")
	if ok && p != "/" {
		ok = path.Clean(p) == strings.TrimSuffix(p, "/")
	}
	return urlPath{path: p, canonical: ok}
}

var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// exchange checks one request to the host of d, forwards it and writes the response to w. It
// reports whether the connection may carry another request.
func (p *Proxy) exchange(w net.Conn, req *http.Request, d *connDecision, id uint64, mode, scheme string) bool {
	e := Entry{Kind: "request", Conn: id, Mode: mode, Host: d.host.String(), Port: d.port, Method: req.Method, Path: req.URL.EscapedPath(), Decision: "deny", Rule: d.ruleText()}
	deny := func(status int, reason string) bool {
		e.Status, e.Reason = status, reason
		p.record(e)
		writeRefusal(w, status, reason)
		linger(w)
		return false
	}
	if !d.allow {
		return deny(d.status, d.reason)
	}
	ok, r := p.decideRequest(d, req.Method, canonicalPath(req.URL))
	if r != nil {
		e.Rule = r.text
	}
	if !ok {
		if r != nil {
			return deny(http.StatusForbidden, ReasonDeniedByRule)
		}
		return deny(http.StatusForbidden, ReasonRequestNotAllowed)
	}
	hostport := d.host.String()
	if d.host.ip.Is6() {
		hostport = "[" + hostport + "]"
	}
	if d.port != d.defPort {
		hostport += ":" + strconv.Itoa(d.port)
	}
	out := req.Clone(context.Background())
	out.RequestURI = ""
	// "Connection: close" from the client ends the client's connection only (hop-by-hop): the
	// upstream connection goes back to the pool for the next request to this host, from any
	// client connection, instead of costing a new TCP and TLS handshake each time.
	out.Close = false
	out.URL.Scheme, out.URL.Host, out.URL.User, out.Host = scheme, hostport, nil, ""
	removeHopHeaders(out.Header)
	if d.cred != nil {
		if where := d.cred.pin(out.Header, out.URL); where != "" {
			e.Reason = ReasonForeignCredential + " (" + where + ")"
			e.Status = http.StatusForbidden
			p.record(e)
			writeRefusal(w, http.StatusForbidden, ReasonForeignCredential)
			linger(w)
			return false
		}
	}
	out.Header.Del("Proxy-Authorization")
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // don't add Go's
	}
	if req.ContentLength > p.maxBody {
		return deny(http.StatusRequestEntityTooLarge, ReasonBodyTooLarge)
	}
	var body *capReader
	if req.Body != nil && req.Body != http.NoBody {
		body = &capReader{r: req.Body, max: p.maxBody}
		out.Body = body
	}
	if strings.EqualFold(out.Header.Get("Expect"), "100-continue") {
		out.Header.Del("Expect")
		io.WriteString(w, "HTTP/1.1 100 Continue\r\n\r\n")
	}
	ctx := context.WithValue(context.Background(), decisionKey{}, d)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		e.Addr = ci.Conn.RemoteAddr().String()
	}})
	out = out.WithContext(ctx)
	if scheme == "https" {
		// Its upstream connection is busy until the response's end (this function's).
		key := upstreamKey(d)
		p.up.begin(key)
		defer p.up.end(key)
	}
	resp, err := p.tr.RoundTrip(out)
	if body != nil {
		e.BytesUp = body.n
	}
	if err != nil {
		var de *denyError
		switch {
		case body != nil && body.over:
			return deny(http.StatusRequestEntityTooLarge, ReasonBodyTooLarge)
		case errors.As(err, &de):
			return deny(de.status, de.reason)
		default:
			return deny(http.StatusBadGateway, ReasonUpstream)
		}
	}
	defer resp.Body.Close()
	e.Decision, e.Reason, e.Status = "allow", "", resp.StatusCode
	n, keep, werr := writeResponse(w, req, resp)
	if body != nil {
		e.BytesUp = body.n
	}
	e.BytesDown = n
	p.record(e)
	if werr != nil || !keep || req.Close {
		return false
	}
	// Discard what the upstream did not read of the body before the next request.
	if req.Body != nil {
		if _, err := io.CopyN(io.Discard, req.Body, 256<<10); err != io.EOF {
			return false
		}
	}
	return true
}

// capReader counts a request body and fails it beyond max bytes.
type capReader struct {
	r    io.ReadCloser
	max  int64
	n    int64
	over bool
}

var errBodyTooLarge = errors.New("egress: request body too large")

func (c *capReader) Read(b []byte) (int, error) {
	if c.n >= c.max {
		// Probe one byte: a body of exactly max bytes is fine.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			c.over = true
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(b)) > c.max-c.n {
		b = b[:c.max-c.n]
	}
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func (c *capReader) Close() error { return nil } // the client connection owns the body

// writeResponse writes resp to w as HTTP/1.1, streaming the body; it returns the body bytes
// written and whether the connection can stay open.
func writeResponse(w io.Writer, req *http.Request, resp *http.Response) (int64, bool, error) {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(nil)
		writerPool.Put(bw)
	}()
	h := resp.Header.Clone()
	removeHopHeaders(h)
	noBody := req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || (resp.StatusCode >= 100 && resp.StatusCode < 200)
	chunked, keep := false, true
	switch {
	case noBody:
		if resp.ContentLength >= 0 && h.Get("Content-Length") == "" && req.Method == http.MethodHead {
			h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		}
	case resp.ContentLength >= 0:
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	case req.ProtoAtLeast(1, 1):
		h.Del("Content-Length")
		h.Set("Transfer-Encoding", "chunked")
		chunked = true
	default:
		h.Del("Content-Length")
		keep = false
	}
	if !keep || req.Close {
		h.Set("Connection", "close")
	}
	text := resp.Status
	if text == "" || !strings.HasPrefix(text, strconv.Itoa(resp.StatusCode)) {
		text = strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	}
	bw.WriteString("HTTP/1.1 " + text + "\r\n")
	h.Write(bw)
	bw.WriteString("\r\n")
	if noBody {
		return 0, keep, bw.Flush()
	}
	var n int64
	bb := bodyBufs.Get().(*[32 << 10]byte)
	defer bodyBufs.Put(bb)
	buf := bb[:]
	var big *[bulkBufSize]byte // as in copyConn, for a large body
	defer releaseBulk(&big)
	for {
		if big == nil && n >= bulkAfter {
			if big = takeBulk(); big != nil {
				buf = big[:]
			}
		}
		m, rerr := resp.Body.Read(buf)
		if m > 0 {
			if chunked {
				bw.WriteString(strconv.FormatInt(int64(m), 16) + "\r\n")
			}
			bw.Write(buf[:m])
			if chunked {
				bw.WriteString("\r\n")
			}
			n += int64(m)
			if err := bw.Flush(); err != nil {
				return n, false, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			bw.Flush()
			return n, false, rerr
		}
	}
	if chunked {
		bw.WriteString("0\r\n\r\n")
	}
	return n, keep, bw.Flush()
}

// countingConn counts bytes through a connection; r, if set, replaces reads (early bytes).
type countingConn struct {
	net.Conn
	r       io.Reader
	in, out int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	var n int
	var err error
	if c.r != nil {
		n, err = c.r.Read(b)
	} else {
		n, err = c.Conn.Read(b)
	}
	c.in += int64(n)
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out += int64(n)
	return n, err
}
