package eval

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// FakeAddr is the public-looking address every case host resolves to. The egress proxy checks
// it like any public address; Dial then routes it to the recorder on loopback, so nothing ever
// leaves the machine.
var FakeAddr = netip.MustParseAddr("203.0.113.80")

// Request is one request a host received.
type Request struct {
	Scheme string      `json:"scheme"`
	Host   string      `json:"host"`
	Method string      `json:"method"`
	URL    string      `json:"url"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// Recorder plays every host of a case: an HTTP and an HTTPS server on loopback that record
// each request (URL, headers, body) and serve the case's pages.
type Recorder struct {
	pages map[string]string // scheme://host/path?query -> body

	mu   sync.Mutex
	reqs []Request

	plain, secure net.Listener
	srv           *http.Server
	tlsSrv        *http.Server
	ca            *certAuthority
}

// NewRecorder starts a recorder serving pages (URL -> body). Certificates for any name are
// issued by ca.
func newRecorder(pages map[string]string, ca *certAuthority) (*Recorder, error) {
	r := &Recorder{pages: map[string]string{}, ca: ca}
	for u, b := range pages {
		r.pages[strings.TrimSuffix(u, "/")] = b
	}
	var err error
	if r.plain, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if r.secure, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		r.plain.Close()
		return nil, err
	}
	r.srv = &http.Server{Handler: r.handler("http"), ReadHeaderTimeout: 10 * time.Second}
	r.tlsSrv = &http.Server{Handler: r.handler("https"), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{GetCertificate: ca.certFor, MinVersion: tls.VersionTLS12}}
	go r.srv.Serve(r.plain)
	go r.tlsSrv.ServeTLS(r.secure, "", "")
	return r, nil
}

func (r *Recorder) handler(scheme string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 64<<20))
		host := strings.ToLower(req.Host)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, Request{Scheme: scheme, Host: host, Method: req.Method, URL: req.URL.RequestURI(), Header: req.Header.Clone(), Body: body})
		r.mu.Unlock()
		key := strings.TrimSuffix(scheme+"://"+host+req.URL.RequestURI(), "/")
		page, ok := r.pages[key]
		if !ok {
			page, ok = r.pages[strings.TrimSuffix(scheme+"://"+host+req.URL.Path, "/")]
		}
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ok": true}`)
			return
		}
		ct := "text/plain; charset=utf-8"
		if t := strings.TrimSpace(page); strings.HasPrefix(t, "<") {
			ct = "text/html; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		io.WriteString(w, page)
	})
}

// Requests returns what the hosts received so far.
func (r *Recorder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Resolve resolves every name to FakeAddr (the proxy asks only for names a rule allows).
func (r *Recorder) Resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	return []netip.Addr{FakeAddr}, nil
}

// Dial connects the proxy to the recorder: port 443 to the HTTPS server, any other port to the
// HTTP one. Any address but FakeAddr is refused.
func (r *Recorder) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err != nil || ip.Unmap() != FakeAddr {
		return nil, fmt.Errorf("eval recorder: refusing to dial %s: only the recorder is reachable", addr)
	}
	to := r.plain.Addr().String()
	if port == "443" {
		to = r.secure.Addr().String()
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", to)
}

// Close stops both servers.
func (r *Recorder) Close() {
	r.srv.Close()
	r.tlsSrv.Close()
}

// certAuthority issues recorder certificates for any name.
type certAuthority struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	pool  *x509.CertPool
	mu    sync.Mutex
	cache map[string]*tls.Certificate
}

func newCertAuthority() (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "keepup eval recorder CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &certAuthority{cert: cert, key: key, pool: pool, cache: map[string]*tls.Certificate{}}, nil
}

func (ca *certAuthority) certFor(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(hello.ServerName)
	if name == "" {
		name = "recorder.invalid"
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c := ca.cache[name]; c != nil {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.DNSNames, tmpl.IPAddresses = nil, []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}
	ca.cache[name] = c
	return c, nil
}
