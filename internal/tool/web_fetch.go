package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/keepup/keepup/internal/extract"
	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
)

//go:embed web_fetch.md
var webFetchDescription string

// WebFetch is the web_fetch tool: {url}. Its requests leave only through Env.Web, the session's
// egress proxy.
type WebFetch struct{}

// MaxFetchBytes caps a fetched body.
const MaxFetchBytes = 5 << 20

const webFetchSchema = `{
  "type": "object",
  "properties": {
    "url": {"type": "string", "minLength": 1, "description": "The http or https URL to fetch."}
  },
  "required": ["url"],
  "additionalProperties": false
}`

func (WebFetch) Spec() model.ToolSpec { return spec("web_fetch", webFetchDescription, webFetchSchema) }

func (WebFetch) Prepare(ctx context.Context, env *Env, input json.RawMessage) (*Call, error) {
	var in struct {
		URL string `json:"url"`
	}
	if err := decode("web_fetch", input, &in); err != nil {
		return nil, err
	}
	u, err := url.Parse(strings.TrimSpace(in.URL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, Refusef("%q is not an http or https URL", in.URL)
	}
	if u.User != nil {
		return nil, Refusef("%q carries a user name or password; URLs with credentials are refused", in.URL)
	}
	if env == nil || env.Web == nil {
		return nil, Refusef("this session has no network: web_fetch is unavailable")
	}
	target := u.String()
	return &Call{
		Action: policy.Action{
			Tool:    "web_fetch",
			Ops:     []policy.Op{{Effect: policy.EffectEgress, Subject: target}},
			Summary: "fetch " + target,
		},
		Run: func(ctx context.Context) (*Result, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
			if err != nil {
				return failed(err)
			}
			req.Header.Set("User-Agent", "keepup")
			resp, err := env.Web.Do(req)
			if err != nil {
				return &Result{Content: fmt.Sprintf("fetching %s failed: %v", target, err), IsError: true}, nil
			}
			defer resp.Body.Close()
			if why := resp.Header.Get("X-Keepup-Egress"); why != "" {
				return &Result{Content: fmt.Sprintf("the egress proxy refused %s: %s", target, why), IsError: true}, nil
			}
			body, err := io.ReadAll(io.LimitReader(resp.Body, MaxFetchBytes+1))
			if err != nil {
				return &Result{Content: fmt.Sprintf("reading %s failed: %v", target, err), IsError: true}, nil
			}
			cut := len(body) > MaxFetchBytes
			if cut {
				body = body[:MaxFetchBytes]
			}
			// The page's own style sheets say which of its text is hidden; they are fetched
			// from where the page finally came from, after redirects.
			page := resp.Request.URL
			sctx, cancel := context.WithTimeout(ctx, pageSheetsBudget)
			defer cancel()
			sheets := newPageSheets(sctx, env.Web, page)
			text, err := pageText(resp.Header.Get("Content-Type"), body, extract.HTMLOptions{URL: page, Sheets: sheets.fetch})
			if err != nil {
				return &Result{Content: fmt.Sprintf("%s: %v", target, err), IsError: true}, nil
			}
			if cut {
				text += fmt.Sprintf("\n[web_fetch: the page was cut at %d bytes]", MaxFetchBytes)
			}
			if len(text) > MaxReadBytes {
				text = text[:MaxReadBytes] + "\n[web_fetch: text cut]"
			}
			content := fmt.Sprintf("HTTP %d from %s\n\n%s", resp.StatusCode, target, text)
			return &Result{Content: content, IsError: resp.StatusCode >= 400, Untrusted: true, Sources: []string{"web:" + target}}, nil
		},
	}, nil
}

// pageText turns a response body into text: HTML through extract (main text, hidden text
// marked, style sheets obtained as opt says), text and JSON as they are; anything else is
// refused.
func pageText(contentType string, body []byte, opt extract.HTMLOptions) (string, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "text/html" || mt == "application/xhtml+xml" || mt == "" && strings.Contains(strings.ToLower(string(body[:min(len(body), 512)])), "<html"):
		res, err := extract.HTML(body, opt)
		if err != nil {
			return "", err
		}
		return res.Text, nil
	case strings.HasPrefix(mt, "text/"), mt == "application/json", strings.HasSuffix(mt, "+json"), mt == "application/xml", mt == "":
		res, err := extract.Text("page.txt", body)
		if err != nil {
			return "", err
		}
		return res.Text, nil
	}
	return "", fmt.Errorf("content type %s is not text; web_fetch returns text only", mt)
}

// Limits on the style sheets web_fetch fetches with a page.
const (
	maxPageSheets     = 8
	maxPageSheetBytes = 512 << 10
	pageSheetsBudget  = 10 * time.Second
)

// errOtherOrigin stops a style sheet's redirect to another origin.
var errOtherOrigin = errors.New("redirected to another origin")

// pageSheets fetches a page's style sheets for extract, so that text its sheets hide is
// marked hidden. Only sheets of the page's own origin (scheme, host and port) are fetched,
// with GET through the session's web client: the egress proxy checks and audits them like
// the page, and the policy decision that let the page be fetched covers its origin. A sheet
// anywhere else is never requested, not even by a redirect: its address comes from the page
// alone, and untrusted content must not pick a new destination (the spirit of guard rule R2).
// Such sheets, and those refused, failed or over a limit, come back missing, and extract
// notes them.
type pageSheets struct {
	ctx    context.Context // bounds all the fetches (pageSheetsBudget)
	client *http.Client
	origin *url.URL
	n      int // sheets requested so far
}

func newPageSheets(ctx context.Context, web *http.Client, origin *url.URL) *pageSheets {
	c := *web
	c.Jar = nil // no cookies: no credentials but those the proxy adds by its own rules
	next := web.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !sameOrigin(req.URL, origin) {
			return errOtherOrigin
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 5 {
			return fmt.Errorf("stopped after %d redirects", len(via))
		}
		return nil
	}
	return &pageSheets{ctx: ctx, client: &c, origin: origin}
}

// fetch is extract.HTMLOptions.Sheets: the sheets at urls, fetched at once, the first
// maxPageSheets of a page only.
func (s *pageSheets) fetch(urls []string) []extract.Sheet {
	out := make([]extract.Sheet, len(urls))
	var wg sync.WaitGroup
	for i, raw := range urls {
		u, err := url.Parse(raw)
		switch {
		case err != nil || !sameOrigin(u, s.origin):
			out[i].Missing = "from other hosts"
			continue
		case s.n >= maxPageSheets:
			out[i].Missing = fmt.Sprintf("beyond the first %d", maxPageSheets)
			continue
		}
		s.n++
		wg.Go(func() { out[i] = s.get(u) })
	}
	wg.Wait()
	return out
}

// get fetches one sheet.
func (s *pageSheets) get(u *url.URL) extract.Sheet {
	failed := func(err error) extract.Sheet {
		switch {
		case errors.Is(err, errOtherOrigin):
			return extract.Sheet{Missing: "redirected to other hosts"}
		case s.ctx.Err() != nil:
			return extract.Sheet{Missing: fmt.Sprintf("not loaded within %v", pageSheetsBudget)}
		}
		return extract.Sheet{Missing: "failed to load"}
	}
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return failed(err)
	}
	req.Header.Set("User-Agent", "keepup")
	req.Header.Set("Accept", "text/css,*/*;q=0.1")
	resp, err := s.client.Do(req)
	if err != nil {
		return failed(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Keepup-Egress") != "" {
		return extract.Sheet{Missing: "refused by the egress proxy"}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return extract.Sheet{Missing: "failed to load"}
	}
	css, err := io.ReadAll(io.LimitReader(resp.Body, maxPageSheetBytes+1))
	if err != nil {
		return failed(err)
	}
	if len(css) > maxPageSheetBytes {
		return extract.Sheet{Missing: fmt.Sprintf("larger than %d KiB", maxPageSheetBytes>>10)}
	}
	return extract.Sheet{CSS: css, Type: resp.Header.Get("Content-Type")}
}

// sameOrigin reports whether u has the origin of page: scheme, host and port, and no user
// name or password of its own.
func sameOrigin(u, page *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		switch strings.ToLower(u.Scheme) {
		case "http":
			return "80"
		case "https":
			return "443"
		}
		return ""
	}
	return u.User == nil && u.Opaque == "" && u.Host != "" && strings.EqualFold(u.Scheme, page.Scheme) &&
		strings.EqualFold(u.Hostname(), page.Hostname()) && port(u) == port(page)
}
