package bwrap

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf16"
)

// Java does not read PEM bundles: it gets its own trust store, JavaTrustStore, holding the same
// certificates as CABundle, named in JAVA_TOOL_OPTIONS.
//
// The format is JKS, not PKCS12. A JKS trust store is a flat list of DER certificates and one
// SHA-1 over it, written here in a page of code; every JDK reads it (17 and later, as trust
// store with an explicit trustStoreType=JKS, checked against OpenJDK 17 and Temurin 25). A
// PKCS12 trust store would need ASN.1 SafeBags, a PBKDF-keyed MAC and Oracle's private
// "trusted key usage" attribute on each bag (without it Java ignores the certificate), for no
// gain: the store holds no secret, so neither format's protection matters.
const (
	JavaTrustStore         = "/.keepup/java-truststore.jks"
	JavaTrustStoreType     = "JKS"
	JavaTrustStorePassword = "changeit" // only keys the integrity digest; the store is public certificates
)

// javaTrustOptions are the system properties that point Java at JavaTrustStore.
var javaTrustOptions = []string{
	"-Djavax.net.ssl.trustStore=" + JavaTrustStore,
	"-Djavax.net.ssl.trustStoreType=" + JavaTrustStoreType,
	"-Djavax.net.ssl.trustStorePassword=" + JavaTrustStorePassword,
}

// javaEtc are the /etc entries of the JDKs' configuration, bound like etcFiles: Debian's and
// Fedora's OpenJDK keep java.security and the rest there (/etc/java-17-openjdk, /etc/java), and
// a JDK without them does not start.
func javaEtc() []string {
	var names []string
	matches, _ := filepath.Glob("/etc/java*")
	for _, m := range matches {
		names = append(names, filepath.Base(m))
	}
	return names
}

// javaTrustStore is a JKS trust store of the certificates of the PEM system bundle and ca, in
// that order: system-1, system-2, ... and keepup-session-ca (keepup-session-ca-2, ... should
// ca hold more than one). cacheFile keeps the system bundle's certificates for the next
// process (see systemCertificates); "" for none.
func javaTrustStore(system, ca []byte, cacheFile string) []byte {
	return encodeJKS(systemCertificates(system, cacheFile), pemCertificates(ca), time.Now(), JavaTrustStorePassword)
}

// systemDERs caches the certificates of the last system bundle seen: decoding its PEM is most
// of the cost of a trust store (about 0.8 ms of 1 for Debian's 146 roots), and it rarely changes.
var systemDERs struct {
	sync.Mutex
	pem  []byte
	ders [][]byte
}

// systemCertsCache is the file, in Config.StateDir, that keeps the system bundle's certificates
// across processes: every `keepup sandbox exec` is a new process, which would otherwise decode
// the bundle again. It holds the SHA-256 of the bundle it was made from (hashing it takes a
// seventh of the time decoding it does), the number of certificates, and each one's length and
// DER. Only keepup writes the state folder; a file that does not parse, or was made from
// another bundle, is decoded over.
const systemCertsCache = "system-certs.cache"

// systemCertificates is pemCertificates(system): from memory when system is the bundle this
// process saw last, else from cacheFile when it was made from system, else decoded (and then
// written to cacheFile for the next process; a failed write only costs that one a decode).
func systemCertificates(system []byte, cacheFile string) [][]byte {
	systemDERs.Lock()
	defer systemDERs.Unlock()
	if systemDERs.pem != nil && bytes.Equal(systemDERs.pem, system) {
		return systemDERs.ders
	}
	ders, ok := [][]byte(nil), false
	var sum [sha256.Size]byte
	if cacheFile != "" {
		sum = sha256.Sum256(system)
		ders, ok = readCertsCache(cacheFile, sum)
	}
	if !ok {
		ders = pemCertificates(system)
		if cacheFile != "" {
			_ = writeCertsCache(cacheFile, sum, ders)
		}
	}
	systemDERs.pem, systemDERs.ders = bytes.Clone(system), ders
	return ders
}

// readCertsCache reads the certificates cached in file for the bundle whose SHA-256 is sum.
func readCertsCache(file string, sum [sha256.Size]byte) ([][]byte, bool) {
	b, err := os.ReadFile(file)
	if err != nil || len(b) < len(sum)+4 || !bytes.Equal(b[:len(sum)], sum[:]) {
		return nil, false
	}
	b = b[len(sum):]
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)/4) {
		return nil, false
	}
	ders := make([][]byte, 0, n)
	for range n {
		if len(b) < 4 {
			return nil, false
		}
		l := binary.BigEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-4) {
			return nil, false
		}
		der := b[4 : 4+l : 4+l]
		if !derSequence(der) {
			return nil, false
		}
		ders, b = append(ders, der), b[4+l:]
	}
	return ders, len(b) == 0
}

// writeCertsCache replaces file with the certificates ders of the bundle whose SHA-256 is sum,
// through a temporary file and a rename, so a concurrent reader sees the old or the new whole.
func writeCertsCache(file string, sum [sha256.Size]byte, ders [][]byte) error {
	b := append(sum[:], binary.BigEndian.AppendUint32(nil, uint32(len(ders)))...)
	for _, der := range ders {
		b = binary.BigEndian.AppendUint32(b, uint32(len(der)))
		b = append(b, der...)
	}
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), file)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// pemCertificates returns the DER of the CERTIFICATE blocks of b. Blocks that are not a
// single DER SEQUENCE are left out: Java refuses a whole store for one certificate it cannot
// parse.
func pemCertificates(b []byte) [][]byte {
	var ders [][]byte
	for len(b) > 0 {
		var p *pem.Block
		if p, b = pem.Decode(b); p == nil {
			break
		}
		if p.Type == "CERTIFICATE" && derSequence(p.Bytes) {
			ders = append(ders, p.Bytes)
		}
	}
	return ders
}

// encodeJKS lays out a JKS keystore of trusted-certificate entries (sun.security.provider.
// JavaKeyStore, version 2): magic, version, count, the entries, then the SHA-1 of the password
// as UTF-16BE, "Mighty Aphrodite" and everything before the digest.
func encodeJKS(system, ca [][]byte, now time.Time, password string) []byte {
	size := 12 + sha1.Size // header and digest
	for _, ders := range [][][]byte{system, ca} {
		for _, der := range ders {
			size += 4 + 2 + len("keepup-session-ca-000") + 8 + 2 + len("X.509") + 4 + len(der)
		}
	}
	out := make([]byte, 0, size)
	out = binary.BigEndian.AppendUint32(out, 0xFEEDFEED)
	out = binary.BigEndian.AppendUint32(out, 2)
	out = binary.BigEndian.AppendUint32(out, uint32(len(system)+len(ca)))
	// DataOutputStream.writeUTF: a u16 length and modified UTF-8, which for these ASCII
	// strings is the bytes themselves.
	utf := func(s string) {
		out = binary.BigEndian.AppendUint16(out, uint16(len(s)))
		out = append(out, s...)
	}
	ms := uint64(now.UnixMilli())
	entry := func(alias string, der []byte) {
		out = binary.BigEndian.AppendUint32(out, 2) // a trusted certificate
		utf(alias)
		out = binary.BigEndian.AppendUint64(out, ms)
		utf("X.509")
		out = binary.BigEndian.AppendUint32(out, uint32(len(der)))
		out = append(out, der...)
	}
	for i, der := range system {
		entry("system-"+strconv.Itoa(i+1), der)
	}
	for i, der := range ca {
		alias := "keepup-session-ca"
		if i > 0 {
			alias += "-" + strconv.Itoa(i+1)
		}
		entry(alias, der)
	}
	h := sha1.New()
	h.Write(jksPasswordBytes(password))
	h.Write([]byte("Mighty Aphrodite"))
	h.Write(out)
	return h.Sum(out)
}

// jksPasswordBytes is the password as JavaKeyStore hashes it: each UTF-16 unit, high byte first.
func jksPasswordBytes(password string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(password)) {
		b = binary.BigEndian.AppendUint16(b, u)
	}
	return b
}

// derSequence reports whether der is one DER SEQUENCE and nothing after it (the shape of a
// certificate; its contents are Java's to parse).
func derSequence(der []byte) bool {
	if len(der) < 2 || der[0] != 0x30 {
		return false
	}
	n, rest := int(der[1]), der[2:]
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(rest) < k || rest[0] == 0 {
			return false
		}
		n = 0
		for _, c := range rest[:k] {
			n = n<<8 | int(c)
		}
		if n < 0x80 {
			return false
		}
		rest = rest[k:]
	}
	return n == len(rest)
}
