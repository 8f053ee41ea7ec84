package egress

import (
	"bufio"
	"crypto/subtle"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// SOCKS5 (RFC 1928) is served on the same listener as HTTP: a connection whose first byte is
// 5, the SOCKS version (no HTTP request starts with it), speaks SOCKS. Only what "socks5h://"
// clients need is offered: username/password authentication (RFC 1929) carrying the session
// token, and the CONNECT command. The client sends the name and the proxy resolves it; an
// address type that is an IP literal goes through the same canonicalisation and rules as a
// CONNECT to that IP, so it is refused unless an IP rule names it. Everything after the request
// is the same as an HTTP CONNECT: the same decision, tunnel or TLS termination, and audit entry
// (with Proto "socks5").

const (
	socksVersion     = 5
	socksAuthVersion = 1 // RFC 1929

	socksMethodUserPass = 2
	socksMethodNone     = 0xff // no acceptable method

	socksCmdConnect = 1

	socksAtypIPv4   = 1
	socksAtypDomain = 3
	socksAtypIPv6   = 4

	// Reply codes.
	socksSucceeded           = 0
	socksGeneralFailure      = 1
	socksNotAllowed          = 2
	socksHostUnreachable     = 4
	socksConnectionRefused   = 5
	socksCommandNotSupported = 7
	socksAtypNotSupported    = 8
)

// socksHandshakeTimeout bounds the negotiation before the tunnel opens.
const socksHandshakeTimeout = 30 * time.Second

// ReasonSOCKSCommand refuses SOCKS commands other than CONNECT (BIND, UDP ASSOCIATE).
const ReasonSOCKSCommand = "SOCKS command not supported (CONNECT only)"

// serveSOCKS serves a SOCKS5 client whose first byte is waiting in br.
func (p *Proxy) serveSOCKS(c net.Conn, br *bufio.Reader, id uint64) {
	e := Entry{Kind: "connection", Conn: id, Proto: "socks5", Method: http.MethodConnect, Decision: "deny"}
	deny := func(status int, reason string) {
		e.Status, e.Reason = status, reason
		p.record(e)
	}
	c.SetReadDeadline(time.Now().Add(socksHandshakeTimeout))

	// Greeting: VER NMETHODS METHODS...
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return
	}
	userPass := false
	for _, m := range methods {
		userPass = userPass || m == socksMethodUserPass
	}
	if !userPass {
		deny(http.StatusProxyAuthRequired, ReasonToken)
		c.Write([]byte{socksVersion, socksMethodNone})
		return
	}
	if _, err := c.Write([]byte{socksVersion, socksMethodUserPass}); err != nil {
		return
	}

	// RFC 1929: VER ULEN UNAME PLEN PASSWD. The token may be either, as with Basic.
	user, pass, ok := readSOCKSUserPass(br)
	if !ok {
		return
	}
	if !p.tokenIs(user) && !p.tokenIs(pass) {
		deny(http.StatusProxyAuthRequired, ReasonToken)
		c.Write([]byte{socksAuthVersion, 1})
		return
	}
	if _, err := c.Write([]byte{socksAuthVersion, 0}); err != nil {
		return
	}

	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[0] != socksVersion {
		return
	}
	var host string
	switch req[3] {
	case socksAtypIPv4:
		var a [4]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return
		}
		host = netip.AddrFrom4(a).String()
	case socksAtypIPv6:
		var a [16]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return
		}
		host = netip.AddrFrom16(a).String()
	case socksAtypDomain:
		n, err := br.ReadByte()
		if err != nil {
			return
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(br, name); err != nil {
			return
		}
		host = string(name)
	default:
		deny(http.StatusBadRequest, ReasonInvalidHost)
		c.Write(socksReply(socksAtypNotSupported))
		return
	}
	var pb [2]byte
	if _, err := io.ReadFull(br, pb[:]); err != nil {
		return
	}
	port := int(binary.BigEndian.Uint16(pb[:]))
	e.Host = host
	if req[1] != socksCmdConnect {
		e.Port = port
		deny(http.StatusMethodNotAllowed, ReasonSOCKSCommand)
		c.Write(socksReply(socksCommandNotSupported))
		return
	}
	c.SetReadDeadline(time.Time{})
	p.openTunnel(c, br, e, host, port, socksTunnel{c})
}

func readSOCKSUserPass(br *bufio.Reader) (user, pass string, ok bool) {
	ver, err := br.ReadByte()
	if err != nil || ver != socksAuthVersion {
		return "", "", false
	}
	field := func() (string, bool) {
		n, err := br.ReadByte()
		if err != nil {
			return "", false
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", false
		}
		return string(b), true
	}
	if user, ok = field(); !ok {
		return "", "", false
	}
	pass, ok = field()
	return user, pass, ok
}

// tokenIs compares s with the session token in constant time.
func (p *Proxy) tokenIs(s string) bool {
	return subtle.ConstantTimeCompare([]byte(s), []byte(p.token)) == 1
}

// socksReply is a reply to a SOCKS request. The bound address is always 0.0.0.0:0: clients
// do not need it, and the proxy's own address on the host is none of the sandbox's business.
func socksReply(code byte) []byte {
	return []byte{socksVersion, code, 0, socksAtypIPv4, 0, 0, 0, 0, 0, 0}
}

type socksTunnel struct{ c net.Conn }

func (s socksTunnel) refuse(status int, reason string) {
	code := byte(socksGeneralFailure)
	switch {
	case reason == ReasonResolve:
		code = socksHostUnreachable
	case reason == ReasonUpstream:
		code = socksConnectionRefused
	case status == http.StatusForbidden || status == http.StatusBadRequest:
		code = socksNotAllowed
	}
	s.c.Write(socksReply(code))
}

func (s socksTunnel) established() error {
	_, err := s.c.Write(socksReply(socksSucceeded))
	return err
}
