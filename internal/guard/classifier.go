package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Classifier is the optional injection classifier (issue item 6): an HTTP endpoint that scores
// untrusted content. It can only add friction: a score over Threshold flags the source in the
// Context, and while a source is flagged Check turns allow into ask for consequential actions
// (rule "classifier"). It never approves anything and never loosens a verdict; a failure
// (timeout, HTTP error, malformed or out-of-range answer) flags nothing unless FailFlag is set,
// and is returned so that it can be audited.
//
// Protocol: POST URL with Content-Type application/json and body {"source": "...", "text": "..."};
// the answer is {"score": x} with 0 <= x <= 1.
type Classifier struct {
	URL       string
	Threshold float64       // flag when score > Threshold (default 0.5 when 0)
	Timeout   time.Duration // per request (default 5s when 0)
	Client    *http.Client  // default http.DefaultClient; point it at the egress proxy if needed
	// FailFlag treats a failed request as a flag (more friction), for deployments that prefer
	// to fail towards asking.
	FailFlag bool
	// MaxText caps the text sent (default 64 KiB); the rest is not scored.
	MaxText int
}

// Assessment is a classifier's answer for one piece of content.
type Assessment struct {
	Score   float64 `json:"score"`
	Flagged bool    `json:"flagged"`
	Err     string  `json:"error,omitempty"`
}

// Assess scores text from source. It never returns an error: a failure is in Assessment.Err
// (and flags the content only with FailFlag).
func (c *Classifier) Assess(ctx context.Context, source, text string) Assessment {
	if c == nil {
		return Assessment{Err: "classifier: none configured"}
	}
	score, err := c.score(ctx, source, text)
	if err != nil {
		return Assessment{Flagged: c.FailFlag, Err: err.Error()}
	}
	th := c.Threshold
	if th == 0 {
		th = 0.5
	}
	return Assessment{Score: score, Flagged: score > th}
}

// Observe assesses untrusted content and records a flag in gctx when it is flagged. Call it
// where the runner calls Context.AddUntrusted, if a classifier is configured.
func (c *Classifier) Observe(ctx context.Context, gctx *Context, source, text string) Assessment {
	a := c.Assess(ctx, source, text)
	if a.Flagged {
		gctx.Flag(source, a.Score)
	}
	return a
}

func (c *Classifier) score(ctx context.Context, source, text string) (float64, error) {
	if c == nil || c.URL == "" {
		return 0, errors.New("classifier: no endpoint")
	}
	to := c.Timeout
	if to <= 0 {
		to = 5 * time.Second
	}
	max := c.MaxText
	if max <= 0 {
		max = 64 << 10
	}
	if len(text) > max {
		text = text[:max]
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	body, err := json.Marshal(map[string]string{"source": source, "text": text})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("classifier: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	cl := c.Client
	if cl == nil {
		cl = http.DefaultClient
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, fmt.Errorf("classifier: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("classifier: HTTP %d", resp.StatusCode)
	}
	var out struct {
		Score *float64 `json:"score"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out); err != nil {
		return 0, fmt.Errorf("classifier: bad answer: %w", err)
	}
	if out.Score == nil || *out.Score < 0 || *out.Score > 1 || *out.Score != *out.Score {
		return 0, errors.New("classifier: answer has no score in [0, 1]")
	}
	return *out.Score, nil
}
