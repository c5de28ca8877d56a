package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// tokenReads is a recording fake of the store's token records: it knows
// the tokens in it and counts every read.
type tokenReads struct {
	Store  // only GetToken is used
	tokens map[string]*store.Token
	reads  atomic.Int64
}

func (r *tokenReads) GetToken(_ context.Context, hash string) (*store.Token, error) {
	r.reads.Add(1)
	if t, ok := r.tokens[hash]; ok {
		return t, nil
	}
	return nil, store.ErrNotFound
}

func TestAuthenticate_AFloodOfMadeUpTokensCostsBoundedReads(t *testing.T) {
	const secret = "tp_alice-secret"
	hash := pool.HashToken(secret)
	fake := &tokenReads{tokens: map[string]*store.Token{hash: {User: "alice", Permissions: []string{PermUsePools}, Hash: hash}}}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s := &Server{Store: fake, Now: func() time.Time { return now }}
	h := s.Handler()
	status := func(token string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/api/tokens/self", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if got := status(secret); got != http.StatusOK {
		t.Fatalf("alice before the flood: %d", got)
	}

	// 5,000 made-up tokens within one second of the fake clock.
	codes := map[int]int{}
	for i := range 5000 {
		codes[status(fmt.Sprintf("tp_made-up-%d", i))]++
	}
	if n := fake.reads.Load() - 1; n > tokenLookupBurst {
		t.Fatalf("5,000 made-up tokens cost %d reads, want at most %d", n, tokenLookupBurst)
	}
	// alice's first request, a token not yet seen valid, took one read of
	// the burst.
	if codes[http.StatusUnauthorized] != tokenLookupBurst-1 || codes[http.StatusServiceUnavailable] != 5000-tokenLookupBurst+1 {
		t.Fatalf("answers %v: want %d refused after a read and the rest 503", codes, tokenLookupBurst-1)
	}
	// A token in use is read every time, flood or not: a revocation
	// takes effect at once.
	before := fake.reads.Load()
	for range 3 {
		if got := status(secret); got != http.StatusOK {
			t.Fatalf("alice during the flood: %d", got)
		}
	}
	if got := fake.reads.Load() - before; got != 3 {
		t.Fatalf("alice's record read %d times for 3 requests, want 3", got)
	}
	// A refused token is refused from memory, then read again once the
	// refusal is old.
	before = fake.reads.Load()
	if got := status("tp_made-up-0"); got != http.StatusUnauthorized || fake.reads.Load() != before {
		t.Fatalf("a refused token again: %d after %d reads, want 401 from memory", got, fake.reads.Load()-before)
	}
	now = now.Add(refusedTokenTTL)
	if got := status("tp_made-up-0"); got != http.StatusUnauthorized || fake.reads.Load() != before+1 {
		t.Fatalf("a refusal past its TTL: %d after %d reads, want 401 after one read", got, fake.reads.Load()-before)
	}
	// Revoked: the record is gone, and the next request says so.
	delete(fake.tokens, hash)
	if got := status(secret); got != http.StatusUnauthorized {
		t.Fatalf("alice after revocation: %d, want 401", got)
	}
}
