package bwrap_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/sandbox/bwrap"
)

// fetchJava fetches args[0] through the proxy of the JDK's system properties and prints the
// body; a TLS failure is printed and exits 3. The JDK ignores http(s).proxyUser, so, like Maven
// and Gradle, it answers the proxy's 407 from them.
const fetchJava = `import java.net.*;

public class Fetch {
    public static void main(String[] args) throws Exception {
        String user = System.getProperty("https.proxyUser"), pass = System.getProperty("https.proxyPassword");
        if (user != null) {
            Authenticator.setDefault(new Authenticator() {
                protected PasswordAuthentication getPasswordAuthentication() {
                    return getRequestorType() == RequestorType.PROXY ? new PasswordAuthentication(user, pass.toCharArray()) : null;
                }
            });
        }
        HttpURLConnection c = (HttpURLConnection) URI.create(args[0]).toURL().openConnection();
        c.setConnectTimeout(20000);
        c.setReadTimeout(20000);
        try {
            System.out.print(new String(c.getInputStream().readAllBytes(), "UTF-8"));
        } catch (javax.net.ssl.SSLException e) {
            System.out.println("TLS ERROR: " + e);
            System.exit(3);
        }
    }
}
`

// fetchPlainJava is fetchJava without an Authenticator of its own, as most programs are: the
// session's Java agent answers the proxy's 407.
const fetchPlainJava = `import java.net.*;

public class FetchPlain {
    public static void main(String[] args) throws Exception {
        HttpURLConnection c = (HttpURLConnection) URI.create(args[0]).toURL().openConnection();
        c.setConnectTimeout(20000);
        c.setReadTimeout(20000);
        try {
            System.out.print(new String(c.getInputStream().readAllBytes(), "UTF-8"));
        } catch (java.io.IOException e) {
            System.out.println("ERROR: " + e);
            System.exit(3);
        }
    }
}
`

// TestJavaTrustsTheSessionCA: real Java in a real sandbox fetches https://secure.test/, which
// the session's proxy terminates with its CA, through the proxy; it trusts that CA only
// through the trust store JAVA_TOOL_OPTIONS names: without those options the same fetch fails
// certificate validation.
func TestJavaTrustsTheSessionCA(t *testing.T) {
	javas := bwrap.JDKTools("java", "javac")
	if len(javas) == 0 {
		t.Skip("no JDK (java with javac beside it) on PATH or under /usr/lib/jvm: install one (apt-get install openjdk-17-jdk-headless) to run Java against the session's proxy")
	}
	t.Parallel()
	f := newNetFixture(t)
	for _, java := range javas {
		t.Run(java, func(t *testing.T) {
			t.Parallel()
			tb := setup(t)
			tb.spec.Network = f.network()
			for name, src := range map[string]string{"Fetch.java": fetchJava, "FetchPlain.java": fetchPlainJava} {
				if err := os.WriteFile(filepath.Join(tb.rw, name), []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s := tb.start(t)
			fetchURL := func(script, url string) runResult {
				return run(t, s, sandbox.Command{Args: []string{"sh", "-c", script, "sh", java, url},
					Dir: tb.rwDest(), Timeout: 2 * time.Minute})
			}
			fetch := func(script string) runResult { return fetchURL(script, "https://secure.test/") }

			// A program without an Authenticator, through the CONNECT tunnel and as a forward
			// proxy request; without the agent, the proxy's 407 stops both.
			for url, want := range map[string]string{"https://secure.test/": "secure hello\n", "http://allowed.test/": "hello from allowed.test\n"} {
				if r := fetchURL(`exec "$1" FetchPlain.java "$2"`, url); r.ExitCode != 0 || r.stdout != want {
					t.Errorf("java without an Authenticator, %s: exit %d, %q\n%s", url, r.ExitCode, r.stdout, r.stderr)
				}
				r := fetchURL(`JAVA_TOOL_OPTIONS=$(printf %s "$JAVA_TOOL_OPTIONS" | sed 's/ *-javaagent:[^ ]*//g')
case "$JAVA_TOOL_OPTIONS" in *javaagent*|"") echo "options not stripped: $JAVA_TOOL_OPTIONS"; exit 9;; esac
export JAVA_TOOL_OPTIONS; exec "$1" FetchPlain.java "$2"`, url)
				if r.ExitCode != 3 || !strings.Contains(r.stdout, "407") {
					t.Errorf("java without the agent, %s: exit %d, want 3 and a 407; %q\n%s", url, r.ExitCode, r.stdout, r.stderr)
				}
			}

			if r := fetch(`exec "$1" Fetch.java "$2"`); r.ExitCode != 0 || r.stdout != "secure hello\n" {
				t.Errorf("java with the session's options: exit %d, %q\n%s", r.ExitCode, r.stdout, r.stderr)
			}
			// The same fetch with every option but the trust store's.
			r := fetch(`JAVA_TOOL_OPTIONS=$(printf %s "$JAVA_TOOL_OPTIONS" | sed 's/ *-Djavax\.net\.ssl\.[^ ]*//g')
case "$JAVA_TOOL_OPTIONS" in *trustStore*|"") echo "options not stripped: $JAVA_TOOL_OPTIONS"; exit 9;; esac
export JAVA_TOOL_OPTIONS; exec "$1" Fetch.java "$2"`)
			if r.ExitCode != 3 || !strings.Contains(r.stdout, "unable to find valid certification path") {
				t.Errorf("java without the trust store: exit %d, want 3 and a certificate error; %q\n%s", r.ExitCode, r.stdout, r.stderr)
			}
		})
	}
	t.Run("read-only", func(t *testing.T) {
		t.Parallel()
		tb := setup(t)
		tb.spec.Network = f.network()
		s := tb.start(t)
		r := sh(t, s, "test -s "+bwrap.JavaTrustStore+" && ! (: >>"+bwrap.JavaTrustStore+") 2>/dev/null && echo OK")
		if strings.TrimSpace(r.stdout) != "OK" {
			t.Errorf("%s is missing, empty or writable inside: %q %s", bwrap.JavaTrustStore, r.stdout, r.stderr)
		}
	})
}
