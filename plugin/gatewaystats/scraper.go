// Package gatewaystats reads what every live gateway reports (DESIGN.md
// decision 7): in-flight work and rates per member, and how far each
// gateway's routing table has applied drain marks. The leader uses it to end
// drains as soon as no gateway sends a draining member work; every
// controller uses it to show utilization.
package gatewaystats

import (
	"context"
	"encoding/json"
	"fmt"
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

var _ Health = (*consulapi.Health)(nil)

// Scraper polls every registered tidepool-gateway each interval.
type Scraper struct {
	health   Health
	client   *http.Client
	interval time.Duration
	log      hclog.Logger

	mu sync.Mutex
	// round is the latest complete scrape: nil until the first one.
	round *round
}

type round struct {
	at time.Time
	// gateways: every registered gateway, with nil stats when it is not
	// passing or its scrape failed.
	gateways map[string]*pool.GatewayStats
}

// New returns a scraper polling every interval (1s when 0).
func New(h Health, interval time.Duration, log hclog.Logger) *Scraper {
	if interval == 0 {
		interval = time.Second
	}
	return &Scraper{health: h, interval: interval, log: log.Named("gateway_stats"),
		client: &http.Client{Timeout: interval}}
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
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("list gateways", "error", err)
		}
		s.mu.Lock()
		s.round = nil // unknown: drains fall back to their timeout
		s.mu.Unlock()
		return
	}
	r := &round{at: time.Now(), gateways: map[string]*pool.GatewayStats{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, e := range entries {
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		url := "http://" + net.JoinHostPort(addr, strconv.Itoa(e.Service.Port)) + "/v1/stats"
		id := e.Service.ID
		if e.Checks.AggregatedStatus() != consulapi.HealthPassing {
			mu.Lock()
			r.gateways[id] = nil // cannot vouch for it
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			st, err := s.fetch(ctx, url)
			if err != nil && ctx.Err() == nil {
				s.log.Debug("scrape gateway", "gateway", id, "error", err)
			}
			mu.Lock()
			r.gateways[id] = st
			mu.Unlock()
		})
	}
	wg.Wait()
	s.mu.Lock()
	s.round = r
	s.mu.Unlock()
}

func (s *Scraper) fetch(ctx context.Context, url string) (*pool.GatewayStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	var st pool.GatewayStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
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
			if m.Phase == pool.PhaseDraining && g.MembersIndex < m.ModifyIndex {
				continue next // this gateway has not applied the drain yet
			}
			if st, ok := g.Members[m.ID]; ok && st.PoolID == p.ID {
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
	var sum pool.MemberStats
	if r == nil {
		return sum
	}
	for _, g := range r.gateways {
		if g == nil {
			continue
		}
		st, ok := g.Members[memberID]
		if !ok || st.PoolID != poolID {
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
