package bwrap

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"sync"
)

// JavaProxyAgent is where the sandbox shows the Java agent that answers the egress proxy's
// request for credentials (see javaProxyAgentJar). JAVA_TOOL_OPTIONS loads it when the proxy
// wants the session's token.
const JavaProxyAgent = "/.keepup/java-proxy-auth.jar"

// javaAgentClass is the agent's class, in package keepup.
const javaAgentClass = "keepup/ProxyAuth"

// javaProxyAgentJar is a Java agent jar (Premain-Class keepup.ProxyAuth) whose premain installs
// a default java.net.Authenticator that answers a proxy's request for credentials (and only a
// proxy's) with the http.proxyUser and http.proxyPassword system properties, which
// JAVA_TOOL_OPTIONS sets to the session's token. The JDK reads those properties for nothing:
// without an Authenticator a plain HttpURLConnection (URL.openStream and the libraries built
// on it) gets the proxy's 407. A program's own Authenticator, set later, replaces it. The class
// is the compiled form of
//
//	package keepup;
//	public final class ProxyAuth extends java.net.Authenticator {
//	    private ProxyAuth() {}
//	    public static void premain(String args) { java.net.Authenticator.setDefault(new ProxyAuth()); }
//	    protected java.net.PasswordAuthentication getPasswordAuthentication() {
//	        if (getRequestorType() != RequestorType.PROXY) return null;
//	        return new java.net.PasswordAuthentication(System.getProperty("http.proxyUser"),
//	            System.getProperty("http.proxyPassword").toCharArray());
//	    }
//	}
//
// written here byte by byte (class file version 49, which needs no stack map frames, and which
// every JVM since Java 5 loads), so that building keepup needs no JDK.
var javaProxyAgentJar = sync.OnceValue(func() []byte {
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for _, e := range []struct {
		name string
		data []byte
	}{
		{"META-INF/MANIFEST.MF", []byte("Manifest-Version: 1.0\r\nPremain-Class: keepup.ProxyAuth\r\n\r\n")},
		{javaAgentClass + ".class", javaAgentClassFile()},
	} {
		// Stored, not deflated: the jar is a few hundred bytes, and a deflate writer's set-up
		// alone (some 2 ms of allocation) would be on every session's start.
		w, err := z.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Store})
		if err == nil {
			_, err = w.Write(e.data)
		}
		if err != nil {
			panic(err) // writing to memory
		}
	}
	if err := z.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
})

// classPool is a class file's constant pool being built.
type classPool struct {
	b   bytes.Buffer
	n   uint16 // entries so far
	idx map[string]uint16
}

func (p *classPool) entry(key string, write func()) uint16 {
	if i, ok := p.idx[key]; ok {
		return i
	}
	write()
	p.n++
	p.idx[key] = p.n
	return p.n
}

func (p *classPool) u1(v byte)   { p.b.WriteByte(v) }
func (p *classPool) u2(v uint16) { p.b.Write(binary.BigEndian.AppendUint16(nil, v)) }

func (p *classPool) utf8(s string) uint16 {
	return p.entry("u:"+s, func() { p.u1(1); p.u2(uint16(len(s))); p.b.WriteString(s) })
}

func (p *classPool) class(name string) uint16 {
	n := p.utf8(name)
	return p.entry("c:"+name, func() { p.u1(7); p.u2(n) })
}

func (p *classPool) str(s string) uint16 {
	n := p.utf8(s)
	return p.entry("s:"+s, func() { p.u1(8); p.u2(n) })
}

func (p *classPool) ref(tag byte, class, name, desc string) uint16 {
	c, nm, d := p.class(class), p.utf8(name), p.utf8(desc)
	nat := p.entry("n:"+name+":"+desc, func() { p.u1(12); p.u2(nm); p.u2(d) })
	return p.entry(string(rune('0'+tag))+":"+class+"."+name+":"+desc, func() { p.u1(tag); p.u2(c); p.u2(nat) })
}

func (p *classPool) method(class, name, desc string) uint16 { return p.ref(10, class, name, desc) }
func (p *classPool) field(class, name, desc string) uint16  { return p.ref(9, class, name, desc) }

// javaAgentClassFile is keepup/ProxyAuth.class (see javaProxyAgentJar).
func javaAgentClassFile() []byte {
	const (
		auth     = "java/net/Authenticator"
		reqType  = "java/net/Authenticator$RequestorType"
		passAuth = "java/net/PasswordAuthentication"
	)
	p := &classPool{idx: map[string]uint16{}}
	this, super := p.class(javaAgentClass), p.class(auth)
	u2 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	op := func(code byte, idx uint16) []byte { return cat([]byte{code}, u2(idx)) }
	const (
		aload0       = 0x2a
		aconstNull   = 0x01
		dup          = 0x59
		ret          = 0xb1
		areturn      = 0xb0
		getstatic    = 0xb2
		invokevirt   = 0xb6
		invokespec   = 0xb7
		invokestatic = 0xb8
		newObj       = 0xbb
		ldcW         = 0x13
		ifAcmpeq     = 0xa5
	)
	type method struct {
		access        uint16
		name, desc    string
		stack, locals uint16
		code          []byte
	}
	methods := []method{
		{0x0002, "<init>", "()V", 1, 1, cat(
			[]byte{aload0}, op(invokespec, p.method(auth, "<init>", "()V")), []byte{ret})},
		{0x0009, "premain", "(Ljava/lang/String;)V", 2, 1, cat(
			op(newObj, this), []byte{dup}, op(invokespec, p.method(javaAgentClass, "<init>", "()V")),
			op(invokestatic, p.method(auth, "setDefault", "(Ljava/net/Authenticator;)V")), []byte{ret})},
		{0x0004, "getPasswordAuthentication", "()Ljava/net/PasswordAuthentication;", 4, 1, cat(
			[]byte{aload0}, op(invokevirt, p.method(auth, "getRequestorType", "()L"+reqType+";")), // 0
			op(getstatic, p.field(reqType, "PROXY", "L"+reqType+";")), // 4
			[]byte{ifAcmpeq}, u2(5), // 7: to 12
			[]byte{aconstNull, areturn},                // 10
			op(newObj, p.class(passAuth)), []byte{dup}, // 12
			op(ldcW, p.str("http.proxyUser")), op(invokestatic, p.method("java/lang/System", "getProperty", "(Ljava/lang/String;)Ljava/lang/String;")),
			op(ldcW, p.str("http.proxyPassword")), op(invokestatic, p.method("java/lang/System", "getProperty", "(Ljava/lang/String;)Ljava/lang/String;")),
			op(invokevirt, p.method("java/lang/String", "toCharArray", "()[C")),
			op(invokespec, p.method(passAuth, "<init>", "(Ljava/lang/String;[C)V")),
			[]byte{areturn})},
	}
	codeName := p.utf8("Code")
	var ms bytes.Buffer
	for _, m := range methods {
		ms.Write(cat(u2(m.access), u2(p.utf8(m.name)), u2(p.utf8(m.desc)), u2(1), u2(codeName)))
		ms.Write(binary.BigEndian.AppendUint32(nil, uint32(2+2+4+len(m.code)+2+2)))
		ms.Write(cat(u2(m.stack), u2(m.locals), binary.BigEndian.AppendUint32(nil, uint32(len(m.code))), m.code, u2(0), u2(0)))
	}
	return cat(
		[]byte{0xca, 0xfe, 0xba, 0xbe}, u2(0), u2(49), // magic, minor, major (Java 5)
		u2(p.n+1), p.b.Bytes(),
		u2(0x0031), u2(this), u2(super), // public final super
		u2(0), u2(0), // no interfaces, no fields
		u2(uint16(len(methods))), ms.Bytes(),
		u2(0), // no attributes
	)
}
