package e2e

import (
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
// measured (%{time_total}), so the sandbox's start is not in it. tunnel uses CONNECT (as any
// HTTPS client does); forward sends the request to the proxy (plain HTTP). Reports MB/s from
// the median transfer times, and the ratio proxied/direct.
func BenchmarkSandboxProxyThroughput(b *testing.B) {
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skip("curl is not installed")
	}
	block := make([]byte, 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(sandboxBulkBytes))
		for n := 0; n < sandboxBulkBytes; n += len(block) {
			if _, err := w.Write(block); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	e := newEnv(b)
	e.write("g/x", "")
	e.write(filepath.Join(e.home, "config.json"), `{"egress": {"allow": ["127.0.0.1:`+port+`"]}}`)
	url := srv.URL + "/bulk"
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
	direct := func() time.Duration {
		out, err := exec.Command("curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", w, url).Output()
		if err != nil {
			b.Fatalf("curl direct: %v", err)
		}
		return timing(string(out))
	}
	sandboxed := func(tunnel bool) time.Duration {
		flag := "--no-proxytunnel"
		if tunnel {
			flag = "--proxytunnel"
		}
		r := e.run("", "sandbox", "exec", "--grant", filepath.Join(e.dir, "g"), "--timeout", "120", "--",
			"curl", "-sS", flag, "-o", "/dev/null", "-w", w, url)
		if r.code != 0 {
			b.Fatalf("curl in the sandbox: exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return timing(r.stdout)
	}
	const rounds = 5
	for _, tc := range []struct {
		name   string
		tunnel bool
	}{{"tunnel", true}, {"forward", false}} {
		b.Run(tc.name, func(b *testing.B) {
			direct()
			sandboxed(tc.tunnel)
			var dts, pts []time.Duration
			for b.Loop() {
				for range rounds {
					dts = append(dts, direct())
					pts = append(pts, sandboxed(tc.tunnel))
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
