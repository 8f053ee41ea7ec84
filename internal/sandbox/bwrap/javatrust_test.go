package bwrap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/sandbox"
)

// jksEntry is a trusted-certificate entry read back from a JKS store.
type jksEntry struct {
	alias string
	ms    int64
	typ   string
	der   []byte
}

// readJKS parses a JKS keystore the way JavaKeyStore.engineLoad does, for trusted-certificate
// entries only, and checks its digest with password.
func readJKS(data []byte, password string) ([]jksEntry, error) {
	if len(data) < 12+sha1.Size {
		return nil, errors.New("too short")
	}
	body, digest := data[:len(data)-sha1.Size], data[len(data)-sha1.Size:]
	h := sha1.New()
	h.Write(jksPasswordBytes(password))
	h.Write([]byte("Mighty Aphrodite"))
	h.Write(body)
	if !bytes.Equal(h.Sum(nil), digest) {
		return nil, errors.New("digest mismatch (tampered, or wrong password)")
	}
	r := bytes.NewReader(body)
	var hdr struct{ Magic, Version, Count uint32 }
	if err := binary.Read(r, binary.BigEndian, &hdr); err != nil {
		return nil, err
	}
	if hdr.Magic != 0xFEEDFEED || hdr.Version != 2 {
		return nil, fmt.Errorf("magic %#x version %d", hdr.Magic, hdr.Version)
	}
	readUTF := func() (string, error) {
		var n uint16
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			return "", err
		}
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return string(b), err
	}
	var out []jksEntry
	for i := range hdr.Count {
		var tag uint32
		if err := binary.Read(r, binary.BigEndian, &tag); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if tag != 2 {
			return nil, fmt.Errorf("entry %d: tag %d, not a trusted certificate", i, tag)
		}
		var e jksEntry
		var err error
		if e.alias, err = readUTF(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if err := binary.Read(r, binary.BigEndian, &e.ms); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if e.typ, err = readUTF(); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		var n uint32
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		e.der = make([]byte, n)
		if _, err := io.ReadFull(r, e.der); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		out = append(out, e)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%d bytes after the last entry", r.Len())
	}
	return out, nil
}

// pemCerts returns the DER of the CERTIFICATE blocks of b.
func pemCerts(b []byte) [][]byte {
	var ders [][]byte
	for {
		var p *pem.Block
		if p, b = pem.Decode(b); p == nil {
			return ders
		}
		if p.Type == "CERTIFICATE" {
			ders = append(ders, p.Bytes)
		}
	}
}

func testCA(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "keepup test session CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeStores writes a session's CA bundle and Java trust store with a fresh CA into a
// temporary folder (ca-bundle.pem, java-truststore.jks); it returns the folder and the CA.
func writeStores(t testing.TB) (dir string, ca []byte) {
	t.Helper()
	dir, ca = t.TempDir(), testCA(t)
	bundle, jks, _ := caStores(systemBundles, ca, "")
	for name, data := range map[string][]byte{"ca-bundle.pem": bundle, "java-truststore.jks": jks} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return dir, ca
}

// TestJavaTrustStore: the Java trust store holds the PEM bundle's certificates, in order, with
// the session CA last under its alias, and its digest checks with the password Java is given.
func TestJavaTrustStore(t *testing.T) {
	t.Parallel()
	dir, ca := writeStores(t)
	bundle, err := os.ReadFile(filepath.Join(dir, "ca-bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := os.ReadFile(filepath.Join(dir, "java-truststore.jks"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := readJKS(store, JavaTrustStorePassword)
	if err != nil {
		t.Fatal(err)
	}
	want := pemCerts(bundle)
	if len(want) < 2 {
		t.Logf("no system bundle here: only the session CA is checked")
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries in the trust store, %d certificates in the bundle", len(entries), len(want))
	}
	aliases := map[string]bool{}
	for i, e := range entries {
		if !bytes.Equal(e.der, want[i]) || e.typ != "X.509" || aliases[e.alias] {
			t.Errorf("entry %d (%s, %s): not the bundle's certificate %d, or a repeated alias", i, e.alias, e.typ, i)
		}
		aliases[e.alias] = true
		if d := time.Since(time.UnixMilli(e.ms)); d < 0 || d > time.Minute {
			t.Errorf("entry %d: date %v", i, time.UnixMilli(e.ms))
		}
	}
	last := entries[len(entries)-1]
	if p, _ := pem.Decode(ca); last.alias != "keepup-session-ca" || !bytes.Equal(last.der, p.Bytes) {
		t.Errorf("the last entry is %q, not the session CA", last.alias)
	}
	// The digest check is a check.
	if _, err := readJKS(store, "not-"+JavaTrustStorePassword); err == nil {
		t.Error("the digest matched a wrong password")
	}
	store[len(store)/2] ^= 1
	if _, err := readJKS(store, JavaTrustStorePassword); err == nil {
		t.Error("the digest matched a changed store")
	}
}

// TestJavaTrustStoreSkipsWhatJavaCannotParse: blocks other than a single DER SEQUENCE are left
// out (Java would refuse the whole store), and nothing else is.
func TestJavaTrustStoreSkipsWhatJavaCannotParse(t *testing.T) {
	t.Parallel()
	ca := testCA(t)
	good, _ := pem.Decode(ca)
	system := string(ca) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x05, 1, 2}})) + // truncated
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: append(bytes.Clone(good.Bytes), 0)})) + // trailing
		string(pem.EncodeToMemory(&pem.Block{Type: "TRUSTED CERTIFICATE", Bytes: good.Bytes})) +
		"not pem\n" + string(ca)
	entries, err := readJKS(encodeJKS(pemCertificates([]byte(system)), pemCertificates(ca), time.Now(), "pw"), "pw")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.alias)
	}
	if want := "system-1 system-2 keepup-session-ca"; strings.Join(got, " ") != want {
		t.Errorf("aliases %q, want %q", got, want)
	}
}

// TestSystemCertificatesCache: a changed system bundle is decoded again, not served from the
// cache.
func TestSystemCertificatesCache(t *testing.T) {
	a, b := testCA(t), testCA(t)
	for _, c := range []struct {
		system []byte
		want   int
	}{{a, 1}, {append(bytes.Clone(a), b...), 2}, {a, 1}, {nil, 0}} {
		got := systemCertificates(c.system, "")
		if len(got) != c.want || !slices.EqualFunc(got, pemCerts(c.system), bytes.Equal) {
			t.Errorf("%d certificates, want %d", len(got), c.want)
		}
	}
}

// TestSystemCertificatesFileCache: a process that has not seen the system bundle takes its
// certificates from the cache file when the file was made from that bundle, and decodes the
// bundle (and writes the file for the next process) when there is no file, when it was made
// from another bundle, or when it does not parse.
func TestSystemCertificatesFileCache(t *testing.T) {
	a, b := testCA(t), testCA(t)
	file := filepath.Join(t.TempDir(), systemCertsCache)
	fresh := func(system []byte) [][]byte {
		systemDERs.Lock()
		systemDERs.pem, systemDERs.ders = nil, nil // as in a new process
		systemDERs.Unlock()
		return systemCertificates(system, file)
	}
	same := func(got, want [][]byte) bool { return slices.EqualFunc(got, want, bytes.Equal) }
	if got := fresh(a); !same(got, pemCerts(a)) {
		t.Fatalf("without a cache file: %d certificates, want a's 1", len(got))
	}
	if ders, ok := readCertsCache(file, sha256.Sum256(a)); !ok || !same(ders, pemCerts(a)) {
		t.Fatalf("the cache file was not written for the bundle (ok %v, %d certificates)", ok, len(ders))
	}
	// A file made from a, holding b's certificate instead: served as it is, so it was read.
	if err := writeCertsCache(file, sha256.Sum256(a), pemCerts(b)); err != nil {
		t.Fatal(err)
	}
	if got := fresh(a); !same(got, pemCerts(b)) {
		t.Errorf("the cache file made from the bundle was not used")
	}
	// Made from another bundle: decoded again.
	if err := writeCertsCache(file, sha256.Sum256(b), pemCerts(b)); err != nil {
		t.Fatal(err)
	}
	if got := fresh(a); !same(got, pemCerts(a)) {
		t.Errorf("a cache file made from another bundle was used")
	}
	// Cut short, or with a block that is not a certificate: decoded again, and rewritten.
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(whole)
	bad[len(bad)-len(pemCerts(a)[0])] = 0x31 // the certificate's SEQUENCE tag
	for _, c := range [][]byte{whole[:len(whole)-1], bad, whole[:10]} {
		if err := os.WriteFile(file, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if got := fresh(a); !same(got, pemCerts(a)) {
			t.Errorf("a damaged cache file (%d bytes) gave %d certificates", len(c), len(got))
		}
		if ders, ok := readCertsCache(file, sha256.Sum256(a)); !ok || !same(ders, pemCerts(a)) {
			t.Errorf("a damaged cache file was not rewritten")
		}
	}
	if ents, _ := os.ReadDir(filepath.Dir(file)); len(ents) != 1 {
		t.Errorf("the cache folder holds %d files, want the cache alone", len(ents))
	}
}

func TestDERSequence(t *testing.T) {
	t.Parallel()
	long := append([]byte{0x30, 0x82, 0x01, 0x00}, make([]byte, 256)...)
	for _, c := range []struct {
		der  []byte
		want bool
	}{
		{[]byte{0x30, 0x00}, true},
		{[]byte{0x30, 0x02, 5, 0}, true},
		{long, true},
		{long[:len(long)-1], false},
		{append(bytes.Clone(long), 0), false},
		{[]byte{0x31, 0x00}, false},
		{[]byte{0x30}, false},
		{[]byte{0x30, 0x80, 0, 0}, false},          // indefinite length: BER, not DER
		{[]byte{0x30, 0x81, 0x02, 5, 0}, false},    // long form for a short length
		{[]byte{0x30, 0x82, 0x00, 0x81}, false},    // leading zero in the length
		{[]byte{0x30, 0x85, 1, 1, 1, 1, 1}, false}, // more length bytes than a cert needs
	} {
		if got := derSequence(c.der); got != c.want {
			t.Errorf("derSequence(% x) = %v", c.der[:min(len(c.der), 6)], got)
		}
	}
}

// TestJavaOptionsNameTheTrustStore: JAVA_TOOL_OPTIONS points Java at the store, with the type
// and password it was written with.
func TestJavaOptionsNameTheTrustStore(t *testing.T) {
	t.Parallel()
	opts := " " + proxyEnv(&sandbox.Network{ProxyToken: "t"})["JAVA_TOOL_OPTIONS"] + " "
	for _, o := range []string{"-Djavax.net.ssl.trustStore=" + JavaTrustStore, "-Djavax.net.ssl.trustStoreType=JKS",
		"-Djavax.net.ssl.trustStorePassword=" + JavaTrustStorePassword} {
		if !strings.Contains(opts, " "+o+" ") {
			t.Errorf("JAVA_TOOL_OPTIONS lacks %s: %s", o, opts)
		}
	}
}

// jdkTools lists the executables name on this machine: the one on PATH and each JDK's under
// /usr/lib/jvm, once each; with beside, only those that have it in the same folder (java with
// javac: a JDK, which can run a source file, not a JRE).
func jdkTools(name, beside string) []string {
	var out []string
	seen := map[string]bool{}
	cands, _ := filepath.Glob("/usr/lib/jvm/*/bin/" + name)
	if p, err := exec.LookPath(name); err == nil {
		cands = append([]string{p}, cands...)
	}
	for _, c := range cands {
		real, err := filepath.EvalSymlinks(c)
		if err != nil || seen[real] {
			continue
		}
		if beside != "" {
			if _, err := os.Stat(filepath.Join(filepath.Dir(real), beside)); err != nil {
				continue
			}
		}
		seen[real] = true
		out = append(out, c)
	}
	return out
}

// TestJavaTrustStoreKeytool: each JDK's keytool loads the store with its password (which
// checks the digest), lists as many trusted certificates as the bundle holds, and refuses a
// wrong password.
func TestJavaTrustStoreKeytool(t *testing.T) {
	t.Parallel()
	tools := jdkTools("keytool", "")
	if len(tools) == 0 {
		t.Skip("no keytool on PATH or under /usr/lib/jvm: install a JDK (apt-get install openjdk-17-jdk-headless) to check the trust store with Java")
	}
	dir, _ := writeStores(t)
	bundle, err := os.ReadFile(filepath.Join(dir, "ca-bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	want := len(pemCerts(bundle))
	store := filepath.Join(dir, "java-truststore.jks")
	countRE := regexp.MustCompile(`Your keystore contains (\d+) entr`)
	for _, kt := range tools {
		t.Run(kt, func(t *testing.T) {
			t.Parallel()
			keytool := func(pass string) (string, error) {
				cmd := exec.Command(kt, "-J-Duser.language=en", "-J-Duser.country=US", "-list",
					"-keystore", store, "-storetype", JavaTrustStoreType, "-storepass", pass)
				cmd.Env = append(os.Environ(), "JAVA_TOOL_OPTIONS=", "LC_ALL=C")
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			out, err := keytool(JavaTrustStorePassword)
			if err != nil {
				t.Fatalf("keytool -list: %v\n%s", err, out)
			}
			m := countRE.FindStringSubmatch(out)
			if m == nil || m[1] != fmt.Sprint(want) {
				t.Errorf("keytool lists %v entries, the bundle holds %d:\n%.1000s", m, want, out)
			}
			if n := strings.Count(out, "trustedCertEntry"); n != want {
				t.Errorf("%d trustedCertEntry lines, want %d", n, want)
			}
			if !strings.Contains(out, "keepup-session-ca,") {
				t.Errorf("no keepup-session-ca entry:\n%.1000s", out)
			}
			if out, err := keytool("wrong-password"); err == nil {
				t.Errorf("keytool accepted a wrong password:\n%.500s", out)
			}
		})
	}
}

// BenchmarkCAStores makes a session's CA bundle and Java trust store from this machine's
// system bundle: the per-session cost of both.
func BenchmarkCAStores(b *testing.B) {
	ca := testCA(b)
	for b.Loop() {
		caStores(systemBundles, ca, "")
	}
}

// BenchmarkEncodeJKS encodes the Java trust store from this machine's system bundle, in
// memory: "decode" decodes the bundle's PEM each time, "cached" is what a session pays once the
// bundle's certificates are cached.
func BenchmarkEncodeJKS(b *testing.B) {
	var system []byte
	for _, p := range systemBundles {
		if data, err := os.ReadFile(p); err == nil {
			system = data
			break
		}
	}
	if system == nil {
		b.Skip("no system CA bundle")
	}
	ca, now := testCA(b), time.Now()
	for _, c := range []struct {
		name  string
		certs func([]byte) [][]byte
	}{{"decode", pemCertificates}, {"cached", func(b []byte) [][]byte { return systemCertificates(b, "") }}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(system)))
			for b.Loop() {
				encodeJKS(c.certs(system), pemCertificates(ca), now, JavaTrustStorePassword)
			}
		})
	}
}
