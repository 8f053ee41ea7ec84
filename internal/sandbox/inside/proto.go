package inside

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The hidden subcommands of the keepup binary that run this package's mains.
const (
	HelperCommand = "__sandbox-helper"
	ExecCommand   = "__sandbox-exec"
)

// ControlFD is the file descriptor the helper inherits its end of the control socket as.
const ControlFD = 3

// HelperConfig is the session-wide configuration the backend hands the helper as its one
// argument (JSON).
type HelperConfig struct {
	// Landlock lists the paths the commands may read and write. Empty lists still restrict:
	// a command under Landlock can touch nothing that is not listed.
	Landlock Landlock `json:"landlock"`
	// Rlimits are set in every exec stub before it starts its command.
	Rlimits Rlimits `json:"rlimits"`
	// Proxy, when set, is the TCP address ("127.0.0.1:3128") the helper listens on in the
	// sandbox's network namespace before anything runs there. The listening socket goes to the
	// backend with the ready reply and the helper keeps no copy: the backend accepts the
	// commands' connections on the host, so no byte of them passes through the sandbox's
	// processes, and nothing inside can take the address over.
	Proxy string `json:"proxy,omitempty"`
}

// Landlock is the filesystem ruleset the exec stub applies to each command.
type Landlock struct {
	RO []string `json:"ro,omitempty"` // read and execute
	RW []string `json:"rw,omitempty"` // read, execute, write, create, remove, rename
	// Dev lists paths that are read-write and also allow ioctl on device files (/dev).
	Dev []string `json:"dev,omitempty"`
}

// Rlimits are the resource limits of every command; zero fields leave the limit alone.
type Rlimits struct {
	NoFile uint64 `json:"nofile,omitempty"`
	FSize  uint64 `json:"fsize,omitempty"`
	NProc  uint64 `json:"nproc,omitempty"`
	AS     uint64 `json:"as,omitempty"`
}

// Request is one message from the backend to the helper.
type Request struct {
	ID uint64 `json:"id"`
	// Run, when set, starts a command; the request carries three file descriptors (stdin,
	// stdout, stderr, in that order) as SCM_RIGHTS.
	Run *Run `json:"run,omitempty"`
	// Kill kills the command started by the run request with this ID (and everything it
	// started); the run request still gets its reply.
	Kill bool `json:"kill,omitempty"`
	// FDs is the number of file descriptors sent with this request.
	FDs int `json:"fds,omitempty"`
}

// Run is a command to run.
type Run struct {
	Args      []string `json:"args"`
	Dir       string   `json:"dir"`
	Env       []string `json:"env"`
	TimeoutNS int64    `json:"timeout_ns,omitempty"`
}

// Reply is one message from the helper to the backend: the first, with ID 0, says the helper
// is ready; every other one ends the run request with its ID.
type Reply struct {
	ID    uint64 `json:"id"`
	Ready bool   `json:"ready,omitempty"`
	// FDs is the number of file descriptors sent with this reply: the ready reply carries the
	// proxy address's listening socket when HelperConfig.Proxy is set.
	FDs int `json:"fds,omitempty"`
	// Exit is the command's exit code, 128+N when a signal N killed it.
	Exit     int    `json:"exit"`
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	Killed   bool   `json:"killed,omitempty"` // a kill request ended it
	// LandlockABI is the Landlock ABI version the command ran under (0: none). In the ready
	// reply it is what the kernel offers.
	LandlockABI int `json:"landlock_abi"`
	// Err says why the command could not be run at all (not its failure).
	Err string `json:"err,omitempty"`
}

// execSpec is a request the helper sends an exec stub on its socket (fd 3): a command, with
// FDs (3) descriptors: its stdin, stdout and stderr; or, with Kill set, the request to kill
// the command with sequence number Seq.
type execSpec struct {
	Run
	Landlock Landlock `json:"landlock"`
	Rlimits  Rlimits  `json:"rlimits"`
	FDs      int      `json:"fds"`
	// Seq numbers the stub's commands from 1; a kill request names the one it kills.
	Seq  uint64 `json:"seq"`
	Kill bool   `json:"kill,omitempty"`
}

// execResult is what an exec stub reports on its socket when a command has ended and nothing
// it started is left.
type execResult struct {
	Exit        int    `json:"exit"`
	Signal      string `json:"signal,omitempty"`
	TimedOut    bool   `json:"timed_out,omitempty"`
	Killed      bool   `json:"killed,omitempty"`
	LandlockABI int    `json:"landlock_abi"`
	Err         string `json:"err,omitempty"`
	// Again says the stub waits for another command; else it exits.
	Again bool `json:"again,omitempty"`
}

// maxFrame bounds one message; a command line and environment are far smaller.
const maxFrame = 16 << 20

// maxFDs bounds the descriptors one message may carry.
const maxFDs = 8

// Conn is one end of the control socket: length-prefixed JSON messages, some carrying file
// descriptors. Sends are safe for concurrent use; receives are not.
//
// It works on the socket through an os.File in the runtime's poller (as package net would),
// not a net.UnixConn: package inside does not import net, whose initialization, with that of
// the packages initialized before it, delayed this package's early init() (early.go) by about
// half a millisecond in every helper, exec stub and guard stage started (4.9 ms to reach it
// against 4.4, process start included, fresh builds of both).
type Conn struct {
	f  *os.File
	rc syscall.RawConn
	wm sync.Mutex

	buf    []byte // received bytes not yet parsed
	rbuf   []byte // read buffer
	oob    []byte
	fm     sync.Mutex // guards fds and closed: Close may run while a Recv is under way
	closed bool
	fds    []int // received and not yet claimed by a message, in arrival order
	// PeerPID is the sender's pid, in this process's pid namespace, from the credentials of
	// the last message that carried any (see PassCred, SendCred).
	PeerPID int
}

// NewConn wraps f, a connected AF_UNIX stream socket. f is not used afterwards and may be
// closed by the caller.
func NewConn(f *os.File) (*Conn, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		unix.Close(fd)
		return nil, fmt.Errorf("control socket: %s is not a stream socket (%v)", f.Name(), err)
	}
	if dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || dom != unix.AF_UNIX {
		unix.Close(fd)
		return nil, errors.New("control socket: not a unix socket")
	}
	// Non-blocking, so that os.NewFile puts it in the runtime's poller: a Recv waiting on it
	// parks its goroutine, and Close wakes it.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	nf := os.NewFile(uintptr(fd), "control")
	rc, err := nf.SyscallConn()
	if err != nil {
		nf.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Conn{f: nf, rc: rc}, nil
}

// PassCred asks the kernel to deliver senders' credentials (SO_PASSCRED), so that PeerPID
// tells a message sent with SendCred's pid as this process sees it.
func (c *Conn) PassCred() error {
	var serr error
	if err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	return serr
}

// SendCred is Send with the sender's credentials (SCM_CREDENTIALS) attached: the kernel
// checks them and translates the pid into the receiver's pid namespace.
func (c *Conn) SendCred(v any, files ...*os.File) error {
	cred := unix.UnixCredentials(&unix.Ucred{Pid: int32(os.Getpid()), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())})
	return c.send(v, append(cred, rights(files)...))
}

// Send writes v as one message with files as SCM_RIGHTS. The descriptors are duplicated into
// the message; the caller still owns files.
func (c *Conn) Send(v any, files ...*os.File) error {
	return c.send(v, rights(files))
}

// rights is the SCM_RIGHTS control message that passes files (nil for none).
func rights(files []*os.File) []byte {
	if len(files) == 0 {
		return nil
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	return unix.UnixRights(fds...)
}

func (c *Conn) send(v any, oob []byte) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	msg := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(msg, uint32(len(body)))
	copy(msg[4:], body)
	c.wm.Lock()
	defer c.wm.Unlock()
	// A stream socket may take part of a large message; the descriptors travel with the first
	// byte, the rest follows in order because sends are serialized.
	var n int
	var serr error
	if err := c.rc.Write(func(fd uintptr) bool {
		for {
			n, serr = unix.SendmsgN(int(fd), msg, oob, nil, unix.MSG_NOSIGNAL)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	if n < len(msg) {
		_, err = c.f.Write(msg[n:])
	}
	return err
}

// Recv reads the next message into v and returns the descriptors it carried (the number the
// message names in its fds field, read by fdCount). The caller owns the files.
func (c *Conn) Recv(v any, fdCount func(v any) int) ([]*os.File, error) {
	for {
		if len(c.buf) >= 4 {
			n := int(binary.BigEndian.Uint32(c.buf))
			if n > maxFrame {
				return nil, fmt.Errorf("control socket: message of %d bytes", n)
			}
			if len(c.buf) >= 4+n {
				body := c.buf[4 : 4+n]
				err := json.Unmarshal(body, v)
				c.buf = c.buf[4+n:]
				if err != nil {
					return nil, fmt.Errorf("control socket: %w", err)
				}
				want := 0
				if fdCount != nil {
					want = fdCount(v)
				}
				c.fm.Lock()
				if have := len(c.fds); want < 0 || want > have {
					c.fm.Unlock()
					return nil, fmt.Errorf("control socket: message names %d descriptors, %d arrived", want, have)
				}
				files := make([]*os.File, want)
				for i := range want {
					files[i] = os.NewFile(uintptr(c.fds[i]), fmt.Sprintf("fd%d", i))
				}
				c.fds = c.fds[want:]
				c.fm.Unlock()
				return files, nil
			}
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

func (c *Conn) fill() error {
	if c.rbuf == nil {
		c.rbuf = make([]byte, 64<<10)
		c.oob = make([]byte, unix.CmsgSpace(4*maxFDs)+unix.CmsgSpace(unix.SizeofUcred))
	}
	b, oob := c.rbuf, c.oob
	var n, oobn, flags int
	var err error
	if rerr := c.rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, flags, _, err = unix.Recvmsg(int(fd), b, oob, unix.MSG_CMSG_CLOEXEC)
			if err != unix.EINTR {
				return err != unix.EAGAIN
			}
		}
	}); rerr != nil {
		return rerr
	}
	if oobn > 0 {
		cms, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr != nil {
			return fmt.Errorf("control socket: %w", perr)
		}
		for _, cm := range cms {
			if cm.Header.Type == unix.SCM_CREDENTIALS {
				if cred, err := unix.ParseUnixCredentials(&cm); err == nil && cred.Pid > 0 {
					c.PeerPID = int(cred.Pid)
				}
				continue
			}
			fds, perr := unix.ParseUnixRights(&cm)
			if perr != nil {
				continue
			}
			c.fm.Lock()
			if c.closed {
				closeFDs(fds) // arrived after Close
			} else {
				c.fds = append(c.fds, fds...)
			}
			c.fm.Unlock()
		}
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return errors.New("control socket: descriptors were truncated")
	}
	if n > 0 {
		c.buf = append(c.buf, b[:n]...)
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return io.EOF
	}
	return err
}

// Close closes the socket and any descriptors received but not claimed.
func (c *Conn) Close() error {
	c.fm.Lock()
	closeFDs(c.fds)
	c.fds = nil
	c.closed = true
	c.fm.Unlock()
	return c.f.Close()
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// CloseWrite shuts down the sending half, so the peer reads end of file.
func (c *Conn) CloseWrite() error {
	var serr error
	if err := c.rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	return serr
}

// RequestFDs is the fdCount function for a Request.
func RequestFDs(v any) int { return v.(*Request).FDs }

// ReplyFDs is the fdCount function for a Reply.
func ReplyFDs(v any) int { return v.(*Reply).FDs }
