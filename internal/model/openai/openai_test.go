package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/model/modeltest"
	"github.com/keepup/keepup/internal/model/openai"
)

// server is the shared recording loopback server with this provider's constructor.
type server struct{ *modeltest.Server }

func newServer(t *testing.T, handlers ...http.HandlerFunc) *server {
	t.Helper()
	return &server{modeltest.NewServer(t, handlers...)}
}

func (s *server) provider(t *testing.T) *openai.Provider {
	t.Helper()
	p, err := openai.New(openai.Config{Model: "gpt-test", APIKey: "sk-test", BaseURL: s.URL + "/v1"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func writeChunks(w http.ResponseWriter, chunks []string) {
	for _, c := range chunks {
		fmt.Fprintf(w, "data: %s\n\n", c)
	}
	w.(http.Flusher).Flush()
}

func sse(chunks ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		writeChunks(w, chunks)
	}
}

func httpError(status int, typ, code, msg string, header map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"message":%q,"type":%q,"param":null,"code":%q}}`, msg, typ, code)
	}
}

// cut writes chunks, then drops the connection in the middle of the chunked response.
func cut(chunks ...string) http.HandlerFunc {
	return modeltest.Cut(func(w http.ResponseWriter) { writeChunks(w, chunks) })
}

// chunk is one chat.completion.chunk with the given choice delta and finish reason.
func chunk(delta string, finish string) string {
	f := "null"
	if finish != "" {
		f = fmt.Sprintf("%q", finish)
	}
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735689600,"model":"gpt-test-2025","system_fingerprint":"fp_1","choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}],"usage":null}`, delta, f)
}

func content(s string) string {
	b, _ := json.Marshal(s)
	return chunk(fmt.Sprintf(`{"content":%s}`, b), "")
}

func toolDelta(index int, id, name, args string) string {
	b, _ := json.Marshal(args)
	head := ""
	if id != "" {
		head = fmt.Sprintf(`"id":%q,"type":"function",`, id)
	}
	fn := fmt.Sprintf(`"arguments":%s`, b)
	if name != "" {
		fn = fmt.Sprintf(`"name":%q,`, name) + fn
	}
	return chunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,%s"function":{%s}}]}`, index, head, fn), "")
}

func usage(in, out int) string {
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1735689600,"model":"gpt-test-2025","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`, in, out, in+out)
}

const done = "[DONE]"

var roleChunk = chunk(`{"role":"assistant","content":"","refusal":null}`, "")

func textAndTool() []string {
	return []string{
		roleChunk,
		content("Hello"),
		content(", world"),
		toolDelta(0, "call_abc", "read_file", ""),
		toolDelta(0, "", "", `{"path": "no`),
		toolDelta(0, "", "", `tes.txt"}`),
		chunk(`{}`, "tool_calls"),
		usage(25, 42),
		done,
	}
}

func simpleText(s string) []string {
	return []string{roleChunk, content(s), chunk(`{}`, "stop"), usage(10, 3), done}
}

var readFileSchema = json.RawMessage(`{"type":"object","properties":{"path":{"type":"string","description":"file to read"}},"required":["path"],"additionalProperties":false}`)

func basicRequest() model.Request {
	return model.Request{
		System:   "You are terse.",
		Messages: []model.Message{{Role: model.RoleUser, Content: []model.Block{{Type: model.BlockText, Text: "Read notes.txt"}}}},
		Tools:    []model.ToolSpec{{Name: "read_file", Description: "Read a file.", InputSchema: readFileSchema}},
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg   openai.Config
		field string
	}{
		{openai.Config{APIKey: "k"}, "Model"},
		{openai.Config{Model: "m"}, "APIKey"},
		{openai.Config{Model: "m", BaseURL: "localhost:1234"}, "BaseURL"},
		{openai.Config{Model: "m", APIKey: "k", MaxTokens: -5}, "MaxTokens"},
	} {
		_, err := openai.New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("New(%+v) = %v, want an error naming %s", c.cfg, err, c.field)
		}
	}
	p, err := openai.New(openai.Config{Model: "gpt", APIKey: "k"})
	if err != nil || p.Name() != "openai" || p.Model() != "gpt" {
		t.Fatalf("New = %v, %v", p, err)
	}
	// Ollama needs neither key nor base URL.
	p, err = openai.New(openai.Config{Name: "ollama", Model: "qwen3:8b"})
	if err != nil || p.Name() != "ollama" {
		t.Fatalf("New(ollama) = %v, %v", p, err)
	}
}

func TestStreamTextAndToolCall(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(textAndTool()...))
	p := s.provider(t)

	var deltas []string
	req := basicRequest()
	req.OnText = func(d string) { deltas = append(deltas, d) }
	resp, err := p.Complete(context.Background(), req)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if got := resp.Message.Text(); got != "Hello, world" {
		t.Errorf("text = %q", got)
	}
	if !reflect.DeepEqual(deltas, []string{"Hello", ", world"}) {
		t.Errorf("OnText deltas = %q", deltas)
	}
	uses := resp.Message.ToolUses()
	if len(uses) != 1 {
		t.Fatalf("tool uses = %+v", uses)
	}
	if u := uses[0]; u.ID != "call_abc" || u.Name != "read_file" || u.Input != `{"path": "notes.txt"}` {
		t.Errorf("tool use = %+v", u)
	}
	if resp.Message.Role != model.RoleAssistant || len(resp.Message.Content) != 2 {
		t.Errorf("message = %+v", resp.Message)
	}
	if resp.StopReason != "tool_use" {
		t.Errorf("stop reason = %q", resp.StopReason)
	}
	if resp.Usage != (model.Usage{InputTokens: 25, OutputTokens: 42}) {
		t.Errorf("usage = %+v", resp.Usage)
	}
	if resp.Model != "gpt-test-2025" {
		t.Errorf("model = %q", resp.Model)
	}

	if s.Path(0) != "/v1/chat/completions" {
		t.Errorf("path = %q", s.Path(0))
	}
	if got := s.Header(0).Get("Authorization"); got != "Bearer sk-test" {
		t.Errorf("Authorization = %q", got)
	}
	body := s.Body(0)
	if body["model"] != "gpt-test" || body["stream"] != true {
		t.Errorf("model/stream = %v/%v", body["model"], body["stream"])
	}
	if got := modeltest.JSON(t, body["stream_options"]); got != `{"include_usage":true}` {
		t.Errorf("stream_options = %s", got)
	}
	for _, k := range []string{"max_tokens", "max_completion_tokens"} {
		if v, ok := body[k]; ok {
			t.Errorf("%s = %v sent although no budget was configured", k, v)
		}
	}
	want := `[{"content":"You are terse.","role":"system"},{"content":"Read notes.txt","role":"user"}]`
	if got := modeltest.JSON(t, body["messages"]); got != want {
		t.Errorf("messages = %s, want %s", got, want)
	}
	tools, _ := body["tools"].([]any)
	if len(tools) != 1 {
		t.Fatalf("tools = %v", body["tools"])
	}
	tool := tools[0].(map[string]any)
	fn, _ := tool["function"].(map[string]any)
	if tool["type"] != "function" || fn["name"] != "read_file" || fn["description"] != "Read a file." {
		t.Errorf("tool = %v", tool)
	}
	var wantSchema any
	_ = json.Unmarshal(readFileSchema, &wantSchema)
	if !reflect.DeepEqual(fn["parameters"], wantSchema) {
		t.Errorf("parameters = %s, want %s", modeltest.JSON(t, fn["parameters"]), readFileSchema)
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(textAndTool()...), sse(simpleText("Done.")...))
	p := s.provider(t)

	req := basicRequest()
	first, err := p.Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	req.Messages = append(req.Messages,
		first.Message,
		model.Message{Role: model.RoleUser, Content: []model.Block{
			{Type: model.BlockToolResult, ToolUseID: "call_abc", Content: "line 1\nline 2"},
		}},
		model.Message{Role: model.RoleAssistant, Content: []model.Block{
			{Type: model.BlockToolUse, ID: "call_2", Name: "read_file", Input: `{"path": "x`},
			{Type: model.BlockToolUse, ID: "call_3", Name: "read_file", Input: `[1]`},
		}},
		model.Message{Role: model.RoleUser, Content: []model.Block{
			{Type: model.BlockToolResult, ToolUseID: "call_2", Content: "invalid JSON input", IsError: true},
			{Type: model.BlockToolResult, ToolUseID: "call_3", Content: "input must be an object", IsError: true},
			{Type: model.BlockText, Text: "Try again."},
		}},
	)
	second, err := p.Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if second.Message.Text() != "Done." || second.StopReason != "end_turn" || len(second.Message.ToolUses()) != 0 {
		t.Errorf("second = %+v", second)
	}

	got := modeltest.JSON(t, s.Body(1)["messages"])
	want := `[` +
		`{"content":"You are terse.","role":"system"},` +
		`{"content":"Read notes.txt","role":"user"},` +
		`{"content":"Hello, world","role":"assistant","tool_calls":[{"function":{"arguments":"{\"path\": \"notes.txt\"}","name":"read_file"},"id":"call_abc","type":"function"}]},` +
		`{"content":"line 1\nline 2","role":"tool","tool_call_id":"call_abc"},` +
		`{"role":"assistant","tool_calls":[{"function":{"arguments":"{}","name":"read_file"},"id":"call_2","type":"function"},{"function":{"arguments":"{}","name":"read_file"},"id":"call_3","type":"function"}]},` +
		`{"content":"Error: invalid JSON input","role":"tool","tool_call_id":"call_2"},` +
		`{"content":"Error: input must be an object","role":"tool","tool_call_id":"call_3"},` +
		`{"content":"Try again.","role":"user"}` +
		`]`
	if got != want {
		t.Errorf("messages on the wire:\n got %s\nwant %s", got, want)
	}
}

func TestRateLimitRetryAfter(t *testing.T) {
	t.Parallel()
	s := newServer(t,
		httpError(429, "requests", "rate_limit_exceeded", "Rate limit reached for gpt-test", map[string]string{"retry-after": "2"}),
		sse(simpleText("ok")...),
	)
	var sleeps modeltest.Sleeps
	var retried []error
	p := model.WithRetry(s.provider(t), model.RetryConfig{
		Sleep:   sleeps.Sleep,
		OnRetry: func(_ int, err error, _ time.Duration) { retried = append(retried, err) },
	})
	resp, err := p.Complete(context.Background(), basicRequest())
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if resp.Message.Text() != "ok" || s.Requests() != 2 {
		t.Fatalf("text %q after %d requests", resp.Message.Text(), s.Requests())
	}
	if len(sleeps.Waits()) != 1 || sleeps.Waits()[0] < 2*time.Second {
		t.Fatalf("waits = %v, want one >= 2s", sleeps.Waits())
	}
	var me *model.Error
	if len(retried) != 1 || !errors.As(retried[0], &me) {
		t.Fatalf("retried = %v", retried)
	}
	if me.Provider != "openai" || me.StatusCode != 429 || me.RetryAfter != 2*time.Second || !me.Retryable {
		t.Errorf("error = %+v", me)
	}
	if !strings.Contains(me.Error(), "Rate limit reached") {
		t.Errorf("error text = %q", me.Error())
	}
}

func TestServerErrorThenSuccess(t *testing.T) {
	t.Parallel()
	s := newServer(t, httpError(500, "server_error", "", "The server had an error", nil), sse(simpleText("fine")...))
	var sleeps modeltest.Sleeps
	resp, err := model.WithRetry(s.provider(t), model.RetryConfig{Sleep: sleeps.Sleep}).Complete(context.Background(), basicRequest())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Text() != "fine" || s.Requests() != 2 || len(sleeps.Waits()) != 1 {
		t.Fatalf("text %q, %d requests, waits %v", resp.Message.Text(), s.Requests(), sleeps.Waits())
	}
}

func TestPlainTextErrorBody(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Retry-After", "4")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "upstream unavailable")
	})
	_, err := s.provider(t).Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || me.StatusCode != 503 || !me.Retryable || me.RetryAfter != 4*time.Second {
		t.Fatalf("err = %v", err)
	}
	t.Logf("plain-text error: %v", err)
}

func TestStreamCutMidMessage(t *testing.T) {
	t.Parallel()
	half := textAndTool()[:5]
	s := newServer(t, cut(half...))
	_, err := s.provider(t).Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || !me.Retryable || me.StatusCode != 0 {
		t.Fatalf("cut stream: err = %v, want a retryable transport *model.Error", err)
	}
	t.Logf("cut stream: %v", err)

	s2 := newServer(t, cut(half...), sse(textAndTool()...))
	var sleeps modeltest.Sleeps
	resp, err := model.WithRetry(s2.provider(t), model.RetryConfig{Sleep: sleeps.Sleep}).Complete(context.Background(), basicRequest())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Text() != "Hello, world" || len(resp.Message.ToolUses()) != 1 || s2.Requests() != 2 {
		t.Fatalf("resp = %+v after %d requests", resp, s2.Requests())
	}
}

func TestStreamEndsWithoutFinishReason(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(textAndTool()[:5]...))
	_, err := s.provider(t).Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || !me.Retryable || !strings.Contains(err.Error(), "finish_reason") {
		t.Fatalf("err = %v", err)
	}
}

func TestCutAfterFinishKeepsMessage(t *testing.T) {
	t.Parallel()
	all := textAndTool()
	s := newServer(t, cut(all[:7]...)) // finish_reason sent, usage and [DONE] lost
	resp, err := s.provider(t).Complete(context.Background(), basicRequest())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Text() != "Hello, world" || resp.StopReason != "tool_use" {
		t.Fatalf("resp = %+v", resp)
	}
}

func TestErrorEventInStream(t *testing.T) {
	t.Parallel()
	s := newServer(t,
		sse(roleChunk, content("Hel"), `{"error":{"message":"The server is overloaded","type":"server_error","code":null}}`),
		sse(roleChunk, `{"error":{"object":"error","message":"context too long","type":"BadRequestError","code":400}}`),
	)
	p := s.provider(t)
	_, err := p.Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || !me.Retryable || !strings.Contains(err.Error(), "overloaded") {
		t.Fatalf("err = %v", err)
	}
	t.Logf("error event: %v", err)
	_, err = p.Complete(context.Background(), basicRequest())
	if !errors.As(err, &me) || me.Retryable || me.StatusCode != 400 {
		t.Fatalf("err = %v", err)
	}
}

func TestInvalidToolJSONPassesThrough(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(
		roleChunk,
		toolDelta(0, "call_bad", "write_file", `{"path": "a.txt", "content": `),
		toolDelta(0, "", "", `"unterminated}`),
		toolDelta(1, "call_empty", "list_dir", ""),
		chunk(`{}`, "tool_calls"),
		usage(5, 9),
		done,
	))
	resp, err := s.provider(t).Complete(context.Background(), basicRequest())
	if err != nil {
		t.Fatal(err)
	}
	uses := resp.Message.ToolUses()
	if len(uses) != 2 {
		t.Fatalf("uses = %+v", uses)
	}
	if uses[0].Input != `{"path": "a.txt", "content": "unterminated}` || uses[0].ID != "call_bad" {
		t.Errorf("invalid input = %+v, want it verbatim", uses[0])
	}
	if uses[1].Input != "{}" || uses[1].Name != "list_dir" {
		t.Errorf("empty input = %+v, want {}", uses[1])
	}
}

func TestOllamaQuirks(t *testing.T) {
	t.Parallel()
	// Two calls in one chunk, both at index 0 with their own ids, one without an id, and
	// finish_reason "stop" although the reply is tool calls.
	s := newServer(t, sse(
		chunk(`{"role":"assistant","content":"","tool_calls":[`+
			`{"index":0,"id":"call_1","type":"function","function":{"name":"list_dir","arguments":"{\"path\":\".\"}"}},`+
			`{"index":0,"id":"call_2","type":"function","function":{"name":"read_file","arguments":"{\"path\":\"a\"}"}}]}`, ""),
		chunk(`{"tool_calls":[{"index":1,"function":{"name":"glob","arguments":"{}"}}]}`, ""),
		chunk(`{}`, "stop"),
		usage(7, 8),
		done,
	))
	p, err := openai.New(openai.Config{Name: "ollama", Model: "qwen3:8b", BaseURL: s.URL + "/v1", MaxTokens: 500})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Complete(context.Background(), basicRequest())
	if err != nil {
		t.Fatal(err)
	}
	uses := resp.Message.ToolUses()
	if len(uses) != 3 || uses[0].ID != "call_1" || uses[1].ID != "call_2" || uses[1].Input != `{"path":"a"}` ||
		uses[2].Name != "glob" || !strings.HasPrefix(uses[2].ID, "call_") {
		t.Fatalf("uses = %+v", uses)
	}
	if resp.StopReason != "tool_use" {
		t.Errorf("stop reason = %q", resp.StopReason)
	}
	if got := s.Header(0).Get("Authorization"); got != "Bearer keepup-no-key" {
		t.Errorf("Authorization = %q, want the placeholder", got)
	}
	body := s.Body(0)
	if body["max_tokens"] != float64(500) {
		t.Errorf("max_tokens = %v", body["max_tokens"])
	}
	if _, ok := body["max_completion_tokens"]; ok {
		t.Errorf("max_completion_tokens sent to ollama")
	}
}

func TestMaxCompletionTokensForOpenAI(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(simpleText("hi")...))
	p, err := openai.New(openai.Config{Model: "gpt-test", APIKey: "k", BaseURL: s.URL, MaxTokens: 1000})
	if err != nil {
		t.Fatal(err)
	}
	req := basicRequest()
	req.MaxTokens = 64
	if _, err := p.Complete(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if s.Path(0) != "/chat/completions" {
		t.Errorf("path = %q", s.Path(0))
	}
	if got := s.Body(0)["max_completion_tokens"]; got != float64(64) {
		t.Errorf("max_completion_tokens = %v", got)
	}
}

func TestBadRequestNotRetried(t *testing.T) {
	t.Parallel()
	for _, code := range []int{400, 401, 403, 404} {
		s := newServer(t, httpError(code, "invalid_request_error", "", "messages: bad", nil))
		var sleeps modeltest.Sleeps
		_, err := model.WithRetry(s.provider(t), model.RetryConfig{Sleep: sleeps.Sleep}).Complete(context.Background(), basicRequest())
		var me *model.Error
		if !errors.As(err, &me) || me.StatusCode != code || me.Retryable {
			t.Errorf("%d: err = %v", code, err)
		}
		if s.Requests() != 1 || len(sleeps.Waits()) != 0 {
			t.Errorf("%d: server saw %d requests, waits %v; want exactly 1 and none", code, s.Requests(), sleeps.Waits())
		}
	}
}

func TestContextCancelledMidStream(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		writeChunks(w, []string{roleChunk, content("thinking about it")})
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := basicRequest()
	req.OnText = func(string) { cancel() }
	start := time.Now()
	_, err := model.WithRetry(s.provider(t), model.RetryConfig{}).Complete(ctx, req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to return", d)
	}
	if s.Requests() != 1 {
		t.Fatalf("requests = %d", s.Requests())
	}
}

func TestBadSchemaIsNotRetryable(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(simpleText("hi")...))
	req := basicRequest()
	req.Tools[0].InputSchema = json.RawMessage(`["not", "an", "object"]`)
	_, err := model.WithRetry(s.provider(t), model.RetryConfig{}).Complete(context.Background(), req)
	var me *model.Error
	if !errors.As(err, &me) || me.Retryable || !strings.Contains(err.Error(), "read_file") {
		t.Fatalf("err = %v", err)
	}
	if s.Requests() != 0 {
		t.Fatalf("requests = %d", s.Requests())
	}
}

func TestTruncatedErrorBodyKeepsStatus(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "200")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, `{"error":{"mess`)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		conn.Close()
	})
	_, err := s.provider(t).Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || me.StatusCode != 502 || !me.Retryable || me.RetryAfter != time.Second {
		t.Fatalf("err = %v", err)
	}
	t.Logf("truncated error body: %v", err)
}
