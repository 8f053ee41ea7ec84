package tool

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// How a bash call's output is kept and streamed.
const (
	// bashLogHead and bashLogTail bound the output kept in memory for the saved log: its
	// beginning and its end; past both, the middle is left out of the log too.
	bashLogHead = 8 << 20
	bashLogTail = 2 << 20
	// bashStreamDelay is how long streamed output is gathered before it is sent, so that many
	// small writes make one tool.output event.
	bashStreamDelay = 100 * time.Millisecond
	// bashStreamChunk is the largest chunk sent to Env.Output at once.
	bashStreamChunk = 16 << 10
	// bashStreamPending bounds the output waiting for a slow consumer; past it, output is
	// dropped from the stream (not from the result) and the stream says how much.
	bashStreamPending = 1 << 20
)

// bashLogMu serializes picking log numbers.
var bashLogMu sync.Mutex

// bashOutput collects a command's stdout and stderr, interleaved in the order they arrive:
// the first bashLogHead bytes, and a ring of the last bashLogTail bytes after them. It also
// streams them to Env.Output without ever blocking the command on a slow consumer.
type bashOutput struct {
	mu    sync.Mutex
	head  []byte
	tail  ring
	total int64

	stream *bashStream
}

func newBashOutput(out func(stream, chunk string)) *bashOutput {
	o := &bashOutput{tail: ring{buf: make([]byte, 0, 64<<10), max: bashLogTail}}
	if out != nil {
		o.stream = newBashStream(out)
	}
	return o
}

type bashWriter struct {
	o      *bashOutput
	stream string
}

func (w bashWriter) Write(p []byte) (int, error) {
	w.o.mu.Lock()
	w.o.total += int64(len(p))
	rest := p
	if n := bashLogHead - len(w.o.head); n > 0 {
		n = min(n, len(rest))
		w.o.head = append(w.o.head, rest[:n]...)
		rest = rest[n:]
	}
	w.o.tail.write(rest)
	w.o.mu.Unlock()
	if w.o.stream != nil {
		w.o.stream.write(w.stream, p)
	}
	return len(p), nil
}

func (o *bashOutput) writer(stream string) io.Writer { return bashWriter{o: o, stream: stream} }

// close sends what is left to stream and waits until it is sent.
func (o *bashOutput) close() {
	if o.stream != nil {
		o.stream.close()
	}
}

// capped reports whether the model gets less than the whole output.
func (o *bashOutput) capped() bool { return o.total > MaxBashOutput }

// dropped is how much of the output the log leaves out.
func (o *bashOutput) dropped() int64 { return o.total - int64(len(o.head)) - int64(o.tail.len()) }

// logBytes is the output as kept for the log.
func (o *bashOutput) logBytes() []byte {
	var b bytes.Buffer
	b.Write(o.head)
	if d := o.dropped(); d > 0 {
		fmt.Fprintf(&b, "\n[… %d bytes left out of this log …]\n", d)
	}
	b.Write(o.tail.bytes())
	return b.Bytes()
}

// modelText is what the model gets: the whole output, or past MaxBashOutput its head and its
// tail around a marker that says how much was left out and note (where the whole is).
func (o *bashOutput) modelText(note string) string {
	if !o.capped() {
		return validUTF8(append(append([]byte(nil), o.head...), o.tail.bytes()...))
	}
	half := MaxBashOutput / 2
	head := cutHead(o.head, half)
	var tail []byte
	if o.dropped() == 0 {
		all := append(append([]byte(nil), o.head...), o.tail.bytes()...)
		tail = cutTail(all, half)
	} else {
		tail = cutTail(o.tail.bytes(), half)
	}
	omitted := o.total - int64(len(head)) - int64(len(tail))
	marker := fmt.Sprintf("[… %d bytes omitted", omitted)
	if note != "" {
		marker += "; " + note
	}
	marker += "]"
	h := validUTF8(head)
	if !strings.HasSuffix(h, "\n") {
		h += "\n"
	}
	return h + marker + "\n" + validUTF8(tail)
}

// cutHead is the start of b, at most n bytes, ending after a newline when one is near the
// cut, and never inside a UTF-8 sequence.
func cutHead(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[:n]
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 && i >= n-2048 {
		return b[:i+1]
	}
	return b[:len(b)-incompleteSuffix(b)]
}

// cutTail is the end of b, at most n bytes, starting after a newline when one is near the cut,
// and never inside a UTF-8 sequence.
func cutTail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[len(b)-n:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 && i < 2048 && i+1 < len(b) {
		return b[i+1:]
	}
	for i := 0; i < utf8.UTFMax && i < len(b) && !utf8.RuneStart(b[0]); i++ {
		b = b[1:]
	}
	return b
}

func validUTF8(b []byte) string { return strings.ToValidUTF8(string(b), "\uFFFD") }

// ring keeps the last max bytes written to it.
type ring struct {
	buf   []byte // grows up to max, then wraps
	start int    // index of the oldest byte once full
	max   int
}

func (r *ring) write(p []byte) {
	if len(p) >= r.max {
		r.buf = append(r.buf[:0], p[len(p)-r.max:]...)
		r.start = 0
		return
	}
	if room := r.max - len(r.buf); room > 0 {
		n := min(room, len(p))
		r.buf = append(r.buf, p[:n]...)
		p = p[n:]
	}
	for len(p) > 0 {
		n := copy(r.buf[r.start:], p)
		p = p[n:]
		r.start = (r.start + n) % r.max
	}
}

func (r *ring) len() int { return len(r.buf) }

func (r *ring) bytes() []byte {
	if len(r.buf) < r.max || r.start == 0 {
		return append([]byte(nil), r.buf...)
	}
	return append(append([]byte(nil), r.buf[r.start:]...), r.buf[:r.start]...)
}

// bashStream sends output to Env.Output from its own goroutine: writes append to a bounded
// queue and never wait for the consumer; chunks of one stream that arrive close together are
// sent as one.
type bashStream struct {
	out func(stream, chunk string)

	mu      sync.Mutex
	segs    []bashSeg
	pending int
	dropped map[string]int64
	carry   map[string][]byte // an incomplete UTF-8 sequence held back per stream

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

type bashSeg struct {
	stream string
	data   []byte
}

func newBashStream(out func(stream, chunk string)) *bashStream {
	s := &bashStream{
		out:     out,
		dropped: map[string]int64{},
		carry:   map[string][]byte{},
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go s.loop()
	return s
}

func (s *bashStream) write(stream string, p []byte) {
	s.mu.Lock()
	if s.pending+len(p) > bashStreamPending {
		s.dropped[stream] += int64(len(p))
	} else {
		if n := len(s.segs); n > 0 && s.segs[n-1].stream == stream {
			s.segs[n-1].data = append(s.segs[n-1].data, p...)
		} else {
			s.segs = append(s.segs, bashSeg{stream: stream, data: append([]byte(nil), p...)})
		}
		s.pending += len(p)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *bashStream) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			s.flush(true)
			return
		}
		// Gather what follows shortly after, unless the command ends first.
		t := time.NewTimer(bashStreamDelay)
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			s.flush(true)
			return
		}
		s.flush(false)
	}
}

// flush sends what is queued. Unless final, an incomplete UTF-8 sequence at the end of a
// stream's output is held back for the next flush.
func (s *bashStream) flush(final bool) {
	s.mu.Lock()
	segs := s.segs
	s.segs, s.pending = nil, 0
	dropped := s.dropped
	s.dropped = map[string]int64{}
	s.mu.Unlock()
	for _, seg := range segs {
		data := append(s.carry[seg.stream], seg.data...)
		delete(s.carry, seg.stream)
		if !final {
			if k := incompleteSuffix(data); k > 0 {
				s.carry[seg.stream] = append([]byte(nil), data[len(data)-k:]...)
				data = data[:len(data)-k]
			}
		}
		for len(data) > 0 {
			n := min(len(data), bashStreamChunk)
			for n < len(data) && n > 0 && !utf8.RuneStart(data[n]) {
				n--
			}
			if n == 0 {
				n = min(len(data), bashStreamChunk)
			}
			s.out(seg.stream, validUTF8(data[:n]))
			data = data[n:]
		}
	}
	if final {
		for stream, rest := range s.carry {
			if len(rest) > 0 {
				s.out(stream, validUTF8(rest))
			}
		}
		s.carry = map[string][]byte{}
	}
	for _, stream := range []string{"stdout", "stderr"} {
		if n := dropped[stream]; n > 0 {
			s.out(stream, fmt.Sprintf("\n[… %d bytes not streamed: output came faster than it could be shown; the result has it]\n", n))
		}
	}
}

// incompleteSuffix is the length of an incomplete UTF-8 sequence at the end of b.
func incompleteSuffix(b []byte) int {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		c := b[len(b)-i]
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-i:]) {
				return 0
			}
			return i
		}
	}
	return 0
}

func (s *bashStream) close() {
	close(s.stop)
	<-s.done
}
