package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

const host = "admin--web--8080"

func TestGateway_RoundRobin(t *testing.T) {
	e := newEnv(t)
	e.createPool(basicSpec(3, 5*time.Second, 5*time.Second, e.template("http")), 3)
	counts := map[string]int{}
	for range 300 {
		status, body, err := e.get(host, "/", nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("status %d, err %v, body %s", status, err, body)
		}
		counts[memberOf(body)]++
	}
	if len(counts) != 3 {
		t.Fatalf("requests reached %d members: %v", len(counts), counts)
	}
	for m, n := range counts {
		if n < 90 || n > 110 {
			t.Errorf("member %s got %d of 300 requests, want 100 ± 10 (%v)", m, n, counts)
		}
	}
}

// TestGateway_ScaleDownUnderLoadFailsNothing: 50 clients call /sleep?ms=200
// without pause while the pool goes 3 → 1; no request may fail, and the
// drained members stop long before drain.timeout.
func TestGateway_ScaleDownUnderLoadFailsNothing(t *testing.T) {
	e := newEnv(t)
	const timeout = 60 * time.Second
	info := e.createPool(basicSpec(3, timeout, 5*time.Second, e.template("http")), 3)

	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stopLoad := testutil.Repeat(50, func() {
		status, body, err := e.get(host, "/sleep?ms=200", nil)
		if err != nil || status != http.StatusOK {
			failed.Add(1)
			lastErr.Store(fmt.Sprintf("status %d err %v body %s", status, err, body))
			return
		}
		ok.Add(1)
	})
	time.Sleep(time.Second) // load is flowing
	changed := time.Now()
	if _, err := e.api.SetSize(context.Background(), info.PoolID, 1); err != nil {
		t.Fatal(err)
	}
	stopped := map[string]time.Duration{}
	testutil.Eventually(t, timeout, 50*time.Millisecond, "two members stopped", func(ctx context.Context) error {
		p, err := e.api.GetPool(ctx, info.PoolID)
		if err != nil {
			return err
		}
		for _, m := range p.Members {
			if _, seen := stopped[m.ID]; !seen && (m.State == pool.MemberStopped || m.State == pool.MemberDeleting) {
				stopped[m.ID] = time.Since(changed)
			}
		}
		if len(stopped) < 2 {
			return fmt.Errorf("%d stopped", len(stopped))
		}
		return nil
	})
	time.Sleep(time.Second) // and the survivor keeps serving
	stopLoad()
	t.Logf("drained members stopped %v after set-size (drain.timeout %s); %d requests succeeded, %d failed", stopped, timeout, ok.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed during the scale-down; last: %v", failed.Load(), ok.Load()+failed.Load(), lastErr.Load())
	}
	for m, d := range stopped {
		if d >= timeout/2 {
			t.Errorf("member %s stopped after %s: the drain waited for its timeout instead of its work", m, d)
		}
	}
}

// TestGateway_LongRequestSurvivesDrain: a rollout drains the only old
// member while it serves a long request, which completes; new requests go
// to the new member. The request outlasts any rollout on a busy machine, so
// the drain is held by it.
func TestGateway_LongRequestSurvivesDrain(t *testing.T) {
	e := newEnv(t)
	spec := basicSpec(1, 30*time.Second, 5*time.Second, e.template("http"))
	info := e.createPool(spec, 1)
	first, _ := e.api.GetPool(context.Background(), info.PoolID)
	old := first.Members[0].ID

	type result struct {
		status int
		member string
		err    error
	}
	long := make(chan result, 1)
	go func() {
		status, body, err := e.get(host, "/sleep?ms=15000", nil)
		long <- result{status, memberOf(body), err}
	}()
	e.waitInFlight(info.PoolID, 1)

	spec.Template += "\n# v2\n"
	if _, err := e.api.UpdatePool(context.Background(), info.PoolID, &spec, 0); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "old member draining", func(ctx context.Context) error {
		p, err := e.api.GetPool(ctx, info.PoolID)
		if err != nil {
			return err
		}
		for _, m := range p.Members {
			if m.ID == old && m.State == pool.MemberDraining {
				return nil
			}
		}
		return errors.New("not yet")
	})
	for range 20 {
		status, body, err := e.get(host, "/", nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("new request during the drain: %d %v", status, err)
		}
		if m := memberOf(body); m == old {
			t.Fatalf("a new request reached the draining member %s", old)
		}
	}
	r := <-long
	if r.err != nil || r.status != http.StatusOK || r.member != old {
		t.Fatalf("the long request: status %d, member %s (old %s), err %v", r.status, r.member, old, r.err)
	}
}

// TestGateway_KilledMemberRetriesOnDial: requests keep succeeding when a
// member's process dies: the dial failure moves on to another member.
func TestGateway_KilledMemberRetriesOnDial(t *testing.T) {
	e := newEnv(t)
	info := e.createPool(basicSpec(3, 5*time.Second, 5*time.Second, e.template("http")), 3)
	p, _ := e.api.GetPool(context.Background(), info.PoolID)
	victim := p.Members[0]
	var pids []int
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, "the victim's process", func(context.Context) error {
		if pids = testutil.PIDsWithEnv("NOMAD_ALLOC_ID", victim.AllocID); len(pids) == 0 {
			return fmt.Errorf("no process for alloc %q", victim.AllocID)
		}
		return nil
	})
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// Requests right after the kill: dial failures move on to live members.
	for i := range 50 {
		if status, body, err := e.get(host, "/", nil); err != nil || status != http.StatusOK {
			t.Fatalf("request %d right after the kill: status %d err %v body %s", i, status, err, body)
		}
	}
	// Consul marks the victim critical; the gateway's table follows.
	var criticalAt time.Time
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, "victim critical in Consul", func(ctx context.Context) error {
		entries, _, err := e.c.Consul.Health().Service("gw-http", "", false, nil)
		if err != nil {
			return err
		}
		for _, en := range entries {
			if en.Service.Meta[pool.ServiceMetaMember] == victim.ID && en.Checks.AggregatedStatus() != "passing" {
				criticalAt = time.Now()
				return nil
			}
		}
		return errors.New("still passing")
	})
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, "victim gone from the gateway's table", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.gwAddr+"/v1/routes", nil)
		req.Header.Set("Authorization", "Bearer "+e.token) // operator endpoint: the admin token
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(b), victim.ID+"@") {
			return errors.New("still routed")
		}
		return nil
	})
	t.Logf("member %s: critical in Consul → out of the gateway's table in %s", victim.ID, time.Since(criticalAt).Round(time.Millisecond))

	failures := 0
	for i := range 300 {
		status, body, err := e.get(host, "/", nil)
		if err != nil || status != http.StatusOK {
			failures++
			t.Logf("request %d: status %d err %v body %s", i, status, err, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if failures > 0 {
		t.Fatalf("%d of 300 requests failed after a member was killed", failures)
	}
}

func TestGateway_StatusCodes(t *testing.T) {
	e := newEnv(t)
	spec := basicSpec(1, 2*time.Second, 2*time.Second, e.template("http"))
	spec.Ports[0].Public = false
	info := e.createPool(spec, 1)
	auth := http.Header{"Authorization": {"Bearer " + e.token}}

	if status, _, _ := e.get("admin--nope--8080", "/", auth); status != http.StatusNotFound {
		t.Errorf("unknown pool: %d, want 404", status)
	}
	if status, _, _ := e.get(host, "/", nil); status != http.StatusUnauthorized {
		t.Errorf("non-public port without a token: %d, want 401", status)
	}
	if status, _, _ := e.get(host, "/", http.Header{"Authorization": {"Bearer tp_wrong"}}); status != http.StatusUnauthorized {
		t.Errorf("non-public port with a bad token: %d, want 401", status)
	}
	if status, _, _ := e.get(host, "/", auth); status != http.StatusOK {
		t.Errorf("non-public port with a token: %d, want 200", status)
	}
	if _, err := e.api.Stop(context.Background(), info.PoolID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, "stopped pool answers 404", func(context.Context) error {
		if status, _, _ := e.get(host, "/", auth); status != http.StatusNotFound {
			return fmt.Errorf("status %d", status)
		}
		return nil
	})
}

// TestGateway_ServesThroughConsulOutage: with Consul gone, requests to
// known members keep succeeding and health says so.
func TestGateway_ServesThroughConsulOutage(t *testing.T) {
	e := newEnv(t)
	e.createPool(basicSpec(2, 5*time.Second, 5*time.Second, e.template("http")), 2)
	e.c.StopConsul()
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, "gateway notices Consul is gone", func(context.Context) error {
		resp, err := http.Get("http://" + e.gwAddr + "/v1/health")
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		var h struct {
			Consul bool `json:"consul"`
		}
		if err := jsonDecode(resp, &h); err != nil {
			return err
		}
		if h.Consul {
			return errors.New("still reports consul reachable")
		}
		return nil
	})
	for range 100 {
		if status, body, err := e.get(host, "/", nil); err != nil || status != http.StatusOK {
			t.Fatalf("with Consul down: status %d err %v body %s", status, err, body)
		}
	}
}

// TestGateway_StreamsAndShutsDownGracefully: server-sent events reach the
// client as they are written; on SIGTERM the gateway lets an in-flight
// request finish.
func TestGateway_StreamsAndShutsDownGracefully(t *testing.T) {
	e := newEnv(t)
	info := e.createPool(basicSpec(1, 5*time.Second, 5*time.Second, e.template("http")), 1)

	req, _ := http.NewRequest(http.MethodGet, "http://"+e.gwAddr+"/sse?n=2&interval_ms=3000", nil)
	req.Host = host + ".localhost"
	start := time.Now()
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("id: 0\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "id: 0\n" {
		t.Fatalf("first event %q, %v", first, err)
	}
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("the first event arrived after %s: the stream was buffered until its 3 s pause ended", took)
	}
	_ = resp.Body.Close()

	type result struct {
		status int
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		status, _, err := e.get(host, "/sleep?ms=2000", nil)
		inflight <- result{status, err}
	}()
	e.waitInFlight(info.PoolID, 1)
	if err := e.gateway.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if r := <-inflight; r.err != nil || r.status != http.StatusOK {
		t.Fatalf("in-flight request across the gateway's shutdown: status %d, err %v", r.status, r.err)
	}
	if _, _, err := e.get(host, "/", nil); err == nil {
		t.Fatal("the gateway still accepts requests after shutting down")
	}
}

// TestGateway_StopThenDeleteDuringALongDrainFailsNothing: a pool stopped
// while a member serves a long request cannot be deleted until the drain
// ends, and the request completes.
func TestGateway_StopThenDeleteDuringALongDrainFailsNothing(t *testing.T) {
	e := newEnv(t)
	info := e.createPool(basicSpec(1, 30*time.Second, 5*time.Second, e.template("http")), 1)
	long := make(chan int, 1)
	go func() {
		status, _, _ := e.get(host, "/sleep?ms=4000", nil)
		long <- status
	}()
	e.waitInFlight(info.PoolID, 1)
	ctx := context.Background()
	if _, err := e.api.Stop(ctx, info.PoolID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, "delete refused while draining", func(ctx context.Context) error {
		_, err := e.api.DeletePool(ctx, info.PoolID)
		var apiErr *client.Error
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict && strings.Contains(apiErr.Message, "draining") {
			return nil
		}
		return fmt.Errorf("delete: %w", err)
	})
	if status := <-long; status != http.StatusOK {
		t.Fatalf("the request in flight across stop and delete: %d", status)
	}
	testutil.Eventually(t, 30*time.Second, 250*time.Millisecond, "deleted once the drain ended", func(ctx context.Context) error {
		_, err := e.api.DeletePool(ctx, info.PoolID)
		return err
	})
}
