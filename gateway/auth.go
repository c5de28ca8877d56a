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
)

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
		var err error
		if e, err = t.fetch(r, hash, now); err != nil {
			if ok {
				e.expires = now // Consul unreachable: keep the last answer
			} else {
				return nil, err
			}
		}
	}
	if e.caller == nil {
		return nil, errBadToken
	}
	return e.caller, nil
}

func (t *tokenCache) fetch(r *http.Request, hash string, now time.Time) (tokenEntry, error) {
	pair, _, err := t.kv.Get(t.layout.TokenKey(hash), (&consulapi.QueryOptions{AllowStale: true}).WithContext(r.Context()))
	if err != nil {
		return tokenEntry{}, errors.New("cannot check the token right now")
	}
	e := tokenEntry{expires: now.Add(t.ttl)}
	if pair != nil {
		var tok pool.Token
		if json.Unmarshal(pair.Value, &tok) == nil {
			e.caller = &caller{User: tok.User, Permissions: tok.Permissions}
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
