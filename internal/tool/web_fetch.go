package tool

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

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
			text, err := pageText(resp.Header.Get("Content-Type"), body)
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
// marked), text and JSON as they are; anything else is refused.
func pageText(contentType string, body []byte) (string, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "text/html" || mt == "application/xhtml+xml" || mt == "" && strings.Contains(strings.ToLower(string(body[:min(len(body), 512)])), "<html"):
		res, err := extract.Text("page.html", body)
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
