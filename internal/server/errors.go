package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/keepup/keepup/internal/queue"
)

// Error codes of the error body.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodeTooLarge         = "too_large"
	CodeInternal         = "internal"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong: Field names the request field, query parameter or header
// when one is to blame, Message is one line naming the field and what is wrong with it.
type ErrorDetail struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// apiError is an error a handler returns to be written as an error response.
type apiError struct {
	status int
	ErrorDetail
}

func (e *apiError) Error() string { return e.Message }

func errorf(status int, code, field, format string, args ...any) *apiError {
	return &apiError{status: status, ErrorDetail: ErrorDetail{Code: code, Field: field, Message: oneLine(fmt.Sprintf(format, args...))}}
}

func badRequest(field, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, CodeBadRequest, field, format, args...)
}

func tooLarge(field, format string, args ...any) *apiError {
	return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, field, format, args...)
}

// notFound is the error for an unknown id; field is where the id came from ("id" for the path,
// "task" for a query parameter), what names the kind of thing ("task", "approval", "schedule").
func notFound(field, what, id string) *apiError {
	return errorf(http.StatusNotFound, CodeNotFound, field, "%s %q: no such %s", what, id, what)
}

// fromBackend maps an error of the Backend to an API error. ErrNotFound becomes notFound(field,
// what, id); an *queue.InputError a 400 naming its field; a *queue.ConflictError a 409; anything
// else a 500.
func fromBackend(err error, field, what, id string) *apiError {
	var ae *apiError
	var ie *queue.InputError
	var ce *queue.ConflictError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ie):
		return badRequest(ie.Field, "%s", ie.Error())
	case errors.Is(err, queue.ErrNotFound):
		return notFound(field, what, id)
	case errors.As(err, &ce):
		return errorf(http.StatusConflict, CodeConflict, "", "%s", ce.Msg)
	}
	return errorf(http.StatusInternalServerError, CodeInternal, "", "internal error: %v", err)
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, ErrorBody{Error: e.ErrorDetail})
}

// decodeBody reads a JSON object of at most limit bytes into v, refusing unknown fields.
// bigField is the field to name when the body is too large (the one that can make it so).
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, bigField string, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(bigField, "request body is larger than %d bytes; %s is too long", limit, bigField)
		}
		return badRequest("", "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest("", "request body is empty; expected a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(data, err)
	}
	off := dec.InputOffset()
	for off < int64(len(data)) && strings.IndexByte(" \t\r\n", data[off]) >= 0 {
		off++
	}
	if off < int64(len(data)) {
		line, col := position(data, off+1)
		return badRequest("", "malformed JSON at line %d, column %d: unexpected data after the JSON object", line, col)
	}
	return nil
}

// jsonError turns a decoding error into a 400 that says where the problem is.
func jsonError(data []byte, err error) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := position(data, se.Offset)
		return badRequest("", "malformed JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		if te.Field == "" {
			return badRequest("", "request body: expected a JSON object, got a JSON %s", te.Value)
		}
		return badRequest(te.Field, "%s: expected %s, got a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "malformed JSON: the body ends in the middle of a value")
	}
	if name, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
		name = strings.TrimSuffix(name, `"`)
		return badRequest(name, "%s: unknown field", name)
	}
	return badRequest("", "malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names a Go kind the way a JSON user would.
func jsonKind(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "true or false"
	case kind == "slice", kind == "array":
		return "an array"
	case kind == "struct", kind == "map", kind == "ptr":
		return "an object"
	}
	return kind
}

// position returns the 1-based line and column of the byte at index off-1 of data (a
// json.SyntaxError's Offset counts the bytes read up to and including the bad one).
func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	if col == 0 {
		col = 1
	}
	return line, col
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
