package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"

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
// keep in Consul KV, caching answers briefly so the request path rarely
// waits on Consul.
type tokenCache struct {
	kv     *consulapi.KV
	layout pool.KV
	ttl    time.Duration

	mu      sync.Mutex
	entries map[string]tokenEntry
}

type tokenEntry struct {
	caller  *caller // nil: no such token
	expires time.Time
}

func newTokenCache(kv *consulapi.KV, layout pool.KV, ttl time.Duration) *tokenCache {
	return &tokenCache{kv: kv, layout: layout, ttl: ttl, entries: map[string]tokenEntry{}}
}

var (
	errNoToken  = errors.New("this port needs a token: send Authorization: Bearer <token>")
	errBadToken = errors.New("invalid token")
	// errTokenUnchecked: Consul could not be asked about a token never
	// seen before; the caller should retry (503), not give up (401).
	errTokenUnchecked = errors.New("cannot check the token right now: Consul is unreachable; retry")
)

// tokenLookupTimeout bounds one token lookup in Consul.
const tokenLookupTimeout = 2 * time.Second

// authStatus is the status for an authentication error.
func authStatus(err error) int {
	if errors.Is(err, errTokenUnchecked) {
		return http.StatusServiceUnavailable
	}
	return http.StatusUnauthorized
}

// caller authenticates the request's bearer token.
func (t *tokenCache) caller(r *http.Request) (*caller, error) {
	secret, ok := pool.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return nil, errNoToken
	}
	hash := pool.HashToken(secret)
	now := time.Now()
	t.mu.Lock()
	e, ok := t.entries[hash]
	t.mu.Unlock()
	if !ok || now.After(e.expires) {
		fresh, err := t.fetch(r, hash, now)
		switch {
		case err == nil:
			e = fresh
		case !ok:
			return nil, err // never seen, and Consul cannot say: 503
		}
		// Consul unreachable: the last answer stands until it can be
		// checked again.
	}
	if e.caller == nil {
		return nil, errBadToken
	}
	return e.caller, nil
}

func (t *tokenCache) fetch(r *http.Request, hash string, now time.Time) (tokenEntry, error) {
	ctx, cancel := context.WithTimeout(r.Context(), tokenLookupTimeout)
	defer cancel()
	pair, _, err := t.kv.Get(t.layout.TokenKey(hash), (&consulapi.QueryOptions{AllowStale: true}).WithContext(ctx))
	if err != nil {
		return tokenEntry{}, errTokenUnchecked
	}
	e := tokenEntry{expires: now.Add(t.ttl)}
	if pair != nil {
		var tok pool.Token
		if json.Unmarshal(pair.Value, &tok) == nil && !tok.Expired(now) {
			e.caller = &caller{User: tok.User, Permissions: tok.Permissions}
			if !tok.ExpiresAt.IsZero() && tok.ExpiresAt.Before(e.expires) {
				e.expires = tok.ExpiresAt // ask again when it expires
			}
		}
	}
	t.mu.Lock()
	if len(t.entries) > 10000 {
		t.entries = map[string]tokenEntry{} // bound memory against token spraying
	}
	t.entries[hash] = e
	t.mu.Unlock()
	return e, nil
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
