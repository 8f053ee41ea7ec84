package model_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/model/modeltest"
)

// fakeProvider returns errs in order, then a response.
type fakeProvider struct {
	mu    sync.Mutex
	errs  []error
	calls int
}

func (f *fakeProvider) Name() string  { return "fake" }
func (f *fakeProvider) Model() string { return "fake-1" }

func (f *fakeProvider) Complete(ctx context.Context, req model.Request) (*model.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	return &model.Response{StopReason: "end_turn", Model: "fake-1"}, nil
}

// alwaysFail fails every call with err.
type alwaysFail struct {
	fakeProvider
	err error
}

func (a *alwaysFail) Complete(ctx context.Context, req model.Request) (*model.Response, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	return nil, a.err
}

func retryable(code int) *model.Error {
	return &model.Error{Provider: "fake", StatusCode: code, Retryable: model.RetryableStatus(code), Err: errors.New("boom")}
}

func TestWithRetryKeepsNameAndModel(t *testing.T) {
	t.Parallel()
	p := model.WithRetry(&fakeProvider{}, model.RetryConfig{})
	if p.Name() != "fake" || p.Model() != "fake-1" {
		t.Fatalf("Name/Model = %q/%q", p.Name(), p.Model())
	}
}

func TestWithRetrySucceedsAfterRetryableErrors(t *testing.T) {
	t.Parallel()
	fp := &fakeProvider{errs: []error{retryable(429), retryable(500), retryable(529), retryable(408), &model.Error{Provider: "fake", Retryable: true, Err: io.ErrUnexpectedEOF}}}
	var sr modeltest.Sleeps
	var retries []int
	p := model.WithRetry(fp, model.RetryConfig{
		MaxAttempts: 6,
		Sleep:       sr.Sleep,
		Rand:        func() float64 { return 0.5 },
		OnRetry:     func(attempt int, err error, wait time.Duration) { retries = append(retries, attempt) },
	})
	resp, err := p.Complete(context.Background(), model.Request{})
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if resp.StopReason != "end_turn" {
		t.Fatalf("resp = %+v", resp)
	}
	if fp.calls != 6 {
		t.Fatalf("calls = %d, want 6", fp.calls)
	}
	if len(sr.Waits()) != 5 || fmt.Sprint(retries) != "[1 2 3 4 5]" {
		t.Fatalf("waits = %v, OnRetry attempts = %v", sr.Waits(), retries)
	}
}

func TestWithRetryBackoffGrows(t *testing.T) {
	t.Parallel()
	var sr modeltest.Sleeps
	p := model.WithRetry(&alwaysFail{err: retryable(503)}, model.RetryConfig{
		Sleep: sr.Sleep,
		Rand:  func() float64 { return 0.999999 },
	})
	_, err := p.Complete(context.Background(), model.Request{})
	if err == nil {
		t.Fatal("want error")
	}
	// Defaults: 5 attempts, base 500ms: ceilings 500ms, 1s, 2s, 4s.
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
	if len(sr.Waits()) != len(want) {
		t.Fatalf("waits = %v", sr.Waits())
	}
	for i, w := range sr.Waits() {
		if w > want[i] || w < want[i]*99/100 {
			t.Errorf("wait %d = %v, want just under %v", i, w, want[i])
		}
		if i > 0 && w <= sr.Waits()[i-1] {
			t.Errorf("wait %d = %v did not grow from %v", i, w, sr.Waits()[i-1])
		}
	}
}

func TestWithRetryJitterBoundedByMaxDelay(t *testing.T) {
	t.Parallel()
	for _, rnd := range []func() float64{nil, func() float64 { return 1 }, func() float64 { return 0 }} {
		var sr modeltest.Sleeps
		p := model.WithRetry(&alwaysFail{err: retryable(500)}, model.RetryConfig{
			MaxAttempts: 20,
			BaseDelay:   time.Second,
			MaxDelay:    3 * time.Second,
			Sleep:       sr.Sleep,
			Rand:        rnd,
		})
		if _, err := p.Complete(context.Background(), model.Request{}); err == nil {
			t.Fatal("want error")
		}
		if len(sr.Waits()) != 19 {
			t.Fatalf("waits = %d, want 19", len(sr.Waits()))
		}
		for i, w := range sr.Waits() {
			if w < 0 || w > 3*time.Second {
				t.Errorf("wait %d = %v outside [0, 3s]", i, w)
			}
		}
		if rnd != nil && rnd() == 1 && sr.Waits()[18] != 3*time.Second {
			t.Errorf("with Rand=1 the late waits should sit at MaxDelay, got %v", sr.Waits()[18])
		}
	}
}

func TestWithRetryMaxAttempts(t *testing.T) {
	t.Parallel()
	fp := &alwaysFail{err: retryable(429)}
	var sr modeltest.Sleeps
	p := model.WithRetry(fp, model.RetryConfig{MaxAttempts: 3, Sleep: sr.Sleep})
	_, err := p.Complete(context.Background(), model.Request{})
	if fp.calls != 3 || len(sr.Waits()) != 2 {
		t.Fatalf("calls = %d waits = %d, want 3 and 2", fp.calls, len(sr.Waits()))
	}
	var me *model.Error
	if !errors.As(err, &me) || me.StatusCode != 429 {
		t.Fatalf("err = %v, want wrapped *model.Error 429", err)
	}
	if !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("err = %q, want it to say how many attempts", err)
	}
}

func TestWithRetryNonRetryableReturnsAtOnce(t *testing.T) {
	t.Parallel()
	for _, e := range []error{
		retryable(400), retryable(401), retryable(403), retryable(404),
		errors.New("not a model.Error"),
		fmt.Errorf("anthropic: %w", context.Canceled),
	} {
		fp := &alwaysFail{err: e}
		var sr modeltest.Sleeps
		p := model.WithRetry(fp, model.RetryConfig{Sleep: sr.Sleep})
		_, err := p.Complete(context.Background(), model.Request{})
		if !errors.Is(err, e) {
			t.Errorf("err = %v, want %v", err, e)
		}
		if fp.calls != 1 || len(sr.Waits()) != 0 {
			t.Errorf("%v: calls = %d waits = %v, want 1 call and no wait", e, fp.calls, sr.Waits())
		}
	}
}

func TestWithRetryHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	e := retryable(429)
	e.RetryAfter = 7 * time.Second
	fp := &fakeProvider{errs: []error{e}}
	var sr modeltest.Sleeps
	p := model.WithRetry(fp, model.RetryConfig{Sleep: sr.Sleep, Rand: func() float64 { return 0.1 }})
	if _, err := p.Complete(context.Background(), model.Request{}); err != nil {
		t.Fatal(err)
	}
	if len(sr.Waits()) != 1 || sr.Waits()[0] < 7*time.Second {
		t.Fatalf("waits = %v, want one wait >= 7s", sr.Waits())
	}
}

func TestWithRetryRetryAfterTooLong(t *testing.T) {
	t.Parallel()
	e := retryable(429)
	e.RetryAfter = 10 * time.Minute
	fp := &alwaysFail{err: e}
	var sr modeltest.Sleeps
	p := model.WithRetry(fp, model.RetryConfig{Sleep: sr.Sleep})
	_, err := p.Complete(context.Background(), model.Request{})
	if err == nil || !errors.Is(err, e) {
		t.Fatalf("err = %v, want it to wrap the 429", err)
	}
	if !strings.Contains(err.Error(), "retry after 10m0s") || !strings.Contains(err.Error(), "2m0s") {
		t.Fatalf("err = %q, want it to name the asked and allowed waits", err)
	}
	if fp.calls != 1 || len(sr.Waits()) != 0 {
		t.Fatalf("calls = %d waits = %v", fp.calls, sr.Waits())
	}
}

func TestWithRetryContextCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	fp := &alwaysFail{err: retryable(503)}
	ctx, cancel := context.WithCancel(context.Background())
	p := model.WithRetry(fp, model.RetryConfig{
		BaseDelay: time.Hour, MaxDelay: time.Hour, Rand: func() float64 { return 1 },
		OnRetry: func(int, error, time.Duration) { cancel() },
	})
	start := time.Now()
	_, err := p.Complete(ctx, model.Request{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("did not return promptly")
	}
	if fp.calls != 1 {
		t.Fatalf("calls = %d", fp.calls)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{"Retry-After": {"2"}}, 2 * time.Second},
		{http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond},
		{http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"9"}}, 250 * time.Millisecond},
		{http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}, 30 * time.Second},
		{http.Header{"Retry-After": {now.Add(-30 * time.Second).Format(http.TimeFormat)}}, 0},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"-3"}}, 0},
		{http.Header{}, 0},
		{nil, 0},
	}
	for _, c := range cases {
		if got := model.ParseRetryAfter(c.h, now); got != c.want {
			t.Errorf("ParseRetryAfter(%v) = %v, want %v", c.h, got, c.want)
		}
	}
}

func TestIsTransportError(t *testing.T) {
	t.Parallel()
	yes := []error{
		io.ErrUnexpectedEOF,
		&url.Error{Op: "Post", URL: "http://x", Err: io.EOF},
		&url.Error{Op: "Post", URL: "http://x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}},
		fmt.Errorf("read: %w", syscall.ECONNRESET),
		&net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true},
	}
	no := []error{
		nil,
		context.Canceled,
		fmt.Errorf("x: %w", context.DeadlineExceeded),
		errors.New("bad request"),
		&url.Error{Op: "Post", URL: "ftp://x", Err: errors.New("unsupported protocol scheme \"ftp\"")},
		&net.DNSError{Err: "no such host", Name: "nope.invalid", IsNotFound: true},
	}
	for _, e := range yes {
		if !model.IsTransportError(e) {
			t.Errorf("IsTransportError(%v) = false, want true", e)
		}
	}
	for _, e := range no {
		if model.IsTransportError(e) {
			t.Errorf("IsTransportError(%v) = true, want false", e)
		}
	}
}
