package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/gateway/jsonrpc"
)

func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newHandler(identity{Member: "m-1", AllocID: "alloc-1"}, hclog.NewNullLogger()))
	t.Cleanup(srv.Close)
	return srv
}

func TestEcho_AnswersWithIdentityAndPath(t *testing.T) {
	srv := newTestServer(t)
	resp, err := http.Get(srv.URL + "/a/b?x=1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var got echoReply
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Member != "m-1" || got.AllocID != "alloc-1" || got.Path != "/a/b?x=1" || got.Method != http.MethodGet {
		t.Fatalf("reply = %+v", got)
	}
	if h := resp.Header.Get("X-Tidepool-Member"); h != "m-1" {
		t.Fatalf("X-Tidepool-Member = %q", h)
	}
}

func TestSleep(t *testing.T) {
	srv := newTestServer(t)
	tests := []struct {
		query      string
		wantStatus int
	}{
		{"?ms=30", http.StatusOK},
		{"", http.StatusBadRequest},
		{"?ms=-1", http.StatusBadRequest},
		{"?ms=abc", http.StatusBadRequest},
		{"?ms=999999999", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			start := time.Now()
			resp, err := http.Get(srv.URL + "/sleep" + tt.query)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == http.StatusOK && time.Since(start) < 30*time.Millisecond {
				t.Fatalf("answered after %s, before the requested 30ms", time.Since(start))
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	srv := newTestServer(t)
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
}

func TestWebSocket_EchoesMessages(t *testing.T) {
	srv := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil) //nolint:bodyclose // Dial closes the handshake response body itself
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.CloseNow() }()
	for _, msg := range []struct {
		typ  websocket.MessageType
		data []byte
	}{{websocket.MessageText, []byte("hello")}, {websocket.MessageBinary, []byte{0, 1, 2, 255}}} {
		if err := c.Write(ctx, msg.typ, msg.data); err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != msg.typ || !bytes.Equal(data, msg.data) {
			t.Fatalf("got %v %q, want %v %q", typ, data, msg.typ, msg.data)
		}
	}
}

func TestRPC(t *testing.T) {
	srv := newTestServer(t)
	tests := []struct {
		name       string
		body       string
		wantStatus int
		check      func(t *testing.T, body []byte)
	}{
		{
			name: "echo", body: `{"jsonrpc":"2.0","method":"echo","params":{"a":1},"id":7}`, wantStatus: 200,
			check: func(t *testing.T, body []byte) {
				var r struct {
					Result struct {
						Member string          `json:"member"`
						Params json.RawMessage `json:"params"`
					} `json:"result"`
					ID json.RawMessage `json:"id"`
				}
				mustUnmarshal(t, body, &r)
				if r.Result.Member != "m-1" || string(r.Result.Params) != `{"a":1}` || string(r.ID) != "7" {
					t.Fatalf("response %s", body)
				}
			},
		},
		{
			name: "sleep", body: `{"jsonrpc":"2.0","method":"sleep","params":{"ms":5},"id":"s"}`, wantStatus: 200,
			check: func(t *testing.T, body []byte) {
				if !strings.Contains(string(body), `"slept_ms":5`) {
					t.Fatalf("response %s", body)
				}
			},
		},
		{name: "notification", body: `{"jsonrpc":"2.0","method":"echo"}`, wantStatus: 204},
		{
			name: "unknown method", body: `{"jsonrpc":"2.0","method":"nope","id":1}`, wantStatus: 200,
			check: wantCode(jsonrpc.CodeMethodNotFound),
		},
		{
			name: "bad sleep params", body: `{"jsonrpc":"2.0","method":"sleep","params":{"ms":-3},"id":1}`, wantStatus: 200,
			check: wantCode(jsonrpc.CodeInvalidParams),
		},
		{name: "parse error", body: `{`, wantStatus: 200, check: wantCode(jsonrpc.CodeParseError)},
		{name: "empty batch", body: `[]`, wantStatus: 200, check: wantCode(jsonrpc.CodeInvalidRequest)},
		{
			name: "batch skips notifications", wantStatus: 200,
			body: `[{"jsonrpc":"2.0","method":"echo","id":1},{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"1.0","method":"echo","id":3}]`,
			check: func(t *testing.T, body []byte) {
				var rs []jsonrpc.Response
				mustUnmarshal(t, body, &rs)
				if len(rs) != 2 || rs[0].Error != nil || rs[1].Error == nil || rs[1].Error.Code != jsonrpc.CodeInvalidRequest {
					t.Fatalf("response %s", body)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/rpc", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.check != nil {
				tt.check(t, body)
			}
		})
	}
}

func wantCode(code int) func(t *testing.T, body []byte) {
	return func(t *testing.T, body []byte) {
		t.Helper()
		var r jsonrpc.Response
		mustUnmarshal(t, body, &r)
		if r.Error == nil || r.Error.Code != code {
			t.Fatalf("want error code %d, got %s", code, body)
		}
	}
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func TestTCPEcho_EchoesAndShutsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newTCPEcho(ln, hclog.NewNullLogger())
	done := make(chan struct{})
	go func() { e.serve(); close(done) }()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	e.shutdown(ctx) // the open connection is closed once ctx is done
	<-done
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(buf); err == nil {
		t.Fatal("connection still open after shutdown")
	}
}

func TestSSE_StreamsEvents(t *testing.T) {
	srv := newTestServer(t)
	resp, err := http.Get(srv.URL + "/sse?n=2&interval_ms=10")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Content-Type") != "text/event-stream" || string(b) != "id: 0\ndata: m-1 0\n\nid: 1\ndata: m-1 1\n\n" {
		t.Fatalf("content type %q body %q", resp.Header.Get("Content-Type"), b)
	}
}

func TestHeaders_EchoesRequestHeaders(t *testing.T) {
	srv := newTestServer(t)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/headers", nil)
	req.Header.Set("X-Probe", "42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var got echoReply
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Headers.Get("X-Probe") != "42" || got.Member != "m-1" {
		t.Fatalf("reply = %+v", got)
	}
}
