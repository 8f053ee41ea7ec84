package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"
)

// ListenConfig says where the daemon listens.
type ListenConfig struct {
	// Addr is the TCP address, host:port. Default "127.0.0.1:0" (a free loopback port). Only
	// loopback addresses are accepted unless AllowNonLoopback.
	Addr string
	// Socket is the path of a Unix socket to listen on too; "" for none. It is made with mode
	// 0600. A socket file left by a daemon that died is replaced; one that answers is not.
	Socket string
	// AllowNonLoopback lets Addr be an address other machines can reach.
	AllowNonLoopback bool
}

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path less its NUL).
const maxSocketPath = 107

// Listen opens the listeners of cfg: TCP first, then the Unix socket if one is named. On error
// nothing stays open.
func Listen(cfg ListenConfig) ([]net.Listener, error) {
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	tcp, err := listenTCP(addr, cfg.AllowNonLoopback)
	if err != nil {
		return nil, err
	}
	ls := []net.Listener{tcp}
	if cfg.Socket != "" {
		u, err := listenUnix(cfg.Socket)
		if err != nil {
			tcp.Close()
			return nil, err
		}
		ls = append(ls, u)
	}
	return ls, nil
}

func listenTCP(addr string, allowRemote bool) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %v (want host:port, such as 127.0.0.1:7777)", addr, err)
	}
	refuse := func() error {
		return fmt.Errorf("listen address %q is not a loopback address: keepup listens beyond this machine only when configured to", addr)
	}
	if !allowRemote && !loopbackHost(host) {
		return nil, refuse()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	// "localhost" is resolved by Listen: check what it chose too.
	if ta, ok := l.Addr().(*net.TCPAddr); !allowRemote && (!ok || !ta.IP.IsLoopback()) {
		l.Close()
		return nil, refuse()
	}
	return l, nil
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func listenUnix(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket %s: the path is %d bytes, longer than the %d a Unix socket may have", path, len(path), maxSocketPath)
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("socket %s: the file exists and is not a socket; remove it or choose another path", path)
	case err == nil:
		if c, derr := net.DialTimeout("unix", path, time.Second); derr == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: another process is listening on it (is a keepup daemon running already?)", path)
		}
		// Nothing answers: a daemon died without cleaning up.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("socket %s: removing the stale socket: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// The token guards the socket whatever its mode; 0600 keeps other users from even trying.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return l, nil
}
