package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// knowToken makes the gateway's token cache answer for secret without
// asking Consul.
func knowToken(g *Gateway, secret, user string, perms ...string) {
	g.tokens.mu.Lock()
	defer g.tokens.mu.Unlock()
	g.tokens.entries[pool.HashToken(secret)] = tokenEntry{caller: &caller{User: user, Permissions: perms}, expires: time.Now().Add(time.Hour)}
}

// headerEcho answers with the request headers it received.
func headerEcho(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestServeHost_CallerTokenNeverReachesMember(t *testing.T) {
	upstream := headerEcho(t)
	tests := []struct {
		name     string
		public   bool
		header   http.Header
		wantUser string
		wantAuth string
	}{
		{"private port: the admin's token stays with the gateway", false,
			http.Header{"Authorization": {"Bearer admin-secret"}, UserHeader: {"mallory"}}, "root", ""},
		{"public port: no identity is claimed, a forged one is dropped", true,
			http.Header{UserHeader: {"root"}}, "", ""},
		{"public port: the member's own auth passes untouched", true,
			http.Header{"Authorization": {"Basic dXNlcjpwdw=="}}, "", "Basic dXNlcjpwdw=="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newStaticGatewayPort(t, upstream.Listener.Addr().String(), tt.public)
			knowToken(g, "admin-secret", "root", pool.PermAdmin)
			req := httptest.NewRequest(http.MethodGet, "http://alice--web--8080.localhost/x", nil)
			req.Header = tt.header
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var seen http.Header
			if err := json.Unmarshal(rec.Body.Bytes(), &seen); err != nil {
				t.Fatal(err)
			}
			if got := seen.Get("Authorization"); got != tt.wantAuth {
				t.Errorf("member saw Authorization %q, want %q", got, tt.wantAuth)
			}
			if got := seen.Values(UserHeader); len(got) > 1 || seen.Get(UserHeader) != tt.wantUser {
				t.Errorf("member saw %s %q, want %q", UserHeader, got, tt.wantUser)
			}
		})
	}
}

func TestOperatorEndpoints_NeedAdminOrOperatorListener(t *testing.T) {
	g := newStaticGateway(t, "127.0.0.1:1")
	knowToken(g, "admin-secret", "root", pool.PermAdmin)
	knowToken(g, "alice-secret", "alice", pool.PermUsePools)
	for _, path := range []string{"/v1/routes", "/v1/stats", "/metrics"} {
		for _, tt := range []struct {
			token   string
			handler http.Handler
			want    int
		}{
			{"", g, http.StatusUnauthorized},
			{"alice-secret", g, http.StatusForbidden},
			{"admin-secret", g, http.StatusOK},
			{"", g.operatorHandler(), http.StatusOK},
		} {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:4681"+path, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			rec := httptest.NewRecorder()
			tt.handler.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("%s with token %q: status %d, want %d", path, tt.token, rec.Code, tt.want)
			}
		}
	}
	rec := httptest.NewRecorder()
	g.operatorHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "http://127.0.0.1:4682/api/methods/call", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("the operator listener served pool traffic: %d", rec.Code)
	}
}

func TestServeStats_SignedForTheController(t *testing.T) {
	g := newStaticGateway(t, "127.0.0.1:1")
	key := []byte("0123456789abcdef0123456789abcdef")
	g.keys.key, g.keys.fetched = key, time.Now()
	nonce := pool.NewStatsNonce(time.Now(), []byte("random"))
	for _, tt := range []struct {
		name string
		auth string
		want int
	}{
		{"the controller's proof", pool.StatsRequestAuth(key, nonce), http.StatusOK},
		{"a guess", pool.StatsRequestAuth([]byte("another key, another key, 000000"), nonce), http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:4681/v1/stats", nil)
			req.Header.Set(pool.StatsNonceHeader, nonce)
			req.Header.Set(pool.StatsAuthHeader, tt.auth)
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusOK {
				if err := pool.CheckStatsSignature(key, nonce, rec.Body.Bytes(), rec.Header().Get(pool.StatsSignatureHeader)); err != nil {
					t.Fatalf("answer not signed for the nonce: %v", err)
				}
			}
		})
	}
}
