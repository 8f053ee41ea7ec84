package inside

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// proxyListener listens on addr (an IPv4 address and port) in the sandbox's network namespace
// and returns the listening socket as a file, for the backend; the helper keeps no descriptor
// of it once it is sent. A socket stays in the network namespace it was made in, wherever its
// descriptor goes: the backend accepts the sandbox's connections on the host while nothing
// else of the host's network is reachable from inside. Made with system calls, as package net
// is not imported here (see Conn).
func proxyListener(addr string) (*os.File, error) {
	sa, ok := parseIPv4Port(addr)
	if !ok {
		return nil, fmt.Errorf("proxy listener: %q is not an IPv4 address and port", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("proxy listener: %w", err)
	}
	fail := func(op string, err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("proxy listener: %s %s: %w", op, addr, err)
	}
	// As package net sets it on listeners.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		return fail("listen", err)
	}
	return os.NewFile(uintptr(fd), "proxy-listener"), nil
}

// parseIPv4Port parses "a.b.c.d:port" (not with net/netip, whose initialization would come
// before this package's: see Conn).
func parseIPv4Port(s string) (*unix.SockaddrInet4, bool) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return nil, false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, false
	}
	parts := strings.Split(host, ".")
	if len(parts) != 4 {
		return nil, false
	}
	sa := &unix.SockaddrInet4{Port: int(p)}
	for i, part := range parts {
		b, err := strconv.ParseUint(part, 10, 8)
		if err != nil || (len(part) > 1 && part[0] == '0') {
			return nil, false
		}
		sa.Addr[i] = byte(b)
	}
	return sa, true
}
