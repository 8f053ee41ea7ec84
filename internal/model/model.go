// Package model owns the provider-neutral conversation types (messages, content blocks, tool
// specs, usage) and the Provider interface every model backend implements. It also owns the
// retry policy that wraps providers. It must never know about tools' behaviour, policy or the
// store: a provider turns a Request into a Response and nothing else.
package model

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Role is who authored a message.
type Role string

const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
)

// BlockType is the kind of a content block.
type BlockType string

const (
	BlockText       BlockType = "text"
	BlockToolUse    BlockType = "tool_use"
	BlockToolResult BlockType = "tool_result"
)

// Block is one piece of a message's content.
type Block struct {
	Type BlockType `json:"type"`
	Text string    `json:"text,omitempty"`

	// Tool use (assistant): ID, Name and Input as the model sent it. Input is the raw JSON text,
	// which may be invalid: the agent loop reports that back to the model as a tool error.
	ID    string `json:"id,omitempty"`
	Name  string `json:"name,omitempty"`
	Input string `json:"input,omitempty"`

	// Tool result (user): the call it answers, its text, and whether it is an error.
	ToolUseID string `json:"tool_use_id,omitempty"`
	Content   string `json:"content,omitempty"`
	IsError   bool   `json:"is_error,omitempty"`
}

// Message is one conversation message.
type Message struct {
	Role    Role    `json:"role"`
	Content []Block `json:"content"`
}

// Text returns the concatenated text blocks of m.
func (m Message) Text() string {
	var s string
	for _, b := range m.Content {
		if b.Type == BlockText {
			s += b.Text
		}
	}
	return s
}

// ToolUses returns m's tool_use blocks in order.
func (m Message) ToolUses() []Block {
	var out []Block
	for _, b := range m.Content {
		if b.Type == BlockToolUse {
			out = append(out, b)
		}
	}
	return out
}

// ToolSpec describes a tool to the model.
type ToolSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// Purpose says which kind of turn a request is. Real providers ignore it; the script model uses
// it to answer summary requests from its script.
type Purpose string

const (
	PurposeWork    Purpose = "work"
	PurposeSummary Purpose = "summary"
)

// Request is one model call.
type Request struct {
	System    string
	Messages  []Message
	Tools     []ToolSpec
	MaxTokens int
	Purpose   Purpose
	// Turn numbers the request among the task's turns, from 1 (a summary request is the turn
	// after the last work turn). Real providers ignore it; the script model plays turn Turn,
	// so that a task continued after a restart picks up its script where it was.
	Turn int
	// Vars are substitutions the script model applies to tool inputs (e.g. "session").
	Vars map[string]string
	// OnText, when set, receives streamed text deltas as they arrive.
	OnText func(delta string)
}

// Usage is the token use of one call.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// Add returns u + v.
func (u Usage) Add(v Usage) Usage {
	return Usage{InputTokens: u.InputTokens + v.InputTokens, OutputTokens: u.OutputTokens + v.OutputTokens}
}

// Response is a completed model call.
type Response struct {
	Message    Message
	StopReason string
	Usage      Usage
	Model      string
}

// Provider is a model backend.
type Provider interface {
	// Name is the provider's spec prefix: "anthropic", "openai", "ollama", "script".
	Name() string
	// Model is the model name within the provider.
	Model() string
	// Complete runs one call. Errors that may succeed on retry are *Error with Retryable set.
	Complete(ctx context.Context, req Request) (*Response, error)
}

// Error is a provider failure with what the retry policy needs to know.
type Error struct {
	Provider   string
	StatusCode int           // HTTP status, 0 for transport errors
	RetryAfter time.Duration // from Retry-After / retry-after-ms, 0 if absent
	Retryable  bool
	Err        error
}

func (e *Error) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("%s: HTTP %d: %v", e.Provider, e.StatusCode, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Provider, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// RetryableStatus reports whether an HTTP status is worth retrying: 408, 409, 429, 5xx
// (including Anthropic's 529 overloaded).
func RetryableStatus(code int) bool {
	return code == 408 || code == 409 || code == 429 || code >= 500
}

// NewHTTPClient is the HTTP client providers use by default: http.DefaultTransport's settings
// with a 10-minute wait for response headers and no overall timeout, so that long streams are
// not cut.
func NewHTTPClient() *http.Client {
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t = t.Clone()
		t.ResponseHeaderTimeout = 10 * time.Minute
		return &http.Client{Transport: t}
	}
	return &http.Client{Transport: http.DefaultTransport}
}
