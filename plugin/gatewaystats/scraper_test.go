package gatewaystats

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// fakeHealth lists fixed gateway instances, as Consul would.
type fakeHealth struct{ entries []*consulapi.ServiceEntry }

func (f *fakeHealth) Service(string, string, bool, *consulapi.QueryOptions) ([]*consulapi.ServiceEntry, *consulapi.QueryMeta, error) {
	return f.entries, &consulapi.QueryMeta{}, nil
}

// fixedKey is a gateway key source that never changes.
type fixedKey []byte

func (k fixedKey) GatewayKey(context.Context) ([]byte, error) { return k, nil }

var testKey = fixedKey("0123456789abcdef0123456789abcdef")

// gatewayServing serves st as a gateway holding key would: it checks the
// request's proof and signs its answer.
func gatewayServing(t *testing.T, id string, st pool.GatewayStats, status string) *consulapi.ServiceEntry {
	t.Helper()
	return gatewayWithKey(t, id, st, status, testKey)
}

func gatewayWithKey(t *testing.T, id string, st pool.GatewayStats, status string, key []byte) *consulapi.ServiceEntry {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nonce := r.Header.Get(pool.StatsNonceHeader)
		if err := pool.CheckStatsRequest(key, nonce, r.Header.Get(pool.StatsAuthHeader), time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		body, _ := json.Marshal(st)
		w.Header().Set(pool.StatsSignatureHeader, pool.StatsSignature(key, nonce, body))
		_, _ = w.Write(body)
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
		return pool.GatewayStats{MembersIndex: index, Members: []pool.MemberStats{
			{PoolID: "p-1", MemberID: "m-d", HTTPInFlight: d}, {PoolID: "p-1", MemberID: "m-r", MethodInFlight: r},
			// The same member ids in another pool are other members.
			{PoolID: "p-2", MemberID: "m-d", HTTPInFlight: 50}, {PoolID: "p-2", MemberID: "m-r", MethodInFlight: 70},
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
		{"an impostor without the key: not believed, the drain waits", func(t *testing.T) []*consulapi.ServiceEntry {
			return []*consulapi.ServiceEntry{gatewayServing(t, "a", stats(100, 0, 0), "passing"),
				gatewayWithKey(t, "fake", stats(100, 0, 0), "passing", []byte("not-the-gateway-key-at-all-00000"))}
		}, map[string]int{}},
		{"a failing gateway: nobody can vouch", func(t *testing.T) []*consulapi.ServiceEntry {
			return []*consulapi.ServiceEntry{gatewayServing(t, "a", stats(100, 0, 0), "passing"), gatewayServing(t, "b", stats(100, 0, 0), "critical")}
		}, map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(&fakeHealth{entries: tt.gateways(t)}, testKey, 0, hclog.NewNullLogger())
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
	s := New(&fakeHealth{}, testKey, 0, hclog.NewNullLogger())
	if got := s.InFlight(&pool.Pool{ID: "p"}, []*pool.Member{{ID: "m"}}); got != nil {
		t.Fatalf("InFlight before any scrape = %v, want nil (unknown)", got)
	}
}

func TestScraper_UnsignedAnswerIsNotBelieved(t *testing.T) {
	// A service registered as tidepool-gateway that answers plain JSON, as
	// any tenant's member could: its numbers must not reach the leader.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(pool.GatewayStats{MembersIndex: 1 << 40, Members: []pool.MemberStats{{PoolID: "p-1", MemberID: "m-1", HTTPRPS: 1e6, HTTPInFlight: 1000}}})
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	fake := &consulapi.ServiceEntry{Service: &consulapi.AgentService{ID: "fake", Address: host, Port: p}, Checks: consulapi.HealthChecks{{Status: "passing"}}}
	s := New(&fakeHealth{entries: []*consulapi.ServiceEntry{fake}}, testKey, 0, hclog.NewNullLogger())
	s.scrape(context.Background())
	if got := s.Member("p-1", "m-1"); got.HTTPRPS != 0 || got.HTTPInFlight != 0 {
		t.Fatalf("Member = %+v, want nothing from an unsigned answer", got)
	}
	if got := s.InFlight(&pool.Pool{ID: "p-1"}, []*pool.Member{{ID: "m-1", PoolID: "p-1", Phase: pool.PhaseRunning}}); len(got) != 0 {
		t.Fatalf("InFlight = %v, want unknown while a registered gateway cannot be verified", got)
	}
}
