package e2e

import (
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sandboxBulkBytes is the size of one transfer in BenchmarkSandboxProxyThroughput.
const sandboxBulkBytes = 100 << 20

// BenchmarkSandboxProxyThroughput: 100 MB downloaded by curl from inside a `keepup sandbox
// exec` sandbox, through the session's egress proxy and everything between (the proxy address
// inside, the session's channel to the proxy, the proxy, its upstream connection), against the
// same download made by curl directly on the host, alternating. curl's own transfer time is
// measured (%{time_total}), so the sandbox's start is not in it. https downloads over TLS
// through CONNECT (as any HTTPS client does); tunnel sends plain HTTP through CONNECT, and
// forward sends it to the proxy: both without TLS, the proxy's relaying alone. Reports MB/s
// from the median transfer times, and the ratio proxied/direct.
func BenchmarkSandboxProxyThroughput(b *testing.B) {
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skip("curl is not installed")
	}
	block := make([]byte, 1<<20)
	bulk := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(sandboxBulkBytes))
		for n := 0; n < sandboxBulkBytes; n += len(block) {
			if _, err := w.Write(block); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(bulk)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(bulk)
	defer tlsSrv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	_, tlsPort, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
	e := newEnv(b)
	// The HTTPS server's certificate, for curl on both sides (inside, in the first grant,
	// where commands start).
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}))
	e.write("g/ca.pem", ca)
	e.write(filepath.Join(e.home, "config.json"), `{"egress": {"allow": ["127.0.0.1:`+port+`", "127.0.0.1:`+tlsPort+`"]}}`)
	timing := func(out string) time.Duration {
		f := strings.Fields(out)
		if len(f) != 2 || f[0] != strconv.Itoa(sandboxBulkBytes) {
			b.Fatalf("curl: %q", out)
		}
		s, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			b.Fatalf("curl: %q", out)
		}
		return time.Duration(s * float64(time.Second))
	}
	const w = `%{size_download} %{time_total}\n`
	direct := func(url string) time.Duration {
		out, err := exec.Command("curl", "-sS", "--noproxy", "*", "--cacert", filepath.Join(e.dir, "g/ca.pem"), "-o", "/dev/null", "-w", w, url).Output()
		if err != nil {
			b.Fatalf("curl direct: %v", err)
		}
		return timing(string(out))
	}
	sandboxed := func(url string, tunnel bool) time.Duration {
		flag := "--no-proxytunnel"
		if tunnel {
			flag = "--proxytunnel"
		}
		r := e.run("", "sandbox", "exec", "--grant", filepath.Join(e.dir, "g"), "--timeout", "120", "--",
			"curl", "-sS", flag, "--cacert", "ca.pem", "-o", "/dev/null", "-w", w, url)
		if r.code != 0 {
			b.Fatalf("curl in the sandbox: exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return timing(r.stdout)
	}
	const rounds = 5
	for _, tc := range []struct {
		name   string
		url    string
		tunnel bool
	}{
		{"https", tlsSrv.URL + "/bulk", true}, // CONNECT, as every HTTPS client does
		{"tunnel", srv.URL + "/bulk", true},   // plain HTTP through CONNECT: the relaying alone
		{"forward", srv.URL + "/bulk", false}, // plain HTTP sent to the proxy
	} {
		b.Run(tc.name, func(b *testing.B) {
			direct(tc.url)
			sandboxed(tc.url, tc.tunnel)
			var dts, pts []time.Duration
			for b.Loop() {
				for range rounds {
					dts = append(dts, direct(tc.url))
					pts = append(pts, sandboxed(tc.url, tc.tunnel))
				}
			}
			slices.Sort(dts)
			slices.Sort(pts)
			dt, pt := dts[len(dts)/2], pts[len(pts)/2]
			mb := float64(sandboxBulkBytes) / (1 << 20)
			b.ReportMetric(mb/dt.Seconds(), "direct-MB/s")
			b.ReportMetric(mb/pt.Seconds(), "sandbox-MB/s")
			b.ReportMetric(dt.Seconds()/pt.Seconds(), "ratio")
			b.ReportMetric(0, "ns/op")
		})
	}
}
