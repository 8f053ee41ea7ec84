package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// socksDial opens a tunnel to target ("host:port") through the proxy's SOCKS5 side with
// golang.org/x/net/proxy, which sends names as names (socks5h) and IP literals as addresses.
func (e *env) socksDial(user, pass, target string) (net.Conn, error) {
	var auth *proxy.Auth
	if user != "" || pass != "" {
		auth = &proxy.Auth{User: user, Password: pass}
	}
	d, err := proxy.SOCKS5("tcp", e.addr, auth, &net.Dialer{Timeout: 15 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return d.(proxy.ContextDialer).DialContext(ctx, "tcp", target)
}

// socksGet makes one HTTPS GET over a SOCKS5 tunnel to host:443, trusting roots.
func (e *env) socksGet(host, path string, roots *x509.CertPool, header http.Header) (int, echo, error) {
	c, err := e.socksDial("keepup", testToken, host+":443")
	if err != nil {
		return 0, echo{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: roots})
	req, _ := http.NewRequest("GET", "https://"+host+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	if err := req.Write(tc); err != nil {
		return 0, echo{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), req)
	if err != nil {
		return 0, echo{}, err
	}
	defer resp.Body.Close()
	var ec echo
	if resp.StatusCode == 200 {
		json.NewDecoder(resp.Body).Decode(&ec)
	}
	return resp.StatusCode, ec, nil
}

// socksRaw writes raw SOCKS bytes and returns what the proxy answers: up to the reply to a
// request after a login (14 bytes), or less if the proxy closes the connection first.
func (e *env) socksRaw(msg []byte) []byte {
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	c.Write(msg)
	b := make([]byte, 14)
	n, err := io.ReadFull(c, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		e.t.Fatalf("% x: %v", msg, err)
	}
	return b[:n]
}

// socksHello is a greeting offering username/password and a correct RFC 1929 login.
func socksHello() []byte {
	b := []byte{5, 1, 2, 1, byte(len("keepup"))}
	b = append(b, "keepup"...)
	b = append(b, byte(len(testToken)))
	return append(b, testToken...)
}

func socksConnect(atyp byte, addr []byte, port uint16) []byte {
	b := append(socksHello(), 5, 1, 0, atyp)
	if atyp == 3 {
		b = append(b, byte(len(addr)))
	}
	b = append(b, addr...)
	return append(b, byte(port>>8), byte(port))
}

// the answers to socksHello: method chosen, login accepted.
var socksHelloOK = []byte{5, 2, 1, 0}

func TestSOCKS5(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{{Host: "api.test"}, {Host: "198.51.100.7"}}})
	up := x509.NewCertPool()
	up.AppendCertsFromPEM(e.upCA.pem)

	st, ec, err := e.socksGet("api.test", "/via-socks", up, nil)
	if err != nil || st != 200 || ec.Host != "api.test" || ec.Path != "/via-socks" {
		t.Fatalf("allowed host over SOCKS5: %d %v %+v", st, err, ec)
	}
	en, ok := e.lastEntry(func(en Entry) bool { return en.Proto == "socks5" && en.Host == "api.test" })
	if !ok || en.Kind != "connection" || en.Decision != "allow" || en.Mode != "tunnel" || en.Method != "CONNECT" ||
		en.Port != 443 || en.Rule == "" || en.Addr == "" || en.BytesUp == 0 || en.BytesDown == 0 {
		t.Fatalf("audit entry of the SOCKS5 tunnel: %+v", en)
	}

	refused := []struct {
		target, reason string
	}{
		{"other.test:443", ReasonHostNotAllowed},
		{"evilapi.test:443", ReasonHostNotAllowed},
		{"api.test:8443", ReasonPortNotAllowed},
		{"127.0.0.1:443", ReasonHostNotAllowed},          // sent as an IPv4 address
		{"[::1]:443", ReasonHostNotAllowed},              // sent as an IPv6 address
		{"198.51.100.1:443", ReasonHostNotAllowed},       // api.test's address: no rule names it
		{"[::ffff:127.0.0.1]:443", ReasonHostNotAllowed}, // an IPv4-mapped IPv6 address
	}
	for _, r := range refused {
		c, err := e.socksDial("keepup", testToken, r.target)
		if err == nil {
			c.Close()
			t.Errorf("SOCKS5 CONNECT %s was allowed", r.target)
			continue
		}
		host, _, _ := net.SplitHostPort(r.target)
		want, _ := canonicalHost(host)
		en, ok := e.lastEntry(func(en Entry) bool { return en.Proto == "socks5" && en.Host == want.String() })
		if !ok || en.Decision != "deny" || en.Reason != r.reason {
			t.Errorf("SOCKS5 CONNECT %s: audit entry %+v, want a denial for %q", r.target, en, r.reason)
		}
	}
	for _, n := range []string{"other.test", "evilapi.test"} {
		if e.wasResolved(n) {
			t.Errorf("the proxy resolved the denied name %s", n)
		}
	}

	// An IP rule allows the IP it names, whichever address type or spelling carries it.
	for _, target := range []string{"198.51.100.7:443", "[::ffff:198.51.100.7]:443"} {
		c, err := e.socksDial("keepup", testToken, target)
		if err != nil {
			t.Errorf("SOCKS5 CONNECT %s with an IP rule naming it: %v", target, err)
			continue
		}
		c.Close()
	}
	for name, want := range map[string]byte{"198.51.100.7": 0, "3325256711": 0, "127.1": 2, "0x7f000001": 2, "localhost": 2} {
		got := e.socksRaw(socksConnect(3, []byte(name), 443))
		if len(got) < 6 || string(got[:4]) != string(socksHelloOK) || got[4] != 5 || got[5] != want {
			t.Errorf("SOCKS5 CONNECT to the name %q: answer % x, want reply code %d", name, got, want)
		}
	}
}

func TestSOCKS5Authentication(t *testing.T) {
	e := newEnv(t, Config{Rules: []Rule{{Host: "api.test"}}})
	denials := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		n := 0
		for _, en := range e.entries {
			if en.Proto == "socks5" && en.Decision == "deny" && en.Reason == ReasonToken {
				n++
			}
		}
		return n
	}

	// No authentication offered: no acceptable method.
	if got := e.socksRaw([]byte{5, 1, 0}); string(got) != "\x05\xff" {
		t.Errorf("greeting without username/password: answer % x, want 05 ff", got)
	}
	// A wrong token, as username and as password.
	for _, up := range [][2]string{{"keepup", "wrong"}, {"wrong", ""}, {"", ""}} {
		if c, err := e.socksDial(up[0], up[1], "api.test:443"); err == nil {
			c.Close()
			t.Errorf("SOCKS5 login %q/%q was accepted", up[0], up[1])
		}
	}
	if n := denials(); n != 4 {
		t.Errorf("%d audited token refusals, want 4", n)
	}
	if e.wasResolved("api.test") {
		t.Error("the proxy resolved a name for a client without the token")
	}
	// The token as the username works too (as with Basic).
	c, err := e.socksDial(testToken, "x", "api.test:443")
	if err != nil {
		t.Fatalf("the token as the username: %v", err)
	}
	c.Close()

	// Commands other than CONNECT and unknown address types are refused.
	bind := append(socksHello(), 5, 2, 0, 3, 8)
	bind = append(bind, "api.test\x01\xbb"...)
	if got := e.socksRaw(bind); len(got) < 6 || got[5] != 7 {
		t.Errorf("BIND: answer % x, want reply code 7", got)
	}
	if en, ok := e.lastEntry(func(en Entry) bool { return en.Reason == ReasonSOCKSCommand }); !ok || en.Decision != "deny" || en.Host != "api.test" {
		t.Errorf("BIND audit entry: %+v", en)
	}
	if got := e.socksRaw(append(socksHello(), 5, 1, 0, 9, 1, 2)); len(got) < 6 || got[5] != 8 {
		t.Errorf("address type 9: answer % x, want reply code 8", got)
	}
	// An HTTP request on the same listener still needs its token.
	if st, _ := e.raw("CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n"); st != 407 {
		t.Errorf("HTTP CONNECT without a token: %d", st)
	}
}

// TestSOCKS5Terminated: a host whose credential keepup holds is TLS-terminated over SOCKS5 as
// over HTTP CONNECT: the session CA's certificate, the credential pinned, request rules applied.
func TestSOCKS5Terminated(t *testing.T) {
	e := newEnv(t, Config{
		Rules:       []Rule{{Host: "api.test", Methods: []string{"GET"}, PathPrefixes: []string{"/v1/"}}},
		Credentials: map[string]Credential{"api.test": {Header: "x-api-key", Value: "OWN"}},
	})
	roots := caPool(e)
	st, ec, err := e.socksGet("api.test", "/v1/x", roots, nil)
	if err != nil || st != 200 || ec.APIKey != "OWN" {
		t.Fatalf("terminated host over SOCKS5: %d %v %+v", st, err, ec)
	}
	if st, _, err := e.socksGet("api.test", "/v1/x", roots, http.Header{"X-Api-Key": {"FOREIGN"}}); err != nil || st != 403 {
		t.Fatalf("a foreign key over SOCKS5: %d %v", st, err)
	}
	if st, _, err := e.socksGet("api.test", "/admin", roots, nil); err != nil || st != 403 {
		t.Fatalf("a path no rule allows over SOCKS5: %d %v", st, err)
	}
	en, ok := e.lastEntry(func(en Entry) bool { return en.Kind == "request" && en.Path == "/admin" })
	if !ok || en.Decision != "deny" || en.Mode != "terminate" || en.Reason != ReasonRequestNotAllowed {
		t.Fatalf("audit entry of the refused request: %+v", en)
	}
	en, ok = e.lastEntry(func(en Entry) bool { return en.Kind == "connection" && en.Proto == "socks5" })
	if !ok || en.Mode != "terminate" || en.Decision != "allow" {
		t.Fatalf("audit entry of the SOCKS5 connection: %+v", en)
	}
}

// TestSOCKS5Curl: curl, a client that is not ours, through ALL_PROXY=socks5h://.
func TestSOCKS5Curl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	e := newEnv(t, Config{Rules: []Rule{{Host: "api.test"}}})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, e.upCA.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(url string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, "-sS", "--cacert", caFile, url)
		// curl reads ALL_PROXY when no scheme-specific proxy variable is set.
		cmd.Env = []string{"ALL_PROXY=socks5h://keepup:" + testToken + "@" + e.addr, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := run("https://api.test/curl")
	if code != 0 || !strings.Contains(out, `"Path":"/curl"`) {
		t.Fatalf("curl through socks5h to an allowed host: exit %d, %s", code, out)
	}
	if en, ok := e.lastEntry(func(en Entry) bool { return en.Proto == "socks5" && en.Host == "api.test" }); !ok || en.Decision != "allow" {
		t.Fatalf("audit entry of curl's tunnel: %+v", en)
	}
	if out, code := run("https://other.test/"); code == 0 {
		t.Fatalf("curl through socks5h to a denied host succeeded: %s", out)
	}
	if e.wasResolved("other.test") {
		t.Fatal("the proxy resolved a denied name")
	}
	if en, ok := e.lastEntry(func(en Entry) bool { return en.Proto == "socks5" && en.Host == "other.test" }); !ok || en.Decision != "deny" {
		t.Fatalf("audit entry of curl's denied tunnel: %+v", en)
	}
}
