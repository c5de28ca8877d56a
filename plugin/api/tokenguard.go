package api

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Bounds of the token guard: how many hashes it remembers of each kind, how
// long a refusal stands, and how many reads a second tokens not seen valid
// may cost Consul (bursts of as many).
const (
	guardedTokens    = 10000
	refusedTokenTTL  = 10 * time.Second
	tokenLookupRate  = 100
	tokenLookupBurst = tokenLookupRate
)

// tokenGuard bounds what made-up tokens cost Consul. The API still reads a
// token's record on every request, so a revocation takes effect at once;
// the guard only decides whether a read is worth making:
//
//   - a hash Consul has no record of is refused from memory for
//     refusedTokenTTL;
//   - a hash not seen valid recently is read only within tokenLookupRate
//     reads a second; past it the request gets 503 and retries.
//
// Hashes seen valid are remembered (the fact, not the record), so a flood of
// made-up tokens can neither push them out nor use up their reads. Both sets
// are bounded LRUs.
type tokenGuard struct {
	now     func() time.Time
	valid   *lru.Cache[string, struct{}]
	refused *lru.Cache[string, time.Time]
	limit   *rate.Limiter
}

func newTokenGuard(now func() time.Time) *tokenGuard {
	valid, _ := lru.New[string, struct{}](guardedTokens) // errs only on a size ≤ 0
	refused, _ := lru.New[string, time.Time](guardedTokens)
	return &tokenGuard{now: now, valid: valid, refused: refused, limit: rate.NewLimiter(tokenLookupRate, tokenLookupBurst)}
}

// check says whether hash's record should be read: refused is true for a
// hash refused within refusedTokenTTL, busy when the read would go past
// the rate for tokens not seen valid.
func (g *tokenGuard) check(hash string) (refused, busy bool) {
	if g.valid.Contains(hash) {
		return false, false
	}
	now := g.now()
	if at, ok := g.refused.Get(hash); ok && now.Sub(at) < refusedTokenTTL {
		return true, false
	}
	return false, !g.limit.AllowN(now, 1)
}

// accept remembers that hash had a valid record.
func (g *tokenGuard) accept(hash string) {
	g.refused.Remove(hash)
	g.valid.Add(hash, struct{}{})
}

// refuse remembers that hash had no record.
func (g *tokenGuard) refuse(hash string) {
	g.valid.Remove(hash)
	g.refused.Add(hash, g.now())
}
