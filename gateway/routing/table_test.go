package routing

import (
	"testing"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

func snapshot() Snapshot {
	web := &pool.Pool{ID: "p-1", Owner: "alice", Spec: pool.Spec{
		Name: "web", Active: true,
		Ports:   []pool.Port{{Label: "http", Number: 8080, Protocol: "http", Public: true}, {Label: "tcp", Number: 9000, Protocol: "tcp"}},
		Methods: &pool.Methods{Names: []string{"search"}, Port: "http", Path: "/rpc"},
	}}
	stopped := &pool.Pool{ID: "p-2", Owner: "alice", Spec: pool.Spec{Name: "old", Active: false,
		Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: "http"}}}}
	gone := &pool.Pool{ID: "p-3", Owner: "bob", Deleting: true, Spec: pool.Spec{Name: "gone",
		Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: "http"}}}}
	return Snapshot{
		Pools: []*pool.Pool{web, stopped, gone},
		Members: []*pool.Member{
			member("m-a", "p-1", pool.PhaseRunning, "http", "127.0.0.1:1", "tcp", "127.0.0.1:2"),
			member("m-b", "p-1", pool.PhaseRunning, "http", "127.0.0.1:3"),
			member("m-c", "p-1", pool.PhaseDraining, "http", "127.0.0.1:4"),
			member("m-d", "p-1", pool.PhaseRunning, "http", "127.0.0.1:5"), // not passing yet
			member("m-e", "p-2", pool.PhaseStopped),
		},
		Instances: []Instance{
			{PoolID: "p-1", Member: "m-a", Port: "http", Address: "127.0.0.1:1", Passing: true},
			{PoolID: "p-1", Member: "m-a", Port: "tcp", Address: "127.0.0.1:2", Passing: true},
			{PoolID: "p-1", Member: "m-b", Port: "http", Address: "127.0.0.1:3", Passing: true},
			{PoolID: "p-1", Member: "m-c", Port: "http", Address: "127.0.0.1:4", Passing: true},
			{PoolID: "p-1", Member: "m-d", Port: "http", Address: "127.0.0.1:5", Passing: false},
		},
		MembersIndex: 42,
	}
}

// member is a member record with its allocated addresses as label, addr
// pairs.
func member(id, poolID string, phase pool.Phase, labelAddr ...string) *pool.Member {
	m := &pool.Member{ID: id, PoolID: poolID, Phase: phase, Addresses: map[string]string{}}
	for i := 0; i+1 < len(labelAddr); i += 2 {
		m.Addresses[labelAddr[i]] = labelAddr[i+1]
	}
	return m
}

func addrs(r *Route) []string {
	var out []string
	for _, b := range r.Backends {
		out = append(out, b.Addr)
	}
	return out
}

func TestBuild_RoutesOnlyRunningPassingMembers(t *testing.T) {
	tb := Build(snapshot(), NewRegistry())
	r, ok := tb.Lookup("alice--web--8080")
	if !ok {
		t.Fatal("no route for alice--web--8080")
	}
	if got := addrs(r); len(got) != 2 || got[0] != "127.0.0.1:1" || got[1] != "127.0.0.1:3" {
		t.Fatalf("backends %v: want m-a and m-b only (m-c drains, m-d is not passing)", got)
	}
	if r.Waiting {
		t.Error("a route with backends is not waiting")
	}
	if tcp, _ := tb.Lookup("alice--web--9000"); len(tcp.Backends) != 1 || tcp.Waiting {
		t.Fatalf("tcp backends %v", addrs(tcp))
	}
	if old, ok := tb.Lookup("alice--old--8080"); !ok || len(old.Backends) != 0 || old.Waiting {
		t.Fatalf("a stopped pool keeps a route without backends: %+v", old)
	}
	if _, ok := tb.Lookup("bob--gone--8080"); ok {
		t.Fatal("a deleting pool is routed")
	}
	if tb.MembersIndex != 42 {
		t.Fatalf("MembersIndex %d", tb.MembersIndex)
	}
	if rs := tb.Method("alice", "search"); len(rs) != 1 || rs[0].MethodPath != "/rpc" {
		t.Fatalf("method routes %v", rs)
	}
	if rs := tb.Method("bob", "search"); len(rs) != 0 {
		t.Fatal("another owner's method is visible")
	}
}

func TestBuild_StatsSurviveRebuilds(t *testing.T) {
	reg := NewRegistry()
	a := Build(snapshot(), reg)
	ra, _ := a.Lookup("alice--web--8080")
	if l, ok := Acquire([]*Route{ra}, RoundRobin, HTTP, ra.Backends[1:]); !ok || l.Backend != ra.Backends[0] {
		t.Fatal("could not lease m-a")
	}
	b := Build(snapshot(), reg)
	rb, _ := b.Lookup("alice--web--8080")
	if rb.Backends[0].Stats != ra.Backends[0].Stats {
		t.Fatal("a rebuild lost the member's counters")
	}
	s := snapshot()
	s.Members = nil
	Build(s, reg)
	if got := reg.Member("p-1", "m-a").InFlightOf(HTTP); got != 1 {
		t.Fatalf("a removed member with work in flight lost its counters (%d)", got)
	}
}

func TestParseHost(t *testing.T) {
	tests := map[string]string{
		"alice--web--8080.localhost":      "alice--web--8080",
		"alice--web--8080.localhost:4681": "alice--web--8080",
		"ALICE--web--8080.localhost.":     "alice--web--8080",
		"alice--web--8080.example.com":    "",
		"web.localhost":                   "",
		"a.alice--web--8080.localhost":    "",
		"localhost:4681":                  "",
	}
	for in, want := range tests {
		got, ok := ParseHost(in, "localhost")
		if got != want || ok != (want != "") {
			t.Errorf("ParseHost(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestBuild_CollidingMemberIDsStayInTheirPools(t *testing.T) {
	port := []pool.Port{{Label: "http", Number: 8080, Protocol: "http", Public: true}}
	s := Snapshot{
		Pools: []*pool.Pool{
			{ID: "p-alice", Owner: "alice", Spec: pool.Spec{Name: "web", Active: true, Ports: port}},
			{ID: "p-bob", Owner: "bob", Spec: pool.Spec{Name: "web", Active: true, Ports: port}},
		},
		Members: []*pool.Member{
			member("m-same", "p-alice", pool.PhaseRunning, "http", "127.0.0.1:1001"),
			member("m-same", "p-bob", pool.PhaseRunning, "http", "127.0.0.1:2002"),
		},
		// Either order: the old table kept whichever came last for both.
		Instances: []Instance{
			{PoolID: "p-bob", Member: "m-same", Port: "http", Address: "127.0.0.1:2002", Passing: true},
			{PoolID: "p-alice", Member: "m-same", Port: "http", Address: "127.0.0.1:1001", Passing: true},
		},
	}
	reg := NewRegistry()
	tb := Build(s, reg)
	for host, want := range map[string]string{"alice--web--8080": "127.0.0.1:1001", "bob--web--8080": "127.0.0.1:2002"} {
		r, _ := tb.Lookup(host)
		if got := addrs(r); len(got) != 1 || got[0] != want {
			t.Errorf("%s routes to %v, want [%s]", host, got, want)
		}
	}
	a, _ := tb.Lookup("alice--web--8080")
	b, _ := tb.Lookup("bob--web--8080")
	if a.Backends[0].Stats == b.Backends[0].Stats {
		t.Error("two pools' members share counters")
	}
}

func TestBuild_RefusesInstancesNomadDidNotPlace(t *testing.T) {
	port := []pool.Port{{Label: "http", Number: 8080, Protocol: "http", Public: true}}
	web := &pool.Pool{ID: "p-1", Owner: "alice", Spec: pool.Spec{Name: "web", Active: true, Ports: port}}
	tests := []struct {
		name     string
		member   *pool.Member
		instance Instance
	}{
		{"address override aimed at the control plane", member("m-a", "p-1", pool.PhaseRunning, "http", "127.0.0.1:20001"),
			Instance{PoolID: "p-1", Member: "m-a", Port: "http", Address: "127.0.0.1:8500", Passing: true}},
		{"no allocation recorded yet", member("m-a", "p-1", pool.PhaseRunning),
			Instance{PoolID: "p-1", Member: "m-a", Port: "http", Address: "127.0.0.1:20001", Passing: true}},
		{"registered for another pool", member("m-a", "p-1", pool.PhaseRunning, "http", "127.0.0.1:20001"),
			Instance{PoolID: "p-9", Member: "m-a", Port: "http", Address: "127.0.0.1:20001", Passing: true}},
		{"without a pool", member("m-a", "p-1", pool.PhaseRunning, "http", "127.0.0.1:20001"),
			Instance{Member: "m-a", Port: "http", Address: "127.0.0.1:20001", Passing: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := Build(Snapshot{Pools: []*pool.Pool{web}, Members: []*pool.Member{tt.member}, Instances: []Instance{tt.instance}}, NewRegistry())
			r, _ := tb.Lookup("alice--web--8080")
			if len(r.Backends) != 0 {
				t.Fatalf("routed to %v", addrs(r))
			}
			if !r.Waiting {
				t.Error("a running member without a trusted instance is starting: the route waits")
			}
		})
	}
}
