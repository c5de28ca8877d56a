package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"syscall"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/gateway/routing"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// newStaticGateway is a gateway over a fixed table routing
// alice--web--8080.localhost to upstream; no Consul is contacted.
func newStaticGateway(tb testing.TB, upstream string) *Gateway {
	tb.Helper()
	return newStaticGatewayPort(tb, upstream, true)
}

// newStaticGatewayPort is newStaticGateway with the port public or not.
func newStaticGatewayPort(tb testing.TB, upstream string, public bool) *Gateway {
	tb.Helper()
	c, err := consulapi.NewClient(&consulapi.Config{Address: "127.0.0.1:1"})
	if err != nil {
		tb.Fatal(err)
	}
	g := New(Config{Name: "bench"}, c, hclog.NewNullLogger())
	g.Watcher().Load(routing.Snapshot{
		Pools: []*pool.Pool{{ID: "p-1", Owner: "alice", Spec: pool.Spec{Name: "web", Active: true,
			Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: public}}}}},
		Members:   []*pool.Member{{ID: "m-a", PoolID: "p-1", Phase: pool.PhaseRunning, Addresses: map[string]string{"http": upstream}}},
		Instances: []routing.Instance{{PoolID: "p-1", Member: "m-a", Port: "http", Address: upstream, Passing: true}},
	})
	return g
}

// BenchmarkGateway_ServeHTTP measures the request path — routing, member
// pick, proxying over a kept-alive loopback connection, stats — with
// allocations per request.
func BenchmarkGateway_ServeHTTP(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	g := newStaticGateway(b, upstream.Listener.Addr().String())
	req := httptest.NewRequest(http.MethodGet, "/hello", nil)
	req.Host = "alice--web--8080.localhost"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
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
	if st.HTTPRequests.Load() != 1 || st.HTTPInFlight.Load() != 0 {
		t.Fatalf("requests %d in flight %d", st.HTTPRequests.Load(), st.HTTPInFlight.Load())
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

// BenchmarkMinimalProxy_ServeHTTP is the floor: httputil.ReverseProxy with
// a fixed upstream, measured the same way as the gateway.
func BenchmarkMinimalProxy_ServeHTTP(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)
	p := httputil.NewSingleHostReverseProxy(target)
	req := httptest.NewRequest(http.MethodGet, "/hello", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
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
