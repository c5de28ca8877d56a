// Package controller tests the controller end to end: real Consul and Nomad
// agents, real `tidepool server` processes, real echo members.
package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/store"
)

const kvPrefix = "tp"

type env struct {
	t        *testing.T
	c        *devcluster.Cluster
	store    *store.Store
	tidepool string
	echo     string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		t:        t,
		tidepool: testutil.BuildBinary(t, "./cmd/tidepool"),
		echo:     testutil.BuildBinary(t, "./cmd/tidepool-echo"),
	}
	e.c = devcluster.New(t, devcluster.Config{Name: "ctrl"})
	e.store = store.New(e.c.Consul, kvPrefix)
	testutil.HoldDrains(t, e.c.Consul) // drains here run to drain.timeout
	return e
}

// startServer runs `tidepool server` against the cluster and returns its
// API address. The garbage collector runs every 2s, so every test here also
// shows it never purges the job of a pool being created or deleted.
func (e *env) startServer(name string) (string, *testutil.Process) {
	e.t.Helper()
	return testutil.StartServer(e.t, e.tidepool, e.c.Env(), "-name", name, "-kv-prefix", kvPrefix,
		"-sweep-interval", "15s", "-gc-interval", "2s", "-log-level", "debug")
}

func (e *env) template() string {
	return testutil.EchoJob{Bin: e.echo, Service: "tp-echo", NoRestart: true}.HCL()
}

// createPool stores a pool as the API will, with short drain timers.
func (e *env) createPool(id string, count int, timeout, grace time.Duration) *pool.Pool {
	e.t.Helper()
	p := &pool.Pool{
		ID: id, Owner: "alice", TemplateGeneration: 1, CreatedAt: time.Now(), UpdatedAt: time.Now(),
		Spec: pool.Spec{
			Name: "web", Template: e.template(), DesiredCount: count, Active: true,
			Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP}},
			Drain: pool.Drain{Timeout: pool.Duration(timeout), GracePeriod: pool.Duration(grace)},
		},
	}
	if err := e.store.CreatePool(context.Background(), p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) modify(id string, fn func(*pool.Pool)) time.Time {
	e.t.Helper()
	if _, err := e.store.ModifyPool(context.Background(), id, func(p *pool.Pool) error { fn(p); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return time.Now()
}

func (e *env) members(id string) map[string]*pool.Member {
	e.t.Helper()
	ms, err := e.store.ListMembers(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]*pool.Member{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

// passing maps member → address of the pool's passing services.
func (e *env) passing(ctx context.Context, id string) (map[string]string, error) {
	return testutil.Passing(ctx, e.c.Consul, "tp-echo", pool.SelectorTag(id))
}

// waitRunning waits for n members in phase running, all passing in Consul.
func (e *env) waitRunning(id string, n int, within time.Duration) map[string]string {
	e.t.Helper()
	var addrs map[string]string
	testutil.Eventually(e.t, within, 200*time.Millisecond, fmt.Sprintf("%d members running and passing", n), func(ctx context.Context) error {
		running := 0
		for _, m := range e.members(id) {
			if m.Phase == pool.PhaseRunning {
				running++
			}
		}
		var err error
		if addrs, err = e.passing(ctx, id); err != nil {
			return err
		}
		if running != n || len(addrs) != n {
			return fmt.Errorf("%d running in KV, %d passing in Consul", running, len(addrs))
		}
		return nil
	})
	return addrs
}

func (e *env) job(p *pool.Pool) *nomadapi.Job {
	e.t.Helper()
	job, _, err := e.c.Nomad.Jobs().Info(p.JobID(), nil)
	if err != nil {
		e.t.Fatalf("read job: %v", err)
	}
	return job
}

func groups(job *nomadapi.Job) map[string]*nomadapi.TaskGroup {
	out := map[string]*nomadapi.TaskGroup{}
	for _, tg := range job.TaskGroups {
		out[*tg.Name] = tg
	}
	return out
}

// phaseLog records every phase each member of a pool goes through, as seen
// in KV, polling fast enough to catch each step.
type phaseLog struct {
	mu     sync.Mutex
	since  map[string]map[pool.Phase][]time.Time
	seen   map[string][]pool.Phase
	first  map[pool.Phase]time.Time
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *env) recordPhases(id string) *phaseLog {
	ctx, cancel := context.WithCancel(context.Background())
	l := &phaseLog{seen: map[string][]pool.Phase{}, first: map[pool.Phase]time.Time{}, since: map[string]map[pool.Phase][]time.Time{}, cancel: cancel, done: make(chan struct{})}
	prefix := kvPrefix + "/members/" + id + "/"
	go func() {
		defer close(l.done)
		present := map[string]bool{}
		var index uint64
		for ctx.Err() == nil {
			// A blocking query wakes on every write, so no phase is missed
			// unless two land within the same few milliseconds.
			pairs, meta, err := e.c.Consul.KV().List(prefix, (&consulapi.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx))
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			index = meta.LastIndex
			now := map[string]bool{}
			l.mu.Lock()
			for _, pair := range pairs {
				var m pool.Member
				if json.Unmarshal(pair.Value, &m) != nil {
					continue
				}
				now[m.ID] = true
				if l.since[m.ID] == nil {
					l.since[m.ID] = map[pool.Phase][]time.Time{}
				}
				if ts := l.since[m.ID][m.Phase]; len(ts) == 0 || !ts[len(ts)-1].Equal(m.Since) {
					l.since[m.ID][m.Phase] = append(ts, m.Since)
				}
				s := l.seen[m.ID]
				if len(s) == 0 || s[len(s)-1] != m.Phase {
					l.seen[m.ID] = append(s, m.Phase)
					if _, ok := l.first[m.Phase]; !ok {
						l.first[m.Phase] = time.Now()
					}
				}
			}
			for m := range present {
				if !now[m] {
					l.seen[m] = append(l.seen[m], "gone")
				}
			}
			l.mu.Unlock()
			present = now
		}
	}()
	e.t.Cleanup(l.stop)
	return l
}

func (l *phaseLog) stop() {
	l.cancel()
	<-l.done
}

// reset forgets what was seen so far.
func (l *phaseLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = map[string][]pool.Phase{}
	l.first = map[pool.Phase]time.Time{}
}

// sinces lists the distinct start times a member's phase was recorded with.
func (l *phaseLog) sinces(member string, p pool.Phase) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.since[member][p]
}

// ids lists every member seen.
func (l *phaseLog) ids() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return keys(l.seen)
}

func (l *phaseLog) history(member string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for _, p := range l.seen[member] {
		parts = append(parts, string(p))
	}
	return strings.Join(parts, "→")
}

func (l *phaseLog) firstSeen(p pool.Phase) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.first[p]
	return t, ok
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// prober calls one address continuously and counts failures.
type prober struct {
	calls, failures int
	lastErr         error
	mu              sync.Mutex
	stop            chan struct{}
	done            chan struct{}
}

func probe(addr string) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 2 * time.Second}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			resp, err := client.Get("http://" + addr + "/")
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			p.mu.Lock()
			p.calls++
			if err != nil {
				p.failures++
				p.lastErr = err
			}
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *prober) finish() (calls, failures int, lastErr error) {
	close(p.stop)
	<-p.done
	return p.calls, p.failures, p.lastErr
}
