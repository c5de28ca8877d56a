package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/gateway/routing"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// newStaticGateway is a gateway over a fixed table routing
// alice--web--8080.localhost to upstream; no Consul is contacted.
func newStaticGateway(tb testing.TB, upstream string) *Gateway {
	tb.Helper()
	return newStaticGatewayPort(tb, upstream, true)
}

// newStaticGatewayPort is newStaticGateway with the port public or not.
func newStaticGatewayPort(tb testing.TB, upstream string, public bool) *Gateway {
	tb.Helper()
	c, err := consulapi.NewClient(&consulapi.Config{Address: "127.0.0.1:1"})
	if err != nil {
		tb.Fatal(err)
	}
	g := New(Config{Name: "bench"}, c, hclog.NewNullLogger())
	g.Watcher().Load(routing.Snapshot{
		Pools: []*pool.Pool{{ID: "p-1", Owner: "alice", Spec: pool.Spec{Name: "web", Active: true,
			Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: public}}}}},
		Members:   []*pool.Member{{ID: "m-a", PoolID: "p-1", Phase: pool.PhaseRunning, Addresses: map[string]string{"http": upstream}}},
		Instances: []routing.Instance{{PoolID: "p-1", Member: "m-a", Port: "http", Address: upstream, Passing: true}},
	})
	return g
}

// autoscaledSnapshot is a public pool p-1 of alice's with an autoscaling
// block (container concurrency cc, queue timeout qt) and one member per
// upstream.
func autoscaledSnapshot(cc int, qt time.Duration, upstreams ...string) routing.Snapshot {
	as := pool.DefaultAutoscaling()
	as.ContainerConcurrency, as.QueueTimeout = cc, pool.Duration(qt)
	s := routing.Snapshot{Pools: []*pool.Pool{{ID: "p-1", Owner: "alice", Spec: pool.Spec{Name: "web", Active: true,
		Autoscaling: &as,
		Ports:       []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: true}}}}}}
	for i, u := range upstreams {
		id := fmt.Sprintf("m-%d", i)
		s.Members = append(s.Members, &pool.Member{ID: id, PoolID: "p-1", Phase: pool.PhaseRunning, Addresses: map[string]string{"http": u}})
		s.Instances = append(s.Instances, routing.Instance{PoolID: "p-1", Member: id, Port: "http", Address: u, Passing: true})
	}
	return s
}

// newGatewayWith is a gateway over a fixed snapshot; no Consul is contacted.
func newGatewayWith(tb testing.TB, cfg Config, s routing.Snapshot) *Gateway {
	tb.Helper()
	c, err := consulapi.NewClient(&consulapi.Config{Address: "127.0.0.1:1"})
	if err != nil {
		tb.Fatal(err)
	}
	g := New(cfg, c, hclog.NewNullLogger())
	g.Watcher().Load(s)
	return g
}

func TestMetrics_PoolSeriesGoWithThePool(t *testing.T) {
	upstream := newGatedUpstream(t, 0)
	g := newGatewayWith(t, Config{Name: "m"}, autoscaledSnapshot(0, time.Second, upstream.Listener.Addr().String()))
	if rec := get(g); rec.Code != http.StatusOK {
		t.Fatal(rec.Code)
	}
	scrape := func() string {
		rec := httptest.NewRecorder()
		g.operatorHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://x/metrics", nil))
		return rec.Body.String()
	}
	if !strings.Contains(scrape(), `pool="alice/web"`) {
		t.Fatal("no series for the pool after a request")
	}
	g.Watcher().Load(routing.Snapshot{}) // the pool is gone
	if body := scrape(); strings.Contains(body, `pool="alice/web"`) {
		t.Fatal("the deleted pool's series are still exported")
	}
}
