// Package nomadautoscaler runs a real nomad-autoscaler v0.5.0 agent with the
// tidepool-autoscaler-target plugin against a controller, and watches its
// policies act on pools.
package nomadautoscaler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// agentConfig is the nomad-autoscaler agent's config: the Tidepool target
// plugin, file policies only, evaluated every second.
const agentConfig = `log_level  = "DEBUG"
plugin_dir = %q

http {
  bind_address = "127.0.0.1"
  bind_port    = %s
}

nomad {
  address = %q
}

policy {
  dir                         = %q
  default_evaluation_interval = "1s"
  default_cooldown            = "1s"

  source "nomad" {
    enabled = false
  }
}

target "tidepool" {
  driver = "tidepool-autoscaler-target"
  config = {
    address = %q
    token   = %q
  }
}
`

// policy is a fixed-value scaling policy on a pool, as a user writes it.
const policy = `scaling %q {
  enabled = true
  type    = "horizontal"
  min     = 0
  max     = 10

  policy {
    check "fixed" {
      strategy "fixed-value" {
        value = %d
      }
    }

    target "tidepool" {
      pool = %q
    }
  }
}
`

func TestNomadAutoscaler_FixedValuePolicyScalesAPool(t *testing.T) {
	agentBin, err := devcluster.NomadAutoscaler()
	if err != nil {
		t.Fatal(err)
	}
	tidepool := testutil.BuildBinary(t, "./cmd/tidepool")
	echo := testutil.BuildBinary(t, "./cmd/tidepool-echo")
	// The agent finds plugins by file name in plugin_dir.
	plugin := testutil.BuildBinary(t, "./cmd/tidepool-autoscaler-target")
	c := devcluster.New(t, devcluster.Config{Name: "as"})

	apiAddr, _ := testutil.StartServer(t, tidepool, c.Env(), "-log-level", "debug")
	_, admin := testutil.Bootstrap(t, apiAddr)
	ctx := context.Background()
	// The plugin acts with an ordinary user's token, as an operator would
	// give it.
	alice, err := admin.CreateToken(ctx, "alice", []string{api.PermUsePools})
	if err != nil {
		t.Fatal(err)
	}
	as, _ := client.New(apiAddr, alice.Token)

	spec := func(name string, auto *pool.Autoscaling) *pool.Spec {
		return &pool.Spec{
			Name: name, DesiredCount: 1, Active: true, Autoscaling: auto,
			Ports:    []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: true}},
			Drain:    pool.Drain{Timeout: pool.Duration(2 * time.Second), GracePeriod: pool.Duration(2 * time.Second)},
			Template: testutil.EchoJob{Bin: echo, Service: "as-" + name}.HCL(),
		}
	}
	if _, err := as.CreatePool(ctx, spec("web", nil)); err != nil {
		t.Fatal(err)
	}
	auto := pool.DefaultAutoscaling()
	auto.MinScale, auto.MaxScale = 1, 3
	if _, err := as.CreatePool(ctx, spec("auto", &auto)); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	if err := os.Mkdir(policies, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(policies, "web.hcl"), fmt.Sprintf(policy, "web", 3, "web"))
	write(filepath.Join(policies, "auto.hcl"), fmt.Sprintf(policy, "auto", 2, "auto"))
	_, port, _ := strings.Cut(testutil.FreeAddr(t), ":")
	cfg := filepath.Join(dir, "agent.hcl")
	write(cfg, fmt.Sprintf(agentConfig, filepath.Dir(plugin), port, c.NomadAddr, policies, "http://"+apiAddr, alice.Token))
	agent := testutil.StartProcess(t, "nomad-autoscaler", agentBin, c.Env(), "agent", "-config", cfg)

	started := time.Now()
	testutil.Eventually(t, 90*time.Second, 250*time.Millisecond, "web scaled to the policy's 3, all alive", func(ctx context.Context) error {
		info, err := as.GetPool(ctx, "web")
		if err != nil {
			return err
		}
		if info.DesiredCount != 3 || info.AliveMembers != 3 {
			return fmt.Errorf("desired %d, alive %d", info.DesiredCount, info.AliveMembers)
		}
		return nil
	})
	t.Logf("fixed-value policy: web at 3 alive members %s after the agent started", time.Since(started).Round(time.Millisecond))

	// The autoscaled pool refuses: the plugin says why, and nothing changes.
	testutil.Eventually(t, 30*time.Second, 250*time.Millisecond, "the agent logs why the autoscaled pool refuses", func(context.Context) error {
		if log := agent.Log(); !strings.Contains(log, `pool \"auto\": the pool has an autoscaling block`) &&
			!strings.Contains(log, `pool "auto": the pool has an autoscaling block`) {
			return fmt.Errorf("not yet in the agent's log")
		}
		return nil
	})
	info, err := as.GetPool(ctx, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if info.DesiredCount != 1 {
		t.Fatalf("the autoscaled pool's desired count changed to %d", info.DesiredCount)
	}
	// The size API itself refuses the change the policy wants, with the
	// message the plugin passes on.
	_, err = as.SetSize(ctx, "auto", 2)
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || !strings.Contains(apiErr.Message, "autoscaling") {
		t.Fatalf("set-size on an autoscaled pool: %v", err)
	}
}
