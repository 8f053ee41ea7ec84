// Package anthropic owns the Anthropic backend of model.Provider: it turns a model.Request into
// one streaming Messages API call through the official SDK, accumulates the server-sent events
// into a model.Response, and maps every failure to a *model.Error that says whether a retry may
// help.
//
// It must never retry by itself (the SDK's own retries are switched off; model.WithRetry owns the
// policy), never read credentials, base URLs or profiles from the environment (the caller
// resolves ANTHROPIC_BASE_URL and the key and passes them in Config), and never log or trace the
// content of requests or responses.
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/anthropics/anthropic-sdk-go/v2/packages/param"

	"github.com/keepup/keepup/internal/model"
)

// Name is the provider's spec prefix.
const Name = "anthropic"

// DefaultMaxTokens is the output token budget of a call when neither the Request nor the Config
// sets one.
const DefaultMaxTokens = 8192

// Config configures a Provider.
type Config struct {
	// Model is the model name, e.g. "claude-sonnet-4-5". Required.
	Model string
	// APIKey is the Anthropic API key. Required.
	APIKey string
	// BaseURL overrides the API's base URL. Default: the SDK's (https://api.anthropic.com/).
	// The provider does not read ANTHROPIC_BASE_URL itself; the caller honours it by passing it
	// here.
	BaseURL string
	// HTTPClient is the client requests go through. Default: a clone of
	// http.DefaultTransport with a 10-minute response-header timeout and no overall timeout, so
	// long streams are not cut.
	HTTPClient *http.Client
	// MaxTokens is the output token budget when the Request does not set one. Default 8192.
	MaxTokens int
}

// Provider is the Anthropic Messages API backend. It is safe for concurrent use.
type Provider struct {
	model     string
	maxTokens int64
	messages  sdk.MessageService
}

var _ model.Provider = (*Provider)(nil)

// New checks cfg and builds a Provider. It makes no network call.
func New(cfg Config) (*Provider, error) {
	if strings.TrimSpace(cfg.Model) == "" {
		return nil, errors.New("anthropic: Config.Model is required")
	}
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, errors.New("anthropic: Config.APIKey is required")
	}
	if cfg.MaxTokens < 0 {
		return nil, fmt.Errorf("anthropic: Config.MaxTokens must not be negative, got %d", cfg.MaxTokens)
	}
	maxTokens := cfg.MaxTokens
	if maxTokens == 0 {
		maxTokens = DefaultMaxTokens
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = model.NewHTTPClient()
	}
	opts := []option.RequestOption{
		// Nothing from the environment: no ANTHROPIC_* key, base URL, profile or headers.
		option.WithoutEnvironmentDefaults(),
		option.WithAPIKey(cfg.APIKey),
		option.WithHTTPClient(hc),
		// model.WithRetry owns retries.
		option.WithMaxRetries(0),
		// Should the process install an OpenTelemetry tracer, spans never carry content.
		option.WithOpenTelemetryTracesContentMode(option.OpenTelemetryContentModeMetadataOnly),
	}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("anthropic: Config.BaseURL %q is not an http(s) URL", cfg.BaseURL)
		}
		opts = append(opts, option.WithBaseURL(cfg.BaseURL))
	}
	client := sdk.NewClient(opts...)
	return &Provider{model: cfg.Model, maxTokens: int64(maxTokens), messages: client.Messages}, nil
}

// Name returns "anthropic".
func (p *Provider) Name() string { return Name }

// Model returns the configured model name.
func (p *Provider) Model() string { return p.model }

// Complete runs one streaming Messages call. Text deltas go to req.OnText as they arrive. Tool
// inputs are returned as the raw JSON text the model streamed, valid or not ("{}" when empty).
// StopReason is the API's ("end_turn", "tool_use", "max_tokens", ...). Usage.InputTokens counts
// the whole prompt, cache reads and writes included. Thinking and server-tool blocks are dropped.
// Errors are *model.Error, except a done ctx, whose error is returned (wrapped) as it is.
func (p *Provider) Complete(ctx context.Context, req model.Request) (*model.Response, error) {
	params, err := p.params(req)
	if err != nil {
		return nil, &model.Error{Provider: Name, Err: err}
	}

	// The SDK turns most HTTP failures into *sdk.Error; this keeps the status and headers for
	// the few it cannot (an error body that is not JSON, a body that fails to read).
	var last struct {
		status int
		header http.Header
	}
	capture := option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		res, err := next(r)
		if res != nil {
			last.status, last.header = res.StatusCode, res.Header
		}
		return res, err
	})

	stream := p.messages.NewStreaming(ctx, params, capture)
	defer stream.Close()

	acc := accumulator{onText: req.OnText, model: p.model}
	for !acc.stopped && stream.Next() {
		acc.add(stream.Current())
	}
	if acc.stopped {
		return acc.response(), nil
	}
	if err := stream.Err(); err != nil {
		interrupted := acc.started && model.IsTransportError(err)
		err = classify(ctx, err, last.status, last.header)
		var me *model.Error
		if interrupted && errors.As(err, &me) {
			me.Err = fmt.Errorf("stream interrupted: %w", me.Err)
		}
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %w", Name, ctx.Err())
	}
	return nil, &model.Error{
		Provider:  Name,
		Retryable: true,
		Err:       fmt.Errorf("stream ended before message_stop: %w", io.ErrUnexpectedEOF),
	}
}

// params converts a model.Request to the SDK's request.
func (p *Provider) params(req model.Request) (sdk.MessageNewParams, error) {
	maxTokens := p.maxTokens
	if req.MaxTokens > 0 {
		maxTokens = int64(req.MaxTokens)
	}
	params := sdk.MessageNewParams{Model: p.model, MaxTokens: maxTokens}
	if req.System != "" {
		params.System = []sdk.TextBlockParam{{Text: req.System}}
	}
	msgs, err := convertMessages(req.Messages)
	if err != nil {
		return params, err
	}
	params.Messages = msgs
	tools, err := convertTools(req.Tools)
	if err != nil {
		return params, err
	}
	params.Tools = tools
	return params, nil
}

func convertMessages(in []model.Message) ([]sdk.MessageParam, error) {
	out := make([]sdk.MessageParam, 0, len(in))
	for i, m := range in {
		var blocks []sdk.ContentBlockParamUnion
		for j, b := range m.Content {
			switch b.Type {
			case model.BlockText:
				if b.Text == "" {
					continue // the API rejects empty text blocks
				}
				blocks = append(blocks, sdk.NewTextBlock(b.Text))
			case model.BlockToolUse:
				blocks = append(blocks, sdk.NewToolUseBlock(b.ID, toolInput(b.Input), b.Name))
			case model.BlockToolResult:
				r := sdk.ToolResultBlockParam{ToolUseID: b.ToolUseID}
				if b.Content != "" {
					r.Content = []sdk.ToolResultBlockParamContentUnion{{OfText: &sdk.TextBlockParam{Text: b.Content}}}
				}
				if b.IsError {
					r.IsError = sdk.Bool(true)
				}
				blocks = append(blocks, sdk.ContentBlockParamUnion{OfToolResult: &r})
			default:
				return nil, fmt.Errorf("message %d block %d: unknown block type %q", i, j, b.Type)
			}
		}
		if len(blocks) == 0 {
			continue // the API rejects messages without content
		}
		switch m.Role {
		case model.RoleUser:
			out = append(out, sdk.NewUserMessage(blocks...))
		case model.RoleAssistant:
			out = append(out, sdk.NewAssistantMessage(blocks...))
		default:
			return nil, fmt.Errorf("message %d: unknown role %q", i, m.Role)
		}
	}
	return out, nil
}

// toolInput is the input of a past tool_use block as sent back to the API: the model's text when
// it is a JSON object, else "{}" so that the conversation stays valid (the agent loop has already
// told the model, in the tool_result, that its input was malformed).
func toolInput(s string) json.RawMessage {
	t := bytes.TrimSpace([]byte(s))
	if len(t) > 0 && t[0] == '{' && json.Valid(t) {
		return json.RawMessage(t)
	}
	return json.RawMessage("{}")
}

func convertTools(specs []model.ToolSpec) ([]sdk.ToolUnionParam, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := make([]sdk.ToolUnionParam, 0, len(specs))
	for _, s := range specs {
		schema := bytes.TrimSpace(s.InputSchema)
		if len(schema) == 0 || string(schema) == "null" {
			schema = []byte(`{"type":"object"}`)
		}
		if !json.Valid(schema) {
			return nil, fmt.Errorf("tool %q: input schema is not valid JSON", s.Name)
		}
		t := sdk.ToolParam{
			Name:        s.Name,
			InputSchema: param.Override[sdk.ToolInputSchemaParam](json.RawMessage(schema)),
		}
		if s.Description != "" {
			t.Description = sdk.String(s.Description)
		}
		out = append(out, sdk.ToolUnionParam{OfTool: &t})
	}
	return out, nil
}

// accumulator folds a Messages event stream into a model.Response.
type accumulator struct {
	onText  func(string)
	model   string
	blocks  []*model.Block
	byIndex map[int64]*model.Block
	stop    string
	usage   model.Usage
	started bool // message_start seen
	stopped bool // message_stop seen
}

func (a *accumulator) add(ev sdk.MessageStreamEventUnion) {
	switch ev.Type {
	case "message_start":
		a.started = true
		if ev.Message.Model != "" {
			a.model = ev.Message.Model
		}
		u := ev.Message.Usage
		a.usage.InputTokens = u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
		a.usage.OutputTokens = u.OutputTokens
	case "content_block_start":
		cb := ev.ContentBlock
		var b *model.Block
		switch cb.Type {
		case "text":
			b = &model.Block{Type: model.BlockText}
			a.text(b, cb.Text)
		case "tool_use":
			b = &model.Block{Type: model.BlockToolUse, ID: cb.ID, Name: cb.Name}
		default:
			return // thinking, server tools and the like are not part of the neutral model
		}
		if a.byIndex == nil {
			a.byIndex = map[int64]*model.Block{}
		}
		a.byIndex[ev.Index] = b
		a.blocks = append(a.blocks, b)
	case "content_block_delta":
		b := a.byIndex[ev.Index]
		if b == nil {
			return
		}
		switch ev.Delta.Type {
		case "text_delta":
			if b.Type == model.BlockText {
				a.text(b, ev.Delta.Text)
			}
		case "input_json_delta":
			if b.Type == model.BlockToolUse {
				b.Input += ev.Delta.PartialJSON
			}
		}
	case "message_delta":
		if ev.Delta.StopReason != "" {
			a.stop = string(ev.Delta.StopReason)
		}
		// message_delta's usage is cumulative.
		u := ev.Usage
		if in := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens; in > 0 {
			a.usage.InputTokens = in
		}
		if u.OutputTokens > 0 {
			a.usage.OutputTokens = u.OutputTokens
		}
	case "message_stop":
		a.stopped = true
	}
}

func (a *accumulator) text(b *model.Block, delta string) {
	if delta == "" {
		return
	}
	b.Text += delta
	if a.onText != nil {
		a.onText(delta)
	}
}

func (a *accumulator) response() *model.Response {
	msg := model.Message{Role: model.RoleAssistant, Content: []model.Block{}}
	for _, b := range a.blocks {
		switch b.Type {
		case model.BlockText:
			if b.Text == "" {
				continue
			}
		case model.BlockToolUse:
			if strings.TrimSpace(b.Input) == "" {
				b.Input = "{}"
			}
		}
		msg.Content = append(msg.Content, *b)
	}
	return &model.Response{Message: msg, StopReason: a.stop, Usage: a.usage, Model: a.model}
}

// apiError is an API failure described briefly (type, message, request id), keeping the SDK's
// error underneath for errors.As.
type apiError struct {
	msg string
	err error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

// statusForType maps the error types the API sends inside a stream (where the HTTP status is
// already 200) to the status the same error has as a response.
var statusForType = map[string]int{
	"invalid_request_error": 400,
	"authentication_error":  401,
	"billing_error":         402,
	"permission_error":      403,
	"not_found_error":       404,
	"request_too_large":     413,
	"rate_limit_error":      429,
	"api_error":             500,
	"timeout_error":         504,
	"overloaded_error":      529,
}

// classify maps a failed call to the error Complete returns.
func classify(ctx context.Context, err error, status int, header http.Header) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", Name, ctxErr)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &model.Error{Provider: Name, Err: err}
	}
	var aerr *sdk.Error
	if errors.As(err, &aerr) {
		typ := string(aerr.Type())
		msg := aerr.Message
		if msg == "" {
			msg = http.StatusText(aerr.StatusCode)
		}
		if typ != "" {
			msg = typ + ": " + msg
		}
		if aerr.RequestID != "" {
			msg += " (request-id " + aerr.RequestID + ")"
		}
		code := aerr.StatusCode
		if code < 400 {
			// An SSE "event: error" after a 200: the stream broke off with an API error.
			mapped, known := statusForType[typ]
			return &model.Error{
				Provider:   Name,
				StatusCode: mapped,
				Retryable:  !known || model.RetryableStatus(mapped),
				Err:        &apiError{msg: "error event in stream: " + msg, err: err},
			}
		}
		var h http.Header
		if aerr.Response != nil {
			h = aerr.Response.Header
		}
		return &model.Error{
			Provider:   Name,
			StatusCode: code,
			RetryAfter: model.ParseRetryAfter(h, time.Now()),
			Retryable:  model.RetryableStatus(code),
			Err:        &apiError{msg: msg, err: err},
		}
	}
	if status >= 400 {
		return &model.Error{
			Provider:   Name,
			StatusCode: status,
			RetryAfter: model.ParseRetryAfter(header, time.Now()),
			Retryable:  model.RetryableStatus(status),
			Err:        err,
		}
	}
	if model.IsTransportError(err) {
		return &model.Error{Provider: Name, Retryable: true, Err: err}
	}
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) || strings.Contains(err.Error(), "received error while streaming") {
		// A garbled or broken-off stream: another attempt may well succeed.
		return &model.Error{Provider: Name, Retryable: true, Err: fmt.Errorf("stream broken: %w", err)}
	}
	return &model.Error{Provider: Name, Err: err}
}
