package cli

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/keepup/keepup/internal/audit"
	"github.com/keepup/keepup/internal/egress"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/store"
)

// sessionEgress is a session's egress proxy on loopback and the HTTP client whose requests go
// through it (web_fetch). Every connection and request the proxy handles is an audit entry.
type sessionEgress struct {
	proxy  *egress.Proxy
	client *http.Client
	ln     net.Listener
	token  string
	allows bool // some host is allowed: commands have network access through the proxy
}

// egressOverrides adjust a session's proxy for `keepup eval`: more rules (after the
// configuration's), keepup-held credentials, a resolver and dialer that reach only local
// recorders, and the roots the web client trusts instead of the system's.
type egressOverrides struct {
	proxy egress.Config
	roots *x509.CertPool
}

// startEgress starts the per-session proxy with the capabilities of the configuration (none by
// default: every host is refused until a person or the managed policy allows it). Every entry
// is committed through commit (a store's Commit); over may be nil.
func startEgress(set *settings, commit func(context.Context, *store.Batch) error, taskID, sessionID string, over *egressOverrides) (*sessionEgress, error) {
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	cfg := egress.Config{Rules: set.loaded.EgressRules()}
	cfg.MaxConns, cfg.MaxBodyBytes = set.loaded.EgressLimits()
	var roots *x509.CertPool
	if over != nil {
		base := over.proxy
		base.Rules = append(cfg.Rules, base.Rules...)
		base.MaxConns, base.MaxBodyBytes = cmp.Or(base.MaxConns, cfg.MaxConns), cmp.Or(base.MaxBodyBytes, cfg.MaxBodyBytes)
		cfg = base
		if over.roots != nil {
			roots = over.roots.Clone()
		}
	}
	cfg.Token = token
	allows := false
	for _, r := range cfg.Rules {
		allows = allows || !r.Deny
	}
	cfg.Audit = func(e egress.Entry) {
		_ = commit(context.Background(), &store.Batch{Audit: []audit.Entry{{
			Time: time.Now(), Type: "egress." + e.Kind, Task: taskID, Session: sessionID, Data: e,
		}}})
	}
	p, err := egress.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("egress: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %v", err)
	}
	go p.Serve(ln)
	if roots == nil {
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
	}
	roots.AppendCertsFromPEM(p.CAPEM())
	proxyURL := &url.URL{Scheme: "http", Host: ln.Addr().String(), User: url.UserPassword("keepup", token)}
	tr := &http.Transport{
		Proxy:               http.ProxyURL(proxyURL),
		TLSClientConfig:     newTLSConfig(roots),
		TLSHandshakeTimeout: 30 * time.Second,
		MaxIdleConns:        4,
	}
	client := &http.Client{
		Transport: tr,
		Timeout:   2 * time.Minute,
		// Each redirect is a new request through the proxy, checked again; a few at most.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("stopped after %d redirects", len(via))
			}
			return nil
		},
	}
	return &sessionEgress{proxy: p, client: client, ln: ln, token: token, allows: allows}, nil
}

// network is how the session's sandbox reaches the proxy: the proxy serves the listener on
// the proxy address inside the sandbox itself (the sandbox has no other network), and
// commands carry the token and trust the proxy's CA.
func (e *sessionEgress) network() sandbox.Network {
	return sandbox.Network{
		Serve:      e.proxy.Serve,
		ProxyToken: e.token,
		ProxyCA:    e.proxy.CAPEM(),
	}
}

func (e *sessionEgress) Close() {
	e.client.CloseIdleConnections()
	e.proxy.Close()
	e.ln.Close()
}

func newTLSConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}
