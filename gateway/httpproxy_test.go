package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/gateway/routing"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// knowToken makes the gateway's token cache answer for secret without
// asking Consul.
func knowToken(g *Gateway, secret, user string, perms ...string) {
	g.tokens.valid.Add(pool.HashToken(secret), tokenAnswer{caller: &caller{User: user, Permissions: perms}, asked: time.Now()})
}

// headerEcho answers with the request headers it received.
func headerEcho(t testing.TB) *httptest.Server {
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
		{"private port: the scheme is case-insensitive", false,
			http.Header{"Authorization": {"bearer admin-secret"}}, "root", ""},
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
			req.Header = tt.header.Clone()
			req.Header.Set("X-Real-IP", "10.0.0.1")
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
			if got := seen.Get("X-Real-Ip"); got != "" {
				t.Errorf("member saw a client's X-Real-IP %q", got)
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

func TestStaticGateway_ProxiesAndCounts(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Forwarded-Host"))
	}))
	defer upstream.Close()
	g := newStaticGateway(t, upstream.Listener.Addr().String())
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "alice--web--8080.localhost"
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.String() != "alice--web--8080.localhost" {
		t.Fatalf("status %d body %q", rec.Code, rec.Body)
	}
	st := g.stats.Member("p-1", "m-a")
	if st.Total(routing.HTTP) != 1 || st.InFlight() != 0 {
		t.Fatalf("requests %d in flight %d", st.Total(routing.HTTP), st.InFlight())
	}
}

func TestClassify(t *testing.T) {
	upstreamDown := newStaticGateway(t, "127.0.0.1:1") // nothing listens on port 1
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "alice--web--8080.localhost"
	rec := httptest.NewRecorder()
	upstreamDown.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("refused upstream: %d, want 502", rec.Code)
	}
	req.Host = "alice--none--8080.localhost"
	rec = httptest.NewRecorder()
	upstreamDown.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("unknown pool: %d, want 404", rec.Code)
	}
}

func TestRetryable(t *testing.T) {
	get := httptest.NewRequest(http.MethodGet, "/", nil)
	post := httptest.NewRequest(http.MethodPost, "/", nil)
	dial := &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
	reset := &net.OpError{Op: "read", Err: syscall.ECONNRESET}
	unread := &replayBody{}
	read := &replayBody{}
	read.started.Store(true)
	tests := []struct {
		name string
		req  *http.Request
		err  error
		body *replayBody
		want bool
	}{
		{"dial failure", get, dial, nil, true},
		{"dial failure with an unsent body", post, dial, unread, true},
		{"dial failure after the body was read", post, dial, read, false},
		{"reset under an idempotent request", get, reset, nil, true},
		{"reset under a POST", post, reset, nil, false},
		{"reset with a body", get, reset, unread, false},
		{"timeout", get, context.DeadlineExceeded, nil, false},
	}
	for _, tt := range tests {
		if got := retryable(tt.req, tt.err, tt.body); got != tt.want {
			t.Errorf("%s: retryable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// brokenWriter fails every body write, as a connection to a client that
// went away does; httputil.ReverseProxy then panics with ErrAbortHandler.
type brokenWriter struct{ header http.Header }

func (w *brokenWriter) Header() http.Header       { return w.header }
func (w *brokenWriter) WriteHeader(int)           {}
func (w *brokenWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

func TestServeHost_ReleasesTheMemberOnCancelAndPanic(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, strings.Repeat("x", 64<<10))
	}))
	defer upstream.Close()
	g := newStaticGateway(t, upstream.Listener.Addr().String())
	st := g.stats.Member("p-1", "m-a")

	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://alice--web--8080.localhost/slow", nil)
	done := make(chan struct{})
	go func() { defer close(done); g.ServeHTTP(httptest.NewRecorder(), req) }()
	testEventually(t, func() bool { return st.InFlight() == 1 })
	cancel()
	<-done
	if n := st.InFlight(); n != 0 {
		t.Fatalf("client cancel left %d in flight", n)
	}

	func() {
		defer func() {
			if r, _ := recover().(error); !errors.Is(r, http.ErrAbortHandler) {
				t.Fatalf("recovered %v, want http.ErrAbortHandler", r)
			}
		}()
		// Under a real server (ServerContextKey set) the proxy panics.
		sctx := context.WithValue(context.Background(), http.ServerContextKey, &http.Server{})
		g.ServeHTTP(&brokenWriter{header: http.Header{}}, httptest.NewRequestWithContext(sctx, http.MethodGet, "http://alice--web--8080.localhost/big", nil))
	}()
	if n := st.InFlight(); n != 0 {
		t.Fatalf("a panic while copying left %d in flight", n)
	}
}

// testEventually polls cond for up to 5s.
func testEventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

func TestServeHost_DomainIsCaseInsensitive(t *testing.T) {
	upstream := headerEcho(t)
	g := newGatewayWith(t, Config{Name: "d", Domain: "Pools.Example.COM"}, autoscaledSnapshot(0, time.Second, upstream.Listener.Addr().String()))
	for _, host := range []string{"alice--web--8080.pools.example.com", "ALICE--web--8080.Pools.Example.Com"} {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://"+host+"/", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", host, rec.Code)
		}
	}
}

func TestTokens_ConsulOutage(t *testing.T) {
	upstream := headerEcho(t)
	g := newStaticGatewayPort(t, upstream.Listener.Addr().String(), false) // Consul at 127.0.0.1:1: unreachable
	knowToken(g, "alice-secret", "alice", pool.PermUsePools)
	a, _ := g.tokens.valid.Peek(pool.HashToken("alice-secret"))
	a.asked = time.Now().Add(-time.Hour) // due for a check Consul cannot answer
	g.tokens.valid.Add(pool.HashToken("alice-secret"), a)
	for _, tt := range []struct {
		name, token string
		want        int
	}{
		{"a token seen before keeps working", "alice-secret", http.StatusOK},
		{"an unknown token cannot be checked: retry, not rejected", "never-seen", http.StatusServiceUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://alice--web--8080.localhost/", nil)
			req.Header.Set("Authorization", "Bearer "+tt.token)
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

func TestServeHost_ARequestThatCrashesMembersDoesNotWalkThePool(t *testing.T) {
	var hits atomic.Int64
	var addrs []string
	for range 4 {
		u := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hits.Add(1)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close() // the member dies under the request
			}
		}))
		t.Cleanup(u.Close)
		addrs = append(addrs, u.Listener.Addr().String())
	}
	g := newGatewayWith(t, Config{Name: "crash"}, autoscaledSnapshot(0, time.Second, addrs...))
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://alice--web--8080.localhost/crash", nil))
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", rec.Code)
	}
	if n := hits.Load(); n > 1+maxReplays {
		t.Fatalf("the request reached %d of 4 members: it walked the pool", n)
	}
}
