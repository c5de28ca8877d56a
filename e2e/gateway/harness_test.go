// Package gateway tests the gateway end to end: real agents, a real
// controller and gateway, echo members, real clients.
package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

type env struct {
	t        *testing.T
	c        *devcluster.Cluster
	tidepool string
	echo     string
	apiAddr  string
	gwAddr   string
	gateway  *testutil.Process
	token    string
	api      *client.Client
	http     *http.Client
}

// newEnv starts agents, a controller and a gateway (with extra gateway
// args), and bootstraps a token.
func newEnv(t *testing.T, gatewayArgs ...string) *env {
	t.Helper()
	e := &env{
		t: t, tidepool: testutil.BuildBinary(t, "./cmd/tidepool"), echo: testutil.BuildBinary(t, "./cmd/tidepool-echo"),
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}},
	}
	e.c = devcluster.New(t, devcluster.Config{Name: "gw"})
	e.apiAddr, _ = testutil.StartServer(t, e.tidepool, e.c.Env(), "-log-level", "debug")
	e.gwAddr, e.gateway = testutil.StartGateway(t, e.tidepool, e.c.Env(), append([]string{"-name", "gw-test", "-log-level", "debug"}, gatewayArgs...)...)
	e.token, e.api = testutil.Bootstrap(t, e.apiAddr)
	return e
}

func (e *env) template(ports ...string) string {
	return testutil.EchoJob{Bin: e.echo, Service: "gw-http", Ports: ports}.HCL()
}

// createPool creates a pool through the API and waits for n alive members.
func (e *env) createPool(spec pool.Spec, n int) *api.PoolInfo {
	e.t.Helper()
	info, err := e.api.CreatePool(context.Background(), &spec)
	if err != nil {
		e.t.Fatalf("create pool: %v", err)
	}
	e.waitAlive(spec.Name, n)
	return info
}

func (e *env) waitAlive(name string, n int) {
	e.t.Helper()
	testutil.Eventually(e.t, 90*time.Second, 200*time.Millisecond, fmt.Sprintf("%d members alive", n), func(ctx context.Context) error {
		info, err := e.api.GetPool(ctx, name)
		if err != nil {
			return err
		}
		if info.AliveMembers != n || len(info.Members) != n {
			return fmt.Errorf("%d alive of %d members", info.AliveMembers, len(info.Members))
		}
		return nil
	})
}

func httpPort(number int) pool.Port {
	return pool.Port{Label: "http", Number: number, Protocol: pool.ProtocolHTTP, Public: true}
}

func basicSpec(count int, timeout, grace time.Duration, tmpl string) pool.Spec {
	return pool.Spec{
		Name: "web", Template: tmpl, DesiredCount: count, Active: true,
		Ports: []pool.Port{httpPort(8080)},
		Drain: pool.Drain{Timeout: pool.Duration(timeout), GracePeriod: pool.Duration(grace)},
	}
}

// waitInFlight waits until the gateway reports at least n requests in
// flight for the pool (its /v1/stats, read with the admin token).
func (e *env) waitInFlight(poolID string, n int64) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, 10*time.Millisecond, fmt.Sprintf("%d requests in flight", n), func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.gwAddr+"/v1/stats", nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := e.http.Do(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		var st pool.GatewayStats
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		var got int64
		for _, m := range st.Members {
			if m.PoolID == poolID {
				got += m.HTTPInFlight
			}
		}
		if got < n {
			return fmt.Errorf("%d in flight", got)
		}
		return nil
	})
}

// get sends a request through the gateway for host label owner--pool--port.
func (e *env) get(host, path string, header http.Header) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+e.gwAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Host = host + ".localhost"
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func memberOf(body []byte) string {
	var r struct {
		Member string `json:"member"`
	}
	_ = json.Unmarshal(body, &r)
	return r.Member
}
