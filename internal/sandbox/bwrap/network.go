package bwrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/inside"
)

// The egress proxy inside the sandbox (when Spec.Network reaches one): the helper listens on
// ProxyAddr in the sandbox's network namespace and bridges every connection to the session's
// proxy on the host; commands find it in their environment. There is no resolver inside: the
// proxy resolves names.
const (
	ProxyAddr = "127.0.0.1:3128"
	// CABundle is the trust store commands are pointed at: the host's system bundle and the
	// proxy's CA. Where the host's bundle is a plain file at a usual path, it is shown there too.
	// Java reads the same certificates from JavaTrustStore.
	CABundle = "/.keepup/ca-bundle.pem"
)

// proxyDialTimeout bounds one Spec.Network.Dial.
const proxyDialTimeout = 30 * time.Second

// systemBundles are the usual places of the system's CA bundle, the first found is used.
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Alpine, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // RHEL
	"/etc/ssl/cert.pem",                                 // Alpine, macOS-like
}

// proxyEnv is what commands see of the proxy: the variables curl, wget, Python, Go, git, pip
// and npm read, both cases, and Java's system properties, which also name JavaTrustStore.
// NO_PROXY is empty: even loopback goes through the proxy, which refuses it unless a rule
// allows it.
func proxyEnv(n *sandbox.Network) map[string]string {
	u := url.URL{Scheme: "http", Host: ProxyAddr, User: url.UserPassword("keepup", n.ProxyToken)}
	if n.ProxyToken == "" {
		u.User = nil
	}
	p := u.String()
	host, port, _ := net.SplitHostPort(ProxyAddr)
	env := map[string]string{}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"} {
		env[k] = p
		env[strings.ToLower(k)] = p
	}
	env["NO_PROXY"], env["no_proxy"] = "", ""
	env["npm_config_proxy"], env["npm_config_https_proxy"] = p, p
	for _, k := range []string{"SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
		"GIT_SSL_CAINFO", "PIP_CERT", "npm_config_cafile"} {
		env[k] = CABundle
	}
	java := []string{"-Dhttp.proxyHost=" + host, "-Dhttp.proxyPort=" + port, "-Dhttps.proxyHost=" + host, "-Dhttps.proxyPort=" + port}
	if n.ProxyToken != "" {
		// Read by Maven, Gradle and many HTTP clients (the JDK itself needs an Authenticator);
		// Basic must not be disabled for the CONNECT tunnel.
		java = append(java, "-Dhttp.proxyUser=keepup", "-Dhttp.proxyPassword="+n.ProxyToken,
			"-Dhttps.proxyUser=keepup", "-Dhttps.proxyPassword="+n.ProxyToken,
			"-Djdk.http.auth.tunneling.disabledSchemes=", "-Djdk.http.auth.proxying.disabledSchemes=")
	}
	java = append(java, javaTrustOptions...)
	env["JAVA_TOOL_OPTIONS"] = strings.Join(java, " ")
	return env
}

// writeCABundle writes the session's trust stores into the state folder: the PEM bundle,
// whose path it returns with the system bundle it extends ("" when none was found, or it is
// not a plain file), and the same certificates for Java (javaTrustStoreFile).
func writeCABundle(stateDir string, ca []byte) (bundle, system string, err error) {
	var b []byte
	for _, p := range systemBundles {
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		b = data
		if fi.Mode().IsRegular() {
			system = p
		}
		break
	}
	if err := writeJavaTrustStore(filepath.Join(stateDir, javaTrustStoreFile), b, ca); err != nil {
		return "", "", err
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	b = append(b, ca...)
	bundle = filepath.Join(stateDir, "ca-bundle.pem")
	if err := os.WriteFile(bundle, b, 0o444); err != nil {
		return "", "", err
	}
	return bundle, system, nil
}

// dialProxy answers the helper's request for a connection to the egress proxy.
func (s *Session) dialProxy(id uint64) {
	defer s.bg.Done()
	f, err := s.proxyConn()
	if err != nil {
		_ = s.conn.Send(inside.Request{ID: id, Conn: true, Err: err.Error()})
		return
	}
	_ = s.conn.Send(inside.Request{ID: id, Conn: true, FDs: 1}, f)
	f.Close()
}

// proxyConn dials the proxy and returns a socket to hand in: the connection's own descriptor
// when it has one, else one end of a socketpair whose other end is copied to the connection
// until either side ends or the session closes.
func (s *Session) proxyConn() (*os.File, error) {
	ctx, cancel := context.WithTimeout(s.ctx, proxyDialTimeout)
	defer cancel()
	n := &s.spec.Network
	var c net.Conn
	var err error
	if n.Dial != nil {
		c, err = n.Dial(ctx)
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, "unix", n.ProxySocket)
	}
	if err != nil {
		return nil, fmt.Errorf("dial the egress proxy: %v", err)
	}
	if fc, ok := c.(interface{ File() (*os.File, error) }); ok {
		f, err := fc.File()
		c.Close()
		return f, err
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		c.Close()
		return nil, err
	}
	theirs := os.NewFile(uintptr(pair[1]), "proxy-conn")
	ours := os.NewFile(uintptr(pair[0]), "proxy-conn")
	oc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		c.Close()
		theirs.Close()
		return nil, err
	}
	if !s.track(c, oc) {
		c.Close()
		oc.Close()
		theirs.Close()
		return nil, errClosed
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.untrack(c, oc)
		done := make(chan struct{}, 2)
		cp := func(dst, src net.Conn) {
			_, err := io.Copy(dst, src)
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
				_ = cw.CloseWrite()
			} else {
				c.Close()
				oc.Close()
			}
			done <- struct{}{}
		}
		go cp(c, oc)
		go cp(oc, c)
		<-done
		<-done
		c.Close()
		oc.Close()
	}()
	return theirs, nil
}

// track records a copied connection pair, closed by teardown; false once the session closed.
func (s *Session) track(cs ...net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ctx.Err() != nil {
		return false
	}
	for _, c := range cs {
		s.piped[c] = struct{}{}
	}
	return true
}

func (s *Session) untrack(cs ...net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		delete(s.piped, c)
	}
}

// stopNetwork ends the bridge's host side: pending dials are cancelled, copied connections
// closed, and its goroutines waited for.
func (s *Session) stopNetwork() {
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Lock()
	for c := range s.piped {
		c.Close()
	}
	s.mu.Unlock()
	s.bg.Wait()
}

var errNoProxy = errors.New("bwrap: Spec.Network: a proxy token, CA or environment without a proxy to reach (Dial or ProxySocket)")
