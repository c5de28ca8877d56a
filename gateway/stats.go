package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tidepool-run/tidepool/gateway/routing"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// serveStats answers GET /v1/stats (pool.GatewayStats). A controller proves
// it holds the gateway key with a MAC of a fresh nonce, and the answer is
// signed for that nonce; an operator may read it with an admin token.
func (g *Gateway) serveStats(c *gin.Context) {
	nonce := c.GetHeader(pool.StatsNonceHeader)
	var key []byte
	if nonce != "" {
		var err error
		if key, err = g.keys.check(c.Request.Context(), nonce, c.GetHeader(pool.StatsAuthHeader)); err != nil {
			writeError(c.Writer, http.StatusForbidden, err.Error())
			return
		}
	} else if !g.operator(c) {
		return
	}
	// The table's drain marks are read before any counter: a slot that
	// routing.AcquireCurrent kept for a member is then in this answer, or
	// was taken from this table, which excludes draining members.
	out := pool.GatewayStats{Gateway: g.cfg.Name, MembersIndex: g.watcher.Table().MembersIndex, Members: []pool.MemberStats{}}
	g.stats.Each(func(s *routing.MemberStats) {
		http, tcp, method := g.rates.of(s)
		out.Members = append(out.Members, pool.MemberStats{
			PoolID:         s.PoolID,
			MemberID:       s.ID,
			HTTPInFlight:   s.InFlightOf(routing.HTTP),
			TCPInFlight:    s.InFlightOf(routing.TCP),
			MethodInFlight: s.InFlightOf(routing.Method),
			HTTPRequests:   s.Total(routing.HTTP),
			TCPConns:       s.Total(routing.TCP),
			MethodCalls:    s.Total(routing.Method),
			HTTPRPS:        http, TCPRPS: tcp, MethodRPS: method,
			Concurrency: s.Concurrency(),
		})
	})
	table := g.watcher.Table()
	out.Pools = []pool.Demand{}
	g.stats.EachQueue(func(poolID string, q *routing.Queue) {
		out.Pools = append(out.Pools, pool.Demand{PoolID: poolID, Held: q.Held(), Routable: table.Routable(poolID)})
	})
	body, err := json.Marshal(out)
	if err != nil {
		writeError(c.Writer, http.StatusInternalServerError, err.Error())
		return
	}
	if key != nil {
		c.Header(pool.StatsSignatureHeader, pool.StatsSignature(key, nonce, body))
	}
	c.Data(http.StatusOK, "application/json", body)
}

// rateWindow is how far back request rates look.
const rateWindow = 5

// rates samples every member's counters each second and derives rates
// over the last rateWindow seconds.
type rates struct {
	stats *routing.Registry
	mu    sync.Mutex
	ring  map[*routing.MemberStats]*samples
}

type samples struct {
	http, tcp, method [rateWindow + 1]uint64
	n                 int
}

func newRates(stats *routing.Registry) *rates {
	return &rates{stats: stats, ring: map[*routing.MemberStats]*samples{}}
}

func (r *rates) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seen := map[*routing.MemberStats]bool{}
		now := time.Now()
		r.stats.Each(func(s *routing.MemberStats) {
			s.Roll(now)
			seen[s] = true
			r.mu.Lock()
			sm := r.ring[s]
			if sm == nil {
				sm = &samples{}
				r.ring[s] = sm
			}
			i := sm.n % (rateWindow + 1)
			sm.http[i], sm.tcp[i], sm.method[i] = s.Total(routing.HTTP), s.Total(routing.TCP), s.Total(routing.Method)
			sm.n++
			r.mu.Unlock()
		})
		r.mu.Lock()
		for s := range r.ring {
			if !seen[s] {
				delete(r.ring, s)
			}
		}
		r.mu.Unlock()
	}
}

// of returns the member's HTTP, TCP and method rates per second.
func (r *rates) of(s *routing.MemberStats) (http, tcp, method float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sm := r.ring[s]
	if sm == nil || sm.n < 2 {
		return 0, 0, 0
	}
	span := min(sm.n-1, rateWindow)
	newest := (sm.n - 1) % (rateWindow + 1)
	oldest := (sm.n - 1 - span) % (rateWindow + 1)
	rate := func(ring [rateWindow + 1]uint64) float64 {
		return float64(ring[newest]-ring[oldest]) / float64(span)
	}
	return rate(sm.http), rate(sm.tcp), rate(sm.method)
}

// routeInfo is one route of GET /v1/routes.
type routeInfo struct {
	Host     string   `json:"host"`
	PoolID   string   `json:"pool_id"`
	Protocol string   `json:"protocol"`
	Public   bool     `json:"public"`
	Waiting  bool     `json:"waiting"`
	Backends []string `json:"backends"`
}

// serveRoutes answers GET /v1/routes: what this gateway routes where, for
// operators asking "why does this request go there?".
func (g *Gateway) serveRoutes(c *gin.Context) {
	if !g.operator(c) {
		return
	}
	t := g.watcher.Table()
	out := []routeInfo{}
	t.Each(func(label string, r *routing.Route) {
		ri := routeInfo{Host: label + "." + g.cfg.Domain, PoolID: r.PoolID, Protocol: r.Port.Protocol, Public: r.Port.Public, Waiting: r.Waiting, Backends: []string{}}
		for _, b := range r.Backends {
			ri.Backends = append(ri.Backends, b.Stats.ID+"@"+b.Addr)
		}
		out = append(out, ri)
	})
	c.JSON(http.StatusOK, gin.H{"members_index": t.MembersIndex, "routes": out})
}
