package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestSandboxEgressThroughTheProxy: inside `keepup sandbox exec`, curl and Python reach a
// host the configuration allows through the session's egress proxy (the only way out), and
// are refused by the proxy for another port, which is never reached; a direct connection
// fails, and the proxy needs the session's token.
func TestSandboxEgressThroughTheProxy(t *testing.T) {
	t.Parallel()
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "allowed-page")
	}))
	defer allowed.Close()
	var deniedHits atomic.Int32
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deniedHits.Add(1)
		fmt.Fprint(w, "denied-page")
	}))
	defer denied.Close()
	_, allowedPort, _ := net.SplitHostPort(allowed.Listener.Addr().String())

	e := newEnv(t)
	e.write("g/x", "")
	e.write(filepath.Join(e.home, "config.json"), `{"egress": {"allow": ["127.0.0.1:`+allowedPort+`"]}}`)
	exec1 := func(script string, args ...string) result {
		t.Helper()
		return e.run("", append([]string{"sandbox", "exec", "--grant", filepath.Join(e.dir, "g"), "--timeout", "60", "--", "sh", "-c", script, "sh"}, args...)...)
	}

	python := `import sys, urllib.request, urllib.error
for u in sys.argv[1:]:
    try:
        print(u, urllib.request.urlopen(u, timeout=20).read().decode())
    except urllib.error.HTTPError as e:
        print(u, "HTTP", e.code)
    except Exception as e:
        print(u, "ERROR", type(e).__name__)
`
	r := exec1(`python3 -c "$1" "$2" "$3"`, python, allowed.URL+"/", denied.URL+"/")
	if r.code != 0 || !strings.Contains(r.stdout, allowed.URL+"/ allowed-page") || !strings.Contains(r.stdout, denied.URL+"/ HTTP 403") {
		t.Errorf("python: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	if _, err := exec.LookPath("curl"); err == nil {
		r := exec1(`curl -sS --max-time 20 "$1"; echo; curl -s --max-time 20 -o /dev/null -w '%{http_code}\n' "$2"
curl -s --max-time 20 -o /dev/null -w '%{http_code}\n' -x http://127.0.0.1:3128 "$1"
curl -sS --max-time 5 --noproxy '*' "$1" && echo DIRECT || echo NODIRECT`, allowed.URL+"/", denied.URL+"/")
		if want := "allowed-page\n403\n407\nNODIRECT\n"; r.stdout != want {
			t.Errorf("curl: exit %d, stdout %q, want %q\n%s", r.code, r.stdout, want, r.stderr)
		}
	}
	if n := deniedHits.Load(); n != 0 {
		t.Errorf("the denied server was reached %d times", n)
	}
	// What the proxy let through and what it refused is in the audit log, though no task ran.
	a := e.run("", "audit", "export")
	if a.code != 0 || !strings.Contains(a.stdout, `"type":"egress.`) || !strings.Contains(a.stdout, "127.0.0.1:"+allowedPort) {
		t.Errorf("audit export after sandbox exec: exit %d, no egress entries for the allowed host:\n%.2000s", a.code, a.stdout)
	}
	_, deniedPort, _ := net.SplitHostPort(denied.Listener.Addr().String())
	if !strings.Contains(a.stdout, `"port":`+deniedPort) || !strings.Contains(a.stdout, `"decision":"deny"`) {
		t.Errorf("no audit entry for the refused host:\n%.2000s", a.stdout)
	}
	if v := e.run("", "audit", "verify"); v.code != 0 {
		t.Errorf("audit verify: exit %d: %s%s", v.code, v.stdout, v.stderr)
	}
}

// TestSandboxEgressLimitsFromConfig: the configuration's egress caps reach the session's proxy:
// a request body over max_body_bytes is refused (413) before the host sees it, one under it
// goes through.
func TestSandboxEgressLimitsFromConfig(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	var bodies atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies.Add(1)
		fmt.Fprintf(w, "got %d", len(b))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	e := newEnv(t)
	e.write("g/x", "")
	e.write(filepath.Join(e.home, "config.json"), `{"egress": {"allow": ["127.0.0.1:`+port+`"], "max_body_bytes": 100, "max_connections": 4}}`)
	r := e.run("", "sandbox", "exec", "--grant", filepath.Join(e.dir, "g"), "--timeout", "60", "--", "sh", "-c",
		`curl -s --max-time 20 -d "$(head -c 50 /dev/zero | tr '\0' a)" "$1"; echo; curl -s --max-time 20 -o /dev/null -w '%{http_code}\n' -d "$(head -c 500 /dev/zero | tr '\0' a)" "$1"`,
		"sh", srv.URL+"/")
	if want := "got 50\n413\n"; r.stdout != want {
		t.Errorf("exit %d, stdout %q, want %q\n%s", r.code, r.stdout, want, r.stderr)
	}
	if n := bodies.Load(); n != 1 {
		t.Errorf("the host received %d requests, want only the one under the cap", n)
	}
}
