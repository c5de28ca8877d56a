package controller

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidepool-run/tidepool/plugin/nomadjob"
)

// DefaultGCInterval is how often the leader looks for orphaned jobs.
const DefaultGCInterval = 5 * time.Minute

// maxUnmarkedLogged bounds the set of unmarked jobs already logged.
const maxUnmarkedLogged = 10000

// collectGarbage is the Source that purges orphaned jobs while this node
// leads: once when leadership begins, then every GCInterval. Its writes use
// the leader's context, so they stop the moment leadership is lost.
func (c *Controller) collectGarbage(ctx context.Context, _ func(string)) {
	t := time.NewTicker(c.cfg.GCInterval)
	defer t.Stop()
	for {
		passCtx, cancel := context.WithTimeout(ctx, passTimeout)
		err := c.CollectGarbage(passCtx)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.log.Warn("garbage collection of orphaned jobs failed; it runs again at the next interval",
				"interval", c.cfg.GCInterval.String(), "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CollectGarbage purges the Nomad jobs of this installation whose pool
// record is gone (an operator deleted the KV tree, a crash mid-delete):
// nothing else would ever stop them. Jobs are listed before pools, as
// nomadjob.PlanGC requires. A failed listing purges nothing; a failed
// purge does not keep the others from being tried.
func (c *Controller) CollectGarbage(ctx context.Context) error {
	jobs, err := c.nomad.ListJobs(ctx)
	if err != nil {
		return err
	}
	poolIDs, err := c.store.PoolIDs(ctx)
	if err != nil {
		return err
	}
	plan := nomadjob.PlanGC(jobs, poolIDs, c.cfg.Installation)
	c.logUnmarked(plan.Unmarked)
	var errs []error
	for _, j := range plan.Purge {
		if err := c.nomad.Purge(ctx, j.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		c.cfg.GCMetrics.purged()
		c.log.Info("orphaned job purged: its pool record is gone", "job", j.ID, "pool_id", j.Meta[nomadjob.MetaPoolID],
			"owner", j.Meta[nomadjob.MetaOwner], "pool", j.Meta[nomadjob.MetaPool])
	}
	return errors.Join(errs...)
}

// logUnmarked logs each Tidepool job without an installation marker once:
// it may be an orphan of this installation, but the collector cannot tell.
func (c *Controller) logUnmarked(jobs []*api.JobListStub) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range jobs {
		if c.unmarked[j.ID] {
			continue
		}
		if len(c.unmarked) >= maxUnmarkedLogged {
			clear(c.unmarked)
		}
		c.unmarked[j.ID] = true
		c.log.Warn("skipping a Tidepool job without an installation marker whose pool has no record here; "+
			"if no installation owns it, purge it with 'nomad job stop -purge'",
			"job", j.ID, "pool_id", j.Meta[nomadjob.MetaPoolID], "marker", nomadjob.MetaInstallation)
	}
}

// GCMetrics are the leader's garbage collection metrics (Prometheus).
type GCMetrics struct {
	purgedJobs prometheus.Counter
}

// NewGCMetrics registers the garbage collection metrics with reg.
func NewGCMetrics(reg prometheus.Registerer) *GCMetrics {
	m := &GCMetrics{
		purgedJobs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidepool_gc_purged_jobs_total", Help: "Nomad jobs of this installation purged because their pool record was gone.",
		}),
	}
	reg.MustRegister(m.purgedJobs)
	return m
}

func (m *GCMetrics) purged() {
	if m != nil {
		m.purgedJobs.Inc()
	}
}
