package gatewaystats

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// fakeHealth lists fixed gateway instances, as Consul would.
type fakeHealth struct{ entries []*consulapi.ServiceEntry }

func (f *fakeHealth) Service(string, string, bool, *consulapi.QueryOptions) ([]*consulapi.ServiceEntry, *consulapi.QueryMeta, error) {
	return f.entries, &consulapi.QueryMeta{}, nil
}

func gatewayServing(t *testing.T, id string, st pool.GatewayStats, status string) *consulapi.ServiceEntry {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return &consulapi.ServiceEntry{
		Service: &consulapi.AgentService{ID: id, Address: host, Port: p},
		Checks:  consulapi.HealthChecks{{Status: status}},
	}
}

func TestScraper_InFlight(t *testing.T) {
	p := &pool.Pool{ID: "p-1"}
	draining := &pool.Member{ID: "m-d", PoolID: "p-1", Phase: pool.PhaseDraining, ModifyIndex: 100}
	running := &pool.Member{ID: "m-r", PoolID: "p-1", Phase: pool.PhaseRunning, ModifyIndex: 50}
	members := []*pool.Member{draining, running}
	stats := func(index uint64, d, r int64) pool.GatewayStats {
		return pool.GatewayStats{MembersIndex: index, Members: map[string]pool.MemberStats{
			"m-d": {PoolID: "p-1", HTTPInFlight: d}, "m-r": {PoolID: "p-1", MethodInFlight: r},
		}}
	}
	tests := []struct {
		name     string
		gateways func(t *testing.T) []*consulapi.ServiceEntry
		want     map[string]int // nil: unknown
	}{
		{"no gateway registered: nothing routes, all idle", func(*testing.T) []*consulapi.ServiceEntry { return nil },
			map[string]int{"m-d": 0, "m-r": 0}},
		{"every gateway applied the drain: sums", func(t *testing.T) []*consulapi.ServiceEntry {
			return []*consulapi.ServiceEntry{gatewayServing(t, "a", stats(100, 1, 2), "passing"), gatewayServing(t, "b", stats(120, 0, 3), "passing")}
		}, map[string]int{"m-d": 1, "m-r": 5}},
		{"a gateway behind the drain mark: the draining member is unknown", func(t *testing.T) []*consulapi.ServiceEntry {
			return []*consulapi.ServiceEntry{gatewayServing(t, "a", stats(100, 0, 0), "passing"), gatewayServing(t, "b", stats(99, 0, 0), "passing")}
		}, map[string]int{"m-r": 0}},
		{"a failing gateway: nobody can vouch", func(t *testing.T) []*consulapi.ServiceEntry {
			return []*consulapi.ServiceEntry{gatewayServing(t, "a", stats(100, 0, 0), "passing"), gatewayServing(t, "b", stats(100, 0, 0), "critical")}
		}, map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(&fakeHealth{entries: tt.gateways(t)}, 0, hclog.NewNullLogger())
			s.scrape(context.Background())
			got := s.InFlight(p, members)
			if len(got) != len(tt.want) {
				t.Fatalf("InFlight = %v, want %v", got, tt.want)
			}
			for id, n := range tt.want {
				if v, ok := got[id]; !ok || v != n {
					t.Fatalf("InFlight = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestScraper_UnknownBeforeFirstScrape(t *testing.T) {
	s := New(&fakeHealth{}, 0, hclog.NewNullLogger())
	if got := s.InFlight(&pool.Pool{ID: "p"}, []*pool.Member{{ID: "m"}}); got != nil {
		t.Fatalf("InFlight before any scrape = %v, want nil (unknown)", got)
	}
}
