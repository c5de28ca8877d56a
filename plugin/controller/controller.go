// Package controller is the leader's reconcile loop (DESIGN.md decision 5):
// a work queue keyed by pool id, fed by a watch on pool records, Nomad's
// event stream, Consul health changes and a periodic sweep. Each pass
// observes a pool, asks the pure planner what to do, and applies the answer:
// member records first, then the Nomad job, then forgotten records.
package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/internal/blocking"
	"github.com/tidepool-run/tidepool/plugin/autoscale"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/reconcile"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// Store is the state the controller reads and writes; *store.Store
// satisfies it.
type Store interface {
	GetPool(ctx context.Context, id string) (*pool.Pool, error)
	ListPools(ctx context.Context, waitIndex uint64, wait time.Duration) ([]*pool.Pool, uint64, error)
	ListMembers(ctx context.Context, poolID string) ([]*pool.Member, error)
	PoolIDs(ctx context.Context) ([]string, error)
	PutMembers(ctx context.Context, ms []*pool.Member) error
	DeleteMembers(ctx context.Context, ms []*pool.Member) error
	RemovePool(ctx context.Context, p *pool.Pool) error
}

// Nomad observes and drives pools' jobs; *nomadjob.Driver satisfies it.
type Nomad interface {
	Observe(ctx context.Context, p *pool.Pool) (*nomadjob.Snapshot, error)
	Template(p *pool.Pool) (*api.Job, error)
	Sync(ctx context.Context, p *pool.Pool, current, tmpl *api.Job, members []*pool.Member) error
	Purge(ctx context.Context, jobID string) error
	ListJobs(ctx context.Context) ([]*api.JobListStub, error)
}

// InFlight reports work in progress on a pool's members, summed over every
// live gateway (DESIGN.md decision 6). A draining member appears only once
// every live gateway has applied its drain. Until gateways report, drains
// wait for drain.timeout.
type InFlight interface {
	InFlight(p *pool.Pool, members []*pool.Member) map[string]int
}

var (
	_ Store = (*store.Store)(nil)
	_ Nomad = (*nomadjob.Driver)(nil)
)

// Config tunes the loop.
type Config struct {
	// SweepInterval is how often every pool is reconciled regardless of
	// events (SPEC.md §4: at most 15s).
	SweepInterval time.Duration
	// Workers reconcile different pools in parallel.
	Workers int
	// RetryInterval is the pause before retrying a failed pass.
	RetryInterval time.Duration
	// NewMemberID names new members; pool.NewMemberID when nil. Tests set
	// it to give pools colliding ids on purpose.
	NewMemberID func() string
	// Demand and Scales, when both are set, run the autoscaler while this
	// node leads, with Autoscale's settings (autoscale.DefaultConfig when
	// zero).
	Demand    Demand
	Scales    Scales
	Autoscale autoscale.Config
	// Metrics, when set, exports the autoscaler's decisions.
	Metrics *AutoscaleMetrics
	// Installation is the KV prefix that marks this installation's Nomad
	// jobs (nomadjob.MetaInstallation). When set, the leader purges those
	// of its jobs whose pool record is gone: at once, then every
	// GCInterval (5m when zero). GCMetrics, when set, counts the purges.
	Installation string
	GCInterval   time.Duration
	GCMetrics    *GCMetrics
}

// Controller reconciles pools while its node leads.
type Controller struct {
	store    Store
	nomad    Nomad
	inFlight InFlight
	cfg      Config
	log      hclog.Logger
	now      func() time.Time
	newID    func() string

	queue *queue

	mu        sync.Mutex
	known     map[string]uint64 // pool id → last seen ModifyIndex
	templates map[string]cachedTemplate
	unmarked  map[string]bool // jobs without an installation marker, logged once
}

type cachedTemplate struct {
	generation int64
	job        *api.Job
}

// New wires a controller. inFlight may be nil.
func New(s Store, n Nomad, inFlight InFlight, cfg Config, log hclog.Logger) *Controller {
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 15 * time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.Autoscale == (autoscale.Config{}) {
		cfg.Autoscale = autoscale.DefaultConfig()
	}
	if cfg.NewMemberID == nil {
		cfg.NewMemberID = pool.NewMemberID
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = DefaultGCInterval
	}
	return &Controller{
		store: s, nomad: n, inFlight: inFlight, cfg: cfg,
		log:       log.Named("controller"),
		now:       time.Now,
		newID:     cfg.NewMemberID,
		known:     map[string]uint64{},
		templates: map[string]cachedTemplate{},
		unmarked:  map[string]bool{},
	}
}

// Source feeds pool ids to reconcile, or does other work of the leader;
// Run starts each with the queue's Add.
type Source func(ctx context.Context, enqueue func(poolID string))

// Run reconciles until ctx is done (leadership lost or shutdown). Extra
// sources (Nomad events, Consul health) run alongside the pool watch, the
// sweep, the autoscaler and the garbage collector.
func (c *Controller) Run(ctx context.Context, sources ...Source) error {
	c.queue = newQueue()
	defer c.queue.Stop()
	c.log.Info("reconciling", "sweep_interval", c.cfg.SweepInterval.String(), "workers", c.cfg.Workers)

	sources = append([]Source{c.watchPools, c.sweep}, sources...)
	if c.cfg.Demand != nil && c.cfg.Scales != nil {
		sources = append(sources, c.autoscale)
	}
	if c.cfg.Installation != "" {
		sources = append(sources, c.collectGarbage)
	}
	var wg sync.WaitGroup
	for _, src := range sources {
		wg.Go(func() { src(ctx, c.queue.Add) })
	}
	for range c.cfg.Workers {
		wg.Go(func() { c.work(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

func (c *Controller) work(ctx context.Context) {
	for {
		id, ok := c.queue.Get(ctx)
		if !ok {
			return
		}
		passCtx, cancel := context.WithTimeout(ctx, passTimeout)
		requeue, err := c.Reconcile(passCtx, id)
		cancel()
		c.queue.Done(id)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			c.log.Error("reconcile failed; retrying", "pool_id", id, "error", err)
			c.queue.AddAfter(id, c.cfg.RetryInterval)
		case requeue > 0:
			c.queue.AddAfter(id, requeue)
		}
	}
}

// watchPools queues every pool whose record changed, using a blocking query.
func (c *Controller) watchPools(ctx context.Context, enqueue func(string)) {
	blocking.Loop{
		MinBackoff: c.cfg.RetryInterval,
		Failing:    func(err error) { c.log.Warn("watch pools", "error", err) },
		Recovered:  func() { c.log.Info("watching pools again") },
	}.Run(ctx, func(ctx context.Context, index uint64, wait time.Duration) (uint64, error) {
		pools, next, err := c.store.ListPools(ctx, index, wait)
		if err != nil {
			return 0, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		seen := map[string]bool{}
		for _, p := range pools {
			seen[p.ID] = true
			if c.known[p.ID] != p.ModifyIndex {
				c.known[p.ID] = p.ModifyIndex
				enqueue(p.ID)
			}
		}
		for id := range c.known {
			if !seen[id] {
				delete(c.known, id)
				delete(c.templates, id)
			}
		}
		return next, nil
	})
}

// sweep queues every known pool each SweepInterval.
func (c *Controller) sweep(ctx context.Context, enqueue func(string)) {
	t := time.NewTicker(c.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		ids := make([]string, 0, len(c.known))
		for id := range c.known {
			ids = append(ids, id)
		}
		c.mu.Unlock()
		for _, id := range ids {
			enqueue(id)
		}
	}
}

// Reconcile runs one pass for one pool and returns when to look again.
func (c *Controller) Reconcile(ctx context.Context, id string) (time.Duration, error) {
	p, err := c.store.GetPool(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	members, err := c.store.ListMembers(ctx, id)
	if err != nil {
		return 0, err
	}
	snap, err := c.nomad.Observe(ctx, p)
	if err != nil {
		return 0, err
	}
	tmpl := c.template(p)
	var inFlight map[string]int
	if c.inFlight != nil {
		inFlight = c.inFlight.InFlight(p, members)
	}
	target, err := c.target(ctx, p)
	if err != nil {
		return 0, err
	}
	act := reconcile.Plan(reconcile.Input{
		Pool: p, Members: members, Observed: snap.Members, JobExists: snap.JobExists(),
		Target: target, InFlight: inFlight, Now: c.now(), NewID: c.newID,
	})
	if tmpl == nil && len(act.Create) > 0 {
		return 0, fmt.Errorf("cannot create members: the template of generation %d does not parse", p.TemplateGeneration)
	}
	requeue := act.RequeueAfter
	if c.inFlight != nil && slices.ContainsFunc(merge(members, act), func(m *pool.Member) bool { return m.Phase == pool.PhaseDraining }) {
		// Gateways report in-flight work each second: look again soon, so
		// a drain ends as soon as its work does.
		if requeue == 0 || requeue > drainPoll {
			requeue = drainPoll
		}
	}
	return requeue, c.apply(ctx, p, members, snap, tmpl, act)
}

// passTimeout bounds one reconcile pass, so a hung call to Nomad or Consul
// cannot hold a worker; the pool is retried.
const passTimeout = time.Minute

// drainPoll is how often a pool with draining members is looked at while
// gateways report in-flight work.
const drainPoll = 500 * time.Millisecond

// apply writes the plan: member records, then the job, then forgotten
// records, then the pool itself when it is gone. Each step is idempotent, so
// a pass cut short by lost leadership is finished by the next leader.
func (c *Controller) apply(ctx context.Context, p *pool.Pool, members []*pool.Member, snap *nomadjob.Snapshot, tmpl *api.Job, act reconcile.Actions) error {
	writes := slices.Concat(act.Create, act.Update)
	if len(writes) > 0 {
		if err := c.store.PutMembers(ctx, writes); err != nil {
			return err
		}
		for _, m := range act.Create {
			c.log.Info("member created", "pool", p.Spec.Name, "pool_id", p.ID, "member", m.ID, "generation", m.Generation)
		}
		phase := make(map[string]pool.Phase, len(members))
		for _, m := range members {
			phase[m.ID] = m.Phase
		}
		for _, m := range act.Update {
			if phase[m.ID] == m.Phase {
				c.log.Debug("member addresses recorded", "pool", p.Spec.Name, "pool_id", p.ID, "member", m.ID, "addresses", m.Addresses)
				continue
			}
			c.log.Info("member "+string(m.Phase), "pool", p.Spec.Name, "pool_id", p.ID, "member", m.ID)
		}
	}

	after := merge(members, act)
	switch act.Job {
	case reconcile.JobSync:
		if err := c.nomad.Sync(ctx, p, snap.Job, tmpl, after); err != nil {
			return err
		}
	case reconcile.JobPurge:
		if snap.JobExists() {
			if err := c.nomad.Purge(ctx, p.JobID()); err != nil {
				return err
			}
			c.log.Info("job purged", "pool", p.Spec.Name, "pool_id", p.ID, "job", p.JobID())
		}
	}

	if len(act.Forget) > 0 {
		if err := c.store.DeleteMembers(ctx, act.Forget); err != nil {
			return err
		}
		for _, m := range act.Forget {
			c.log.Info("member deleted", "pool", p.Spec.Name, "pool_id", p.ID, "member", m.ID)
		}
	}
	if act.DeletePool {
		if err := c.store.RemovePool(ctx, p); err != nil {
			return err
		}
		c.mu.Lock()
		delete(c.templates, p.ID)
		c.mu.Unlock()
		c.log.Info("pool deleted", "pool", p.Spec.Name, "pool_id", p.ID)
	}
	return nil
}

// merge returns the member records as they are after act.
func merge(members []*pool.Member, act reconcile.Actions) []*pool.Member {
	byID := map[string]*pool.Member{}
	for _, m := range members {
		byID[m.ID] = m
	}
	for _, m := range act.Update {
		byID[m.ID] = m
	}
	for _, m := range act.Forget {
		delete(byID, m.ID)
	}
	out := slices.Concat(act.Create)
	for _, m := range members {
		if n, ok := byID[m.ID]; ok {
			out = append(out, n)
		}
	}
	return out
}

// template returns the pool's parsed template, asking Nomad only when the
// template generation changes. nil means it does not parse.
func (c *Controller) template(p *pool.Pool) *api.Job {
	c.mu.Lock()
	t, ok := c.templates[p.ID]
	c.mu.Unlock()
	if ok && t.generation == p.TemplateGeneration {
		return t.job
	}
	job, err := c.nomad.Template(p)
	if err != nil {
		c.log.Error("template does not parse", "pool", p.Spec.Name, "pool_id", p.ID, "error", err)
		return nil
	}
	c.mu.Lock()
	c.templates[p.ID] = cachedTemplate{generation: p.TemplateGeneration, job: job}
	c.mu.Unlock()
	return job
}
