// Package openai owns the OpenAI-compatible backend of model.Provider: one streaming Chat
// Completions call (with tools, and stream_options.include_usage) through the official
// openai-go SDK, accumulated into a model.Response, with every failure mapped to a *model.Error
// that says whether a retry may help. The same code serves OpenAI itself and the servers that
// speak its wire format (Ollama, vLLM, llama.cpp, LM Studio); Config.Name says which one a
// Provider stands for.
//
// It must never retry by itself (the SDK's own retries are switched off; model.WithRetry owns the
// policy), never read credentials or base URLs from the environment (the caller resolves
// OPENAI_BASE_URL and keys and passes them in Config), and never log the content of requests or
// responses.
package openai

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	sdk "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"

	"github.com/keepup/keepup/internal/model"
)

const (
	// DefaultName is the provider name when Config.Name is empty.
	DefaultName = "openai"
	// DefaultOllamaBaseURL is the base URL of a provider named "ollama" without a BaseURL.
	DefaultOllamaBaseURL = "http://127.0.0.1:11434/v1"
	// placeholderAPIKey is sent to servers that need no key (Ollama, vLLM, llama.cpp,
	// LM Studio), which still expect an Authorization header from OpenAI clients.
	placeholderAPIKey = "keepup-no-key"
)

// Config configures a Provider.
type Config struct {
	// Name is the provider's spec prefix, "openai" or "ollama". Default "openai". It is what
	// Name() returns and the Provider of the *model.Errors this provider returns.
	Name string
	// Model is the model name, e.g. "gpt-4.1" or "qwen3:8b". Required.
	Model string
	// APIKey is the bearer token. Required unless BaseURL is set (or Name is "ollama"): local
	// servers need none, and are sent a placeholder.
	APIKey string
	// BaseURL is the API's base URL, up to and including /v1. Default: OpenAI's
	// (https://api.openai.com/v1/), or DefaultOllamaBaseURL when Name is "ollama". The provider
	// does not read OPENAI_BASE_URL itself; the caller honours it by passing it here.
	BaseURL string
	// HTTPClient is the client requests go through. Default: a clone of
	// http.DefaultTransport with a 10-minute response-header timeout and no overall timeout, so
	// long streams are not cut.
	HTTPClient *http.Client
	// MaxTokens is the output token budget when the Request does not set one. Default: none
	// sent, so the server's own limit applies. It is sent as max_completion_tokens to OpenAI
	// (Name "openai") and as max_tokens to everything else, which is what those servers read.
	MaxTokens int
}

// Provider is an OpenAI-compatible Chat Completions backend. It is safe for concurrent use.
type Provider struct {
	name      string
	model     string
	maxTokens int
	chat      sdk.ChatCompletionService
}

var _ model.Provider = (*Provider)(nil)

// New checks cfg and builds a Provider. It makes no network call.
func New(cfg Config) (*Provider, error) {
	name := cfg.Name
	if name == "" {
		name = DefaultName
	}
	if strings.TrimSpace(cfg.Model) == "" {
		return nil, fmt.Errorf("%s: Config.Model is required", name)
	}
	if cfg.MaxTokens < 0 {
		return nil, fmt.Errorf("%s: Config.MaxTokens must not be negative, got %d", name, cfg.MaxTokens)
	}
	baseURL := cfg.BaseURL
	if baseURL == "" && name == "ollama" {
		baseURL = DefaultOllamaBaseURL
	}
	apiKey := cfg.APIKey
	if strings.TrimSpace(apiKey) == "" {
		if baseURL == "" {
			return nil, fmt.Errorf("%s: Config.APIKey is required unless Config.BaseURL is set", name)
		}
		apiKey = placeholderAPIKey
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = model.NewHTTPClient()
	}
	// The service is built from these options alone, not through sdk.NewClient, so that nothing
	// comes from the environment (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, ...).
	opts := []option.RequestOption{
		option.WithEnvironmentProduction(),
		option.WithHTTPClient(hc),
		option.WithAPIKey(apiKey),
		// model.WithRetry owns retries.
		option.WithMaxRetries(0),
	}
	if baseURL != "" {
		u, err := url.Parse(baseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s: Config.BaseURL %q is not an http(s) URL", name, baseURL)
		}
		opts = append(opts, option.WithBaseURL(baseURL))
	}
	return &Provider{
		name:      name,
		model:     cfg.Model,
		maxTokens: cfg.MaxTokens,
		chat:      sdk.NewChatCompletionService(opts...),
	}, nil
}

// Name returns Config.Name ("openai" by default).
func (p *Provider) Name() string { return p.name }

// Model returns the configured model name.
func (p *Provider) Model() string { return p.model }

// Complete runs one streaming Chat Completions call. Text deltas go to req.OnText as they arrive.
// A refusal is returned as text. Tool call arguments are returned as the raw text the model
// streamed, valid JSON or not ("{}" when empty); a call the server sent without an id gets a
// random "call_..." one. finish_reason is mapped to the neutral stop reasons: "stop" → "end_turn",
// "tool_calls" → "tool_use", "length" → "max_tokens", anything else verbatim; a reply that
// carries tool calls is "tool_use" whatever the server said (some servers say "stop"). Errors are
// *model.Error, except a done ctx, whose error is returned (wrapped) as it is.
func (p *Provider) Complete(ctx context.Context, req model.Request) (*model.Response, error) {
	params, err := p.params(req)
	if err != nil {
		return nil, &model.Error{Provider: p.name, Err: err}
	}

	// The SDK turns most HTTP failures into *sdk.Error; this keeps the status and headers for
	// the ones it cannot (an error body it fails to parse or read).
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

	stream := p.chat.NewStreaming(ctx, params, capture)
	defer stream.Close()

	acc := accumulator{onText: req.OnText, model: p.model}
	for stream.Next() {
		acc.add(stream.Current())
	}
	err = stream.Err()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %w", p.name, ctx.Err())
	}
	if acc.finish != "" {
		// The message is complete; a failure after it (a cut before the usage chunk or
		// [DONE]) costs only the usage figures.
		return acc.response(), nil
	}
	if err != nil {
		interrupted := acc.started && model.IsTransportError(err)
		err = p.classify(ctx, err, last.status, last.header)
		var me *model.Error
		if interrupted && errors.As(err, &me) {
			me.Err = fmt.Errorf("stream interrupted: %w", me.Err)
		}
		return nil, err
	}
	return nil, &model.Error{
		Provider:  p.name,
		Retryable: true,
		Err:       fmt.Errorf("stream ended before a finish_reason: %w", io.ErrUnexpectedEOF),
	}
}

// params converts a model.Request to the SDK's request.
func (p *Provider) params(req model.Request) (sdk.ChatCompletionNewParams, error) {
	params := sdk.ChatCompletionNewParams{
		Model:         p.model,
		StreamOptions: sdk.ChatCompletionStreamOptionsParam{IncludeUsage: sdk.Bool(true)},
	}
	maxTokens := p.maxTokens
	if req.MaxTokens > 0 {
		maxTokens = req.MaxTokens
	}
	if maxTokens > 0 {
		if p.name == DefaultName {
			params.MaxCompletionTokens = sdk.Int(int64(maxTokens))
		} else {
			params.MaxTokens = sdk.Int(int64(maxTokens))
		}
	}
	msgs, err := convertMessages(req.System, req.Messages)
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

// convertMessages maps the neutral conversation to chat messages: the system prompt first; each
// user message's tool results as "tool" messages (they must directly follow the assistant
// message that made the calls), then its text as one user message; each assistant message's
// text as content and its tool uses as tool_calls.
func convertMessages(system string, in []model.Message) ([]sdk.ChatCompletionMessageParamUnion, error) {
	out := make([]sdk.ChatCompletionMessageParamUnion, 0, len(in)+1)
	if system != "" {
		out = append(out, sdk.SystemMessage(system))
	}
	for i, m := range in {
		var texts []string
		switch m.Role {
		case model.RoleUser:
			for j, b := range m.Content {
				switch b.Type {
				case model.BlockText:
					if b.Text != "" {
						texts = append(texts, b.Text)
					}
				case model.BlockToolResult:
					content := b.Content
					if b.IsError {
						content = "Error: " + content
					}
					out = append(out, sdk.ToolMessage(content, b.ToolUseID))
				default:
					return nil, fmt.Errorf("message %d block %d: a user message cannot carry a %q block", i, j, b.Type)
				}
			}
			if len(texts) > 0 {
				out = append(out, sdk.UserMessage(strings.Join(texts, "\n\n")))
			}
		case model.RoleAssistant:
			var a sdk.ChatCompletionAssistantMessageParam
			for j, b := range m.Content {
				switch b.Type {
				case model.BlockText:
					if b.Text != "" {
						texts = append(texts, b.Text)
					}
				case model.BlockToolUse:
					a.ToolCalls = append(a.ToolCalls, sdk.ChatCompletionMessageToolCallUnionParam{
						OfFunction: &sdk.ChatCompletionMessageFunctionToolCallParam{
							ID: b.ID,
							Function: sdk.ChatCompletionMessageFunctionToolCallFunctionParam{
								Name:      b.Name,
								Arguments: toolArguments(b.Input),
							},
						},
					})
				default:
					return nil, fmt.Errorf("message %d block %d: an assistant message cannot carry a %q block", i, j, b.Type)
				}
			}
			if len(texts) > 0 {
				a.Content.OfString = sdk.String(strings.Join(texts, "\n\n"))
			}
			if len(texts) == 0 && len(a.ToolCalls) == 0 {
				continue
			}
			out = append(out, sdk.ChatCompletionMessageParamUnion{OfAssistant: &a})
		default:
			return nil, fmt.Errorf("message %d: unknown role %q", i, m.Role)
		}
	}
	return out, nil
}

// toolArguments is the arguments text of a past tool call as sent back: the model's text when it
// is a JSON object, else "{}" so that the conversation stays valid (the agent loop has already
// told the model, in the tool result, that its input was malformed).
func toolArguments(s string) string {
	t := bytes.TrimSpace([]byte(s))
	if len(t) > 0 && t[0] == '{' && json.Valid(t) {
		return string(t)
	}
	return "{}"
}

func convertTools(specs []model.ToolSpec) ([]sdk.ChatCompletionToolUnionParam, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := make([]sdk.ChatCompletionToolUnionParam, 0, len(specs))
	for _, s := range specs {
		fd := shared.FunctionDefinitionParam{Name: s.Name}
		if s.Description != "" {
			fd.Description = sdk.String(s.Description)
		}
		schema := bytes.TrimSpace(s.InputSchema)
		if len(schema) > 0 && string(schema) != "null" {
			var params map[string]any
			if err := json.Unmarshal(schema, &params); err != nil {
				return nil, fmt.Errorf("tool %q: input schema is not a JSON object: %v", s.Name, err)
			}
			fd.Parameters = params
		}
		out = append(out, sdk.ChatCompletionFunctionTool(fd))
	}
	return out, nil
}

// accumulator folds a stream of chunks into a model.Response. Only choice 0 is read (the request
// asks for one).
type accumulator struct {
	onText  func(string)
	model   string
	text    strings.Builder
	calls   []*call
	byIndex map[int64]*call
	finish  string
	usage   model.Usage
	started bool
}

type call struct{ id, name, args string }

func (a *accumulator) add(c sdk.ChatCompletionChunk) {
	a.started = true
	if c.Model != "" {
		a.model = c.Model
	}
	if c.Usage.PromptTokens != 0 || c.Usage.CompletionTokens != 0 {
		a.usage = model.Usage{InputTokens: c.Usage.PromptTokens, OutputTokens: c.Usage.CompletionTokens}
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue
		}
		for _, s := range []string{ch.Delta.Content, ch.Delta.Refusal} {
			if s != "" {
				a.text.WriteString(s)
				if a.onText != nil {
					a.onText(s)
				}
			}
		}
		for _, tc := range ch.Delta.ToolCalls {
			cl := a.byIndex[tc.Index]
			// A new id at a known index is a new call: some servers number every call 0.
			if cl == nil || (tc.ID != "" && cl.id != "" && tc.ID != cl.id) {
				cl = &call{}
				if a.byIndex == nil {
					a.byIndex = map[int64]*call{}
				}
				a.byIndex[tc.Index] = cl
				a.calls = append(a.calls, cl)
			}
			if tc.ID != "" {
				cl.id = tc.ID
			}
			cl.name += tc.Function.Name
			cl.args += tc.Function.Arguments
		}
		if ch.FinishReason != "" {
			a.finish = ch.FinishReason
		}
	}
}

func (a *accumulator) response() *model.Response {
	msg := model.Message{Role: model.RoleAssistant, Content: []model.Block{}}
	if a.text.Len() > 0 {
		msg.Content = append(msg.Content, model.Block{Type: model.BlockText, Text: a.text.String()})
	}
	for _, c := range a.calls {
		id := c.id
		if id == "" {
			id = "call_" + randomHex()
		}
		input := c.args
		if strings.TrimSpace(input) == "" {
			input = "{}"
		}
		msg.Content = append(msg.Content, model.Block{Type: model.BlockToolUse, ID: id, Name: c.name, Input: input})
	}
	stop := a.finish
	switch stop {
	case "stop":
		stop = "end_turn"
	case "tool_calls", "function_call":
		stop = "tool_use"
	case "length":
		stop = "max_tokens"
	}
	if len(a.calls) > 0 {
		stop = "tool_use"
	}
	return &model.Response{Message: msg, StopReason: stop, Usage: a.usage, Model: a.model}
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// apiError is an API failure described briefly, keeping the SDK's error underneath for
// errors.As.
type apiError struct {
	msg string
	err error
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.err }

// classify maps a failed call to the error Complete returns.
func (p *Provider) classify(ctx context.Context, err error, status int, header http.Header) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", p.name, ctxErr)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &model.Error{Provider: p.name, Err: err}
	}
	var aerr *sdk.Error
	if errors.As(err, &aerr) {
		code := aerr.StatusCode
		if code == 0 {
			code = status
		}
		var h http.Header
		if aerr.Response != nil {
			h = aerr.Response.Header
		}
		if h == nil {
			h = header
		}
		return &model.Error{
			Provider:   p.name,
			StatusCode: code,
			RetryAfter: model.ParseRetryAfter(h, time.Now()),
			Retryable:  model.RetryableStatus(code),
			Err:        &apiError{msg: describe(aerr.Message, aerr.Type, aerr.Code, code), err: err},
		}
	}
	var serr *ssestream.StreamError
	if errors.As(err, &serr) {
		// An error object inside a 200 stream. A numeric code (vLLM and others send the HTTP
		// status) decides; without one the stream broke off server-side and may well work again.
		var body struct {
			Error json.RawMessage `json:"error"`
		}
		var detail struct {
			Message string          `json:"message"`
			Type    string          `json:"type"`
			Code    json.RawMessage `json:"code"`
		}
		msg := "error event in stream"
		if json.Unmarshal(serr.Event.Data, &body) == nil {
			var s string
			if json.Unmarshal(body.Error, &s) == nil {
				detail.Message = s
			} else {
				_ = json.Unmarshal(body.Error, &detail)
			}
		}
		var code int
		var codeText string
		if json.Unmarshal(detail.Code, &code) != nil || code < 400 || code > 599 {
			code = 0
			_ = json.Unmarshal(detail.Code, &codeText)
		}
		msg += ": " + describe(detail.Message, detail.Type, codeText, 0)
		return &model.Error{
			Provider:   p.name,
			StatusCode: code,
			Retryable:  code == 0 || model.RetryableStatus(code),
			Err:        &apiError{msg: msg, err: err},
		}
	}
	if status >= 400 {
		return &model.Error{
			Provider:   p.name,
			StatusCode: status,
			RetryAfter: model.ParseRetryAfter(header, time.Now()),
			Retryable:  model.RetryableStatus(status),
			Err:        err,
		}
	}
	if model.IsTransportError(err) {
		return &model.Error{Provider: p.name, Retryable: true, Err: err}
	}
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		// A garbled stream: another attempt may well succeed.
		return &model.Error{Provider: p.name, Retryable: true, Err: fmt.Errorf("stream broken: %w", err)}
	}
	return &model.Error{Provider: p.name, Err: err}
}

// describe renders an API error's message, type and code briefly.
func describe(message, typ, code string, status int) string {
	if message == "" {
		message = http.StatusText(status)
	}
	if message == "" {
		message = "unknown error"
	}
	var tags []string
	for _, t := range []string{typ, code} {
		if t != "" {
			tags = append(tags, t)
		}
	}
	if len(tags) > 0 {
		return strings.Join(tags, "/") + ": " + message
	}
	return message
}
