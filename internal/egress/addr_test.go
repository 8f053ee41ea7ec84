package egress

import (
	"net/netip"
	"testing"
)

func TestAddrClass(t *testing.T) {
	for a, want := range map[string]string{
		"8.8.8.8": "", "198.51.100.1": "", "2606:4700::1111": "", "64:ff9b::808:808": "",
		"127.0.0.1": ReasonPrivateAddress, "127.255.0.9": ReasonPrivateAddress, "10.9.9.9": ReasonPrivateAddress,
		"172.16.0.1": ReasonPrivateAddress, "172.31.255.255": ReasonPrivateAddress, "192.168.0.1": ReasonPrivateAddress,
		"100.64.0.1": ReasonPrivateAddress, "169.254.1.1": ReasonPrivateAddress, "0.0.0.0": ReasonPrivateAddress,
		"224.0.0.1": ReasonPrivateAddress, "255.255.255.255": ReasonPrivateAddress, "::": ReasonPrivateAddress,
		"::1": ReasonPrivateAddress, "fc00::1": ReasonPrivateAddress, "fe80::1": ReasonPrivateAddress,
		"ff02::1": ReasonPrivateAddress, "::ffff:10.0.0.1": ReasonPrivateAddress, "64:ff9b::a00:1": ReasonPrivateAddress,
		"2002:7f00:1::": ReasonPrivateAddress, "2001::1": ReasonPrivateAddress,
		"169.254.169.254": ReasonMetadataAddress, "fd00:ec2::254": ReasonMetadataAddress,
		"::ffff:169.254.169.254": ReasonMetadataAddress, "64:ff9b::a9fe:a9fe": ReasonMetadataAddress,
	} {
		if got := addrClass(netip.MustParseAddr(a)); got != want {
			t.Errorf("addrClass(%s) = %q, want %q", a, got, want)
		}
	}
	private := &rule{Rule: Rule{AllowPrivate: true}}
	if ok, _ := permitted(netip.MustParseAddr("10.0.0.1"), private); !ok {
		t.Error("AllowPrivate does not allow 10.0.0.1")
	}
	if ok, _ := permitted(netip.MustParseAddr("169.254.169.254"), private); ok {
		t.Error("AllowPrivate allows the metadata address")
	}
	named := &rule{ip: netip.MustParseAddr("169.254.169.254")}
	if ok, _ := permitted(netip.MustParseAddr("169.254.169.254"), named); !ok {
		t.Error("an IP rule naming the metadata address does not allow it")
	}
}
