package egress

import "net/netip"

var (
	metadataAddrs = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"),
		netip.MustParseAddr("fd00:ec2::254"),
	}
	// privatePrefixes are refused after resolution unless a rule allows them.
	privatePrefixes = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),      // "this network", unspecified
		netip.MustParsePrefix("10.0.0.0/8"),     // RFC 1918
		netip.MustParsePrefix("100.64.0.0/10"),  // CGNAT
		netip.MustParsePrefix("127.0.0.0/8"),    // loopback
		netip.MustParsePrefix("169.254.0.0/16"), // link-local (and metadata)
		netip.MustParsePrefix("172.16.0.0/12"),  // RFC 1918
		netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
		netip.MustParsePrefix("192.168.0.0/16"), // RFC 1918
		netip.MustParsePrefix("224.0.0.0/4"),    // multicast
		netip.MustParsePrefix("240.0.0.0/4"),    // reserved, broadcast
		netip.MustParsePrefix("::/128"),         // unspecified
		netip.MustParsePrefix("::1/128"),        // loopback
		netip.MustParsePrefix("::/96"),          // IPv4-compatible (deprecated)
		netip.MustParsePrefix("fc00::/7"),       // ULA (and fd00:ec2::254)
		netip.MustParsePrefix("fe80::/10"),      // link-local
		netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated)
		netip.MustParsePrefix("ff00::/8"),       // multicast
		netip.MustParsePrefix("100::/64"),       // discard-only
		netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
		netip.MustParsePrefix("2001:db8::/32"),  // documentation, never routed
		netip.MustParsePrefix("64:ff9b::/96"),   // NAT64: checked on the embedded IPv4 below
		netip.MustParsePrefix("2002::/16"),      // 6to4: checked on the embedded IPv4 below
		netip.MustParsePrefix("2001::/32"),      // Teredo: refused outright
		netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
		netip.MustParsePrefix("192.88.99.0/24"), // 6to4 relay anycast (deprecated)
		netip.MustParsePrefix("255.255.255.255/32"),
	}
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
	sixto4  = netip.MustParsePrefix("2002::/16")
	teredo6 = netip.MustParsePrefix("2001::/32")
)

// addrClass says why an address is refused: "" (a public address), "cloud-metadata address"
// or "private address".
func addrClass(a netip.Addr) string {
	a = a.Unmap()
	for _, m := range metadataAddrs {
		if a == m {
			return "cloud-metadata address"
		}
	}
	if a.Is6() {
		// Translation prefixes carry an IPv4 address; judge that one.
		switch {
		case nat64.Contains(a):
			b := a.As16()
			return embeddedClass(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case sixto4.Contains(a):
			b := a.As16()
			return embeddedClass(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		case teredo6.Contains(a):
			return "private address"
		}
	}
	for _, p := range privatePrefixes {
		if p.Contains(a) {
			return "private address"
		}
	}
	return ""
}

func embeddedClass(v4 netip.Addr) string {
	if c := addrClass(v4); c != "" {
		return c
	}
	return ""
}

// permitted says whether the proxy may connect to a, reached through rule r (nil for none).
func permitted(a netip.Addr, r *rule) (bool, string) {
	a = a.Unmap()
	if r != nil && r.ip.IsValid() && r.ip == a {
		return true, "" // an IP rule names exactly this address
	}
	c := addrClass(a)
	if c == "" {
		return true, ""
	}
	if c == "private address" && r != nil && r.AllowPrivate {
		return true, ""
	}
	return false, c
}
