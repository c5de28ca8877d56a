package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

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
