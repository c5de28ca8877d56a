package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// fakeTokenKV is a recording tokenKV: it serves token records from memory
// and counts reads. Setting down makes reads fail as an unreachable Consul
// does; a non-nil gate holds every read until it is closed or the read's
// context ends.
type fakeTokenKV struct {
	layout pool.KV

	mu      sync.Mutex
	records map[string][]byte // key → value
	reads   int
	down    bool
	gate    chan struct{}
}

func newFakeTokenKV() *fakeTokenKV {
	return &fakeTokenKV{layout: pool.NewKV(""), records: map[string][]byte{}}
}

var _ tokenKV = (*fakeTokenKV)(nil)

var errFakeConsulDown = errors.New("dial tcp 127.0.0.1:8500: connect: connection refused")

func (f *fakeTokenKV) Get(key string, q *consulapi.QueryOptions) (*consulapi.KVPair, *consulapi.QueryMeta, error) {
	f.mu.Lock()
	f.reads++
	gate, down, value := f.gate, f.down, f.records[key]
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-q.Context().Done():
			return nil, nil, q.Context().Err()
		}
	}
	if down {
		return nil, nil, errFakeConsulDown
	}
	if value == nil {
		return nil, &consulapi.QueryMeta{}, nil
	}
	return &consulapi.KVPair{Key: key, Value: value}, &consulapi.QueryMeta{}, nil
}

// add stores a token record for secret.
func (f *fakeTokenKV) add(t *testing.T, secret string, tok pool.Token) {
	t.Helper()
	tok.Hash = pool.HashToken(secret)
	b, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records[f.layout.TokenKey(tok.Hash)] = b
}

func (f *fakeTokenKV) remove(secret string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.records, f.layout.TokenKey(pool.HashToken(secret)))
}

// takeDown makes every read fail from now on.
func (f *fakeTokenKV) takeDown() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = true
}

func (f *fakeTokenKV) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// tokenRequest is a request carrying secret as its bearer token.
func tokenRequest(secret string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://alice--web--8080.localhost/", nil)
	r.Header.Set("Authorization", "Bearer "+secret)
	return r
}

func newTestTokenCache(kv *fakeTokenKV, cfg tokenCacheConfig) (*tokenCache, *fakeClock) {
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return newTokenCache(kv, kv.layout, cfg, clock.Now), clock
}

func TestTokenCache_FloodOfBogusTokensCostsBoundedReadsAndEvictsNoValidToken(t *testing.T) {
	kv := newFakeTokenKV()
	kv.add(t, "alice-secret", pool.Token{User: "alice", Permissions: []string{pool.PermUsePools}})
	cfg := tokenCacheConfig{TTL: 10 * time.Second, LookupTimeout: time.Second, LookupRate: 50, MaxInvalid: 100, MaxValid: 100}
	tokens, clock := newTestTokenCache(kv, cfg)

	if cl, err := tokens.caller(tokenRequest("alice-secret")); err != nil || cl.User != "alice" {
		t.Fatalf("valid token: %+v, %v", cl, err)
	}
	before := kv.readCount()

	// A flood larger than any bound in the cache, all within one second
	// of the clock: at most one burst of lookups may reach Consul.
	const flood = 20_000
	refused, busy := 0, 0
	for i := range flood {
		_, err := tokens.caller(tokenRequest(fmt.Sprintf("bogus-%d", i)))
		switch {
		case errors.Is(err, errBadToken):
			refused++
		case authStatus(err) == http.StatusServiceUnavailable:
			busy++
		default:
			t.Fatalf("bogus token %d: %v, want 401 or 503", i, err)
		}
	}
	if reads := kv.readCount() - before; reads > cfg.LookupRate {
		t.Fatalf("%d bogus tokens cost %d Consul reads, want at most the burst of %d", flood, reads, cfg.LookupRate)
	}
	if busy == 0 || refused == 0 {
		t.Fatalf("%d refused (401), %d told to retry (503): want both", refused, busy)
	}

	// Consul goes away and the cached answer is due for a check: the
	// valid token must still be known.
	kv.takeDown()
	clock.advance(cfg.TTL + time.Second)
	if cl, err := tokens.caller(tokenRequest("alice-secret")); err != nil || cl.User != "alice" {
		t.Fatalf("valid token after the flood, Consul unreachable: %+v, %v; want alice from the cache", cl, err)
	}
}

func TestTokenCache_ConcurrentLookupsOfOneTokenReadOnce(t *testing.T) {
	kv := newFakeTokenKV()
	kv.add(t, "alice-secret", pool.Token{User: "alice"})
	kv.gate = make(chan struct{})
	tokens, _ := newTestTokenCache(kv, tokenCacheConfig{TTL: 10 * time.Second, LookupTimeout: 10 * time.Second, LookupRate: 100, MaxInvalid: 100, MaxValid: 100})

	const callers = 32
	var started, done sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		started.Add(1)
		done.Go(func() {
			started.Done()
			cl, err := tokens.caller(tokenRequest("alice-secret"))
			if err == nil && cl.User != "alice" {
				err = fmt.Errorf("user %q", cl.User)
			}
			errs <- err
		})
	}
	started.Wait()
	// Every caller is running; watch for a while that no second read
	// starts while the first one is held.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := kv.readCount(); n > 1 {
			close(kv.gate)
			done.Wait()
			t.Fatalf("%d concurrent lookups of one token made %d Consul reads, want 1", callers, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(kv.gate)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := kv.readCount(); n != 1 {
		t.Fatalf("%d Consul reads, want 1", n)
	}
}

func TestTokenCache_Answers(t *testing.T) {
	const ttl = 10 * time.Second
	cfg := tokenCacheConfig{TTL: ttl, LookupTimeout: 500 * time.Millisecond, StaleWait: 10 * time.Millisecond, LookupRate: 100, MaxInvalid: 100, MaxValid: 100}
	hang := func(kv *fakeTokenKV) { kv.gate = make(chan struct{}) }
	tests := []struct {
		name string
		// setup runs against a cache that has looked up "alice-secret"
		// (valid, expiring an hour after the start) and "bogus" once.
		setup  func(kv *fakeTokenKV, clock *fakeClock)
		secret string
		want   error // nil: alice
		// within bounds how long the answer may take.
		within time.Duration
	}{
		{"a cached token needs no Consul", func(kv *fakeTokenKV, _ *fakeClock) { kv.takeDown() },
			"alice-secret", nil, cfg.LookupTimeout / 2},
		{"a cached token outlives its TTL while Consul is unreachable",
			func(kv *fakeTokenKV, c *fakeClock) { kv.takeDown(); c.advance(5 * ttl) }, "alice-secret", nil, cfg.LookupTimeout},
		{"a cached token due for a check does not wait for a hung Consul",
			func(kv *fakeTokenKV, c *fakeClock) { hang(kv); c.advance(5 * ttl) }, "alice-secret", nil, cfg.LookupTimeout / 2},
		{"a known bad token stays refused while Consul is unreachable",
			func(kv *fakeTokenKV, c *fakeClock) { kv.takeDown(); c.advance(5 * ttl) }, "bogus", errBadToken, cfg.LookupTimeout},
		{"a never-seen token while Consul is unreachable: retry",
			func(kv *fakeTokenKV, _ *fakeClock) { kv.takeDown() }, "never-seen", errTokenUnchecked, cfg.LookupTimeout},
		{"a never-seen token while Consul hangs: retry after the lookup timeout",
			func(kv *fakeTokenKV, _ *fakeClock) { hang(kv) }, "never-seen", errTokenUnchecked, 2 * cfg.LookupTimeout},
		{"a revoked token is refused once its answer is due for a check",
			func(kv *fakeTokenKV, c *fakeClock) { kv.remove("alice-secret"); c.advance(ttl + time.Second) }, "alice-secret", errBadToken, cfg.LookupTimeout},
		{"an expired token is refused even while Consul is unreachable",
			func(kv *fakeTokenKV, c *fakeClock) { kv.takeDown(); c.advance(2 * time.Hour) }, "alice-secret", errBadToken, cfg.LookupTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := newFakeTokenKV()
			tokens, clock := newTestTokenCache(kv, cfg)
			kv.add(t, "alice-secret", pool.Token{User: "alice", ExpiresAt: clock.Now().Add(time.Hour)})
			if _, err := tokens.caller(tokenRequest("alice-secret")); err != nil {
				t.Fatal(err)
			}
			if _, err := tokens.caller(tokenRequest("bogus")); !errors.Is(err, errBadToken) {
				t.Fatalf("bogus: %v", err)
			}
			tt.setup(kv, clock)
			start := time.Now()
			cl, err := tokens.caller(tokenRequest(tt.secret))
			if took := time.Since(start); took > tt.within {
				t.Fatalf("the answer took %s, want at most %s", took, tt.within)
			}
			switch {
			case tt.want == nil && (err != nil || cl.User != "alice"):
				t.Fatalf("got %+v, %v; want alice", cl, err)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("got %+v, %v; want %v", cl, err, tt.want)
			}
		})
	}
}
