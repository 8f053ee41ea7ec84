package inside

import (
	"bufio"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The bridge asks for a connection per accepted client and splices the two, half-closes
// included; a refused dial is a 502 to the client.
func TestBridge(t *testing.T) {
	t.Parallel()
	helperEnd, backendEnd := connPair(t)
	br, err := newBridge(helperEnd, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer br.close()
	go br.serve()
	// The helper's request loop, reduced to the bridge's answers.
	go func() {
		for {
			var req Request
			files, err := helperEnd.Recv(&req, RequestFDs)
			if err != nil {
				return
			}
			br.deliver(req.ID, files, req.Err)
		}
	}()
	// The backend: the first dial is refused, the rest get an echo server's socket.
	go func() {
		for {
			var r Reply
			if _, err := backendEnd.Recv(&r, nil); err != nil {
				return
			}
			if r.Dial == 1 {
				backendEnd.Send(Request{ID: r.Dial, Conn: true, Err: "no proxy"})
				continue
			}
			fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			theirs, ours := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
			backendEnd.Send(Request{ID: r.Dial, Conn: true, FDs: 1}, theirs)
			theirs.Close()
			go func() {
				defer ours.Close()
				b, _ := io.ReadAll(ours) // until the client's half-close
				ours.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	addr := br.ln.Addr().String()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(line, "HTTP/1.1 502 ") {
		t.Errorf("refused dial: %q", line)
	}
	for range 3 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "hello through the bridge")
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "HELLO THROUGH THE BRIDGE" {
			t.Errorf("spliced: %q, %v", got, err)
		}
	}
	// An answer nobody waits for is closed, not kept.
	r, w, _ := os.Pipe()
	br.deliver(99, []*os.File{w}, "")
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("an unclaimed descriptor was kept: %d, %v", n, err)
	}
	r.Close()
}
