package bwrap_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/egress"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
)

const proxyToken = "test-token-0123456789"

// netFixture is an egress proxy on the host that allows http://allowed.test/ and
// https://secure.test/ (terminated: GET only), both served by loopback test servers, and
// refuses everything else.
type netFixture struct {
	proxy    *egress.Proxy
	proxyLn  net.Listener
	direct   string // the plain server's loopback address, for direct connects
	upstream []*httptest.Server
}

func newNetFixture(t *testing.T) *netFixture {
	t.Helper()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Host+"\n")
	}))
	cert, pool := selfSigned(t, "secure.test")
	secure := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure hello\n")
	}))
	secure.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	secure.StartTLS()
	f := &netFixture{direct: plain.Listener.Addr().String(), upstream: []*httptest.Server{plain, secure}}
	names := map[string][]netip.Addr{
		"allowed.test": {netip.MustParseAddr("198.51.100.1")},
		"secure.test":  {netip.MustParseAddr("198.51.100.2")},
		"denied.test":  {netip.MustParseAddr("198.51.100.3")},
	}
	p, err := egress.New(egress.Config{
		Rules: []egress.Rule{
			{Host: "allowed.test", Ports: []int{80}},
			{Host: "secure.test", Ports: []int{443}, Methods: []string{"GET"}},
		},
		Token:           proxyToken,
		UpstreamRootCAs: pool,
		Resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
			if a, ok := names[host]; ok {
				return a, nil
			}
			return nil, errors.New("no such host")
		},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			target := plain.Listener.Addr().String()
			if strings.HasSuffix(addr, ":443") {
				target = secure.Listener.Addr().String()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, target)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.proxy = p
	if f.proxyLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go p.Serve(f.proxyLn)
	t.Cleanup(f.close)
	return f
}

func (f *netFixture) close() {
	f.proxy.Close()
	f.proxyLn.Close()
	for _, s := range f.upstream {
		s.Close()
	}
}

// network hands the sandbox's proxy listener to the fixture's proxy, as keepup does.
func (f *netFixture) network() sandbox.Network {
	return sandbox.Network{
		Serve:      f.proxy.Serve,
		ProxyToken: proxyToken,
		ProxyCA:    f.proxy.CAPEM(),
		Env:        map[string]string{"KEEPUP_TEST_NET": "1"},
	}
}

func selfSigned(t testing.TB, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, pool
}

// TestEgressBridge: commands reach the session's proxy at its address inside, with the token
// from their environment, and nothing else: allowed hosts answer, others get the proxy's 403,
// no token is a 407, direct connections to the host and DNS fail; the proxy's CA is trusted.
func TestEgressBridge(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	t.Parallel()
	f := newNetFixture(t)
	tb := setup(t)
	tb.spec.Network = f.network()
	s := tb.start(t)
	curl := func(args ...string) runResult {
		return run(t, s, sandbox.Command{Args: append([]string{"curl", "-sS", "--max-time", "20"}, args...), Timeout: 60 * time.Second})
	}
	if r := curl("http://allowed.test/"); r.ExitCode != 0 || r.stdout != "hello from allowed.test\n" {
		t.Errorf("allowed host: exit %d, %q %s", r.ExitCode, r.stdout, r.stderr)
	}
	if r := curl("-o", "/dev/null", "-w", "%{http_code}", "http://denied.test/"); r.stdout != "403" {
		t.Errorf("denied host: exit %d, status %q %s", r.ExitCode, r.stdout, r.stderr)
	}
	// The proxy's CA is in the trust store curl uses by default (no --cacert).
	if r := curl("https://secure.test/"); r.ExitCode != 0 || r.stdout != "secure hello\n" {
		t.Errorf("https through the terminating proxy: exit %d, %q %s", r.ExitCode, r.stdout, r.stderr)
	}
	if r := curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "https://secure.test/"); r.stdout != "403" {
		t.Errorf("POST to a GET-only host: exit %d, status %q %s", r.ExitCode, r.stdout, r.stderr)
	}
	// Without the token.
	if r := curl("-o", "/dev/null", "-w", "%{http_code}", "-x", "http://"+bwrap.ProxyAddr, "http://allowed.test/"); r.stdout != "407" {
		t.Errorf("no token: exit %d, status %q %s", r.ExitCode, r.stdout, r.stderr)
	}
	// Directly: the host's loopback servers are not reachable.
	for _, addr := range []string{f.direct, f.proxyLn.Addr().String()} {
		if r := curl("--noproxy", "*", "--max-time", "5", "http://"+addr+"/"); r.ExitCode == 0 {
			t.Errorf("direct connection to the host's %s succeeded: %q", addr, r.stdout)
		}
	}
	// The proxy address is listened on by the backend (this process) alone: no process
	// of the sandbox holds the listener, so nothing inside can close it and take the
	// address over. (Looked up from the host: inside, the helper's descriptors are not
	// readable.)
	ino := strings.TrimSpace(mustSh(t, s, `awk '$2 == "0100007F:0C38" && $4 == "0A" {print $10}' /proc/net/tcp`))
	if ino == "" {
		t.Errorf("nothing listens on %s inside", bwrap.ProxyAddr)
	} else if holders := socketHolders(t, ino); len(holders) != 1 || holders[0] != os.Getpid() {
		t.Errorf("the proxy listener (socket:[%s]) is held by processes %v, want only the backend %d", ino, holders, os.Getpid())
	}
	// No DNS.
	if r := sh(t, s, "getent hosts allowed.test || getent hosts example.com || echo NODNS"); strings.TrimSpace(r.stdout) != "NODNS" {
		t.Errorf("a name resolved inside: %q %s", r.stdout, r.stderr)
	}
	// The environment.
	env := "\n" + mustSh(t, s, "env")
	want := "http://keepup:" + proxyToken + "@" + bwrap.ProxyAddr
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		if !strings.Contains(env, "\n"+k+"="+want+"\n") {
			t.Errorf("%s is not %s in:\n%s", k, want, env)
		}
	}
	for _, kv := range []string{"NO_PROXY=", "no_proxy=", "SSL_CERT_FILE=" + bwrap.CABundle, "GIT_SSL_CAINFO=" + bwrap.CABundle} {
		if !strings.Contains(env, "\n"+kv+"\n") {
			t.Errorf("%s missing from:\n%s", kv, env)
		}
	}
	if strings.Contains(env, "KEEPUP_TEST_NET") || !strings.Contains(env, "\nJAVA_TOOL_OPTIONS=-Dhttp.proxyHost=127.0.0.1 ") {
		t.Errorf("a KEEPUP_ variable from Network.Env reached the command")
	}
	if got := mustSh(t, s, "cat "+bwrap.CABundle); !strings.HasSuffix(got, string(f.proxy.CAPEM())) {
		t.Errorf("%s does not end with the proxy's CA", bwrap.CABundle)
	}
	if p, _ := pem.Decode(f.proxy.CAPEM()); p == nil {
		t.Errorf("CAPEM is not PEM")
	}
	// Where the host's bundle is a plain file at a usual path, that path shows the session's
	// bundle too; neither can be written.
	const system = "/etc/ssl/certs/ca-certificates.crt"
	if fi, err := os.Lstat(system); err == nil && fi.Mode().IsRegular() {
		script := "cmp " + bwrap.CABundle + " " + system + " && ! (: >>" + system + ") 2>/dev/null && ! (: >>" + bwrap.CABundle + ") 2>/dev/null && echo SAME"
		if got := mustSh(t, s, script); got != "SAME\n" {
			t.Errorf("%s inside is not the session's bundle, read-only: %q", system, got)
		}
	}
}

// TestEgressBridgeWithoutProxy: a session without a proxy has no listener at the proxy
// address and no proxy settings.
func TestEgressBridgeWithoutProxy(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := tb.start(t)
	out := mustSh(t, s, "env; bash -c 'exec 3<>/dev/tcp/127.0.0.1/3128' 2>/dev/null && echo LISTENING || echo CLOSED")
	if strings.Contains(out, "PROXY") || strings.Contains(out, "LISTENING") {
		t.Errorf("without a proxy:\n%s", out)
	}
}

// TestEgressBridgeProxyGone: when the proxy stops serving (it was closed), a client inside
// fails at once (connection refused) rather than hanging in the listener's backlog.
func TestEgressBridgeProxyGone(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	t.Parallel()
	tb := setup(t)
	tb.spec.Network = sandbox.Network{Serve: func(net.Listener) error { return errors.New("proxy closed") }, ProxyToken: proxyToken}
	s := tb.start(t)
	r := run(t, s, sandbox.Command{Args: []string{"curl", "-sS", "--max-time", "20", "-o", "/dev/null", "http://allowed.test/"}})
	if r.ExitCode != 7 { // CURLE_COULDNT_CONNECT; a hang would be 28, a timeout
		t.Errorf("curl: exit %d, want 7 (could not connect): %s", r.ExitCode, r.stderr)
	}
}

// TestEgressBridgeLeaksNothing: after Close, none of the bridge's goroutines is left and every
// descriptor the session opened is closed, also with connections still open through it.
func TestEgressBridgeLeaksNothing(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	before := openFDs(t)
	f := newNetFixture(t)
	for range 2 {
		tb := setup(t)
		tb.spec.Network = f.network()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := tb.backend.Start(ctx, tb.spec)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if r := run(t, s, sandbox.Command{Args: []string{"curl", "-sS", "http://allowed.test/"}}); r.ExitCode != 0 {
				t.Fatalf("curl: exit %d %s", r.ExitCode, r.stderr)
			}
		}
		// Connections left open: a CONNECT tunnel held by a background process.
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _ = s.Run(rctx, sandbox.Command{Args: []string{"bash", "-c",
			"exec 3<>/dev/tcp/127.0.0.1/3128; printf 'GET http://allowed.test/ HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n' >&3; sleep 30"}})
		rcancel()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s.Run(ctx, sandbox.Command{Args: []string{"bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3128; sleep 30"}})
		}()
		time.Sleep(300 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	f.close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stacks := goroutines()
		after := openFDs(t)
		leaked := strings.Contains(stacks, "bwrap.(*Session)")
		if !leaked && after <= before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Close: %d descriptors open, %d before; goroutines:\n%s", after, before, stacks)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// socketHolders lists the host processes with a descriptor on socket inode ino.
func socketHolders(t *testing.T, ino string) []int {
	t.Helper()
	want := "socket:[" + ino + "]"
	var pids []int
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir("/proc/" + e.Name() + "/fd")
		for _, fd := range fds {
			if l, _ := os.Readlink("/proc/" + e.Name() + "/fd/" + fd.Name()); l == want {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
