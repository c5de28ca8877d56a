package controller

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidepool-run/tidepool/internal/blocking"
	"github.com/tidepool-run/tidepool/plugin/autoscale"
	"github.com/tidepool-run/tidepool/plugin/gatewaystats"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// Demand reports a pool's demand summed over every live gateway;
// *gatewaystats.Scraper satisfies it.
type Demand interface {
	Demand(poolID string) gatewaystats.Demand
}

// Scales keeps autoscaled pools' decisions and the gateways' demand marks;
// *store.Store satisfies it.
type Scales interface {
	GetScale(ctx context.Context, poolID string) (*pool.Scale, error)
	PutScale(ctx context.Context, poolID string, poolIndex uint64, sc *pool.Scale) error
	TakeDemand(ctx context.Context, waitIndex uint64, wait time.Duration) ([]string, uint64, error)
}

var (
	_ Demand = (*gatewaystats.Scraper)(nil)
	_ Scales = (*store.Store)(nil)
)

// scaleRefresh is how often a decision is rewritten although nothing in it
// changed, so what `pool status` shows as observed stays recent.
const scaleRefresh = 10 * time.Second

// autoscaler is the leader's per-pool state: one decider each (its windows
// are in memory: a new leader starts with empty windows and, having no
// data, scales nothing down until it has seen a whole stable window), the
// last decision written, and when a scale from zero began.
type autoscaler struct {
	deciders  map[string]*autoscale.Decider
	last      map[string]*pool.Scale
	coldSince map[string]time.Time
}

// autoscale is the Source that runs the autoscaler while this node leads:
// every tick it feeds each autoscaled pool's demand to its decider and
// stores changed decisions, and a gateway's demand mark makes it decide for
// that pool at once.
func (c *Controller) autoscale(ctx context.Context, enqueue func(string)) {
	a := &autoscaler{deciders: map[string]*autoscale.Decider{}, last: map[string]*pool.Scale{}, coldSince: map[string]time.Time{}}
	marks := make(chan string, 256)
	go blocking.Loop{
		MinBackoff: c.cfg.RetryInterval,
		Failing:    func(err error) { c.log.Warn("watch demand marks", "error", err) },
	}.Run(ctx, func(ctx context.Context, index uint64, wait time.Duration) (uint64, error) {
		ids, next, err := c.cfg.Scales.TakeDemand(ctx, index, wait)
		for _, id := range ids {
			select {
			case marks <- id:
			default: // the next tick sees it
			}
		}
		return next, err
	})
	t := time.NewTicker(c.cfg.Autoscale.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.scaleAll(ctx, a, enqueue)
		case id := <-marks:
			p, err := c.store.GetPool(ctx, id)
			if err == nil && autoscaled(p) {
				c.scalePool(ctx, a, p, c.now(), false, true, enqueue)
			}
		}
	}
}

func autoscaled(p *pool.Pool) bool {
	return p.Spec.Autoscaling != nil && p.Spec.Active && !p.Deleting
}

// scaleAll is one tick over every autoscaled pool.
func (c *Controller) scaleAll(ctx context.Context, a *autoscaler, enqueue func(string)) {
	pools, _, err := c.store.ListPools(ctx, 0, 0)
	if err != nil {
		c.log.Warn("autoscaler: list pools", "error", err)
		return // the deciders record no tick: a gap, never a zero
	}
	now := c.now()
	seen := map[string]bool{}
	for _, p := range pools {
		if !autoscaled(p) {
			continue
		}
		seen[p.ID] = true
		c.scalePool(ctx, a, p, now, true, false, enqueue)
	}
	for id := range a.deciders {
		if !seen[id] {
			delete(a.deciders, id)
			delete(a.last, id)
			delete(a.coldSince, id)
			c.cfg.Metrics.forget(id)
		}
	}
}

// scalePool decides for one pool. tick: record this tick's demand; marked:
// a gateway holds a request for it although its last report may not say so.
func (c *Controller) scalePool(ctx context.Context, a *autoscaler, p *pool.Pool, now time.Time, tick, marked bool, enqueue func(string)) {
	spec := *p.Spec.Autoscaling
	d := a.deciders[p.ID]
	if d == nil {
		d = autoscale.NewDecider(c.cfg.Autoscale)
		a.deciders[p.ID] = d
	}
	dem := c.cfg.Demand.Demand(p.ID)
	if tick {
		if dem.Complete {
			// Held requests are demand too: they would be in flight.
			d.Record(now, dem.Concurrency+float64(dem.Held), dem.RPS)
		} else {
			d.Miss(now)
		}
	}
	held := dem.Held
	if marked && held == 0 {
		held = 1
	}
	prev := a.last[p.ID]
	if prev == nil {
		sc, err := c.cfg.Scales.GetScale(ctx, p.ID)
		if err != nil {
			c.log.Warn("autoscaler: read scale", "pool_id", p.ID, "error", err)
			return
		}
		if sc == nil {
			sc = &pool.Scale{Desired: spec.InitialScale}
		}
		prev = sc
	}
	reached := prev.InitialScaleReached || dem.Routable >= spec.InitialScale
	dec := d.Decide(now, autoscale.Input{Spec: spec, Ready: dem.Routable, Current: prev.Desired, Held: held, InitialScaleReached: reached})

	next := *prev
	next.Desired, next.Panic, next.InitialScaleReached = dec.Desired, dec.Panic, reached
	next.Observed = pool.ScaleObserved{
		Metric: dec.Observed.Metric, Stable: dec.Observed.Stable, Panic: dec.Observed.Panic,
		ReadyMembers: dec.Observed.ReadyMembers, Held: dec.Observed.Held,
		LastTraffic: dec.Observed.LastTraffic, Complete: dec.Observed.Complete,
	}
	// Cold starts: from the first request held with nothing routable to
	// the first routable member.
	switch began, cold := a.coldSince[p.ID]; {
	case !cold && held > 0 && dem.Routable == 0:
		a.coldSince[p.ID] = now
	case cold && dem.Routable > 0:
		next.ColdStart = pool.Duration(now.Sub(began))
		delete(a.coldSince, p.ID)
		c.cfg.Metrics.coldStarted(now.Sub(began))
		c.log.Info("cold start", "pool", p.Spec.Name, "pool_id", p.ID, "took", now.Sub(began).String())
	}
	c.cfg.Metrics.record(p.ID, &next)
	changed := next.Desired != prev.Desired || next.Panic != prev.Panic || next.InitialScaleReached != prev.InitialScaleReached || next.ColdStart != prev.ColdStart
	if !changed && now.Sub(prev.UpdatedAt) < scaleRefresh {
		return
	}
	next.UpdatedAt = now
	if err := c.cfg.Scales.PutScale(ctx, p.ID, p.ModifyIndex, &next); err != nil {
		// Another writer (a deposed leader) or a changed pool record:
		// read both afresh next time.
		delete(a.last, p.ID)
		c.log.Debug("autoscaler: write scale", "pool_id", p.ID, "error", err)
		return
	}
	a.last[p.ID] = &next
	if next.Desired != prev.Desired {
		c.log.Info("autoscaled", "pool", p.Spec.Name, "pool_id", p.ID, "from", prev.Desired, "to", next.Desired,
			"panic", next.Panic, "stable", dec.Observed.Stable, "ready", dem.Routable, "held", held)
		enqueue(p.ID)
	}
}

// target is how many members p should run: the autoscaler's decision for
// an autoscaled pool once it has made one, else p.Target().
func (c *Controller) target(ctx context.Context, p *pool.Pool) (int, error) {
	if p.Spec.Autoscaling == nil || c.cfg.Scales == nil {
		return p.Target(), nil
	}
	sc, err := c.cfg.Scales.GetScale(ctx, p.ID)
	if err != nil || sc == nil {
		return p.Target(), err
	}
	return sc.Desired, nil
}

// AutoscaleMetrics are the leader's autoscaling metrics (Prometheus).
type AutoscaleMetrics struct {
	desired   *prometheus.GaugeVec
	panicking *prometheus.GaugeVec
	observed  *prometheus.GaugeVec
	coldStart prometheus.Histogram
}

// NewAutoscaleMetrics registers the autoscaling metrics with reg.
func NewAutoscaleMetrics(reg prometheus.Registerer) *AutoscaleMetrics {
	m := &AutoscaleMetrics{
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidepool_autoscaler_desired_members", Help: "The autoscaler's decision, by pool.",
		}, []string{"pool_id"}),
		panicking: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidepool_autoscaler_panic", Help: "1 while a pool is in panic mode.",
		}, []string{"pool_id"}),
		observed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidepool_autoscaler_observed", Help: "The pool's metric averaged over the stable and panic windows.",
		}, []string{"pool_id", "window"}),
		coldStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tidepool_autoscaler_cold_start_seconds", Help: "From the first request held for a pool at zero to its first routable member.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 10),
		}),
	}
	reg.MustRegister(m.desired, m.panicking, m.observed, m.coldStart)
	return m
}

func (m *AutoscaleMetrics) record(poolID string, sc *pool.Scale) {
	if m == nil {
		return
	}
	m.desired.WithLabelValues(poolID).Set(float64(sc.Desired))
	p := 0.0
	if sc.Panic {
		p = 1
	}
	m.panicking.WithLabelValues(poolID).Set(p)
	m.observed.WithLabelValues(poolID, "stable").Set(sc.Observed.Stable)
	m.observed.WithLabelValues(poolID, "panic").Set(sc.Observed.Panic)
}

func (m *AutoscaleMetrics) forget(poolID string) {
	if m == nil {
		return
	}
	m.desired.DeleteLabelValues(poolID)
	m.panicking.DeleteLabelValues(poolID)
	m.observed.DeletePartialMatch(prometheus.Labels{"pool_id": poolID})
}

func (m *AutoscaleMetrics) coldStarted(d time.Duration) {
	if m != nil {
		m.coldStart.Observe(d.Seconds())
	}
}
