// Package jsonrpc holds the JSON-RPC 2.0 envelope types and error codes
// shared by the gateway's method router and the echo service.
//
// It decodes envelopes only: params and results stay raw JSON, because the
// gateway routes calls by method name and never needs to understand them.
package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the only protocol version accepted.
const Version = "2.0"

// Standard and Tidepool error codes (JSON-RPC 2.0 §5.1).
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeUnavailable is a server error: every provider of the method is
	// draining or none is healthy.
	CodeUnavailable = -32000
)

// Request is one call or notification. A request without an id is a
// notification and gets no response.
type Request struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
	ID      json.RawMessage `json:"id,omitempty"`
}

// IsNotification reports whether the request expects no response.
func (r *Request) IsNotification() bool { return len(r.ID) == 0 }

// Validate checks the envelope fields the protocol requires.
func (r *Request) Validate() error {
	if r.JSONRPC != Version {
		return fmt.Errorf("jsonrpc must be %q", Version)
	}
	if r.Method == "" {
		return errors.New("method is required")
	}
	if len(r.ID) > 0 {
		switch r.ID[0] {
		case '"', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		default:
			return errors.New("id must be a string, a number or null")
		}
	}
	return nil
}

// Response is the answer to one call: exactly one of Result and Error is set.
type Response struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

// Error is a JSON-RPC error object; it also satisfies the error interface.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc error %d: %s", e.Code, e.Message) }

// NewResult builds a success response for id.
func NewResult(id json.RawMessage, result any) (Response, error) {
	raw, err := json.Marshal(result)
	if err != nil {
		return Response{}, fmt.Errorf("encode result: %w", err)
	}
	return Response{JSONRPC: Version, Result: raw, ID: nullIfEmpty(id)}, nil
}

// NewError builds an error response for id (null when id is unknown).
func NewError(id json.RawMessage, code int, message string) Response {
	return Response{JSONRPC: Version, Error: &Error{Code: code, Message: message}, ID: nullIfEmpty(id)}
}

func nullIfEmpty(id json.RawMessage) json.RawMessage {
	if len(id) == 0 {
		return json.RawMessage("null")
	}
	return id
}

// ErrEmptyBatch is returned for "[]", which the protocol calls invalid.
var ErrEmptyBatch = errors.New("empty batch")

// Decode parses a body that holds either one request or a batch. batch
// reports which form it was, so the caller answers in the same form. A syntax
// error is returned as is; per-element envelope errors are left to Validate so
// that one bad element in a batch does not fail the others.
func Decode(body []byte) (reqs []Request, batch bool, err error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, true, err
		}
		if len(raws) == 0 {
			return nil, true, ErrEmptyBatch
		}
		reqs = make([]Request, len(raws))
		for i, raw := range raws {
			if err := json.Unmarshal(raw, &reqs[i]); err != nil {
				// Keep the slot: an element that is not an object is an
				// invalid request, answered with an error in its place.
				reqs[i] = Request{}
			}
		}
		return reqs, true, nil
	}
	var req Request
	if err := json.Unmarshal(trimmed, &req); err != nil {
		return nil, false, err
	}
	return []Request{req}, false, nil
}
