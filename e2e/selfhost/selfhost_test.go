// Package selfhost runs Tidepool itself on Nomad from the jobspecs in
// jobspecs/ — controllers as a service job, gateways as a system job — and
// serves a pool through them.
package selfhost

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

func register(t *testing.T, c *devcluster.Cluster, path, vars string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.Nomad.Jobs().ParseHCLOpts(&nomadapi.JobsParseRequest{JobHCL: string(src), Variables: vars})
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	if _, _, err := c.Nomad.Jobs().Register(job, nil); err != nil {
		t.Fatalf("register %s: %v", path, err)
	}
}

func passing(ctx context.Context, c *devcluster.Cluster, service string, want int) ([]string, error) {
	entries, _, err := c.Consul.Health().Service(service, "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, e := range entries {
		addrs = append(addrs, fmt.Sprintf("%s:%d", e.Service.Address, e.Service.Port))
	}
	if len(addrs) != want {
		return nil, fmt.Errorf("%d of %d %s passing", len(addrs), want, service)
	}
	return addrs, nil
}

func TestSelfHosted_ControllersAndGatewayOnNomad(t *testing.T) {
	bin := testutil.BuildBinary(t, "./cmd/tidepool")
	echo := testutil.BuildBinary(t, "./cmd/tidepool-echo")
	c := devcluster.New(t, devcluster.Config{Name: "self"})
	root := testutil.ModuleRoot(t)
	vars := fmt.Sprintf("tidepool_bin = %q\nconsul_addr = %q\n", bin, c.ConsulAddr)
	register(t, c, filepath.Join(root, "jobspecs/tidepool-controller.nomad.hcl"), vars+fmt.Sprintf("nomad_addr = %q\nallowed_drivers = \"raw_exec\"\n", c.NomadAddr))
	register(t, c, filepath.Join(root, "jobspecs/tidepool-gateway.nomad.hcl"), vars)

	var controllers, gateways []string
	testutil.Eventually(t, 90*time.Second, 250*time.Millisecond, "controllers and gateway passing", func(ctx context.Context) error {
		var err error
		if controllers, err = passing(ctx, c, "tidepool-controller", 2); err != nil {
			return err
		}
		gateways, err = passing(ctx, c, pool.GatewayService, 1)
		return err
	})

	leaders := 0
	testutil.Eventually(t, 30*time.Second, 250*time.Millisecond, "one leader", func(ctx context.Context) error {
		leaders = 0
		for _, addr := range controllers {
			resp, err := http.Get("http://" + addr + "/v1/health")
			if err != nil {
				return err
			}
			var h struct {
				Leader bool `json:"leader"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&h)
			_ = resp.Body.Close()
			if h.Leader {
				leaders++
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d leaders", leaders)
		}
		return nil
	})

	ctx := context.Background()
	anon, _ := client.New(controllers[0], "")
	boot, err := anon.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Any controller takes writes; the leader acts on them.
	api, _ := client.New(controllers[1], boot.Token)
	spec := pool.Spec{
		Name: "web", DesiredCount: 2, Active: true,
		Ports:    []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: true}},
		Drain:    pool.Drain{Timeout: pool.Duration(5 * time.Second), GracePeriod: pool.Duration(5 * time.Second)},
		Template: testutil.EchoJob{Bin: echo, Service: "self-web"}.HCL(),
	}
	if _, err := api.CreatePool(ctx, &spec); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 90*time.Second, 250*time.Millisecond, "a request through the Nomad-run gateway", func(ctx context.Context) error {
		return testutil.GetVia(ctx, http.DefaultClient, gateways[0], "admin--web--8080.localhost", "/hello")
	})
}
