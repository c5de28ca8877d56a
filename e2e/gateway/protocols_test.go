package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/gateway/jsonrpc"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// protoSpec is a pool with an HTTP port (with JSON-RPC methods) and a
// private TCP port.
func protoSpec(e *env) pool.Spec {
	s := basicSpec(2, 30*time.Second, 5*time.Second, e.template("http", "tcp"))
	s.Ports = append(s.Ports, pool.Port{Label: "tcp", Number: 9000, Protocol: pool.ProtocolTCP})
	s.Methods = &pool.Methods{Names: []string{"echo", "sleep"}, Port: "http", Path: "/rpc"}
	return s
}

func echoTCP(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("hello through the tunnel\n")
	for range 3 {
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, got); err != nil {
			t.Fatalf("read echo: %v", err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
}

func TestGateway_WebSocketTCPAndRawTCP(t *testing.T) {
	rawAddr := testutil.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "gateway.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "tcp_listener {\n  address = %q\n  pool = \"admin/web\"\n  port = 9000\n}\n", rawAddr), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "-config", cfg)
	e.createPool(protoSpec(e), 2)

	t.Run("WebSocket through an HTTP route", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws://"+e.gwAddr+"/ws", &websocket.DialOptions{Host: host + ".localhost"}) //nolint:bodyclose // Dial closes it
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.CloseNow() }()
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "ping" {
			t.Fatalf("echo %q, %v", msg, err)
		}
	})

	t.Run("TCP through pool forward", func(t *testing.T) {
		listen := testutil.FreeAddr(t)
		fwd := testutil.StartProcess(t, "forward", e.tidepool, []string{"TIDEPOOL_TOKEN=" + e.token, "TIDEPOOL_GATEWAY_ADDR=http://" + e.gwAddr},
			"pool", "forward", "-listen", listen, "web", "9000")
		testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, "forward listening", func(context.Context) error {
			c, err := net.Dial("tcp", listen)
			if err == nil {
				_ = c.Close()
			}
			return err
		})
		echoTCP(t, listen)
		if !strings.Contains(fwd.Log(), "Forwarding") {
			t.Errorf("forward printed no banner: %s", fwd.Log())
		}
	})

	t.Run("TCP tunnel needs a token", func(t *testing.T) {
		resp, err := http.Get("http://" + e.gwAddr + "/proxy/spaces/web/port/9000")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})

	t.Run("raw TCP listener", func(t *testing.T) {
		echoTCP(t, rawAddr)
	})
}

func TestGateway_JSONRPC(t *testing.T) {
	e := newEnv(t)
	info := e.createPool(protoSpec(e), 2)
	call := func(body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+e.gwAddr+"/api/methods/call", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	status, body := call(`{"jsonrpc":"2.0","method":"echo","params":{"x":1},"id":7}`)
	var single jsonrpc.Response
	if err := json.Unmarshal(body, &single); status != http.StatusOK || err != nil || single.Error != nil || string(single.ID) != "7" || !strings.Contains(string(single.Result), `"x":1`) {
		t.Fatalf("call: %d %s", status, body)
	}

	status, body = call(`[{"jsonrpc":"2.0","method":"echo","id":1},{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","method":"nope","id":3},{"jsonrpc":"2.0","method":"sleep","params":{"ms":10},"id":4}]`)
	var batch []jsonrpc.Response
	if err := json.Unmarshal(body, &batch); status != http.StatusOK || err != nil || len(batch) != 3 {
		t.Fatalf("batch: %d %s", status, body)
	}
	if batch[0].Error != nil || batch[1].Error == nil || batch[1].Error.Code != jsonrpc.CodeMethodNotFound || batch[2].Error != nil {
		t.Fatalf("batch answers: %s", body)
	}

	if status, body = call(`{"jsonrpc":"2.0","method":"echo"}`); status != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("notification: %d %s", status, body)
	}
	if status, body = call(`{"jsonrpc":"2.0","method":"nope","id":1}`); status != http.StatusNotFound || !strings.Contains(string(body), "-32601") {
		t.Fatalf("unknown method: %d %s", status, body)
	}
	if status, _ = call(`{"jsonrpc":`); status != http.StatusBadRequest {
		t.Fatalf("parse error: %d", status)
	}

	if _, err := e.api.Stop(context.Background(), info.PoolID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, "every provider draining", func(context.Context) error {
		status, body := call(`{"jsonrpc":"2.0","method":"echo","id":1}`)
		if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "-32000") {
			return fmt.Errorf("%d %s", status, body)
		}
		return nil
	})
}
