package bwrap

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

// TestJavaProxyAgentJar: the agent jar names its premain class in its manifest and holds that
// class, a version 49 class file whose constant pool count matches what follows it. (Real
// JVMs load it and answer the proxy with it in TestJavaTrustsTheSessionCA.)
func TestJavaProxyAgentJar(t *testing.T) {
	jar := javaProxyAgentJar()
	z, err := zip.NewReader(bytes.NewReader(jar), int64(len(jar)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range z.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name] = b
	}
	if z.File[0].Name != "META-INF/MANIFEST.MF" || !strings.Contains(string(files["META-INF/MANIFEST.MF"]), "\r\nPremain-Class: keepup.ProxyAuth\r\n") {
		t.Errorf("manifest: %q first of %d entries", files["META-INF/MANIFEST.MF"], len(z.File))
	}
	c := files["keepup/ProxyAuth.class"]
	if len(c) < 10 || !bytes.Equal(c[:4], []byte{0xca, 0xfe, 0xba, 0xbe}) || binary.BigEndian.Uint16(c[6:]) != 49 {
		t.Fatalf("class file header % x", c[:min(len(c), 10)])
	}
	// Walk the constant pool: every entry's tag known, and it ends where the class's access
	// flags (public final super) and names begin.
	n, off := int(binary.BigEndian.Uint16(c[8:])), 10
	for i := 1; i < n; i++ {
		switch c[off] {
		case 1:
			off += 3 + int(binary.BigEndian.Uint16(c[off+1:]))
		case 7, 8:
			off += 3
		case 9, 10, 12:
			off += 5
		default:
			t.Fatalf("constant %d: unknown tag %d", i, c[off])
		}
	}
	if got := binary.BigEndian.Uint16(c[off:]); got != 0x0031 {
		t.Errorf("access flags %#x after the constant pool, want 0x31", got)
	}
	if !bytes.Contains(c, []byte("java/net/Authenticator$RequestorType")) || !bytes.Contains(c, []byte("http.proxyPassword")) {
		t.Error("the class does not check the requestor type or read the password property")
	}
}
