package scaler

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/sandbox"
	"github.com/tidepool-run/tidepool/plugin/script"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// memStore keeps pools and scaler statuses in memory, with Consul's
// check-and-set semantics for statuses.
type memStore struct {
	mu       sync.Mutex
	pools    []*pool.Pool
	statuses map[string]pool.ScalerStatus
	index    uint64
}

func (m *memStore) ListPools(context.Context, uint64, time.Duration) ([]*pool.Pool, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*pool.Pool, len(m.pools))
	for i, p := range m.pools {
		c := *p
		out[i] = &c
	}
	return out, m.index, nil
}

func (m *memStore) GetPool(_ context.Context, id string) (*pool.Pool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.pools {
		if p.ID == id {
			c := *p
			return &c, nil
		}
	}
	return nil, fmt.Errorf("pool %s: %w", id, store.ErrNotFound)
}

func (m *memStore) GetScalerStatus(_ context.Context, id string) (*pool.ScalerStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.statuses[id]
	if !ok {
		return nil, fmt.Errorf("scaler status %s: %w", id, store.ErrNotFound)
	}
	return &st, nil
}

func (m *memStore) PutScalerStatus(_ context.Context, st *pool.ScalerStatus) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.statuses[st.PoolID].ModifyIndex != st.ModifyIndex {
		return fmt.Errorf("write scaler status: %w", store.ErrConflict)
	}
	m.index++
	st.ModifyIndex = m.index
	m.statuses[st.PoolID] = *st
	return nil
}

func (m *memStore) status(t *testing.T, id string) pool.ScalerStatus {
	t.Helper()
	st, err := m.GetScalerStatus(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return *st
}

// recordingAPI records calls and answers from canned PoolInfo; block makes
// get wait for the run's context.
type recordingAPI struct {
	mu    sync.Mutex
	owner string
	calls []string
	block bool
	panic bool
}

func (r *recordingAPI) record(call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, r.owner+": "+call)
}

func (r *recordingAPI) ListPools(context.Context) (*api.PoolList, error) {
	r.record("list")
	return &api.PoolList{}, nil
}

func (r *recordingAPI) GetPool(ctx context.Context, ref string) (*api.PoolInfo, error) {
	r.record("get " + ref)
	if r.panic {
		panic("boom")
	}
	if r.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &api.PoolInfo{Name: ref, DesiredCount: 1}, nil
}

func (r *recordingAPI) SetSize(_ context.Context, ref string, n int) (*api.PoolInfo, error) {
	r.record(fmt.Sprintf("set_size %s %d", ref, n))
	if n < 0 {
		return nil, &client.Error{Status: http.StatusBadRequest, Message: "desired_count: must not be negative"}
	}
	return &api.PoolInfo{Name: ref, DesiredCount: n}, nil
}

func (r *recordingAPI) Start(context.Context, string) (*api.PoolInfo, error) { return nil, nil }
func (r *recordingAPI) Stop(context.Context, string) (*api.PoolInfo, error)  { return nil, nil }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type harness struct {
	store   *memStore
	api     *recordingAPI
	clock   *clock
	metrics *Metrics
}

func newHarness(pools ...*pool.Pool) *harness {
	return &harness{
		store:   &memStore{pools: pools, statuses: map[string]pool.ScalerStatus{}},
		api:     &recordingAPI{},
		clock:   &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)},
		metrics: NewMetrics(prometheus.NewRegistry()),
	}
}

// scheduler is one controller's scheduler over the shared store.
func (h *harness) scheduler(limits sandbox.Limits) *Scheduler {
	s := New(h.store, func(owner string) script.API {
		h.api.owner = owner
		return h.api
	}, Config{Limits: limits}, h.metrics, hclog.NewNullLogger())
	s.now = h.clock.now
	return s
}

// pass starts every due run and waits for them.
func pass(s *Scheduler) {
	var wg sync.WaitGroup
	s.startDue(context.Background(), make(chan struct{}, 4), &wg)
	wg.Wait()
}

func scaledPool(id, src string, interval time.Duration) *pool.Pool {
	return &pool.Pool{ID: id, Owner: "alice", Spec: pool.Spec{
		Name: "web", Active: true, DesiredCount: 1,
		Scaler: &pool.Scaler{Script: "scale.star", Source: src, Interval: pool.Duration(interval)},
	}}
}

const growScript = "info = pool.get(\"web\")\npool.set_size(\"web\", info[\"desired_count\"] + 1)\nprint(\"grew\")\n"

func (h *harness) calls() []string {
	h.api.mu.Lock()
	defer h.api.mu.Unlock()
	return append([]string(nil), h.api.calls...)
}

func TestScheduler_RunsOncePerInterval(t *testing.T) {
	h := newHarness(scaledPool("p-1", growScript, 10*time.Second))
	s := h.scheduler(sandbox.Limits{})
	start := h.clock.now()

	pass(s) // first sight: due at once
	if got := h.calls(); len(got) != 2 || got[0] != "alice: get web" || got[1] != "alice: set_size web 2" {
		t.Fatalf("calls %q", got)
	}
	st := h.store.status(t, "p-1")
	if !st.LastRun.Equal(start) || st.Outcome != "ok" || st.Runs != 1 || len(st.Output) != 1 || st.Output[0] != "grew" {
		t.Fatalf("status %+v", st)
	}
	for _, step := range []time.Duration{time.Second, 8 * time.Second} {
		h.clock.advance(step)
		pass(s)
		if n := len(h.calls()); n != 2 {
			t.Fatalf("ran again %s after the first run: %d calls", h.clock.now().Sub(start), n)
		}
	}
	h.clock.advance(time.Second) // one interval after the first run
	pass(s)
	if n := len(h.calls()); n != 4 {
		t.Fatalf("did not run after one interval: %d calls", n)
	}
	if got := promtest.ToFloat64(h.metrics.runs.WithLabelValues("ok")); got != 2 {
		t.Fatalf("runs counted %v", got)
	}
}

// TestScheduler_NewLeaderKeepsTheInterval: after a failover the new
// leader's scheduler reads the last run from the store and waits.
func TestScheduler_NewLeaderKeepsTheInterval(t *testing.T) {
	h := newHarness(scaledPool("p-1", growScript, 10*time.Second))
	pass(h.scheduler(sandbox.Limits{}))
	h.clock.advance(3 * time.Second)
	successor := h.scheduler(sandbox.Limits{})
	pass(successor)
	if n := len(h.calls()); n != 2 {
		t.Fatalf("the new leader ran early: %d calls", n)
	}
	h.clock.advance(7 * time.Second)
	pass(successor)
	if n := len(h.calls()); n != 4 {
		t.Fatalf("the new leader did not run when due: %d calls", n)
	}
}

// TestScheduler_OneClaimWins: two controllers that both read the record
// before either writes it: only one runs the script.
func TestScheduler_OneClaimWins(t *testing.T) {
	h := newHarness(scaledPool("p-1", growScript, 10*time.Second))
	h.store.statuses["p-1"] = pool.ScalerStatus{PoolID: "p-1", LastRun: h.clock.now().Add(-time.Minute), Outcome: "ok", ModifyIndex: 1}
	h.store.index = 1
	a, b := h.scheduler(sandbox.Limits{}), h.scheduler(sandbox.Limits{})
	var wg sync.WaitGroup
	for _, s := range []*Scheduler{a, b} {
		wg.Go(func() { s.runOne(context.Background(), &pool.Pool{ID: "p-1"}) })
	}
	wg.Wait()
	if n := len(h.calls()); n != 2 {
		t.Fatalf("%d calls: both controllers ran the script", n)
	}
	if st := h.store.status(t, "p-1"); st.Runs != 1 {
		t.Fatalf("runs %d", st.Runs)
	}
}

// TestScheduler_RereadsThePool: a pool stopped after the listing that
// found it does not run.
func TestScheduler_RereadsThePool(t *testing.T) {
	h := newHarness(scaledPool("p-1", growScript, 10*time.Second))
	s := h.scheduler(sandbox.Limits{})
	listed := scaledPool("p-1", growScript, 10*time.Second)
	h.store.pools[0].Spec.Active = false
	s.runOne(context.Background(), listed)
	if got := h.calls(); len(got) != 0 {
		t.Fatalf("a stopped pool's scaler ran: %q", got)
	}
}

func TestScheduler_SkipsStoppedAndDeletingPools(t *testing.T) {
	stopped := scaledPool("p-stopped", growScript, time.Second)
	stopped.Spec.Active = false
	deleting := scaledPool("p-deleting", growScript, time.Second)
	deleting.Deleting = true
	plain := scaledPool("p-plain", growScript, time.Second)
	plain.Spec.Scaler = nil
	h := newHarness(stopped, deleting, plain)
	pass(h.scheduler(sandbox.Limits{}))
	if got := h.calls(); len(got) != 0 {
		t.Fatalf("ran: %q", got)
	}
	if len(h.store.statuses) != 0 {
		t.Fatalf("statuses written: %v", h.store.statuses)
	}
}

func TestScheduler_RecordsFailures(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		setup   func(a *recordingAPI)
		limits  sandbox.Limits
		outcome string
		line    int
		msg     string
	}{
		{name: "infinite loop", src: "print(\"start\")\nfor i in range(1 << 60):\n    pass\n", limits: sandbox.Limits{MaxSteps: 50_000}, outcome: "step_limit", line: 2, msg: "step limit of 50000 exceeded"},
		{name: "API refusal", src: "x = 1\npool.set_size(\"web\", -1)\n", outcome: "error", line: 2, msg: "scale.star:2:14: pool.set_size: desired_count: must not be negative"},
		{name: "hung API call", src: "pool.get(\"web\")\n", setup: func(a *recordingAPI) { a.block = true }, limits: sandbox.Limits{Timeout: 100 * time.Millisecond}, outcome: "timeout", line: 1, msg: "context deadline exceeded"},
		{name: "panic in the API", src: "pool.get(\"web\")\n", setup: func(a *recordingAPI) { a.panic = true }, outcome: "error", msg: "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(scaledPool("p-1", tt.src, time.Minute))
			if tt.setup != nil {
				tt.setup(h.api)
			}
			done := make(chan struct{})
			go func() { pass(h.scheduler(tt.limits)); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the scheduler is stuck on a script")
			}
			st := h.store.status(t, "p-1")
			if st.Outcome != tt.outcome || st.ErrorLine != tt.line || !strings.Contains(st.Error, tt.msg) {
				t.Fatalf("status %+v, want %s at line %d: %q", st, tt.outcome, tt.line, tt.msg)
			}
			if got := promtest.ToFloat64(h.metrics.runs.WithLabelValues(tt.outcome)); got != 1 {
				t.Fatalf("%s runs counted %v", tt.outcome, got)
			}
		})
	}
}
