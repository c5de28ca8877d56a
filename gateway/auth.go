package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// caller is who a token belongs to.
type caller struct {
	User        string
	Permissions []string
}

func (c *caller) admin() bool { return slices.Contains(c.Permissions, pool.PermAdmin) }

// mayUse reports whether the caller may reach an owner's pools.
func (c *caller) mayUse(owner string) bool { return c.User == owner || c.admin() }

// tokenCache resolves bearer tokens against the records the controllers
// keep in Consul KV, caching answers so the request path rarely waits on
// Consul and a flood of made-up tokens cannot flood Consul in turn.
//
// Valid and invalid answers are kept apart, each in its own LRU: only
// holders of real tokens can add to the valid set, so no number of bogus
// tokens can push a valid one out. An answer is checked again once it is
// older than TTL. While Consul cannot answer, the last answer stands: a
// token seen valid keeps working (until its own expiry), one seen invalid
// stays refused, and one never seen gets 503 so the client retries.
//
// Concurrent lookups of one token share a single read. Reads for tokens
// not already known valid are rate-limited: past LookupRate a second, a
// token never seen gets 503 at once, so bogus tokens cost Consul at most
// LookupRate reads a second however many arrive.
type tokenCache struct {
	kv     tokenKV
	layout pool.KV
	cfg    tokenCacheConfig
	now    func() time.Time

	valid   *lru.Cache[string, tokenAnswer]
	invalid *lru.Cache[string, time.Time] // hash → when last asked
	flight  singleflight.Group
	limit   *rate.Limiter
}

// tokenKV is the part of Consul's KV API token lookups use; *consulapi.KV
// satisfies it.
type tokenKV interface {
	Get(key string, q *consulapi.QueryOptions) (*consulapi.KVPair, *consulapi.QueryMeta, error)
}

var _ tokenKV = (*consulapi.KV)(nil)

// tokenCacheConfig bounds a tokenCache. Zero fields take the defaults of
// defaultTokenCacheConfig.
type tokenCacheConfig struct {
	// TTL is how long an answer stands before Consul is asked again.
	TTL time.Duration
	// LookupTimeout bounds one read of a token record.
	LookupTimeout time.Duration
	// StaleWait is how long a request holding a known token waits for a
	// due check before the last answer is used; the check goes on.
	StaleWait time.Duration
	// LookupRate bounds reads a second (and their burst) for tokens not
	// known to be valid.
	LookupRate int
	// MaxValid and MaxInvalid bound the two sets of answers.
	MaxValid, MaxInvalid int
}

func defaultTokenCacheConfig() tokenCacheConfig {
	return tokenCacheConfig{
		TTL: 10 * time.Second, LookupTimeout: pool.TokenLookupTimeout, StaleWait: 100 * time.Millisecond,
		LookupRate: 100, MaxValid: 10000, MaxInvalid: 10000,
	}
}

// tokenAnswer is what Consul last said about a token.
type tokenAnswer struct {
	caller *caller // nil: no such token
	// expires is the token's own expiry; zero: never.
	expires time.Time
	// asked is when Consul was last asked, answered or not.
	asked time.Time
}

// result is the answer at now: a token past its own expiry is refused
// whatever Consul last said.
func (a tokenAnswer) result(now time.Time) (*caller, error) {
	if a.caller == nil || (!a.expires.IsZero() && !now.Before(a.expires)) {
		return nil, errBadToken
	}
	return a.caller, nil
}

func newTokenCache(kv tokenKV, layout pool.KV, cfg tokenCacheConfig, now func() time.Time) *tokenCache {
	def := defaultTokenCacheConfig()
	cfg.TTL = cmp.Or(cfg.TTL, def.TTL)
	cfg.LookupTimeout = cmp.Or(cfg.LookupTimeout, def.LookupTimeout)
	cfg.StaleWait = cmp.Or(cfg.StaleWait, def.StaleWait)
	cfg.LookupRate = cmp.Or(cfg.LookupRate, def.LookupRate)
	cfg.MaxValid = cmp.Or(cfg.MaxValid, def.MaxValid)
	cfg.MaxInvalid = cmp.Or(cfg.MaxInvalid, def.MaxInvalid)
	valid, _ := lru.New[string, tokenAnswer](cfg.MaxValid) // errs only on a size ≤ 0
	invalid, _ := lru.New[string, time.Time](cfg.MaxInvalid)
	return &tokenCache{
		kv: kv, layout: layout, cfg: cfg, now: now, valid: valid, invalid: invalid,
		limit: rate.NewLimiter(rate.Limit(cfg.LookupRate), cfg.LookupRate),
	}
}

var (
	errNoToken  = errors.New("this port needs a token: send Authorization: Bearer <token>")
	errBadToken = errors.New("invalid token")
	// errTokenUnchecked: Consul could not be asked about a token never
	// seen before; the caller should retry (503), not give up (401).
	errTokenUnchecked = errors.New("cannot check the token right now: Consul is unreachable; retry")
	// errTokenBusy: too many unknown tokens are being checked; 503.
	errTokenBusy = errors.New("too many new tokens to check right now; retry in a second")
)

// authStatus is the status for an authentication error.
func authStatus(err error) int {
	if errors.Is(err, errTokenUnchecked) || errors.Is(err, errTokenBusy) {
		return http.StatusServiceUnavailable
	}
	return http.StatusUnauthorized
}

// writeAuthError answers an authentication error, with Retry-After when
// the client should retry; hint is added to the message.
func writeAuthError(w http.ResponseWriter, err error, hint string) {
	status := authStatus(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, status, err.Error()+hint)
}

// caller authenticates the request's bearer token.
func (t *tokenCache) caller(r *http.Request) (*caller, error) {
	secret, ok := pool.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return nil, errNoToken
	}
	hash := pool.HashToken(secret)
	now := t.now()
	last, known := t.cached(hash)
	if known && now.Sub(last.asked) < t.cfg.TTL {
		return last.result(now)
	}
	fresh, err := t.lookup(r.Context(), hash, known, last.caller != nil)
	switch {
	case err == nil:
		return fresh.result(now)
	case known:
		return last.result(now) // Consul did not answer in time: the last answer stands
	default:
		return nil, err
	}
}

// cached is the last answer for hash, if there is one.
func (t *tokenCache) cached(hash string) (tokenAnswer, bool) {
	if a, ok := t.valid.Get(hash); ok {
		return a, true
	}
	if asked, ok := t.invalid.Get(hash); ok {
		return tokenAnswer{asked: asked}, true
	}
	return tokenAnswer{}, false
}

// lookup asks Consul about hash, sharing the read with every concurrent
// lookup of the same hash. A request with a known answer waits at most
// StaleWait for it (then the read goes on without it); one without waits
// for the read, which gives up after LookupTimeout.
func (t *tokenCache) lookup(ctx context.Context, hash string, known, valid bool) (tokenAnswer, error) {
	ch := t.flight.DoChan(hash, func() (any, error) { return t.read(hash, valid) })
	var stale <-chan time.Time
	if known {
		timer := time.NewTimer(t.cfg.StaleWait)
		defer timer.Stop()
		stale = timer.C
	}
	select {
	case res := <-ch:
		if res.Err != nil {
			return tokenAnswer{}, res.Err
		}
		return res.Val.(tokenAnswer), nil
	case <-stale:
		return tokenAnswer{}, errTokenUnchecked
	case <-ctx.Done():
		return tokenAnswer{}, errTokenUnchecked
	}
}

// read reads hash's record and caches the answer. It runs detached from
// any one request, as requests share it.
func (t *tokenCache) read(hash string, valid bool) (tokenAnswer, error) {
	now := t.now()
	if !valid && !t.limit.AllowN(now, 1) {
		return tokenAnswer{}, errTokenBusy
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.LookupTimeout)
	defer cancel()
	pair, _, err := t.kv.Get(t.layout.TokenKey(hash), (&consulapi.QueryOptions{AllowStale: true}).WithContext(ctx))
	if err != nil {
		// Let the last answer stand a TTL more before asking again, so
		// requests do not each wait on an unreachable Consul.
		if a, ok := t.valid.Peek(hash); ok {
			a.asked = now
			t.valid.Add(hash, a)
		} else if t.invalid.Contains(hash) {
			t.invalid.Add(hash, now)
		}
		return tokenAnswer{}, errTokenUnchecked
	}
	a := tokenAnswer{asked: now}
	if pair != nil {
		var tok pool.Token
		if json.Unmarshal(pair.Value, &tok) == nil && !tok.Expired(now) {
			a.caller = &caller{User: tok.User, Permissions: tok.Permissions}
			a.expires = tok.ExpiresAt
		}
	}
	if a.caller != nil {
		t.invalid.Remove(hash)
		t.valid.Add(hash, a)
	} else {
		t.valid.Remove(hash)
		t.invalid.Add(hash, now)
	}
	return a, nil
}

// gatewayKeys holds the gateway key the controllers keep in Consul KV,
// re-read at most every keyTTL, and at once (rate-limited) when a proof
// does not verify, so a rotated key takes effect quickly.
type gatewayKeys struct {
	kv     *consulapi.KV
	layout pool.KV

	mu      sync.Mutex
	key     []byte
	fetched time.Time
}

const keyTTL = 30 * time.Second

var errNoGatewayKey = errors.New("no gateway key yet: a controller creates it when it first reads gateway stats")

func (k *gatewayKeys) get(ctx context.Context, refresh bool) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	stale := now.Sub(k.fetched) > keyTTL || (refresh && now.Sub(k.fetched) > time.Second)
	if k.key != nil && !stale {
		return k.key, nil
	}
	pair, _, err := k.kv.Get(k.layout.GatewayKeyKey(), (&consulapi.QueryOptions{AllowStale: true}).WithContext(ctx))
	switch {
	case err != nil && k.key != nil:
		return k.key, nil // Consul unreachable: keep the last key
	case err != nil:
		return nil, fmt.Errorf("read gateway key: %w", err)
	case pair == nil:
		return nil, errNoGatewayKey
	}
	key, err := pool.ParseGatewayKey(pair.Value)
	if err != nil {
		return nil, err
	}
	k.key, k.fetched = key, now
	return key, nil
}

// check verifies a controller's stats request and returns the key to sign
// the answer with.
func (k *gatewayKeys) check(ctx context.Context, nonce, auth string) ([]byte, error) {
	key, err := k.get(ctx, false)
	if err != nil {
		return nil, err
	}
	if pool.CheckStatsRequest(key, nonce, auth, time.Now()) == nil {
		return key, nil
	}
	if key, err = k.get(ctx, true); err != nil {
		return nil, err
	}
	if err := pool.CheckStatsRequest(key, nonce, auth, time.Now()); err != nil {
		return nil, err
	}
	return key, nil
}
