package jsonrpc

import (
	"errors"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantBatch bool
		wantN     int
		wantErr   error
		anyErr    bool
	}{
		{name: "single", body: `{"jsonrpc":"2.0","method":"echo","id":1}`, wantN: 1},
		{name: "leading whitespace batch", body: " \n[{\"jsonrpc\":\"2.0\",\"method\":\"a\"},{\"jsonrpc\":\"2.0\",\"method\":\"b\",\"id\":\"x\"}]", wantBatch: true, wantN: 2},
		{name: "batch with a non-object keeps its slot", body: `[1,{"jsonrpc":"2.0","method":"a","id":2}]`, wantBatch: true, wantN: 2},
		{name: "empty batch", body: `[]`, wantBatch: true, wantErr: ErrEmptyBatch},
		{name: "syntax error", body: `{"jsonrpc":`, anyErr: true},
		{name: "batch syntax error", body: `[{"jsonrpc":"2.0"`, wantBatch: true, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs, batch, err := Decode([]byte(tt.body))
			if batch != tt.wantBatch {
				t.Errorf("batch = %v, want %v", batch, tt.wantBatch)
			}
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			case tt.anyErr:
				if err == nil {
					t.Fatal("want an error")
				}
				return
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			}
			if len(reqs) != tt.wantN {
				t.Fatalf("got %d requests, want %d", len(reqs), tt.wantN)
			}
		})
	}
}

func TestRequest_Validate(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		wantErr bool
	}{
		{name: "call", req: Request{JSONRPC: "2.0", Method: "m", ID: []byte(`7`)}},
		{name: "string id", req: Request{JSONRPC: "2.0", Method: "m", ID: []byte(`"a"`)}},
		{name: "notification", req: Request{JSONRPC: "2.0", Method: "m"}},
		{name: "wrong version", req: Request{JSONRPC: "1.0", Method: "m"}, wantErr: true},
		{name: "no method", req: Request{JSONRPC: "2.0", ID: []byte(`1`)}, wantErr: true},
		{name: "object id", req: Request{JSONRPC: "2.0", Method: "m", ID: []byte(`{}`)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.req.Validate(); (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestNewError_NullIDWhenUnknown(t *testing.T) {
	r := NewError(nil, CodeParseError, "bad")
	if string(r.ID) != "null" {
		t.Fatalf("id = %s, want null", r.ID)
	}
}
