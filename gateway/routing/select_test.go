package routing

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"pgregory.net/rapid"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// twoPools builds a table with two pools of n idle members each, both
// declaring the method "search" on different paths.
func twoPools(t interface {
	Helper()
	Fatalf(string, ...any)
}, n, cc int) []*Route {
	t.Helper()
	s := Snapshot{}
	for i, id := range []string{"p-a", "p-b"} {
		p := &pool.Pool{ID: id, Owner: "alice", Spec: pool.Spec{Name: "web" + id, Active: true,
			Ports:       []pool.Port{{Label: "http", Number: 8080, Protocol: "http", Public: true}},
			Methods:     &pool.Methods{Names: []string{"search"}, Port: "http", Path: "/rpc-" + id},
			Autoscaling: &pool.Autoscaling{ContainerConcurrency: cc},
		}}
		s.Pools = append(s.Pools, p)
		for j := range n {
			addr := fmt.Sprintf("127.0.0.%d:%d", i+1, 1000+j)
			m := member(fmt.Sprintf("m-%d", j), id, pool.PhaseRunning, "http", addr)
			s.Members = append(s.Members, m)
			s.Instances = append(s.Instances, Instance{PoolID: id, Member: m.ID, Port: "http", Address: addr, Passing: true})
		}
	}
	tb := Build(s, NewRegistry())
	routes := tb.Method("alice", "search")
	if len(routes) != 2 {
		t.Fatalf("routes for search: %d, want 2", len(routes))
	}
	return routes
}

// owns reports whether b is one of r's backends.
func owns(r *Route, b *Backend) bool {
	for _, x := range r.Backends {
		if x == b {
			return true
		}
	}
	return false
}

func TestAcquire_LeastInFlightNeverCrossesPools(t *testing.T) {
	// Every backend idle: all tie. The old PickLeast returned the first
	// route with a backend of another, sending a call to one pool's
	// member on another pool's method path.
	routes := twoPools(t, 2, 0)
	byPool := map[string]int{}
	for range 200 {
		l, ok := Acquire(routes, LeastInFlight, Method, nil)
		if !ok {
			t.Fatal("nothing acquired from idle pools")
		}
		if !owns(l.Route, l.Backend) {
			t.Fatalf("lease on route %s (%s) holds backend %s of another pool", l.Route.PoolID, l.Route.MethodPath, l.Backend.Addr)
		}
		byPool[l.Route.PoolID]++
		l.Release()
	}
	if byPool["p-a"] < 50 || byPool["p-b"] < 50 {
		t.Fatalf("ties across pools were not shared fairly: %v", byPool)
	}
}

func TestAcquire_LeastInFlightPicksTheIdlest(t *testing.T) {
	routes := twoPools(t, 1, 0)
	busy, _ := Acquire(routes[:1], LeastInFlight, Method, nil)
	for range 20 {
		l, _ := Acquire(routes, LeastInFlight, Method, nil)
		if l.Route != routes[1] {
			t.Fatal("picked the busy member over an idle one")
		}
		l.Release()
	}
	busy.Release()
}

func TestAcquire_HonoursContainerConcurrency(t *testing.T) {
	for _, policy := range []Policy{RoundRobin, LeastInFlight} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			routes := twoPools(t, 2, 1)
			var held []Lease
			for range 4 {
				l, ok := Acquire(routes, policy, HTTP, nil)
				if !ok {
					t.Fatalf("only %d of 4 slots acquired", len(held))
				}
				held = append(held, l)
			}
			if _, ok := Acquire(routes, policy, HTTP, nil); ok {
				t.Fatal("acquired past every member's container concurrency")
			}
			held[0].Release()
			l, ok := Acquire(routes, policy, Method, nil)
			if !ok || l.Backend != held[0].Backend && held[0].Backend != nil {
				t.Fatal("a released slot was not given out again")
			}
		})
	}
}

func TestAcquire_RoundRobinSkipsTried(t *testing.T) {
	tb := Build(snapshot(), NewRegistry())
	r, _ := tb.Lookup("alice--web--8080")
	seen := map[string]int{}
	for range 10 {
		l, _ := Acquire([]*Route{r}, RoundRobin, HTTP, nil)
		seen[l.Backend.Addr]++
		l.Release()
	}
	if seen["127.0.0.1:1"] != 5 || seen["127.0.0.1:3"] != 5 {
		t.Fatalf("round-robin %v", seen)
	}
	for range 4 {
		l, _ := Acquire([]*Route{r}, RoundRobin, HTTP, r.Backends[:1])
		if l.Backend == r.Backends[0] {
			t.Fatal("picked a skipped backend")
		}
		l.Release()
	}
	if _, ok := Acquire([]*Route{r}, RoundRobin, HTTP, r.Backends); ok {
		t.Fatal("acquired with everything skipped")
	}
	if _, ok := Acquire(nil, LeastInFlight, Method, nil); ok {
		t.Fatal("acquired from nothing")
	}
}

func TestAcquire_ConcurrentNeverOverfills(t *testing.T) {
	routes := twoPools(t, 2, 3)
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := map[*Backend]int64{}
	for range 16 {
		wg.Go(func() {
			for range 2000 {
				l, ok := Acquire(routes, LeastInFlight, HTTP, nil)
				if !ok {
					continue
				}
				n := l.Backend.Stats.InFlight()
				mu.Lock()
				peak[l.Backend] = max(peak[l.Backend], n)
				mu.Unlock()
				l.Release()
			}
		})
	}
	wg.Wait()
	for b, n := range peak {
		if n > 3 {
			t.Errorf("%s reached %d in flight, container concurrency 3", b.Addr, n)
		}
		if b.Stats.InFlight() != 0 {
			t.Errorf("%s: %d in flight after every lease was released", b.Addr, b.Stats.InFlight())
		}
	}
}

func TestAcquire_Properties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cc := rapid.IntRange(0, 3).Draw(t, "container_concurrency")
		routes := twoPools(t, rapid.IntRange(1, 3).Draw(t, "members"), cc)
		var held []Lease
		for range rapid.IntRange(1, 60).Draw(t, "steps") {
			if len(held) > 0 && rapid.Bool().Draw(t, "release") {
				i := rapid.IntRange(0, len(held)-1).Draw(t, "which")
				held[i].Release()
				held[i].Release() // a second release changes nothing
				held = append(held[:i], held[i+1:]...)
			} else {
				policy := Policy(rapid.IntRange(0, 1).Draw(t, "policy"))
				kind := Kind(rapid.IntRange(0, int(numKinds)-1).Draw(t, "kind"))
				from := routes[:rapid.IntRange(1, 2).Draw(t, "routes")]
				if l, ok := Acquire(from, policy, kind, nil); ok {
					if !owns(l.Route, l.Backend) {
						t.Fatalf("lease crosses pools: route %s, backend %s", l.Route.PoolID, l.Backend.Addr)
					}
					held = append(held, l)
				}
			}
			counts := map[*Backend]int64{}
			for _, l := range held {
				counts[l.Backend]++
			}
			for _, r := range routes {
				for _, b := range r.Backends {
					if got := b.Stats.InFlight(); got != counts[b] {
						t.Fatalf("%s: %d in flight, %d leases held", b.Addr, got, counts[b])
					}
					if cc > 0 && counts[b] > int64(cc) {
						t.Fatalf("%s: %d leases over container concurrency %d", b.Addr, counts[b], cc)
					}
				}
			}
		}
		for i := range held {
			held[i].Release()
		}
		for _, r := range routes {
			for _, b := range r.Backends {
				if b.Stats.InFlight() != 0 || b.Stats.InFlightOf(HTTP)+b.Stats.InFlightOf(TCP)+b.Stats.InFlightOf(Method) != 0 {
					t.Fatalf("%s: work left in flight after every release", b.Addr)
				}
			}
		}
	})
}

func TestShare_GatewaysTogetherStayWithinTheLimit(t *testing.T) {
	for _, tt := range []struct{ cc, n, want int }{
		{0, 3, 0}, {10, 0, 10}, {10, 1, 10}, {10, 2, 5}, {10, 3, 3}, {2, 3, 1}, {1, 1, 1},
	} {
		if got := Share(tt.cc, tt.n); got != tt.want {
			t.Errorf("Share(%d, %d) = %d, want %d", tt.cc, tt.n, got, tt.want)
		}
		if tt.cc >= tt.n && tt.n > 0 && Share(tt.cc, tt.n)*tt.n > tt.cc {
			t.Errorf("%d gateways with share %d exceed container concurrency %d", tt.n, Share(tt.cc, tt.n), tt.cc)
		}
	}
	routes := twoPools(t, 1, 10)
	if routes[0].ContainerConcurrency != 10 {
		t.Fatalf("one gateway (none counted): share %d, want the whole 10", routes[0].ContainerConcurrency)
	}
}

func TestAcquire_SkipsATriedMemberInANewerTable(t *testing.T) {
	reg := NewRegistry()
	a := Build(snapshot(), reg)
	b := Build(snapshot(), reg) // a rebuild: new Backend values, same members
	ra, _ := a.Lookup("alice--web--8080")
	rb, _ := b.Lookup("alice--web--8080")
	for range 6 {
		l, ok := Acquire([]*Route{rb}, RoundRobin, HTTP, ra.Backends[:1])
		if !ok || l.Backend.Stats == ra.Backends[0].Stats {
			t.Fatal("a retry on the newer table went back to the member it had tried")
		}
		l.Release()
	}
}

func TestAcquireCurrent_ARequestThatResolvedFromAReplacedTablePicksAgain(t *testing.T) {
	reg := NewRegistry()
	before := snapshot()
	old := Build(before, reg)
	// The leader marks m-a draining (a new members index); the table
	// that applies it is swapped in while a request that resolved its
	// route from the old table is about to take a slot.
	after := snapshot()
	after.Members[0].Phase = pool.PhaseDraining
	after.MembersIndex = before.MembersIndex + 1
	cur := Build(after, reg)

	current := old
	resolved := 0
	resolve := func(t *Table) []*Route {
		resolved++
		r, _ := t.Lookup("alice--web--8080")
		if t == old {
			current = cur // the swap happens after the request resolved
		}
		return []*Route{r}
	}
	drained := reg.Member("p-1", "m-a")
	var served []string
	for range 4 {
		current = old
		l, ok := AcquireCurrent(func() *Table { return current }, resolve, RoundRobin, HTTP, nil)
		if !ok {
			t.Fatal("no member acquired")
		}
		if l.Backend.Stats == drained {
			t.Fatalf("a request that resolved from the replaced table kept member m-a, whose drain the new table applies")
		}
		served = append(served, l.Backend.Addr)
		l.Release()
	}
	if resolved != 8 {
		t.Fatalf("resolved %d times, want each request to resolve again from the new table (8)", resolved)
	}
	if n, total := drained.InFlight(), drained.Total(HTTP); n != 0 || total != 0 {
		t.Fatalf("m-a holds %d slots and counts %d requests; a slot given back carries no work", n, total)
	}
	if !slices.Equal(served, []string{"127.0.0.1:3", "127.0.0.1:3", "127.0.0.1:3", "127.0.0.1:3"}) {
		t.Fatalf("served by %v, want m-b, the one member the new table routes", served)
	}

	// With no swap, the slot stays where it was taken, and counts.
	r, _ := cur.Lookup("alice--web--8080")
	before2 := r.Backends[0].Stats.Total(HTTP)
	l, ok := AcquireCurrent(func() *Table { return cur }, func(*Table) []*Route { return []*Route{r} }, RoundRobin, HTTP, nil)
	if !ok || l.Backend.Stats.InFlight() != 1 || r.Backends[0].Stats.Total(HTTP) != before2+1 {
		t.Fatalf("acquire on a current table: ok %v", ok)
	}
	l.Release()
}
