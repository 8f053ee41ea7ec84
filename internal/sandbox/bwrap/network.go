package bwrap

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/keepup/keepup/internal/sandbox"
)

// The egress proxy inside the sandbox (when Spec.Network reaches one): the helper listens on
// ProxyAddr in the sandbox's network namespace and hands the listening socket to the backend,
// which serves the commands' connections on the host; commands find it in their environment. There is no resolver inside: the
// proxy resolves names.
const (
	ProxyAddr = "127.0.0.1:3128"
	// CABundle is the trust store commands are pointed at: the host's system bundle and the
	// proxy's CA. Where the host's bundle is a plain file at a usual path, it is shown there
	// too, and CABundle is a link to it.
	// Java reads the same certificates from JavaTrustStore.
	CABundle = "/.keepup/ca-bundle.pem"
)

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
		// Read by Maven, Gradle and many HTTP clients; the JDK's own HttpURLConnection takes
		// them from the Authenticator JavaProxyAgent installs. Basic must not be disabled for
		// the CONNECT tunnel.
		java = append(java, "-Dhttp.proxyUser=keepup", "-Dhttp.proxyPassword="+n.ProxyToken,
			"-Dhttps.proxyUser=keepup", "-Dhttps.proxyPassword="+n.ProxyToken,
			"-Djdk.http.auth.tunneling.disabledSchemes=", "-Djdk.http.auth.proxying.disabledSchemes=",
			"-javaagent:"+JavaProxyAgent)
	}
	java = append(java, javaTrustOptions...)
	env["JAVA_TOOL_OPTIONS"] = strings.Join(java, " ")
	return env
}

// caStores returns the session's trust stores: the PEM bundle, the system's (the first of
// bundles found, systemBundles but for tests) followed by ca, and the same certificates for Java (a JKS store, see
// javaTrustStore); and the system bundle's path when it is a plain file ("" when none was
// found, or it is a link). cacheFile is javaTrustStore's. They go into the sandbox from memory
// files, never through the state folder: one session's stores written and removed on disk
// cost its start and its end some 380 KB of writes each.
func caStores(bundles []string, ca []byte, cacheFile string) (bundle, jks []byte, system string) {
	var b []byte
	for _, p := range bundles {
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
	jks = javaTrustStore(b, ca, cacheFile)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return append(b, ca...), jks, system
}

// serveProxy takes the listening socket the helper made on ProxyAddr in the sandbox's network
// namespace and hands it to Spec.Network.Serve, the proxy, which accepts the commands'
// connections on the host until teardown closes it. The socket stays in the sandbox's
// namespace: only the sandbox's processes can connect, and it is the only way out they have.
// When Serve returns, the listener is closed, so that a command's connect fails at once
// instead of waiting in the backlog.
func (s *Session) serveProxy(f *os.File) error {
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("the proxy listener from inside: %v", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return errClosed
	}
	s.proxyLn = l
	s.mu.Unlock()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		_ = s.spec.Network.Serve(l)
		l.Close()
	}()
	return nil
}

// stopNetwork closes the proxy listener (Serve returns) and waits for the read loop and the
// proxy's server.
func (s *Session) stopNetwork() {
	s.mu.Lock()
	if s.proxyLn != nil {
		s.proxyLn.Close()
	}
	s.mu.Unlock()
	s.bg.Wait()
}

var errNoProxy = errors.New("bwrap: Spec.Network: a proxy token, CA or environment without a proxy to serve them (Serve)")
