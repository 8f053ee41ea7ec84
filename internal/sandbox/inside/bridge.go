package inside

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// proxyDialWait bounds how long a connection accepted on the proxy address waits for the
// backend to hand in its connection to the egress proxy.
const proxyDialWait = 30 * time.Second

// bridge serves the proxy address inside the sandbox: every accepted connection is joined to
// a connection to the egress proxy that the backend dials on the host and passes in over the
// control socket. Nothing else leaves the sandbox's network namespace.
type bridge struct {
	conn *Conn
	ln   net.Listener

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan dialed
}

type dialed struct {
	f   *os.File
	err string
}

func newBridge(conn *Conn, addr string) (*bridge, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy listener: %w", err)
	}
	return &bridge{conn: conn, ln: ln, waiting: map[uint64]chan dialed{}}, nil
}

// serve accepts until the listener is closed.
func (b *bridge) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: the command's limits
			continue
		}
		go b.join(c)
	}
}

func (b *bridge) close() { b.ln.Close() }

// deliver hands in the backend's answer to Dial request id; the caller's file is taken.
func (b *bridge) deliver(id uint64, files []*os.File, errMsg string) {
	b.mu.Lock()
	ch := b.waiting[id]
	delete(b.waiting, id)
	b.mu.Unlock()
	var d dialed
	if len(files) == 1 {
		d.f = files[0]
	} else {
		closeAll(files)
		if errMsg == "" {
			errMsg = fmt.Sprintf("%d descriptors, want 1", len(files))
		}
	}
	d.err = errMsg
	if ch == nil {
		if d.f != nil {
			d.f.Close() // its connection gave up waiting
		}
		return
	}
	ch <- d
}

// join asks the backend for a proxy connection and splices c to it.
func (b *bridge) join(c net.Conn) {
	defer c.Close()
	ch := make(chan dialed, 1)
	b.mu.Lock()
	b.next++
	id := b.next
	b.waiting[id] = ch
	b.mu.Unlock()
	forget := func() {
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
	}
	if err := b.conn.Send(Reply{Dial: id}); err != nil {
		forget()
		return
	}
	var d dialed
	t := time.NewTimer(proxyDialWait)
	defer t.Stop()
	select {
	case d = <-ch:
	case <-t.C:
		forget()
		d.err = "the egress proxy did not answer"
	}
	if d.f == nil {
		refuse(c, d.err)
		return
	}
	pc, err := net.FileConn(d.f)
	d.f.Close()
	if err != nil {
		refuse(c, err.Error())
		return
	}
	defer pc.Close()
	splice(c, pc)
}

// refuse answers a client the proxy could not be reached for, as a proxy would.
func refuse(c net.Conn, why string) {
	body := "keepup egress: the egress proxy cannot be reached: " + why + "\n"
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways until both directions ended, passing on each half-close.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	one := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok && err == nil {
			_ = cw.CloseWrite()
		} else {
			// An error either way ends the whole connection.
			a.Close()
			b.Close()
		}
	}
	wg.Add(2)
	go one(a, b)
	go one(b, a)
	wg.Wait()
}
