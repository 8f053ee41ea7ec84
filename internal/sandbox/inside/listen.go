package inside

import (
	"fmt"
	"net"
	"os"
)

// proxyListener listens on addr in the sandbox's network namespace and returns the listening
// socket as a file, for the backend; the helper's own descriptor is closed, so only the
// backend's copy remains once it is sent. A socket stays in the network namespace it was made
// in, wherever its descriptor goes: the backend accepts the sandbox's connections on the host
// while nothing else of the host's network is reachable from inside.
func proxyListener(addr string) (*os.File, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy listener: %w", err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, fmt.Errorf("proxy listener: %w", err)
	}
	return f, nil
}
