package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/gateway/jsonrpc"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

func TestCallMethods_RepliesAreBounded(t *testing.T) {
	// The member answers each call with a result of the size it asks for.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Params struct {
				Size int `json:"size"`
			} `json:"params"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":"%s"}`, req.ID, strings.Repeat("x", req.Params.Size))
	}))
	defer upstream.Close()
	snap := autoscaledSnapshot(0, time.Second, upstream.Listener.Addr().String())
	snap.Pools[0].Spec.Methods = &pool.Methods{Names: []string{"blob"}, Port: "http", Path: "/rpc"}
	g := newGatewayWith(t, Config{Name: "rpc"}, snap)
	knowToken(g, "alice-secret", "alice", pool.PermUsePools)

	call := func(body string) []jsonrpc.Response {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:4681/api/methods/call", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer alice-secret")
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		var out []jsonrpc.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			var one jsonrpc.Response
			if err := json.Unmarshal(rec.Body.Bytes(), &one); err != nil {
				t.Fatalf("status %d, body %.200s", rec.Code, rec.Body)
			}
			out = []jsonrpc.Response{one}
		}
		return out
	}
	if got := call(`{"jsonrpc":"2.0","id":1,"method":"blob","params":{"size":5000000}}`); got[0].Error == nil {
		t.Fatal("a 5 MB answer passed the 4 MiB bound")
	}
	// Six answers of 3 MB: the batch's 16 MiB budget takes five.
	var batch []string
	for i := range 6 {
		batch = append(batch, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"blob","params":{"size":3000000}}`, i))
	}
	got := call("[" + strings.Join(batch, ",") + "]")
	failed := 0
	for _, r := range got {
		if r.Error != nil {
			failed++
		}
	}
	if len(got) != 6 || failed != 1 {
		t.Fatalf("%d answers, %d failed; want 6 with exactly one over the batch budget", len(got), failed)
	}
}
