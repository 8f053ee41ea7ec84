package anthropic_test

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
	"github.com/keepup/keepup/internal/model/anthropic"
	"github.com/keepup/keepup/internal/model/modeltest"
)

// server is the shared recording loopback server with this provider's constructor.
type server struct{ *modeltest.Server }

func newServer(t *testing.T, handlers ...http.HandlerFunc) *server {
	t.Helper()
	return &server{modeltest.NewServer(t, handlers...)}
}

func (s *server) provider(t *testing.T) *anthropic.Provider {
	t.Helper()
	p, err := anthropic.New(anthropic.Config{Model: "claude-test", APIKey: "sk-test", BaseURL: s.URL})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

type event struct{ name, data string }

func writeEvents(w http.ResponseWriter, events []event) {
	for _, e := range events {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.name, e.data)
	}
	w.(http.Flusher).Flush()
}

func sse(events ...event) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("request-id", "req_test")
		w.WriteHeader(http.StatusOK)
		writeEvents(w, events)
	}
}

func httpError(status int, typ, msg string, header map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("request-id", "req_err")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":%q}}`, typ, msg)
	}
}

// cut writes events, then drops the connection in the middle of the chunked response.
func cut(events ...event) http.HandlerFunc {
	return modeltest.Cut(func(w http.ResponseWriter) { writeEvents(w, events) })
}

func messageStart(inputTokens int) event {
	return event{"message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-test-20250101","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":%d,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}`, inputTokens)}
}

func textStart(i int) event {
	return event{"content_block_start", fmt.Sprintf(`{"type":"content_block_start","index":%d,"content_block":{"type":"text","text":""}}`, i)}
}

func textDelta(i int, s string) event {
	b, _ := json.Marshal(s)
	return event{"content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":%s}}`, i, b)}
}

func toolStart(i int, id, name string) event {
	return event{"content_block_start", fmt.Sprintf(`{"type":"content_block_start","index":%d,"content_block":{"type":"tool_use","id":%q,"name":%q,"input":{}}}`, i, id, name)}
}

func jsonDelta(i int, s string) event {
	b, _ := json.Marshal(s)
	return event{"content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta","partial_json":%s}}`, i, b)}
}

func blockStop(i int) event {
	return event{"content_block_stop", fmt.Sprintf(`{"type":"content_block_stop","index":%d}`, i)}
}

func messageDelta(stop string, outputTokens int) event {
	return event{"message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":%q,"stop_sequence":null},"usage":{"output_tokens":%d}}`, stop, outputTokens)}
}

var (
	ping        = event{"ping", `{"type": "ping"}`}
	messageStop = event{"message_stop", `{"type":"message_stop"}`}
)

// textAndTool is a complete reply: text in two deltas, then one tool call in two deltas.
func textAndTool() []event {
	return []event{
		messageStart(25),
		textStart(0),
		ping,
		textDelta(0, "Hello"),
		textDelta(0, ", world"),
		blockStop(0),
		toolStart(1, "toolu_01", "read_file"),
		jsonDelta(1, `{"path": "no`),
		jsonDelta(1, `tes.txt"}`),
		blockStop(1),
		messageDelta("tool_use", 42),
		messageStop,
	}
}

func simpleText(s string) []event {
	return []event{messageStart(10), textStart(0), textDelta(0, s), blockStop(0), messageDelta("end_turn", 3), messageStop}
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
		cfg   anthropic.Config
		field string
	}{
		{anthropic.Config{APIKey: "k"}, "Model"},
		{anthropic.Config{Model: "m"}, "APIKey"},
		{anthropic.Config{Model: "m", APIKey: "k", BaseURL: "not a url"}, "BaseURL"},
		{anthropic.Config{Model: "m", APIKey: "k", MaxTokens: -1}, "MaxTokens"},
	} {
		_, err := anthropic.New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("New(%+v) = %v, want an error naming %s", c.cfg, err, c.field)
		}
	}
	p, err := anthropic.New(anthropic.Config{Model: "m", APIKey: "k"})
	if err != nil || p.Name() != "anthropic" || p.Model() != "m" {
		t.Fatalf("New = %v, %v", p, err)
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
	if u := uses[0]; u.ID != "toolu_01" || u.Name != "read_file" || u.Input != `{"path": "notes.txt"}` {
		t.Errorf("tool use = %+v", u)
	}
	if resp.Message.Role != model.RoleAssistant || len(resp.Message.Content) != 2 || resp.Message.Content[0].Type != model.BlockText {
		t.Errorf("message = %+v", resp.Message)
	}
	if resp.StopReason != "tool_use" {
		t.Errorf("stop reason = %q", resp.StopReason)
	}
	if resp.Usage != (model.Usage{InputTokens: 25, OutputTokens: 42}) {
		t.Errorf("usage = %+v", resp.Usage)
	}
	if resp.Model != "claude-test-20250101" {
		t.Errorf("model = %q", resp.Model)
	}

	// What went over the wire.
	if s.Path(0) != "/v1/messages" {
		t.Errorf("path = %q", s.Path(0))
	}
	if got := s.Header(0).Get("Authorization"); got != "Bearer sk-test" {
		t.Errorf("Authorization = %q", got)
	}
	body := s.Body(0)
	if body["model"] != "claude-test" || body["max_tokens"] != float64(8192) || body["stream"] != true {
		t.Errorf("model/max_tokens/stream = %v/%v/%v", body["model"], body["max_tokens"], body["stream"])
	}
	if got, want := modeltest.JSON(t, body["system"]), `[{"text":"You are terse.","type":"text"}]`; got != want {
		t.Errorf("system = %s, want %s", got, want)
	}
	if got, want := modeltest.JSON(t, body["messages"]), `[{"content":[{"text":"Read notes.txt","type":"text"}],"role":"user"}]`; got != want {
		t.Errorf("messages = %s, want %s", got, want)
	}
	tools, _ := body["tools"].([]any)
	if len(tools) != 1 {
		t.Fatalf("tools = %v", body["tools"])
	}
	tool := tools[0].(map[string]any)
	if tool["name"] != "read_file" || tool["description"] != "Read a file." {
		t.Errorf("tool = %v", tool)
	}
	var wantSchema any
	_ = json.Unmarshal(readFileSchema, &wantSchema)
	if !reflect.DeepEqual(tool["input_schema"], wantSchema) {
		t.Errorf("input_schema = %s, want %s", modeltest.JSON(t, tool["input_schema"]), readFileSchema)
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
	// The agent answers the model's tool call, and the conversation continues. A second, broken
	// tool call from an earlier turn is in the history too.
	req.Messages = append(req.Messages,
		first.Message,
		model.Message{Role: model.RoleUser, Content: []model.Block{
			{Type: model.BlockToolResult, ToolUseID: "toolu_01", Content: "line 1\nline 2"},
		}},
		model.Message{Role: model.RoleAssistant, Content: []model.Block{
			{Type: model.BlockToolUse, ID: "toolu_02", Name: "read_file", Input: `{"path": "x`},
			{Type: model.BlockToolUse, ID: "toolu_03", Name: "read_file", Input: ``},
		}},
		model.Message{Role: model.RoleUser, Content: []model.Block{
			{Type: model.BlockToolResult, ToolUseID: "toolu_02", Content: "invalid JSON input", IsError: true},
			{Type: model.BlockToolResult, ToolUseID: "toolu_03", Content: "", IsError: true},
			{Type: model.BlockText, Text: "Try again."},
		}},
	)
	second, err := p.Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if second.Message.Text() != "Done." || second.StopReason != "end_turn" {
		t.Errorf("second = %+v", second)
	}

	got := modeltest.JSON(t, s.Body(1)["messages"])
	want := `[` +
		`{"content":[{"text":"Read notes.txt","type":"text"}],"role":"user"},` +
		`{"content":[{"text":"Hello, world","type":"text"},{"id":"toolu_01","input":{"path":"notes.txt"},"name":"read_file","type":"tool_use"}],"role":"assistant"},` +
		`{"content":[{"content":[{"text":"line 1\nline 2","type":"text"}],"tool_use_id":"toolu_01","type":"tool_result"}],"role":"user"},` +
		`{"content":[{"id":"toolu_02","input":{},"name":"read_file","type":"tool_use"},{"id":"toolu_03","input":{},"name":"read_file","type":"tool_use"}],"role":"assistant"},` +
		`{"content":[{"content":[{"text":"invalid JSON input","type":"text"}],"is_error":true,"tool_use_id":"toolu_02","type":"tool_result"},{"is_error":true,"tool_use_id":"toolu_03","type":"tool_result"},{"text":"Try again.","type":"text"}],"role":"user"}` +
		`]`
	if got != want {
		t.Errorf("messages on the wire:\n got %s\nwant %s", got, want)
	}
}

func TestRateLimitRetryAfter(t *testing.T) {
	t.Parallel()
	s := newServer(t,
		httpError(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", map[string]string{"retry-after": "2"}),
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
	if me.Provider != "anthropic" || me.StatusCode != 429 || me.RetryAfter != 2*time.Second || !me.Retryable {
		t.Errorf("error = %+v", me)
	}
	if !strings.Contains(me.Error(), "rate_limit_error") {
		t.Errorf("error text = %q", me.Error())
	}
}

func TestRetryAfterHTTPDateAndMillis(t *testing.T) {
	t.Parallel()
	s := newServer(t,
		httpError(503, "api_error", "unavailable", map[string]string{"retry-after-ms": "1500"}),
		httpError(429, "rate_limit_error", "slow down", map[string]string{"retry-after": time.Now().Add(20 * time.Second).UTC().Format(http.TimeFormat)}),
	)
	p := s.provider(t)
	var me *model.Error
	_, err := p.Complete(context.Background(), basicRequest())
	if !errors.As(err, &me) || me.StatusCode != 503 || me.RetryAfter != 1500*time.Millisecond {
		t.Fatalf("err = %#v", err)
	}
	_, err = p.Complete(context.Background(), basicRequest())
	if !errors.As(err, &me) || me.StatusCode != 429 || me.RetryAfter < 15*time.Second || me.RetryAfter > 21*time.Second {
		t.Fatalf("err = %v (retry after %v)", err, me.RetryAfter)
	}
}

func TestServerErrorThenSuccess(t *testing.T) {
	t.Parallel()
	s := newServer(t, httpError(500, "api_error", "Internal server error", nil), sse(simpleText("fine")...))
	var sleeps modeltest.Sleeps
	p := model.WithRetry(s.provider(t), model.RetryConfig{Sleep: sleeps.Sleep})
	resp, err := p.Complete(context.Background(), basicRequest())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Text() != "fine" || s.Requests() != 2 || len(sleeps.Waits()) != 1 {
		t.Fatalf("text %q, %d requests, waits %v", resp.Message.Text(), s.Requests(), sleeps.Waits())
	}
}

func TestOverloadedThenSuccess(t *testing.T) {
	t.Parallel()
	s := newServer(t, httpError(529, "overloaded_error", "Overloaded", nil), sse(simpleText("fine")...))
	p := s.provider(t)
	_, err := p.Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || me.StatusCode != 529 || !me.Retryable {
		t.Fatalf("err = %v", err)
	}
	var sleeps modeltest.Sleeps
	resp, err := model.WithRetry(p, model.RetryConfig{Sleep: sleeps.Sleep}).Complete(context.Background(), basicRequest())
	if err != nil || resp.Message.Text() != "fine" {
		t.Fatalf("resp = %+v, err = %v", resp, err)
	}
}

func TestOverloadedErrorEventMidStream(t *testing.T) {
	t.Parallel()
	s := newServer(t,
		sse(messageStart(5), textStart(0), textDelta(0, "Hel"),
			event{"error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`}),
		sse(simpleText("Hello")...),
	)
	p := s.provider(t)
	_, err := p.Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || !me.Retryable || me.StatusCode != 529 || !strings.Contains(err.Error(), "overloaded_error") {
		t.Fatalf("err = %v", err)
	}
	t.Logf("error event: %v", err)
	var sleeps modeltest.Sleeps
	resp, err := model.WithRetry(p, model.RetryConfig{Sleep: sleeps.Sleep}).Complete(context.Background(), basicRequest())
	if err != nil || resp.Message.Text() != "Hello" {
		t.Fatalf("resp = %+v, err = %v", resp, err)
	}
}

func TestStreamCutMidMessage(t *testing.T) {
	t.Parallel()
	half := textAndTool()[:7]
	s := newServer(t, cut(half...), sse(textAndTool()...))
	p := s.provider(t)

	_, err := p.Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || !me.Retryable || me.StatusCode != 0 {
		t.Fatalf("cut stream: err = %v, want a retryable transport *model.Error", err)
	}
	t.Logf("cut stream: %v", err)

	s2 := newServer(t, cut(half...), sse(textAndTool()...))
	var sleeps modeltest.Sleeps
	var deltas []string
	req := basicRequest()
	req.OnText = func(d string) { deltas = append(deltas, d) }
	resp, err := model.WithRetry(s2.provider(t), model.RetryConfig{Sleep: sleeps.Sleep}).Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Text() != "Hello, world" || len(resp.Message.ToolUses()) != 1 || s2.Requests() != 2 {
		t.Fatalf("resp = %+v after %d requests", resp, s2.Requests())
	}
	// The cut attempt's deltas were delivered before the retry replayed them (documented).
	if strings.Join(deltas, "") != "Hello, worldHello, world" {
		t.Errorf("deltas = %q", deltas)
	}
}

func TestStreamEndsWithoutMessageStop(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(textAndTool()[:9]...))
	_, err := s.provider(t).Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || !me.Retryable || !strings.Contains(err.Error(), "message_stop") {
		t.Fatalf("err = %v", err)
	}
}

func TestInvalidToolJSONPassesThrough(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(
		messageStart(5),
		toolStart(0, "toolu_bad", "write_file"),
		jsonDelta(0, `{"path": "a.txt", "content": `),
		jsonDelta(0, `"unterminated}`),
		blockStop(0),
		toolStart(1, "toolu_empty", "list_dir"),
		blockStop(1),
		messageDelta("tool_use", 9),
		messageStop,
	))
	resp, err := s.provider(t).Complete(context.Background(), basicRequest())
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	uses := resp.Message.ToolUses()
	if len(uses) != 2 {
		t.Fatalf("uses = %+v", uses)
	}
	if uses[0].Input != `{"path": "a.txt", "content": "unterminated}` {
		t.Errorf("invalid input = %q, want it verbatim", uses[0].Input)
	}
	if uses[1].Input != "{}" {
		t.Errorf("empty input = %q, want {}", uses[1].Input)
	}
}

func TestBadRequestNotRetried(t *testing.T) {
	t.Parallel()
	for _, code := range []int{400, 401, 403, 404} {
		s := newServer(t, httpError(code, "invalid_request_error", "messages: field required", nil))
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

func TestNonJSONErrorBodyKeepsStatus(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "<html>bad gateway</html>")
	})
	_, err := s.provider(t).Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || me.StatusCode != 502 || !me.Retryable || me.RetryAfter != 3*time.Second {
		t.Fatalf("err = %v", err)
	}
	t.Logf("non-JSON error body: %v", err)
}

func TestContextCancelledMidStream(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		writeEvents(w, []event{messageStart(5), textStart(0), textDelta(0, "thinking about it")})
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := basicRequest()
	req.OnText = func(string) { cancel() }
	p := model.WithRetry(s.provider(t), model.RetryConfig{})
	start := time.Now()
	_, err := p.Complete(ctx, req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	t.Logf("cancelled: %v", err)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to return", d)
	}
	if s.Requests() != 1 {
		t.Fatalf("requests = %d, want 1", s.Requests())
	}
}

func TestRequestMaxTokensAndNoTools(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(simpleText("hi")...))
	p, err := anthropic.New(anthropic.Config{Model: "claude-test", APIKey: "k", BaseURL: s.URL + "/", MaxTokens: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Complete(context.Background(), model.Request{
		Messages: []model.Message{{Role: model.RoleUser, Content: []model.Block{{Type: model.BlockText, Text: "hi"}}}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Complete(context.Background(), model.Request{
		MaxTokens: 77,
		Messages:  []model.Message{{Role: model.RoleUser, Content: []model.Block{{Type: model.BlockText, Text: "hi"}}}},
	}); err != nil {
		t.Fatal(err)
	}
	b0, b1 := s.Body(0), s.Body(1)
	if b0["max_tokens"] != float64(1000) || b1["max_tokens"] != float64(77) {
		t.Errorf("max_tokens = %v, %v", b0["max_tokens"], b1["max_tokens"])
	}
	for _, k := range []string{"tools", "system"} {
		if _, ok := b0[k]; ok {
			t.Errorf("%s sent although empty: %v", k, b0[k])
		}
	}
}

func TestBadSchemaIsNotRetryable(t *testing.T) {
	t.Parallel()
	s := newServer(t, sse(simpleText("hi")...))
	req := basicRequest()
	req.Tools[0].InputSchema = json.RawMessage(`{"type":`)
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
		w.WriteHeader(529)
		io.WriteString(w, `{"type":"error","err`)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		conn.Close()
	})
	_, err := s.provider(t).Complete(context.Background(), basicRequest())
	var me *model.Error
	if !errors.As(err, &me) || me.StatusCode != 529 || !me.Retryable || me.RetryAfter != time.Second {
		t.Fatalf("err = %v", err)
	}
	t.Logf("truncated error body: %v", err)
}
