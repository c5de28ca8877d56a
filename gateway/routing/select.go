package routing

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is the kind of work a lease counts as.
type Kind uint8

// Kinds of work; each has its own in-flight and total counters.
const (
	HTTP Kind = iota
	TCP
	Method
	numKinds
)

// Policy chooses among the routable backends of one or more routes.
type Policy uint8

const (
	// RoundRobin takes backends in turn (HTTP and TCP).
	RoundRobin Policy = iota
	// LeastInFlight takes the backend with the least work in flight, a
	// random one among ties (JSON-RPC, across the pools that declare a
	// method).
	LeastInFlight
)

// Lease is a reserved slot on one backend of one route: the only way work
// is counted against a member. Acquire takes it; Release gives it back,
// once (later calls do nothing). A lease is owned by one goroutine.
type Lease struct {
	// Route is the route Backend belongs to: its pool, port and method
	// path apply to the work.
	Route   *Route
	Backend *Backend
	kind    Kind
}

// Release gives the slot back.
func (l *Lease) Release() {
	if l.Backend == nil {
		return
	}
	l.Backend.Stats.release(l.kind)
	l.Backend = nil
}

// Held reports whether the lease still holds its slot.
func (l *Lease) Held() bool { return l.Backend != nil }

// Acquire reserves a slot for work of kind on a backend of routes chosen by
// policy, skipping the backends in skip (those already tried) and those at
// their route's container concurrency. The reservation and the limit check
// are one atomic step, so concurrent requests never overfill a member. ok is
// false when no backend has a free slot.
func Acquire(routes []*Route, policy Policy, kind Kind, skip []*Backend) (l Lease, ok bool) {
	if policy == LeastInFlight {
		return acquireLeast(routes, kind, skip)
	}
	return acquireRoundRobin(routes, kind, skip)
}

// AcquireCurrent is Acquire on the routes resolve finds in the current
// table (table returns it), keeping the slot only if the drain marks of
// that table are still the current ones once the slot is counted.
//
// This is what lets a gateway report drain marks honestly: a report reads
// the current table's MembersIndex first and the counters after it, so a
// slot kept here is in every report that claims the table's marks, and a
// request that resolved its member from a table replaced meanwhile gives
// the slot back and picks again from the new table — it never lands on a
// member the leader was told is idle. The extra cost is one atomic load.
func AcquireCurrent(table func() *Table, resolve func(*Table) []*Route, policy Policy, kind Kind, skip []*Backend) (Lease, bool) {
	for {
		t := table()
		l, ok := Acquire(resolve(t), policy, kind, skip)
		if !ok || table().MembersIndex == t.MembersIndex {
			return l, ok
		}
		// Each turn follows a table swap, so this ends.
		l.Backend.Stats.unreserve(l.kind)
	}
}

func acquireRoundRobin(routes []*Route, kind Kind, skip []*Backend) (Lease, bool) {
	n := 0
	for _, r := range routes {
		n += len(r.Backends)
	}
	if n == 0 {
		return Lease{}, false
	}
	start := int(routes[0].rr.Add(1)-1) % n
	for i := range n {
		r, b := nth(routes, (start+i)%n)
		if tried(skip, b) {
			continue
		}
		if b.Stats.reserve(kind, r.ContainerConcurrency) {
			return Lease{Route: r, Backend: b, kind: kind}, true
		}
	}
	return Lease{}, false
}

// tried reports whether b's member is among skip. Members are compared by
// their counters, which outlive tables: a retry may pick from a newer
// table than the attempt it follows.
func tried(skip []*Backend, b *Backend) bool {
	return slices.ContainsFunc(skip, func(x *Backend) bool { return x.Stats == b.Stats })
}

// nth is the i-th backend counting through routes in order.
func nth(routes []*Route, i int) (*Route, *Backend) {
	for _, r := range routes {
		if i < len(r.Backends) {
			return r, r.Backends[i]
		}
		i -= len(r.Backends)
	}
	panic("routing: backend index out of range")
}

func acquireLeast(routes []*Route, kind Kind, skip []*Backend) (Lease, bool) {
	// A slot can fill between the look and the reservation; each lost race
	// rules that backend out, so this ends.
	var lost []*Backend
	for {
		var bestR *Route
		var best *Backend
		bestN, ties := int64(-1), 0
		for _, r := range routes {
			for _, b := range r.Backends {
				if tried(skip, b) || slices.Contains(lost, b) || !b.Stats.free(r.ContainerConcurrency) {
					continue
				}
				switch n := b.Stats.InFlight(); {
				case bestN < 0 || n < bestN:
					bestR, best, bestN, ties = r, b, n, 1
				case n == bestN:
					// Reservoir sampling: each tie ends up chosen with
					// equal chance, whichever pool it belongs to.
					ties++
					if rand.IntN(ties) == 0 {
						bestR, best = r, b
					}
				}
			}
		}
		if best == nil {
			return Lease{}, false
		}
		if best.Stats.reserve(kind, bestR.ContainerConcurrency) {
			return Lease{Route: bestR, Backend: best, kind: kind}, true
		}
		lost = append(lost, best)
	}
}

// MemberStats counts one member's traffic through this gateway. Only
// leases change the in-flight counts.
type MemberStats struct {
	PoolID, ID string
	// queue is the member's pool's: a released slot wakes its head.
	queue *Queue

	// active is all work in flight, the number container concurrency
	// bounds.
	active   atomic.Int64
	inFlight [numKinds]atomic.Int64
	total    [numKinds]atomic.Uint64
	meter    meter
}

// meter integrates a member's in-flight work over time: the autoscaler
// scales on the time-weighted average concurrency of each second, as
// Knative's queue-proxy measures it, not on a point sample.
type meter struct {
	mu    sync.Mutex
	level int64
	last  time.Time
	begin time.Time
	area  float64 // request·seconds since begin
	avg   float64 // over the last closed window
}

func (m *meter) change(now time.Time, delta int64) {
	m.mu.Lock()
	if !m.last.IsZero() {
		m.area += float64(m.level) * now.Sub(m.last).Seconds()
	} else {
		m.begin = now
	}
	m.level += delta
	m.last = now
	m.mu.Unlock()
}

// Roll closes the current window at now: Concurrency reports it until the
// next Roll.
func (s *MemberStats) Roll(now time.Time) {
	m := &s.meter
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.begin.IsZero() {
		m.begin, m.last = now, now
		return
	}
	m.area += float64(m.level) * now.Sub(m.last).Seconds()
	if span := now.Sub(m.begin).Seconds(); span > 0 {
		m.avg = m.area / span
	}
	m.area, m.begin, m.last = 0, now, now
}

// Concurrency is the member's time-weighted average work in flight over
// the last closed window.
func (s *MemberStats) Concurrency() float64 {
	s.meter.mu.Lock()
	defer s.meter.mu.Unlock()
	return s.meter.avg
}

// InFlight is all work in progress on the member.
func (s *MemberStats) InFlight() int64 { return s.active.Load() }

// InFlightOf is the member's work in progress of one kind.
func (s *MemberStats) InFlightOf(k Kind) int64 { return s.inFlight[k].Load() }

// Total counts the member's work of one kind ever started.
func (s *MemberStats) Total(k Kind) uint64 { return s.total[k].Load() }

// free reports whether the member has a slot under limit (0: no limit).
func (s *MemberStats) free(limit int) bool {
	return limit <= 0 || s.active.Load() < int64(limit)
}

// reserve takes a slot if the member has one under limit.
func (s *MemberStats) reserve(k Kind, limit int) bool {
	for {
		n := s.active.Load()
		if limit > 0 && n >= int64(limit) {
			return false
		}
		if s.active.CompareAndSwap(n, n+1) {
			break
		}
	}
	s.inFlight[k].Add(1)
	s.total[k].Add(1)
	s.meter.change(time.Now(), 1)
	return true
}

// unreserve gives back a slot that carried no work: it is not counted in
// the member's totals.
func (s *MemberStats) unreserve(k Kind) {
	s.total[k].Add(^uint64(0))
	s.release(k)
}

func (s *MemberStats) release(k Kind) {
	s.meter.change(time.Now(), -1)
	s.inFlight[k].Add(-1)
	s.active.Add(-1)
	if s.queue != nil {
		s.queue.Signal()
	}
}
