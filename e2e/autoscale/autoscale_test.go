// Package autoscale tests autoscaling end to end: real agents, a real
// controller and gateway, echo members, load through the gateway.
package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

type env struct {
	t      *testing.T
	c      *devcluster.Cluster
	bin    string
	cfg    string
	echo   string
	gwAddr string
	api    *client.Client
	token  string
	http   *http.Client
	// servers are the controllers, by API address.
	servers map[string]*testutil.Process
}

// newEnv starts agents, a controller whose scale-to-zero grace is 1s, and
// a gateway.
func newEnv(t *testing.T, name string) *env {
	t.Helper()
	e := &env{t: t, echo: testutil.BuildBinary(t, "./cmd/tidepool-echo"),
		http: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	e.bin = testutil.BuildBinary(t, "./cmd/tidepool")
	e.c = devcluster.New(t, devcluster.Config{Name: name})
	e.cfg = filepath.Join(t.TempDir(), "server.hcl")
	if err := os.WriteFile(e.cfg, []byte("autoscaler {\n  scale_to_zero_grace_period = \"1s\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.servers = map[string]*testutil.Process{}
	addr := e.startServer()
	e.gwAddr, _ = testutil.StartGateway(t, e.bin, e.c.Env(), "-name", "gw-"+name)
	e.token, e.api = testutil.Bootstrap(t, addr)
	return e
}

// startServer starts another controller and returns its API address.
func (e *env) startServer() string {
	e.t.Helper()
	addr, p := testutil.StartServer(e.t, e.bin, e.c.Env(), "-config", e.cfg, "-sweep-interval", "5s", "-name", fmt.Sprintf("ctl-%d", len(e.servers)))
	e.servers[addr] = p
	return addr
}

// leader returns the API address of the controller that leads.
func (e *env) leader() string {
	e.t.Helper()
	var out string
	testutil.Eventually(e.t, 30*time.Second, 100*time.Millisecond, "a leader", func(ctx context.Context) error {
		for addr := range e.servers {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/health", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			var h struct {
				Leader bool `json:"leader"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&h)
			_ = resp.Body.Close()
			if h.Leader {
				out = addr
				return nil
			}
		}
		return errors.New("nobody leads")
	})
	return out
}

// create stores an autoscaled pool "api" with as applied over the
// defaults; drains are short.
func (e *env) create(edit func(*pool.Autoscaling)) *api.PoolInfo {
	e.t.Helper()
	as := pool.DefaultAutoscaling()
	as.StableWindow = pool.Duration(6 * time.Second) // Knative's minimum
	edit(&as)
	spec := pool.Spec{
		Name: "api", Active: true, Autoscaling: &as,
		Template: testutil.EchoJob{Bin: e.echo, Service: "as-api"}.HCL(),
		Ports:    []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: true}},
		Drain:    pool.Drain{Timeout: pool.Duration(5 * time.Second), GracePeriod: pool.Duration(time.Minute)},
	}
	info, err := e.api.CreatePool(context.Background(), &spec)
	if err != nil {
		e.t.Fatalf("create: %v", err)
	}
	return info
}

// alive waits until the pool has n alive members and reports its state.
func (e *env) alive(n int, within time.Duration) *api.PoolInfo {
	e.t.Helper()
	var info *api.PoolInfo
	testutil.Eventually(e.t, within, 250*time.Millisecond, fmt.Sprintf("%d members alive", n), func(ctx context.Context) error {
		var err error
		if info, err = e.api.GetPool(ctx, "api"); err != nil {
			return err
		}
		if info.AliveMembers != n {
			return fmt.Errorf("%d alive, desired %d", info.AliveMembers, info.Autoscaling.Desired)
		}
		return nil
	})
	return info
}

func (e *env) get(path string) (int, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+e.gwAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Host = "admin--api--8080.localhost"
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header, nil
}

func TestAutoscale_ToZeroAndBackOnTheNextRequest(t *testing.T) {
	e := newEnv(t, "as-zero")
	e.create(func(a *pool.Autoscaling) { a.Target = 10; a.ActivationScale = 1 })
	e.alive(1, 90*time.Second)

	// No traffic: after a stable window plus the grace period, zero.
	start := time.Now()
	testutil.Eventually(t, 90*time.Second, 250*time.Millisecond, "scaled to zero", func(ctx context.Context) error {
		info, err := e.api.GetPool(ctx, "api")
		if err != nil {
			return err
		}
		if info.Autoscaling.Desired != 0 || info.AliveMembers != 0 {
			return fmt.Errorf("desired %d, %d alive", info.Autoscaling.Desired, info.AliveMembers)
		}
		passing, err := testutil.Passing(ctx, e.c.Consul, "as-api")
		if err != nil {
			return err
		}
		if len(passing) != 0 {
			return fmt.Errorf("still passing in Consul: %v", passing)
		}
		allocs, _, err := e.c.Nomad.Jobs().Allocations(info.NomadJobID, false, nil)
		if err != nil {
			return err
		}
		for _, a := range allocs {
			if a.DesiredStatus == "run" && (a.ClientStatus == "running" || a.ClientStatus == "pending") {
				return fmt.Errorf("allocation %s still %s", a.ID, a.ClientStatus)
			}
		}
		return nil
	})
	t.Logf("idle pool at zero %s after it was alive (stable window 6s, grace 1s, drain)", time.Since(start).Round(time.Second))

	// The next request is held while a member starts, then answered. A
	// watcher notes when the member first passes its check in Consul, to
	// tell Tidepool's own overhead from Nomad's placement and the check.
	passingAt := make(chan time.Time, 1)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go func() {
		for watchCtx.Err() == nil {
			if p, err := testutil.Passing(watchCtx, e.c.Consul, "as-api"); err == nil && len(p) > 0 {
				passingAt <- time.Now()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start = time.Now()
	status, _, err := e.get("/hello")
	answeredAt := time.Now()
	if err != nil || status != http.StatusOK {
		t.Fatalf("request at zero: status %d, err %v; want it held and answered", status, err)
	}
	t.Logf("request at zero answered after %s (cold start)", answeredAt.Sub(start).Round(time.Millisecond))
	select {
	case at := <-passingAt:
		t.Logf("member passing in Consul %s after the request arrived; answered %s after that (Tidepool's overhead beyond placement and the first check)",
			at.Sub(start).Round(time.Millisecond), answeredAt.Sub(at).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Log("the passing moment was not observed")
	}
	info := e.alive(1, 30*time.Second)
	if info.Autoscaling.Desired < 1 {
		t.Fatalf("desired %d after a request at zero, want at least activation_scale", info.Autoscaling.Desired)
	}
	testutil.Eventually(t, 10*time.Second, 250*time.Millisecond, "cold start recorded", func(ctx context.Context) error {
		info, err := e.api.GetPool(ctx, "api")
		if err != nil {
			return err
		}
		if info.Autoscaling.ColdStart <= 0 {
			return fmt.Errorf("autoscaling %+v", info.Autoscaling)
		}
		t.Logf("cold start as the autoscaler measured it: %s", info.Autoscaling.ColdStart)
		return nil
	})
	// The leader exports its decisions and the cold start.
	for addr := range e.servers {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		for _, want := range []string{`tidepool_autoscaler_desired_members{pool_id="` + info.PoolID + `"} 1`, "tidepool_autoscaler_cold_start_seconds_count 1"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("controller /metrics lacks %s", want)
			}
		}
	}
}

func TestAutoscale_FollowsLoadWithoutFailures(t *testing.T) {
	e := newEnv(t, "as-load")
	e.create(func(a *pool.Autoscaling) {
		a.Target, a.TargetUtilization = 1, 100
		a.MinScale, a.InitialScale, a.ActivationScale, a.MaxScale = 1, 1, 1, 4
		a.ScaleDownDelay = pool.Duration(5 * time.Second)
	})
	e.alive(1, 90*time.Second)

	// Four clients, each keeping one slow request in flight: concurrency 4,
	// target 1 per member.
	var failures, served atomic.Int64
	var lastErr atomic.Value
	stop := testutil.Repeat(4, func() {
		status, _, err := e.get("/sleep?ms=500")
		switch {
		case err != nil:
			failures.Add(1)
			lastErr.Store(err.Error())
		case status != http.StatusOK:
			failures.Add(1)
			lastErr.Store(fmt.Sprintf("status %d", status))
		default:
			served.Add(1)
		}
	})
	var peak atomic.Int64
	var mu sync.Mutex
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { // never above max_scale
		defer close(watched)
		for watchCtx.Err() == nil {
			if info, err := e.api.GetPool(watchCtx, "api"); err == nil {
				mu.Lock()
				peak.Store(max(peak.Load(), int64(len(info.Members))))
				mu.Unlock()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	grown := e.alive(4, 2*time.Minute)
	t.Logf("grew to %d alive members (desired %d, stable %.2f, panic %v)", grown.AliveMembers, grown.Autoscaling.Desired, grown.Autoscaling.Observed.Stable, grown.Autoscaling.Panic)
	stop()
	stoppedAt := time.Now()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed while the pool grew; last: %v", n, n+served.Load(), lastErr.Load())
	}

	// With scale_down_delay 5s it holds its size at least that long after
	// the load, then goes back to min_scale.
	testutil.Never(t, 4*time.Second, 250*time.Millisecond, "scaled down within scale_down_delay", func(ctx context.Context) error {
		info, err := e.api.GetPool(ctx, "api")
		if err == nil && info.Autoscaling.Desired < 4 {
			return fmt.Errorf("desired %d %s after the load stopped", info.Autoscaling.Desired, time.Since(stoppedAt).Round(time.Millisecond))
		}
		return nil
	})
	testutil.Eventually(t, 2*time.Minute, 250*time.Millisecond, "back at min_scale", func(ctx context.Context) error {
		info, err := e.api.GetPool(ctx, "api")
		if err != nil {
			return err
		}
		if info.Autoscaling.Desired != 1 || info.AliveMembers != 1 {
			return fmt.Errorf("desired %d, %d alive", info.Autoscaling.Desired, info.AliveMembers)
		}
		return nil
	})
	stopWatch()
	<-watched
	if p := peak.Load(); p > 4 {
		t.Fatalf("the pool had %d members, max_scale 4", p)
	}
}

func TestAutoscale_AtMaxScaleRequestsQueueThen429(t *testing.T) {
	e := newEnv(t, "as-max")
	e.create(func(a *pool.Autoscaling) {
		a.MinScale, a.InitialScale, a.ActivationScale, a.MaxScale = 1, 1, 1, 1
		a.ContainerConcurrency = 1
		a.QueueTimeout = pool.Duration(2 * time.Second)
	})
	e.alive(1, 90*time.Second)

	// Three requests of 1.5s each on one slot: the first is served at once,
	// the second waits ~1.5s and is served, the third would wait ~3s.
	type result struct {
		status int
		header http.Header
		err    error
		took   time.Duration
	}
	results := make([]result, 3)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			start := time.Now()
			status, header, err := e.get("/sleep?ms=1500")
			results[i] = result{status, header, err, time.Since(start)}
		})
		time.Sleep(100 * time.Millisecond) // arrive in order
	}
	wg.Wait()
	ok, throttled := 0, 0
	for i, r := range results {
		t.Logf("request %d: %d after %s", i, r.status, r.took.Round(time.Millisecond))
		switch {
		case r.err != nil:
			t.Fatalf("request %d: %v", i, r.err)
		case r.status == http.StatusOK:
			ok++
		case r.status == http.StatusTooManyRequests:
			throttled++
			if r.header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
		default:
			t.Fatalf("request %d: status %d", i, r.status)
		}
	}
	if ok != 2 || throttled != 1 {
		t.Fatalf("%d served and %d throttled, want 2 and 1: one at a time, and a 429 past queue_timeout", ok, throttled)
	}
	if results[1].took < 1400*time.Millisecond {
		t.Fatalf("the second request took %s: it did not wait for the slot", results[1].took)
	}
}

func TestAutoscale_LeaderFailoverUnderLoadNeitherCollapsesNorFlaps(t *testing.T) {
	e := newEnv(t, "as-failover")
	standby := e.startServer()
	e.create(func(a *pool.Autoscaling) {
		a.Target, a.TargetUtilization = 1, 100
		a.MinScale, a.InitialScale, a.ActivationScale, a.MaxScale = 1, 1, 1, 3
	})
	e.alive(1, 90*time.Second)
	var failures atomic.Int64
	stop := testutil.Repeat(3, func() {
		if status, _, err := e.get("/sleep?ms=500"); err != nil || status != http.StatusOK {
			failures.Add(1)
		}
	})
	defer stop()
	before := e.alive(3, 2*time.Minute).Autoscaling.Desired

	// The leader stops cleanly; the standby takes over with empty windows.
	old := e.leader()
	if err := e.servers[old].Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	delete(e.servers, old)
	if e.leader() != standby {
		t.Fatal("the standby did not take over")
	}
	admin, err := client.New(standby, e.token)
	if err != nil {
		t.Fatal(err)
	}
	e.api = admin
	// Two stable windows under the same load: never below the size it had.
	testutil.Never(t, 12*time.Second, 250*time.Millisecond, "the pool shrank under unchanged load after a failover", func(ctx context.Context) error {
		info, err := e.api.GetPool(ctx, "api")
		if err != nil {
			return nil // the API may answer slowly during the handover
		}
		if info.Autoscaling.Desired < before {
			return fmt.Errorf("desired %d, was %d before the failover", info.Autoscaling.Desired, before)
		}
		return nil
	})
	stop()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d requests failed across the failover", n)
	}
}
