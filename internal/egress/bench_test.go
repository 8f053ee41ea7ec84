package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func timedGet(b *testing.B, c *http.Client, u string) time.Duration {
	start := time.Now()
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
	return time.Since(start)
}

// benchClients starts a proxy whose rules allow api.test (terminating its TLS, with a pinned
// credential, when terminate) and returns it with a client through it and one straight to
// the upstream server.
func benchClients(b *testing.B, terminate bool) (e *env, proxied, direct *http.Client) {
	cfg := Config{Rules: []Rule{{Host: "api.test"}}}
	if terminate {
		cfg.Credentials = map[string]Credential{"api.test": {Header: "x-api-key", Value: "K"}}
	}
	e = newEnv(b, cfg)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.upCA.pem)
	direct = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, e.tlsAddr)
		},
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	return e, e.client(testToken), direct
}

// latencySamples is how many requests of each kind one benchmark op makes: scripts/bench.sh
// runs -benchtime 1x, and a median of one request is noise.
const latencySamples = 200

// BenchmarkProxyLatency: a small HTTPS GET on loopback, through the proxy (tunnelled, and
// TLS-terminated with a credential injected) against the same GET made directly, alternating.
// warm reuses connections; cold opens a new connection (and TLS session) per request;
// cold-upstream is cold and, before each request, also drops the proxy's idle upstream
// connections, so that the proxy dials (and resumes a TLS session with) the upstream each time.
// Reports medians over latencySamples requests per op.
func BenchmarkProxyLatency(b *testing.B) {
	for _, name := range []string{"warm/tunnel", "warm/terminate", "cold/tunnel", "cold/terminate", "cold-upstream/terminate"} {
		mode, path, _ := strings.Cut(name, "/")
		b.Run(name, func(b *testing.B) {
			e, proxied, direct := benchClients(b, path == "terminate")
			if mode != "warm" {
				direct.Transport.(*http.Transport).DisableKeepAlives = true
				proxied.Transport.(*http.Transport).DisableKeepAlives = true
			}
			u := "https://api.test/small"
			timedGet(b, direct, u)
			timedGet(b, proxied, u)
			var dd, pd []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N*latencySamples; i++ {
				dd = append(dd, timedGet(b, direct, u))
				if mode == "cold-upstream" {
					e.p.tr.CloseIdleConnections()
				}
				pd = append(pd, timedGet(b, proxied, u))
			}
			b.StopTimer()
			md, mp := median(dd), median(pd)
			b.ReportMetric(float64(md.Microseconds()), "direct-median-µs")
			b.ReportMetric(float64(mp.Microseconds()), "proxy-median-µs")
			b.ReportMetric(float64((mp - md).Microseconds()), "added-median-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}

const bulkBytes = 100 << 20

// bulkChunk is what the bulk servers write at a time.
var bulkChunk = []byte(strings.Repeat("x", 1<<20))

// writeBulk writes bulkBytes to w.
func writeBulk(w io.Writer) {
	for i := 0; i < bulkBytes/len(bulkChunk); i++ {
		if _, err := w.Write(bulkChunk); err != nil {
			return
		}
	}
}

// bulkServer writes bulkBytes to every connection and closes it.
func bulkServer(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				writeBulk(c)
			}()
		}
	}()
	return l.Addr().String()
}

// bulkRounds is how many transfers of each kind one benchmark op makes.
const bulkRounds = 5

// readBulk reads r to its end in large reads, as a downloading client makes (curl, browsers):
// io.Copy to io.Discard would read 8 KiB at a time, and a client that slow hides what the
// proxy costs.
func readBulk(b *testing.B, r io.Reader) {
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r}, buf)
	if err != nil || n != bulkBytes {
		b.Fatalf("read %d bytes: %v", n, err)
	}
}

// pairedThroughput times direct and proxied transfers, alternating (after one of each to warm
// up), bulkRounds of each per op, and reports MB/s of both from their median times, and their
// ratio.
func pairedThroughput(b *testing.B, direct, proxied func() time.Duration) {
	direct()
	proxied()
	var dts, pts []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N*bulkRounds; i++ {
		dts = append(dts, direct())
		pts = append(pts, proxied())
	}
	b.StopTimer()
	dt, pt := median(dts), median(pts)
	mb := float64(bulkBytes) / (1 << 20)
	b.ReportMetric(mb/dt.Seconds(), "direct-MB/s")
	b.ReportMetric(mb/pt.Seconds(), "proxy-MB/s")
	b.ReportMetric(dt.Seconds()/pt.Seconds(), "ratio")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkProxyThroughput: 100 MB through the proxy against the same transfer made directly,
// on loopback, alternating (bulkRounds of each per op), each on a new connection:
//   - tcp: raw bytes through a CONNECT tunnel, no TLS: the proxy's relaying alone, the worst
//     case (the client and the server do almost nothing per byte);
//   - https/tunnel: an HTTPS download through a CONNECT tunnel, as nearly all egress is;
//   - https/terminate: an HTTPS download from a host whose requests the proxy checks, so that
//     it decrypts and re-encrypts every byte.
func BenchmarkProxyThroughput(b *testing.B) {
	b.Run("tcp", benchTCPThroughput)
	for _, mode := range []string{"tunnel", "terminate"} {
		b.Run("https/"+mode, func(b *testing.B) {
			_, proxied, direct := benchClients(b, mode == "terminate")
			proxied.Transport.(*http.Transport).DisableKeepAlives = true
			direct.Transport.(*http.Transport).DisableKeepAlives = true
			transfer := func(c *http.Client) time.Duration {
				start := time.Now()
				resp, err := c.Get("https://api.test/bulk")
				if err != nil {
					b.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				readBulk(b, resp.Body)
				return time.Since(start)
			}
			pairedThroughput(b, func() time.Duration { return transfer(direct) }, func() time.Duration { return transfer(proxied) })
		})
	}
}

func benchTCPThroughput(b *testing.B) {
	srv := bulkServer(b)
	p, err := New(Config{
		Token: testToken,
		Rules: []Rule{{Host: "bulk.test"}},
		Resolve: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("198.51.100.9")}, nil
		},
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, srv)
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(l)
	defer p.Close()

	transfer := func(proxied bool) time.Duration {
		start := time.Now()
		var c net.Conn
		var r io.Reader
		if proxied {
			c, err = net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			io.WriteString(c, connectHead("bulk.test:443"))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("CONNECT: %v %v", resp, err)
			}
			r = io.MultiReader(io.LimitReader(br, int64(br.Buffered())), c)
		} else {
			c, err = net.Dial("tcp", srv)
			if err != nil {
				b.Fatal(err)
			}
			r = c
		}
		defer c.Close()
		readBulk(b, r)
		return time.Since(start)
	}
	pairedThroughput(b, func() time.Duration { return transfer(false) }, func() time.Duration { return transfer(true) })
}
