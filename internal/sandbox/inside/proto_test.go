package inside

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func connPair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := NewConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

// Concurrent senders, messages larger than the socket buffer, each with a descriptor: every
// message arrives whole, with its own descriptor.
func TestConnMessagesKeepTheirDescriptors(t *testing.T) {
	t.Parallel()
	a, b := connPair(t)
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, w, err := os.Pipe()
			if err != nil {
				t.Error(err)
				return
			}
			big := strings.Repeat("x", (i%4)*300_000) // up to ~1 MB
			err = a.Send(Request{ID: uint64(i), FDs: 1, Run: &Run{Args: []string{big}}}, r)
			r.Close()
			if err != nil {
				t.Error(err)
				return
			}
			fmt.Fprintf(w, "pipe %d", i)
			w.Close()
		})
	}
	seen := map[uint64]bool{}
	for range n {
		var req Request
		files, err := b.Recv(&req, RequestFDs)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 1 || len(req.Run.Args[0]) != int(req.ID%4)*300_000 {
			t.Fatalf("message %d: %d files, %d bytes", req.ID, len(files), len(req.Run.Args[0]))
		}
		got, _ := io.ReadAll(files[0])
		files[0].Close()
		if string(got) != fmt.Sprintf("pipe %d", req.ID) {
			t.Fatalf("message %d carried the descriptor of %q", req.ID, got)
		}
		seen[req.ID] = true
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d distinct messages", len(seen))
	}
}

func TestConnEOFAndBadMessages(t *testing.T) {
	t.Parallel()
	a, b := connPair(t)
	// A message naming more descriptors than arrived is refused.
	if err := a.Send(Request{ID: 1, FDs: 2}); err != nil {
		t.Fatal(err)
	}
	var req Request
	if _, err := b.Recv(&req, RequestFDs); err == nil || !strings.Contains(err.Error(), "descriptors") {
		t.Fatalf("Recv: %v", err)
	}
	a.Close()
	if _, err := b.Recv(&req, RequestFDs); err != io.EOF {
		t.Fatalf("Recv after the peer closed: %v", err)
	}
}

func TestLookPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(dir+"/tool", []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(dir+"/data", []byte("x"), 0o644)
	os.Mkdir(dir+"/sub", 0o755)
	for _, tc := range []struct {
		file, path, want string
		err              bool
	}{
		{"tool", "/nonexistent:" + dir, dir + "/tool", false},
		{"data", dir, "", true},
		{"sub", dir, "", true},
		{"./tool", "", dir + "/tool", false},
		{"./data", "", "", true},
		{dir + "/tool", "", dir + "/tool", false},
		{"nothere", dir, "", true},
		{"tool", ".", dir + "/tool", false}, // relative PATH entries are relative to the command's dir
	} {
		got, err := lookPath(tc.file, tc.path, dir)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("lookPath(%q, %q) = %q, %v", tc.file, tc.path, got, err)
		}
	}
	if _, err := lookPath("nothere", dir, dir); err != errNotFound {
		t.Errorf("missing command: %v, want errNotFound", err)
	}
}

func TestParseIPv4Port(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:3128": "127.0.0.1:3128", "0.0.0.0:0": "0.0.0.0:0", "10.1.2.255:65535": "10.1.2.255:65535",
		"127.0.0.1": "", "127.0.0:80": "", "127.0.0.256:80": "", "127.0.0.1:65536": "", "[::1]:80": "",
		"127.0.0.01:80": "", "a.b.c.d:80": "", "127.0.0.1:": "", ":80": "", "127.0.0.1:-1": "",
	} {
		sa, ok := parseIPv4Port(in)
		got := ""
		if ok {
			got = fmt.Sprintf("%d.%d.%d.%d:%d", sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3], sa.Port)
		}
		if got != want {
			t.Errorf("parseIPv4Port(%q) = %q, want %q", in, got, want)
		}
	}
}
