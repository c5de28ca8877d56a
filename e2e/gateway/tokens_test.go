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

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

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
	const aliceHost = "alice--web--8080"
	testutil.Eventually(t, 90*time.Second, 200*time.Millisecond, "alice's private port answers her token", func(context.Context) error {
		status, body, err := e.get(aliceHost, "/", bearer(issued.Token))
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("status %d, err %v: %s", status, err, body)
		}
		return nil
	})
	if status, body, _ := e.get(aliceHost, "/", bearer("tp_refused-before")); status != http.StatusUnauthorized {
		t.Fatalf("an unknown token with Consul up: %d %s, want 401", status, body)
	}

	resume := e.c.PauseConsul(t)
	paused := time.Now()
	probe, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, _, err = e.c.Consul.KV().Get("probe", (&consulapi.QueryOptions{}).WithContext(probe))
	cancel()
	if err == nil {
		t.Fatal("Consul still answers after SIGSTOP: the test would prove nothing")
	}

	outage := 5 * ttl
	served := 0
	testutil.Never(t, outage, 100*time.Millisecond, "alice's checked token while Consul hangs", func(context.Context) error {
		status, body, err := e.get(aliceHost, "/", bearer(issued.Token))
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("after %s of outage: status %d, err %v: %s", time.Since(paused).Round(time.Millisecond), status, err, body)
		}
		served++
		return nil
	})
	if served < 10 || time.Since(paused) < 3*ttl {
		t.Fatalf("%d requests in %s of outage: too few to show the cache outlives its %s TTL", served, time.Since(paused), ttl)
	}
	if status, body, _ := e.get(aliceHost, "/", bearer("tp_refused-before")); status != http.StatusUnauthorized {
		t.Fatalf("a token refused before the outage: %d %s, want 401 still", status, body)
	}

	// Never seen: the gateway cannot check it, and says to retry.
	prompt := pool.TokenLookupTimeout + 2*time.Second
	start := time.Now()
	status, body, err := e.get(aliceHost, "/", bearer("tp_never-seen"))
	if took := time.Since(start); err != nil || status != http.StatusServiceUnavailable || took > prompt {
		t.Fatalf("an unknown token while Consul hangs: status %d, err %v after %s: %s; want 503 within %s", status, err, took, body, prompt)
	}
	start = time.Now()
	_, err = alice.Self(ctx)
	var apiErr *client.Error
	if took := time.Since(start); !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable || took > prompt {
		t.Fatalf("the controller while Consul hangs: %v after %s; want 503 within %s", err, took, prompt)
	}
	t.Logf("Consul paused for %s; %d requests with the cached token served", time.Since(paused).Round(time.Millisecond), served)

	resume()
	n := 0
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, "an unknown token is refused again once Consul is back", func(context.Context) error {
		n++
		status, body, err := e.get(aliceHost, "/", bearer(fmt.Sprintf("tp_never-seen-%d", n)))
		if err != nil || status != http.StatusUnauthorized {
			return fmt.Errorf("status %d, err %v: %s", status, err, body)
		}
		return nil
	})
	if status, body, err := e.get(aliceHost, "/", bearer(issued.Token)); err != nil || status != http.StatusOK {
		t.Fatalf("alice's token after the outage: status %d, err %v: %s", status, err, body)
	}
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, "the controller knows alice again", func(ctx context.Context) error {
		_, err := alice.Self(ctx)
		return err
	})
}
