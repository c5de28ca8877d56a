package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// TestGateway_CachedTokenSurvivesConsulOutage: while Consul hangs (the
// agent is stopped with SIGSTOP, so connections are accepted and never
// answered), a token the gateway has checked keeps opening a private port
// for several token TTLs, a token it has seen refused stays refused, and
// a token it has never seen gets 503 promptly: not 401, and no hang. The
// controller answers 503 as well. Once Consul is back, an unknown token is
// 401 again and the valid one still works.
func TestGateway_CachedTokenSurvivesConsulOutage(t *testing.T) {
	const ttl = time.Second
	e := newEnv(t, "-token-ttl", ttl.String())
	ctx := context.Background()

	issued, err := e.api.CreateToken(ctx, "alice", []string{api.PermUsePools})
	if err != nil {
		t.Fatal(err)
	}
	alice, err := client.New(e.apiAddr, issued.Token)
	if err != nil {
		t.Fatal(err)
	}
	spec := basicSpec(1, 5*time.Second, 5*time.Second, e.template("http"))
	spec.Ports[0].Public = false
	if _, err := alice.CreatePool(ctx, &spec); err != nil {
		t.Fatalf("alice creates a pool with a private port: %v", err)
	}
	// expect checks that GET / of alice's private port with a bearer
	// token answers want.
	expect := func(token string, want int) error {
		status, body, err := e.get("alice--web--8080", "/", http.Header{"Authorization": {"Bearer " + token}})
		if err != nil {
			return err
		}
		if status != want {
			return fmt.Errorf("status %d, want %d: %s", status, want, body)
		}
		return nil
	}
	testutil.Eventually(t, 90*time.Second, 200*time.Millisecond, "alice's private port answers her token", func(context.Context) error {
		return expect(issued.Token, http.StatusOK)
	})
	if err := expect("tp_refused-before", http.StatusUnauthorized); err != nil {
		t.Fatalf("an unknown token with Consul up: %v", err)
	}

	resume := e.c.PauseConsul(t)
	paused := time.Now()
	probe, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, _, err = e.c.Consul.KV().Get("probe", (&consulapi.QueryOptions{}).WithContext(probe))
	cancel()
	if err == nil {
		t.Fatal("Consul still answers after SIGSTOP: the test would prove nothing")
	}

	// A checked token is answered from the cache: it never waits out a
	// lookup of the hung Consul, not even when its answer is due.
	outage, slowest := 5*ttl, time.Duration(0)
	served := 0
	testutil.Never(t, outage, 100*time.Millisecond, "alice's checked token while Consul hangs", func(context.Context) error {
		start := time.Now()
		if err := expect(issued.Token, http.StatusOK); err != nil {
			return fmt.Errorf("after %s of outage: %w", time.Since(paused).Round(time.Millisecond), err)
		}
		took := time.Since(start)
		if took > pool.TokenLookupTimeout/2 {
			return fmt.Errorf("after %s of outage a request took %s: it waited on Consul", time.Since(paused).Round(time.Millisecond), took)
		}
		slowest = max(slowest, took)
		served++
		return nil
	})
	if elapsed := time.Since(paused); served < 5 || elapsed < 3*ttl {
		t.Fatalf("%d requests in %s of outage: too few to show the cache outlives its %s TTL", served, elapsed, ttl)
	}
	if err := expect("tp_refused-before", http.StatusUnauthorized); err != nil {
		t.Fatalf("a token refused before the outage, while Consul hangs: %v", err)
	}

	// Never seen: the gateway cannot check it, and says to retry.
	prompt := pool.TokenLookupTimeout + 2*time.Second
	start := time.Now()
	err = expect("tp_never-seen", http.StatusServiceUnavailable)
	if took := time.Since(start); err != nil || took > prompt {
		t.Fatalf("an unknown token while Consul hangs: %v after %s; want 503 within %s", err, took, prompt)
	}
	start = time.Now()
	_, err = alice.Self(ctx)
	var apiErr *client.Error
	if took := time.Since(start); !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable || took > prompt {
		t.Fatalf("the controller while Consul hangs: %v after %s; want 503 within %s", err, took, prompt)
	}
	t.Logf("Consul paused for %s; %d requests with the cached token served, the slowest in %s", time.Since(paused).Round(time.Millisecond), served, slowest.Round(time.Millisecond))

	resume()
	n := 0
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, "an unknown token is refused again once Consul is back", func(context.Context) error {
		n++
		return expect(fmt.Sprintf("tp_never-seen-%d", n), http.StatusUnauthorized)
	})
	// Consul's return may briefly change the gateway's routes (the leader
	// re-elects, health is re-read), so allow the route a moment.
	testutil.Eventually(t, 10*time.Second, 200*time.Millisecond, "alice's token after the outage", func(context.Context) error {
		return expect(issued.Token, http.StatusOK)
	})
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, "the controller knows alice again", func(ctx context.Context) error {
		_, err := alice.Self(ctx)
		return err
	})
}
