// Package reconcile is Tidepool's planner: a pure function from what is
// stored about a pool and what Nomad and Consul report about its members, at
// a given instant, to the actions that move the pool toward its target.
//
// It performs no I/O and reads no clock; the controller observes, calls Plan,
// applies the result and requeues the pool after Plan.RequeueAfter. Because
// member phases and their start times live in the member records, any leader
// can pick up a plan where another stopped. See README.md in this directory.
package reconcile

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// AllocState condenses a member's latest Nomad allocation.
type AllocState int

// Allocation states, as the planner needs them.
const (
	// AllocNone: no allocation yet (just registered, or count 0).
	AllocNone AllocState = iota
	// AllocPending: placed, not yet running.
	AllocPending
	// AllocRunning: the task runs (healthy or not).
	AllocRunning
	// AllocStopped: stopped because Tidepool asked (desired status stop).
	AllocStopped
	// AllocDead: failed, lost or exited although it should run, past
	// Nomad's own restarts.
	AllocDead
)

// Observation is what Nomad and Consul report about one member.
type Observation struct {
	// InJob: the member's task group is in the pool's (running) Nomad job.
	InJob bool
	// Count is the group's count in the job.
	Count   int
	Alloc   AllocState
	AllocID string
	// Healthy: every pool port of the member has a service whose Consul
	// checks all pass — the gateway may be sending it work.
	Healthy bool
	// Address is host:port of the member's first pool port.
	Address string
	// Addresses maps each port label to the host:port Nomad allocated to
	// the member's latest allocation; nil when it has none.
	Addresses map[string]string
}

// Input is everything one planning pass looks at.
type Input struct {
	Pool    *pool.Pool
	Members []*pool.Member
	// Observed is keyed by member id; a missing entry means Nomad knows
	// nothing of the member.
	Observed map[string]Observation
	// JobExists: the pool's Nomad job is registered (running or stopped).
	JobExists bool
	// Target is how many members should run: desired_count, or the
	// autoscaler's decision.
	Target int
	// InFlight is work in progress per member, summed over every live
	// gateway. For a draining member it must be present only once every
	// live gateway has applied the drain; absent means unknown, and the
	// drain then waits for drain.timeout. It also orders scale-down.
	InFlight map[string]int
	Now      time.Time
	// NewID returns a fresh member id; the planner retries on collisions.
	NewID func() string
}

// JobAction is what to do with the pool's Nomad job after the member
// records are written.
type JobAction int

const (
	// JobSync registers the job derived from the member records when it
	// differs from Nomad's (and stops it when no member needs a group).
	JobSync JobAction = iota
	// JobPurge deregisters and purges the job: the pool is being deleted.
	JobPurge
)

// Actions is what the controller should do, in order: write Create and
// Update, act on Job, then remove Forget records; DeletePool last.
type Actions struct {
	Create []*pool.Member
	Update []*pool.Member
	// Forget lists deleting members whose group is gone from Nomad.
	Forget []*pool.Member
	Job    JobAction
	// DeletePool: the pool is deleting, its job and members are gone.
	DeletePool bool
	// RequeueAfter is when the next timer (drain timeout, grace period)
	// fires; 0 means no timer is pending.
	RequeueAfter time.Duration
}

// Surge is how many members above target a template rollout may run at
// once: a quarter of the target, at least one.
func Surge(target int) int {
	return max(1, (target+3)/4)
}

// Plan computes the next actions for one pool. It never mutates its input:
// changed members are copies.
func Plan(in Input) Actions {
	p := planner{in: in, obs: in.Observed, wasDraining: map[string]bool{}, next: make(map[string]*pool.Member, len(in.Members))}
	if p.obs == nil {
		p.obs = map[string]Observation{}
	}
	for _, m := range in.Members {
		p.next[m.ID] = m
		if m.Phase == pool.PhaseDraining {
			p.wasDraining[m.ID] = true
		}
	}
	if in.Pool.Deleting {
		return p.deletePool()
	}
	p.forgetDeleted()
	p.recordAddresses()
	p.replaceDead()
	p.advanceDrains()
	if in.Pool.Spec.Active {
		p.scaleActive()
	} else {
		p.scaleStopped()
	}
	p.expireGrace()
	p.plan.Job = JobSync
	p.setTimers()
	return p.plan
}

// setTimers sets RequeueAfter to the earliest drain timeout or grace period
// still running after this pass.
func (p *planner) setTimers() {
	spec := p.in.Pool.Spec
	for _, m := range p.members() {
		switch {
		case m.Phase == pool.PhaseDraining:
			p.wake(m.Since.Add(spec.Drain.Timeout.D()))
		case m.Phase == pool.PhaseStopped && spec.Active:
			p.wake(m.Since.Add(spec.Drain.GracePeriod.D()))
		case m.Phase == pool.PhaseDeleting && p.in.Now.Before(m.Since.Add(DeletingDwell)):
			p.wake(m.Since.Add(DeletingDwell))
		}
	}
}

type planner struct {
	in   Input
	obs  map[string]Observation
	plan Actions
	// wasDraining holds the members that were draining before this pass:
	// only their drain can have reached the gateways.
	wasDraining map[string]bool
	// next holds each member's phase after this pass, by id.
	next map[string]*pool.Member
}

// members lists the members as they stand in this pass, creations last.
func (p *planner) members() []*pool.Member {
	out := make([]*pool.Member, 0, len(p.next))
	for _, m := range p.in.Members {
		if n, ok := p.next[m.ID]; ok {
			out = append(out, n)
		}
	}
	out = append(out, p.plan.Create...)
	return out
}

// move records a phase change of m (a copy is stored in the plan).
func (p *planner) move(m *pool.Member, phase pool.Phase) {
	c := *m
	c.Phase = phase
	c.Since = p.in.Now
	p.put(&c)
}

// put stores c, a changed copy of a member, as the member's next record.
func (p *planner) put(c *pool.Member) {
	p.next[c.ID] = c
	for i, u := range p.plan.Update {
		if u.ID == c.ID {
			p.plan.Update[i] = c
			return
		}
	}
	for i, u := range p.plan.Create {
		if u.ID == c.ID {
			p.plan.Create[i] = c
			return
		}
	}
	p.plan.Update = append(p.plan.Update, c)
}

func (p *planner) wake(at time.Time) {
	d := at.Sub(p.in.Now)
	if d <= 0 {
		d = time.Millisecond
	}
	if p.plan.RequeueAfter == 0 || d < p.plan.RequeueAfter {
		p.plan.RequeueAfter = d
	}
}

// deletePool: every member is deleting, the job is purged, and once Nomad
// has no job the records go.
func (p *planner) deletePool() Actions {
	for _, m := range p.members() {
		if m.Phase != pool.PhaseDeleting {
			p.move(m, pool.PhaseDeleting)
		}
	}
	p.plan.Job = JobPurge
	if p.in.JobExists {
		return p.plan
	}
	p.plan.Forget = append(p.plan.Forget, p.members()...)
	p.plan.Update = nil // nothing to mark: the records go
	p.plan.DeletePool = true
	return p.plan
}

// recordAddresses copies the addresses Nomad allocated to each member that
// should run into its record, which gateways route by.
func (p *planner) recordAddresses() {
	for _, m := range p.members() {
		o := p.obs[m.ID]
		if m.Phase.RunningCount() == 0 || len(o.Addresses) == 0 || maps.Equal(m.Addresses, o.Addresses) {
			continue
		}
		c := *m
		c.Addresses = maps.Clone(o.Addresses)
		p.put(&c)
	}
}

// DeletingDwell is the least time a member stays in phase deleting, even
// when Nomad drops its group at once: long enough for `pool status` and
// other watchers to see the member being deleted rather than vanish
// between two looks. It costs nothing; the member no longer runs.
const DeletingDwell = 2 * time.Second

// forgetDeleted drops deleting members whose group Nomad no longer runs.
func (p *planner) forgetDeleted() {
	for _, m := range p.members() {
		if m.Phase == pool.PhaseDeleting && !p.obs[m.ID].InJob && !p.in.Now.Before(m.Since.Add(DeletingDwell)) {
			p.plan.Forget = append(p.plan.Forget, m)
			delete(p.next, m.ID)
		}
	}
}

// replaceDead marks dead members deleting; scaling then creates
// replacements. In a stopped pool a dead member is just stopped.
func (p *planner) replaceDead() {
	for _, m := range p.members() {
		if m.Phase != pool.PhaseRunning || !p.dead(m) {
			continue
		}
		if p.in.Pool.Spec.Active {
			p.move(m, pool.PhaseDeleting)
		} else {
			p.move(m, pool.PhaseStopped)
		}
	}
}

func (p *planner) dead(m *pool.Member) bool {
	o := p.obs[m.ID]
	return o.InJob && o.Count > 0 && o.Alloc == AllocDead
}

// advanceDrains stops draining members whose work is done: every gateway
// reports nothing in flight, the member never started, or drain.timeout
// passed.
func (p *planner) advanceDrains() {
	timeout := p.in.Pool.Spec.Drain.Timeout.D()
	for _, m := range p.members() {
		if m.Phase != pool.PhaseDraining {
			continue
		}
		if !p.in.Now.Before(m.Since.Add(timeout)) || p.idle(m) {
			p.move(m, pool.PhaseStopped)
		}
	}
}

// idle reports whether a draining member certainly has no work in flight.
func (p *planner) idle(m *pool.Member) bool {
	o := p.obs[m.ID]
	if o.Alloc != AllocRunning && !o.Healthy {
		// No process, so nothing in flight. A passing Consul check
		// outranks a lagging allocation status: Nomad's client reports
		// "running" to the servers in batches, after checks may pass.
		return true
	}
	n, known := p.in.InFlight[m.ID]
	return known && n == 0 && p.wasDraining[m.ID]
}

// scaleStopped drains every running member; nothing is created or deleted.
func (p *planner) scaleStopped() {
	for _, m := range p.members() {
		if m.Phase == pool.PhaseRunning {
			p.move(m, pool.PhaseDraining)
		}
	}
	p.advanceDrains()
}

// scaleActive brings the current generation to target: undrain, restart,
// create; or drain the excess. Old generations give way as new members
// become healthy, and creation never takes the running count past
// target + Surge(target).
func (p *planner) scaleActive() {
	gen := p.in.Pool.TemplateGeneration
	target := p.in.Target
	running := func(m *pool.Member) bool { return m.Phase == pool.PhaseRunning }
	cur := p.filter(func(m *pool.Member) bool { return m.Generation == gen && running(m) })
	old := p.filter(func(m *pool.Member) bool { return m.Generation != gen && running(m) })

	need := target - len(cur)
	if need < 0 {
		for _, m := range p.byScaleDownOrder(cur)[:-need] {
			p.move(m, pool.PhaseDraining)
		}
		need = 0
	}
	// Undrain first (cheapest), then restart stopped members.
	for _, phase := range []pool.Phase{pool.PhaseDraining, pool.PhaseStopped} {
		for _, m := range p.byRevivalOrder(gen, phase) {
			if need == 0 {
				break
			}
			p.move(m, pool.PhaseRunning)
			need--
		}
	}

	// Old members may keep running only while healthy new ones cannot yet
	// carry the target.
	healthy := 0
	for _, m := range p.filter(func(m *pool.Member) bool { return m.Generation == gen && running(m) }) {
		if p.obs[m.ID].Healthy {
			healthy++
		}
	}
	if excess := len(old) - max(0, target-healthy); excess > 0 {
		for _, m := range p.byScaleDownOrder(old)[:excess] {
			p.move(m, pool.PhaseDraining)
		}
	}

	now := len(p.filter(running))
	for limit := target + Surge(target); need > 0 && now < limit; need-- {
		p.create(gen)
		now++
	}
	p.advanceDrains()
}

// expireGrace deletes stopped members of an active pool once their grace
// period is over; a stopped pool keeps its members.
func (p *planner) expireGrace() {
	if !p.in.Pool.Spec.Active {
		return
	}
	grace := p.in.Pool.Spec.Drain.GracePeriod.D()
	for _, m := range p.members() {
		if m.Phase != pool.PhaseStopped {
			continue
		}
		if !p.in.Now.Before(m.Since.Add(grace)) {
			p.move(m, pool.PhaseDeleting)
		}
	}
}

func (p *planner) create(gen int64) {
	taken := func(id string) bool {
		if _, ok := p.next[id]; ok {
			return true
		}
		return slices.ContainsFunc(p.plan.Create, func(m *pool.Member) bool { return m.ID == id })
	}
	id := p.in.NewID()
	for taken(id) {
		id = p.in.NewID()
	}
	p.plan.Create = append(p.plan.Create, &pool.Member{
		ID:         id,
		PoolID:     p.in.Pool.ID,
		Generation: gen,
		Phase:      pool.PhaseRunning,
		Since:      p.in.Now,
		CreatedAt:  p.in.Now,
	})
}

func (p *planner) filter(keep func(*pool.Member) bool) []*pool.Member {
	var out []*pool.Member
	for _, m := range p.members() {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

// byScaleDownOrder sorts members in the order SPEC.md §4 gives up members:
// not yet healthy first, then least in flight, then newest.
func (p *planner) byScaleDownOrder(ms []*pool.Member) []*pool.Member {
	out := slices.Clone(ms)
	slices.SortStableFunc(out, func(a, b *pool.Member) int {
		ha, hb := p.obs[a.ID].Healthy, p.obs[b.ID].Healthy
		if ha != hb {
			if !ha {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(p.in.InFlight[a.ID], p.in.InFlight[b.ID]); c != 0 {
			return c
		}
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// byRevivalOrder lists current-generation members in phase, healthy and
// oldest first: the ones most likely to serve again soonest.
func (p *planner) byRevivalOrder(gen int64, phase pool.Phase) []*pool.Member {
	out := p.filter(func(m *pool.Member) bool { return m.Generation == gen && m.Phase == phase })
	slices.SortStableFunc(out, func(a, b *pool.Member) int {
		ha, hb := p.obs[a.ID].Healthy, p.obs[b.ID].Healthy
		if ha != hb {
			if ha {
				return -1
			}
			return 1
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}
