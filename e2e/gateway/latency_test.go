package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// hit is one request through the gateway: when it started, who answered.
type hit struct {
	at     time.Time
	member string
}

// TestGateway_RoutingFollowsConsulAndKV measures how fast the gateway
// follows a member becoming passing in Consul (it starts receiving work)
// and a member marked draining in KV (it stops receiving new work).
func TestGateway_RoutingFollowsConsulAndKV(t *testing.T) {
	e := newEnv(t)
	info := e.createPool(basicSpec(1, 30*time.Second, 30*time.Second, e.template("http")), 1)

	var mu sync.Mutex
	var hits []hit
	stopLoad := testutil.Repeat(4, func() {
		at := time.Now()
		status, body, err := e.get(host, "/", nil)
		if err == nil && status == http.StatusOK {
			mu.Lock()
			hits = append(hits, hit{at, memberOf(body)})
			mu.Unlock()
		}
	})
	finish := func() []hit {
		stopLoad()
		return hits
	}

	first, _ := e.api.GetPool(context.Background(), info.PoolID)
	old := first.Members[0].ID
	if _, err := e.api.SetSize(context.Background(), info.PoolID, 2); err != nil {
		t.Fatal(err)
	}
	// Watch Consul for the new member's check to pass.
	var newMember string
	var passingAt time.Time
	testutil.Eventually(t, 60*time.Second, 5*time.Millisecond, "new member passing in Consul", func(ctx context.Context) error {
		entries, _, err := e.c.Consul.Health().Service("gw-http", "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		for _, en := range entries {
			if m := en.Service.Meta[pool.ServiceMetaMember]; m != old && m != "" {
				newMember, passingAt = m, time.Now()
				return nil
			}
		}
		return errors.New("not yet")
	})
	time.Sleep(2 * time.Second)

	// Drain the old member: its drain mark is its Since.
	if _, err := e.api.SetSize(context.Background(), info.PoolID, 1); err != nil {
		t.Fatal(err)
	}
	var drainedAt time.Time
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, "a member draining", func(ctx context.Context) error {
		p, err := e.api.GetPool(ctx, info.PoolID)
		if err != nil {
			return err
		}
		for _, m := range p.Members {
			if m.State == pool.MemberDraining || m.State == pool.MemberStopped {
				if m.ID != old && m.ID != newMember {
					return fmt.Errorf("unexpected member %s", m.ID)
				}
				drainedAt = m.Since
				old = m.ID // scale-down picks the newest: whichever it is
				return nil
			}
		}
		return errors.New("not yet")
	})
	time.Sleep(2 * time.Second)
	all := finish()

	var firstNew, lastDrained time.Time
	for _, h := range all {
		if h.member == newMember && (firstNew.IsZero() || h.at.Before(firstNew)) {
			firstNew = h.at
		}
		if h.member == old && h.at.After(lastDrained) {
			lastDrained = h.at
		}
	}
	if firstNew.IsZero() {
		t.Fatal("the new member never received a request")
	}
	toRoutable := firstNew.Sub(passingAt)
	toDrained := lastDrained.Sub(drainedAt)
	t.Logf("passing in Consul → first request: %s (negative: the gateway saw it before this test's poll did)", toRoutable.Round(time.Millisecond))
	t.Logf("drain mark in KV → last new request to that member: %s (negative: none after the mark)", toDrained.Round(time.Millisecond))
	// Not a timing target (see docs/benchmarks.md): a bound far above the
	// blocking-query path, far below the 15 s sweep, shows the watch works.
	if toRoutable > 5*time.Second || toDrained > 5*time.Second {
		t.Fatalf("the gateway did not follow Consul/KV promptly: %s, %s", toRoutable, toDrained)
	}
}
