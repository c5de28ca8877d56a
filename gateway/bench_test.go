package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/gateway/routing"
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

// BenchmarkGateway_ServeHTTPParallel is the request path under concurrent
// clients, with and without container concurrency on the pool: the cost of
// reserving slots atomically (target: ≥ 90 % of the throughput without).
func BenchmarkGateway_ServeHTTPParallel(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	for _, tt := range []struct {
		name string
		snap routing.Snapshot
	}{
		{"plain", autoscaledSnapshot(0, time.Minute, upstream.Listener.Addr().String())},
		{"container_concurrency", autoscaledSnapshot(1000, time.Minute, upstream.Listener.Addr().String())},
	} {
		b.Run(tt.name, func(b *testing.B) {
			g := newGatewayWith(b, Config{Name: "bench"}, tt.snap)
			g.proxy.transport.MaxIdleConnsPerHost = 256
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest(http.MethodGet, "/hello", nil)
				req.Host = "alice--web--8080.localhost"
				for pb.Next() {
					rec := httptest.NewRecorder()
					g.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
		})
	}
}

// BenchmarkQueue_10000Held holds 10,000 requests for a pool at zero, then
// gives it a member and waits until all are answered. It reports the heap
// and stack the held requests took (target: < 100 MB, goroutines included)
// and whether they left in arrival order.
func BenchmarkQueue_10000Held(b *testing.B) {
	const held = 10000
	var mu sync.Mutex
	var arrived []int // request numbers in the order the member saw them
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		mu.Lock()
		arrived = append(arrived, n)
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	for b.Loop() {
		g := newGatewayWith(b, Config{Name: "bench", QueueLimit: held}, autoscaledSnapshot(1, time.Minute))
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		arrived = arrived[:0]
		var wg sync.WaitGroup
		for i := range held {
			wg.Go(func() {
				rec := httptest.NewRecorder()
				g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://alice--web--8080.localhost/"+strconv.Itoa(i), nil))
				if rec.Code != http.StatusOK {
					b.Errorf("held request %d: %d", i, rec.Code)
				}
			})
			for g.stats.Queue("p-1").Held() != int64(i+1) {
				runtime.Gosched()
			}
		}
		var during runtime.MemStats
		runtime.ReadMemStats(&during)
		start := time.Now()
		g.Watcher().Load(autoscaledSnapshot(1, time.Minute, upstream.Listener.Addr().String()))
		wg.Wait()
		drained := time.Since(start)
		inOrder := len(arrived) == held
		for i := range arrived {
			inOrder = inOrder && arrived[i] == i
		}
		used := float64(during.HeapInuse+during.StackInuse-before.HeapInuse-before.StackInuse) / (1 << 20)
		b.ReportMetric(used, "MB-held")
		b.ReportMetric(drained.Seconds()*1000, "ms-to-drain")
		if !inOrder {
			b.Error("held requests did not leave in arrival order")
		}
	}
}
