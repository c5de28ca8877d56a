// Package scaler runs pools' scheduled scaler scripts on the leader
// (SPEC.md §7). Each active pool with a scaler block runs its script once
// per interval, as the pool's owner, in the sandbox's step and time
// limits, off the reconcile workers.
//
// One run per interval across all controllers: before a run the leader
// writes the pool's status record (scaler-runs/<pool-id>) with LastRun = now,
// check-and-set against the record it read. A new leader reads LastRun
// and waits until LastRun + interval, and of two controllers that both
// believe they lead only the first write wins.
//
//	tick ─▶ due? (LastRun + interval ≤ now, pool active) ─▶ claim (CAS LastRun)
//	     ─▶ run script (sandbox limits, recover) ─▶ record outcome (CAS)
package scaler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/sandbox"
	"github.com/tidepool-run/tidepool/plugin/script"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// Store is what the scheduler reads and writes; *store.Store satisfies it.
type Store interface {
	ListPools(ctx context.Context, waitIndex uint64, wait time.Duration) ([]*pool.Pool, uint64, error)
	GetPool(ctx context.Context, id string) (*pool.Pool, error)
	GetScalerStatus(ctx context.Context, poolID string) (*pool.ScalerStatus, error)
	PutScalerStatus(ctx context.Context, st *pool.ScalerStatus) error
}

var _ Store = (*store.Store)(nil)

// APIFor returns the API a pool's script calls, acting as owner.
type APIFor func(owner string) script.API

// Config tunes the scheduler.
type Config struct {
	// Limits bound every run (server config scaler {}).
	Limits sandbox.Limits
	// Tick is how often due scalers are looked for; 0 means 1s.
	Tick time.Duration
	// MaxConcurrent bounds runs in parallel; 0 means 4.
	MaxConcurrent int
}

// Metrics count scaler runs.
type Metrics struct {
	runs     *prometheus.CounterVec
	duration prometheus.Histogram
}

// NewMetrics registers the scaler's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidepool_scaler_runs_total", Help: "Scheduled scaler script runs, by outcome (ok, error, step_limit, timeout, canceled).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tidepool_scaler_run_duration_seconds", Help: "Time a scheduled scaler script ran.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	reg.MustRegister(m.runs, m.duration)
	return m
}

// Scheduler runs scaler scripts while its node leads.
type Scheduler struct {
	store   Store
	apiFor  APIFor
	cfg     Config
	log     hclog.Logger
	metrics *Metrics
	now     func() time.Time

	mu      sync.Mutex
	running map[string]bool      // pool id → a run is under way
	next    map[string]time.Time // pool id → not due before
}

// New wires a scheduler. metrics may be nil.
func New(s Store, apiFor APIFor, cfg Config, metrics *Metrics, log hclog.Logger) *Scheduler {
	if cfg.Tick == 0 {
		cfg.Tick = time.Second
	}
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = 4
	}
	return &Scheduler{
		store: s, apiFor: apiFor, cfg: cfg, metrics: metrics,
		log: log.Named("scaler"), now: time.Now,
		running: map[string]bool{}, next: map[string]time.Time{},
	}
}

// Run starts due scalers every tick until ctx is done (leadership lost),
// then waits for runs under way, which ctx cancels.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	s.next = map[string]time.Time{} // a new term re-reads every status
	s.mu.Unlock()
	sem := make(chan struct{}, s.cfg.MaxConcurrent)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		s.startDue(ctx, sem, &wg)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// startDue starts a run for every pool whose scaler may be due and that
// has none under way.
func (s *Scheduler) startDue(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) {
	pools, _, err := s.store.ListPools(ctx, 0, 0)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("list pools", "error", err)
		}
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range pools {
		seen[p.ID] = true
		if !Scheduled(p) || s.running[p.ID] || now.Before(s.next[p.ID]) {
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			return // every slot busy: the next tick starts the rest
		}
		s.running[p.ID] = true
		wg.Go(func() {
			defer func() { <-sem }()
			next := s.runOne(ctx, p)
			s.mu.Lock()
			delete(s.running, p.ID)
			s.next[p.ID] = next
			s.mu.Unlock()
		})
	}
	for id := range s.next {
		if !seen[id] {
			delete(s.next, id)
		}
	}
}

// Scheduled reports whether a pool's scaler runs: it has one, and the pool
// is active and not being deleted.
func Scheduled(p *pool.Pool) bool {
	return p.Spec.Scaler != nil && p.Spec.Active && !p.Deleting
}

// runOne runs p's scaler if it is due by its stored status, and returns
// when to look again.
func (s *Scheduler) runOne(ctx context.Context, listed *pool.Pool) time.Time {
	// The listing may be a moment old: a pool stopped since must not run.
	p, err := s.store.GetPool(ctx, listed.ID)
	if err != nil || !Scheduled(p) {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.logError(ctx, "read pool", listed, err)
		}
		return time.Time{}
	}
	interval := p.Spec.Scaler.Interval.D()
	st, err := s.store.GetScalerStatus(ctx, p.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		st = &pool.ScalerStatus{PoolID: p.ID}
	case err != nil:
		s.logError(ctx, "read scaler status", p, err)
		return time.Time{}
	}
	now := s.now()
	if next := st.NextRun(interval); now.Before(next) {
		return next
	}
	// Claim the run: of every controller that read this record, one
	// writes it.
	st.LastRun, st.Outcome, st.Runs = now.UTC(), pool.ScalerRunning, st.Runs+1
	if err := s.store.PutScalerStatus(ctx, st); err != nil {
		s.logError(ctx, "claim scaler run", p, err)
		return time.Time{} // re-read: another controller may have run it
	}

	outcome, res, runErr := s.execute(ctx, p)
	elapsed := s.now().Sub(now)
	st.Duration, st.Outcome, st.Output = pool.Duration(elapsed), string(outcome), res.Output
	st.Error, st.ErrorLine = "", 0
	if runErr != nil {
		st.Error = runErr.Error()
		var se *sandbox.Error
		if errors.As(runErr, &se) {
			st.ErrorLine = se.Line
		}
	}
	if s.metrics != nil {
		s.metrics.runs.WithLabelValues(string(outcome)).Inc()
		s.metrics.duration.Observe(elapsed.Seconds())
	}
	log := s.log.With("pool", p.Spec.Name, "pool_id", p.ID, "script", p.Spec.Scaler.Script, "outcome", string(outcome), "duration", elapsed.String(), "steps", res.Steps)
	if runErr != nil {
		log.Warn("scaler run failed", "error", runErr.Error())
	} else {
		log.Debug("scaler ran")
	}
	// Record the outcome on a context of its own: a run cut short by a
	// lost leadership is still worth recording if the record is still ours.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.PutScalerStatus(wctx, st); err != nil {
		s.log.Warn("record scaler run", "pool_id", p.ID, "error", err)
	}
	return st.LastRun.Add(interval)
}

// execute runs the script; it never panics and never outlives the limits.
func (s *Scheduler) execute(ctx context.Context, p *pool.Pool) (outcome sandbox.Outcome, res *sandbox.Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			outcome, res, err = sandbox.OutcomeError, &sandbox.Result{}, fmt.Errorf("internal error running the script: %v", v)
		}
	}()
	sc := p.Spec.Scaler
	res, err = script.Run(ctx, sc.Script, []byte(sc.Source), s.apiFor(p.Owner), script.Options{Limits: s.cfg.Limits})
	if res == nil {
		res = &sandbox.Result{}
	}
	var se *sandbox.Error
	switch {
	case err == nil:
		return sandbox.OutcomeOK, res, nil
	case errors.As(err, &se):
		return se.Outcome, res, err
	default:
		return sandbox.OutcomeError, res, err
	}
}

func (s *Scheduler) logError(ctx context.Context, msg string, p *pool.Pool, err error) {
	if ctx.Err() == nil {
		s.log.Warn(msg, "pool_id", p.ID, "error", err)
	}
}
