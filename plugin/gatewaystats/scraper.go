// Package gatewaystats reads what every live gateway reports (DESIGN.md
// decision 7): in-flight work and rates per member, and how far each
// gateway's routing table has applied drain marks. The leader uses it to end
// drains as soon as no gateway sends a draining member work; every
// controller uses it to show utilization.
package gatewaystats

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// Health lists passing gateway instances; *consulapi.Health satisfies it.
type Health interface {
	Service(service, tag string, passingOnly bool, q *consulapi.QueryOptions) ([]*consulapi.ServiceEntry, *consulapi.QueryMeta, error)
}

// Keys yields the gateway key; *store.Store satisfies it.
type Keys interface {
	GatewayKey(ctx context.Context) ([]byte, error)
}

var _ Health = (*consulapi.Health)(nil)

// Scraper polls every registered tidepool-gateway each interval. Stats are
// believed only when signed with the gateway key (pool.GatewayStats), so a
// service that merely registers under the gateways' name can neither read
// tenants' traffic nor feed the leader made-up numbers.
type Scraper struct {
	health   Health
	keys     Keys
	client   *http.Client
	interval time.Duration
	log      hclog.Logger

	mu sync.Mutex
	// round is the latest complete scrape: nil until the first one.
	round *round
	// rejected remembers gateways whose answers failed verification, so
	// each is logged once.
	rejected map[string]bool
}

type round struct {
	at time.Time
	// gateways: every registered gateway, with nil stats when it is not
	// passing, its scrape failed, or its answer was not signed.
	gateways map[string]*gatewayRound
}

// gatewayRound is one gateway's verified report, indexed by member, with
// each pool's demand summed.
type gatewayRound struct {
	membersIndex uint64
	members      map[pool.MemberRef]pool.MemberStats
	pools        map[string]Demand
}

// Demand is one pool's demand, for the autoscaler.
type Demand struct {
	// Concurrency is the time-weighted average work in flight over the
	// last second, summed over members and gateways.
	Concurrency float64
	// RPS is requests, connections and calls per second.
	RPS float64
	// Held requests wait in gateways' queues.
	Held int
	// Routable is the most members any gateway routes to.
	Routable int
	// Complete: every registered gateway reported in a fresh round. The
	// autoscaler never scales down on incomplete data.
	Complete bool
}

// New returns a scraper polling every interval (1s when 0).
func New(h Health, keys Keys, interval time.Duration, log hclog.Logger) *Scraper {
	if interval == 0 {
		interval = time.Second
	}
	// A gateway's certificate names its public name, not the address it
	// registered; its answers are authenticated by their MAC instead.
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // stats are MAC-signed with the gateway key
	return &Scraper{health: h, keys: keys, interval: interval, log: log.Named("gateway_stats"),
		client: &http.Client{Timeout: interval, Transport: t}, rejected: map[string]bool{}}
}

// Run scrapes until ctx is done.
func (s *Scraper) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.scrape(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Scraper) scrape(ctx context.Context) {
	// Every registered gateway counts, passing or not: one failing its
	// check may still be proxying, so its members' drains must wait.
	entries, _, err := s.health.Service(pool.GatewayService, "", false, (&consulapi.QueryOptions{AllowStale: true}).WithContext(ctx))
	var key []byte
	if err == nil && len(entries) > 0 {
		key, err = s.keys.GatewayKey(ctx)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("list gateways", "error", err)
		}
		s.mu.Lock()
		s.round = nil // unknown: drains fall back to their timeout
		s.mu.Unlock()
		return
	}
	r := &round{at: time.Now(), gateways: map[string]*gatewayRound{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, e := range entries {
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		scheme := "http"
		if e.Service.Meta[pool.GatewaySchemeMeta] == "https" {
			scheme = "https"
		}
		url := scheme + "://" + net.JoinHostPort(addr, strconv.Itoa(e.Service.Port)) + "/v1/stats"
		id := e.Service.ID
		if e.Checks.AggregatedStatus() != consulapi.HealthPassing {
			mu.Lock()
			r.gateways[id] = nil // cannot vouch for it
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			st, err := s.fetch(ctx, url, key)
			switch {
			case errors.Is(err, pool.ErrStatsAuth):
				s.reject(id, url, err)
			case err != nil && ctx.Err() == nil:
				s.log.Debug("scrape gateway", "gateway", id, "error", err)
			}
			mu.Lock()
			r.gateways[id] = index(st)
			mu.Unlock()
		})
	}
	wg.Wait()
	s.mu.Lock()
	s.round = r
	s.mu.Unlock()
}

// reject logs, once per gateway, an answer that failed verification: a
// registration that is not a Tidepool gateway, or one with another key.
func (s *Scraper) reject(id, url string, err error) {
	s.mu.Lock()
	first := !s.rejected[id]
	s.rejected[id] = true
	s.mu.Unlock()
	if first {
		s.log.Warn("ignoring a registered gateway whose stats are not signed with the gateway key; its members' drains wait for drain.timeout", "gateway", id, "url", url, "error", err)
	}
}

func index(st *pool.GatewayStats) *gatewayRound {
	if st == nil {
		return nil
	}
	g := &gatewayRound{membersIndex: st.MembersIndex, members: make(map[pool.MemberRef]pool.MemberStats, len(st.Members)), pools: map[string]Demand{}}
	for _, m := range st.Members {
		g.members[m.Ref()] = m
		d := g.pools[m.PoolID]
		d.Concurrency += m.Concurrency
		d.RPS += m.HTTPRPS + m.TCPRPS + m.MethodRPS
		g.pools[m.PoolID] = d
	}
	for _, p := range st.Pools {
		d := g.pools[p.PoolID]
		d.Held += int(p.Held)
		d.Routable = p.Routable
		g.pools[p.PoolID] = d
	}
	return g
}

// maxStatsBody bounds a gateway's stats answer.
const maxStatsBody = 32 << 20

func (s *Scraper) fetch(ctx context.Context, url string, key []byte) (*pool.GatewayStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	random := make([]byte, 16)
	_, _ = rand.Read(random)
	nonce := pool.NewStatsNonce(time.Now(), random)
	req.Header.Set(pool.StatsNonceHeader, nonce)
	req.Header.Set(pool.StatsAuthHeader, pool.StatsRequestAuth(key, nonce))
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatsBody))
	if err != nil {
		return nil, err
	}
	if err := pool.CheckStatsSignature(key, nonce, body, resp.Header.Get(pool.StatsSignatureHeader)); err != nil {
		return nil, err
	}
	var st pool.GatewayStats
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// fresh returns the latest round if it is recent enough to act on.
func (s *Scraper) fresh() *round {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.round == nil || time.Since(s.round.at) > 3*s.interval {
		return nil
	}
	return s.round
}

// InFlight sums each member's in-flight work over every live gateway. A
// draining member is included only once every live gateway has applied its
// drain mark (its table's members index has reached the member record's)
// and reported; otherwise it is left out, and the drain waits. With no
// gateway registered at all nothing can route to a member, so each is idle.
func (s *Scraper) InFlight(p *pool.Pool, members []*pool.Member) map[string]int {
	r := s.fresh()
	if r == nil {
		return nil
	}
	out := make(map[string]int, len(members))
next:
	for _, m := range members {
		n := 0
		for _, g := range r.gateways {
			if g == nil {
				continue next // a gateway we could not read might still route to it
			}
			if m.Phase == pool.PhaseDraining && g.membersIndex < m.ModifyIndex {
				continue next // this gateway has not applied the drain yet
			}
			if st, ok := g.members[pool.MemberRef{PoolID: p.ID, MemberID: m.ID}]; ok {
				n += int(st.InFlight())
			}
		}
		out[m.ID] = n
	}
	return out
}

// Member sums one member's stats over the gateways of the latest round.
func (s *Scraper) Member(poolID, memberID string) pool.MemberStats {
	s.mu.Lock()
	r := s.round
	s.mu.Unlock()
	sum := pool.MemberStats{PoolID: poolID, MemberID: memberID}
	if r == nil {
		return sum
	}
	for _, g := range r.gateways {
		if g == nil {
			continue
		}
		st, ok := g.members[pool.MemberRef{PoolID: poolID, MemberID: memberID}]
		if !ok {
			continue
		}
		sum.HTTPInFlight += st.HTTPInFlight
		sum.TCPInFlight += st.TCPInFlight
		sum.MethodInFlight += st.MethodInFlight
		sum.HTTPRequests += st.HTTPRequests
		sum.TCPConns += st.TCPConns
		sum.MethodCalls += st.MethodCalls
		sum.HTTPRPS += st.HTTPRPS
		sum.TCPRPS += st.TCPRPS
		sum.MethodRPS += st.MethodRPS
	}
	return sum
}

// Demand sums a pool's demand over the gateways of the latest fresh round.
// It is incomplete when there is no fresh round or some registered gateway
// could not be read: numbers are then a lower bound.
func (s *Scraper) Demand(poolID string) Demand {
	r := s.fresh()
	if r == nil {
		return Demand{}
	}
	out := Demand{Complete: true}
	for _, g := range r.gateways {
		if g == nil {
			out.Complete = false
			continue
		}
		d := g.pools[poolID]
		out.Concurrency += d.Concurrency
		out.RPS += d.RPS
		out.Held += d.Held
		out.Routable = max(out.Routable, d.Routable)
	}
	return out
}
