// Package routing builds the gateway's routing table from what Consul says
// — pools and member phases from KV, member addresses and health from
// service health — and picks a member for each request. The table is
// immutable once built and swapped atomically, so the request path takes no
// lock; per-member counters live outside it and survive every swap.
package routing

import (
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// Instance is one member's Consul service for one port.
type Instance struct {
	PoolID  string // from the service's tidepool_pool_id meta
	Member  string
	Port    string // port label
	Address string // host:port
	Passing bool
}

// Snapshot is everything the table is built from.
type Snapshot struct {
	Pools     []*pool.Pool
	Members   []*pool.Member
	Instances []Instance
	// MembersIndex is the KV index of the member records, so the drain
	// marks the table applies can be reported.
	MembersIndex uint64
	// Gateways is how many gateways pass their checks (at least 1): each
	// enforces its share of a member's container concurrency.
	Gateways int
}

// Share is one gateway's part of a member's container concurrency cc
// when n gateways route to it: cc/n, rounded down, and at least 1, so the
// gateways together never send a member more than cc at once (unless cc is
// below n: then each still sends one).
func Share(cc, n int) int {
	if cc <= 0 {
		return 0
	}
	return max(1, cc/max(n, 1))
}

// Table routes requests. Build one with Build; never modify it.
type Table struct {
	hosts   map[string]*Route // "owner--pool--port"
	pools   map[string]*Pool  // "owner/pool"
	methods map[string]map[string][]*Route
	// routable counts each pool's routable members.
	routable map[string]int
	// ready are the queues of pools with routable members: whoever waits
	// in them is woken once the table is in place (Wake).
	ready []*Queue
	// MembersIndex is the KV index of the drain marks this table applied.
	MembersIndex uint64
}

// Pool is one pool's routes.
type Pool struct {
	ID, Owner, Name string
	Active          bool
	Ports           map[int]*Route // by port number
}

// Route is one port of one pool: its routable backends, in a stable order.
type Route struct {
	PoolID, Owner, Pool string
	Port                pool.Port
	// MethodPath is where JSON-RPC calls go, for a methods port.
	MethodPath string
	Backends   []*Backend
	// Waiting: members should run but none is routable yet (starting).
	Waiting bool
	// ContainerConcurrency caps in-flight requests per member; 0 = none.
	ContainerConcurrency int
	// Autoscaled: the pool scales on demand, so a request finding no free
	// member waits in Queue (the pool's, shared by its ports) for up to
	// QueueTimeout instead of failing at once.
	Autoscaled   bool
	QueueTimeout time.Duration
	Queue        *Queue
	rr           atomic.Uint64
}

// Backend is one routable member address for a route.
type Backend struct {
	Addr  string
	Stats *MemberStats
}

// Lookup finds the route for a gateway host label "owner--pool--port".
func (t *Table) Lookup(label string) (*Route, bool) {
	r, ok := t.hosts[label]
	return r, ok
}

// Pool finds an owner's pool by name.
func (t *Table) Pool(owner, name string) (*Pool, bool) {
	p, ok := t.pools[owner+"/"+name]
	return p, ok
}

// Method lists the routes of the owner's pools that declare method.
func (t *Table) Method(owner, method string) []*Route {
	return t.methods[owner][method]
}

// MethodAnyOwner lists every owner's routes for method (admins may call any).
func (t *Table) MethodAnyOwner(method string) []*Route {
	var out []*Route
	for _, byMethod := range t.methods {
		out = append(out, byMethod[method]...)
	}
	return out
}

// Each calls fn for every route, by host label in order.
func (t *Table) Each(fn func(label string, r *Route)) {
	labels := make([]string, 0, len(t.hosts))
	for l := range t.hosts {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		fn(l, t.hosts[l])
	}
}

// Wake signals the queues of pools this table routes to. Call it after
// the table is current, so a woken request finds the members.
func (t *Table) Wake() {
	for _, q := range t.ready {
		q.Signal()
	}
}

// Routable is how many members of a pool the table routes to.
func (t *Table) Routable(poolID string) int { return t.routable[poolID] }

// Len is the number of routes, for metrics.
func (t *Table) Len() int { return len(t.hosts) }

// HostLabel is the first label of a gateway host name.
func HostLabel(owner, name string, port int) string {
	return owner + "--" + name + "--" + strconv.Itoa(port)
}

// ParseHost splits "owner--pool--port.domain[:port]" when it ends in domain.
func ParseHost(host, domain string) (label string, ok bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	label, ok = strings.CutSuffix(host, "."+domain)
	if !ok || !hostLabel(label) || strings.Count(label, "--") != 2 {
		return "", false
	}
	return label, true
}

// hostLabel reports whether s holds only what owner, pool and port names may
// (lower-case letters, digits, '-' and '_'), so that an accepted label put
// back in front of the domain is the same host.
func hostLabel(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return s != ""
}

// Build makes a table. A member is routable on a port when its phase is
// running and its service for that port passes its checks. stats keeps
// per-member counters across tables.
func Build(s Snapshot, stats *Registry) *Table {
	t := &Table{
		hosts:        map[string]*Route{},
		pools:        map[string]*Pool{},
		methods:      map[string]map[string][]*Route{},
		routable:     map[string]int{},
		MembersIndex: s.MembersIndex,
	}
	byPool := map[string][]*pool.Member{}
	for _, m := range s.Members {
		byPool[m.PoolID] = append(byPool[m.PoolID], m)
	}
	type instKey struct{ pool, member, port string }
	inst := map[instKey]Instance{}
	for _, in := range s.Instances {
		k := instKey{in.PoolID, in.Member, in.Port}
		// Of two instances for one member port, a passing one wins.
		if prev, ok := inst[k]; !ok || !prev.Passing {
			inst[k] = in
		}
	}
	for _, p := range s.Pools {
		if p.Deleting {
			continue
		}
		pr := &Pool{ID: p.ID, Owner: p.Owner, Name: p.Spec.Name, Active: p.Spec.Active, Ports: map[int]*Route{}}
		members := byPool[p.ID]
		sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
		cc, timeout := 0, time.Duration(0)
		a := p.Spec.Autoscaling
		if a != nil {
			cc, timeout = a.ContainerConcurrency, a.QueueTimeout.D()
		}
		queue := stats.Queue(p.ID)
		for _, port := range p.Spec.Ports {
			r := &Route{PoolID: p.ID, Owner: p.Owner, Pool: p.Spec.Name, Port: port, ContainerConcurrency: Share(cc, s.Gateways),
				Autoscaled: a != nil && p.Spec.Active, QueueTimeout: timeout, Queue: queue}
			if p.Spec.Methods != nil && p.Spec.Methods.Port == port.Label {
				r.MethodPath = p.Spec.Methods.Path
			}
			if p.Spec.Active {
				for _, m := range members {
					if m.Phase != pool.PhaseRunning {
						continue
					}
					// A member is reached only where Nomad put it: an
					// instance must belong to the member's pool and agree
					// with the address its allocation was given.
					in, ok := inst[instKey{p.ID, m.ID, port.Label}]
					if ok && in.Passing && in.Address != "" && in.Address == m.Addresses[port.Label] {
						r.Backends = append(r.Backends, &Backend{Addr: in.Address, Stats: stats.Member(p.ID, m.ID)})
					} else {
						r.Waiting = true
					}
				}
			}
			if len(r.Backends) > 0 {
				r.Waiting = false
				t.ready = append(t.ready, queue)
			}
			t.routable[p.ID] = max(t.routable[p.ID], len(r.Backends))
			pr.Ports[port.Number] = r
			t.hosts[HostLabel(p.Owner, p.Spec.Name, port.Number)] = r
		}
		t.pools[p.Owner+"/"+p.Spec.Name] = pr
		// A stopped pool keeps its methods, with no member to serve them:
		// callers learn the method is unavailable, not unknown.
		if ms := p.Spec.Methods; ms != nil {
			for _, r := range pr.Ports {
				if r.Port.Label != ms.Port {
					continue
				}
				if t.methods[p.Owner] == nil {
					t.methods[p.Owner] = map[string][]*Route{}
				}
				for _, name := range ms.Names {
					t.methods[p.Owner][name] = append(t.methods[p.Owner][name], r)
				}
			}
		}
	}
	stats.Retain(s.Pools, s.Members)
	return t
}

// Registry keeps per-member statistics and per-pool queues across tables.
type Registry struct {
	mu      sync.Mutex
	members map[string]*MemberStats
	queues  map[string]*Queue
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{members: map[string]*MemberStats{}, queues: map[string]*Queue{}}
}

// Member returns the stats of a member, creating them.
func (g *Registry) Member(poolID, id string) *MemberStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	key := poolID + "/" + id
	s, ok := g.members[key]
	if !ok {
		s = &MemberStats{PoolID: poolID, ID: id, queue: g.queueLocked(poolID)}
		g.members[key] = s
	}
	return s
}

// Queue returns a pool's queue, creating it.
func (g *Registry) Queue(poolID string) *Queue {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.queueLocked(poolID)
}

func (g *Registry) queueLocked(poolID string) *Queue {
	q, ok := g.queues[poolID]
	if !ok {
		q = &Queue{}
		g.queues[poolID] = q
	}
	return q
}

// Retain forgets members that no longer exist and have nothing in flight,
// and the queues of pools that are gone and hold nobody.
func (g *Registry) Retain(pools []*pool.Pool, members []*pool.Member) {
	keep := make(map[string]bool, len(members))
	for _, m := range members {
		keep[m.PoolID+"/"+m.ID] = true
	}
	keepPool := make(map[string]bool, len(pools))
	for _, p := range pools {
		keepPool[p.ID] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, s := range g.members {
		if !keep[id] && s.InFlight() == 0 {
			delete(g.members, id)
		}
	}
	for id, q := range g.queues {
		if !keepPool[id] && q.Held() == 0 {
			delete(g.queues, id)
		}
	}
}

// EachQueue calls fn for every pool's queue.
func (g *Registry) EachQueue(fn func(poolID string, q *Queue)) {
	g.mu.Lock()
	ids := make(map[string]*Queue, len(g.queues))
	maps.Copy(ids, g.queues)
	g.mu.Unlock()
	for id, q := range ids {
		fn(id, q)
	}
}

// Each calls fn for every member's stats.
func (g *Registry) Each(fn func(*MemberStats)) {
	g.mu.Lock()
	list := make([]*MemberStats, 0, len(g.members))
	for _, s := range g.members {
		list = append(list, s)
	}
	g.mu.Unlock()
	for _, s := range list {
		fn(s)
	}
}
