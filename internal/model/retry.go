package model

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RetryConfig is the retry policy of WithRetry. The zero value is usable: every zero field takes
// the default documented on it.
type RetryConfig struct {
	// MaxAttempts is how many times a call is tried in all, the first attempt included.
	// Default 5. 1 disables retries.
	MaxAttempts int
	// BaseDelay is the backoff before the second attempt; it doubles for each later attempt.
	// Default 500ms.
	BaseDelay time.Duration
	// MaxDelay caps the exponential backoff (before jitter). Default 30s. A server's Retry-After
	// may ask for a longer wait than this; it is honoured up to MaxRetryAfter.
	MaxDelay time.Duration
	// MaxRetryAfter is the longest Retry-After the policy will wait for. A server asking for
	// longer fails the call at once with an error saying so (wrapping the provider's error),
	// rather than blocking the task for an unbounded time. Default 2m.
	MaxRetryAfter time.Duration
	// Sleep waits for d or until ctx is done, returning ctx's error in that case. Default: a
	// timer that honours ctx. Tests replace it to record the waits without sleeping.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) used for jitter. Default math/rand/v2's Float64.
	Rand func() float64
	// OnRetry, when set, is called before each wait with the attempt that failed (1-based),
	// its error and how long the policy will wait before the next attempt.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// Defaults of RetryConfig.
const (
	DefaultMaxAttempts   = 5
	DefaultBaseDelay     = 500 * time.Millisecond
	DefaultMaxDelay      = 30 * time.Second
	DefaultMaxRetryAfter = 2 * time.Minute
)

func (c RetryConfig) withDefaults() RetryConfig {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BaseDelay <= 0 {
		c.BaseDelay = DefaultBaseDelay
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.Sleep == nil {
		c.Sleep = sleepCtx
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	return c
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// WithRetry wraps p so that calls failing with a retryable *Error (429, 408, 409, 5xx including
// 529, transport errors, a stream cut mid-message) are tried again, up to cfg.MaxAttempts in all.
// The wait before attempt n+1 is full-jitter exponential backoff, a uniformly random duration in
// [0, min(MaxDelay, BaseDelay*2^(n-1))), raised to the error's RetryAfter when the server sent
// one. Any other error (400, 401, 403, 404, an error that is not an *Error, the context being
// cancelled) is returned at once, as is everything once ctx is done.
//
// A streamed attempt may have delivered text deltas through Request.OnText before it failed; the
// retried attempt streams its text from the start again, so an OnText consumer can see the
// beginning of a reply twice. The Response returned holds only the successful attempt's content.
//
// The wrapper keeps p's Name and Model.
func WithRetry(p Provider, cfg RetryConfig) Provider {
	return &retrying{p: p, cfg: cfg.withDefaults()}
}

type retrying struct {
	p   Provider
	cfg RetryConfig
}

func (r *retrying) Name() string  { return r.p.Name() }
func (r *retrying) Model() string { return r.p.Model() }

func (r *retrying) Complete(ctx context.Context, req Request) (*Response, error) {
	for attempt := 1; ; attempt++ {
		resp, err := r.p.Complete(ctx, req)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		var me *Error
		if !errors.As(err, &me) || !me.Retryable {
			return nil, err
		}
		if attempt >= r.cfg.MaxAttempts {
			return nil, fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		if me.RetryAfter > r.cfg.MaxRetryAfter {
			return nil, fmt.Errorf("server asked to retry after %v, longer than the %v this policy waits: %w",
				me.RetryAfter, r.cfg.MaxRetryAfter, err)
		}
		wait := r.backoff(attempt)
		if me.RetryAfter > wait {
			wait = me.RetryAfter
		}
		if r.cfg.OnRetry != nil {
			r.cfg.OnRetry(attempt, err, wait)
		}
		if serr := r.cfg.Sleep(ctx, wait); serr != nil {
			return nil, fmt.Errorf("%w (while waiting to retry after: %v)", serr, err)
		}
	}
}

// backoff is the jittered wait after the attempt'th failure.
func (r *retrying) backoff(attempt int) time.Duration {
	ceiling := float64(r.cfg.BaseDelay) * math.Pow(2, float64(attempt-1))
	if ceiling > float64(r.cfg.MaxDelay) || math.IsInf(ceiling, 0) || math.IsNaN(ceiling) {
		ceiling = float64(r.cfg.MaxDelay)
	}
	f := r.cfg.Rand()
	if f < 0 {
		f = 0
	}
	if f > 1 {
		f = 1
	}
	return time.Duration(f * ceiling)
}

// ParseRetryAfter reads how long a server asked the client to wait: the retry-after-ms header
// (milliseconds) if present, else Retry-After as delay-seconds or an HTTP-date (relative to now).
// It returns 0 when neither is present or parseable, or the date is in the past.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	if h == nil {
		return 0
	}
	if v := strings.TrimSpace(h.Get("retry-after-ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && !math.IsInf(ms, 0) {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("retry-after"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 || math.IsInf(secs, 0) || math.IsNaN(secs) {
			return 0
		}
		if secs > float64(math.MaxInt64/int64(time.Second)) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// IsTransportError reports whether err is a network-level failure worth retrying: a connection
// refused, reset or timed out, a body cut short (unexpected EOF), an HTTP/2 stream reset. It is
// false for context cancellation, TLS certificate problems, unknown hosts and malformed URLs,
// which a retry will not fix.
func IsTransportError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var (
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		recordHd tls.RecordHeaderError
		dnsErr   *net.DNSError
	)
	if errors.As(err, &certErr) || errors.As(err, &unknown) || errors.As(err, &hostErr) ||
		errors.As(err, &invalid) || errors.As(err, &recordHd) {
		return false
	}
	if errors.As(err, &dnsErr) {
		return !dnsErr.IsNotFound
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, net.ErrClosed) {
		return true
	}
	// *url.Error is itself a net.Error whatever it wraps, so look at what it wraps.
	inner := err
	var ue *url.Error
	for errors.As(inner, &ue) {
		inner = ue.Err
	}
	var ne net.Error
	if errors.As(inner, &ne) {
		return true
	}
	// net/http's HTTP/2 errors are unexported types; recognise them by their text.
	msg := err.Error()
	for _, s := range []string{"http2: ", "stream error", "GOAWAY", "connection reset", "server closed idle connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
