package gateway

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedUpstream answers each request once release is closed (or at once
// when nil), counting how many it serves at the same time.
type gatedUpstream struct {
	*httptest.Server
	now, peak atomic.Int64
}

func newGatedUpstream(t *testing.T, hold time.Duration) *gatedUpstream {
	t.Helper()
	u := &gatedUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := u.now.Add(1)
		for p := u.peak.Load(); n > p && !u.peak.CompareAndSwap(p, n); p = u.peak.Load() {
		}
		time.Sleep(hold)
		u.now.Add(-1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(u.Close)
	return u
}

func get(g *Gateway) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://alice--web--8080.localhost/", nil))
	return rec
}

func TestQueue_AtMaxScaleRequestsTakeTurns(t *testing.T) {
	u := newGatedUpstream(t, 50*time.Millisecond)
	g := newGatewayWith(t, Config{Name: "q"}, autoscaledSnapshot(1, 10*time.Second, u.Listener.Addr().String()))
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Go(func() { codes[i] = get(g).Code })
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("request %d: %d, want every queued request served", i, c)
		}
	}
	if p := u.peak.Load(); p != 1 {
		t.Fatalf("the member served %d at once, container concurrency 1", p)
	}
}

func TestQueue_TimeoutAtCapacityIs429(t *testing.T) {
	u := newGatedUpstream(t, time.Second)
	g := newGatewayWith(t, Config{Name: "q"}, autoscaledSnapshot(1, 100*time.Millisecond, u.Listener.Addr().String()))
	first := make(chan int, 1)
	go func() { first <- get(g).Code }()
	for g.stats.Member("p-1", "m-0").InFlight() != 1 {
		time.Sleep(time.Millisecond)
	}
	rec := get(g)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("waited past queue_timeout at capacity: %d (Retry-After %q), want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if c := <-first; c != http.StatusOK {
		t.Fatalf("the request holding the slot: %d", c)
	}
}

func TestQueue_FullQueueIs429AtOnce(t *testing.T) {
	u := newGatedUpstream(t, 500*time.Millisecond)
	g := newGatewayWith(t, Config{Name: "q", QueueLimit: 1}, autoscaledSnapshot(1, 10*time.Second, u.Listener.Addr().String()))
	var wg sync.WaitGroup
	for range 2 { // one holds the slot, one waits
		wg.Go(func() { get(g) })
	}
	for g.stats.Queue("p-1").Held() != 1 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if rec := get(g); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("with the queue full: %d, want 429", rec.Code)
	}
	if took := time.Since(start); took > 250*time.Millisecond {
		t.Fatalf("the refusal took %s: it must not wait", took)
	}
	wg.Wait()
}

func TestQueue_ScaleFromZeroHoldsTheRequest(t *testing.T) {
	u := newGatedUpstream(t, 0)
	g := newGatewayWith(t, Config{Name: "q"}, autoscaledSnapshot(0, 10*time.Second))
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- get(g) }()
	for g.stats.Queue("p-1").Held() != 1 {
		time.Sleep(time.Millisecond)
	}
	g.Watcher().Load(autoscaledSnapshot(0, 10*time.Second, u.Listener.Addr().String())) // a member became routable
	select {
	case rec := <-done:
		if rec.Code != http.StatusOK {
			t.Fatalf("held request: %d, want 200 once a member is routable", rec.Code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held request was not sent when a member appeared")
	}
}

func TestQueue_NoMemberWithinTimeoutIs503(t *testing.T) {
	g := newGatewayWith(t, Config{Name: "q"}, autoscaledSnapshot(0, 100*time.Millisecond))
	rec := get(g)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("scaled to zero, nothing started: %d (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if g.stats.Queue("p-1").Held() != 0 {
		t.Fatal("a timed-out request is still held")
	}
}
