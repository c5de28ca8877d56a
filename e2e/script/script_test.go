// Package script tests Starlark scaler scripts end to end: `tidepool
// script run` and pools' scheduled scalers, through the real binary
// against a real controller, Consul and Nomad, with real echo members.
package script

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/api"
)

type env struct {
	t       *testing.T
	bin     string
	cluster *devcluster.Cluster
	// addr is the API the CLI talks to; server is the first controller.
	addr   string
	server *testutil.Process
	dir    string
	tokens map[string]string // user → token
}

// serverConfig keeps scripts' step limit low, so a looping script is
// stopped quickly.
const serverConfig = `
scaler {
  max_steps = 100000
  timeout   = "5s"
}
`

func newEnv(t *testing.T, name string) *env {
	t.Helper()
	e := &env{t: t, bin: testutil.BuildBinary(t, "./cmd/tidepool"), dir: t.TempDir(), tokens: map[string]string{}}
	echo := testutil.BuildBinary(t, "./cmd/tidepool-echo")
	e.cluster = devcluster.New(t, devcluster.Config{Name: name})
	e.write("server.hcl", serverConfig)
	e.server, e.addr = e.startServer("ctrl-a")

	_, admin := testutil.Bootstrap(t, e.addr)
	for _, user := range []string{"alice", "bob"} {
		info, err := admin.CreateToken(context.Background(), user, []string{api.PermUsePools})
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[user] = info.Token
	}
	e.write("echo.nomad.hcl", testutil.EchoJob{Bin: echo, Service: "script-" + name}.HCL())
	return e
}

// startServer runs a controller against the cluster and returns it with
// its API address.
func (e *env) startServer(name string) (*testutil.Process, string) {
	e.t.Helper()
	addr, p := testutil.StartServer(e.t, e.bin, e.cluster.Env(), "-config", filepath.Join(e.dir, "server.hcl"), "-name", name, "-log-level", "debug")
	return p, addr
}

func (e *env) write(name, content string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// run executes the CLI with token and returns its exit code, stdout and
// stderr.
func (e *env) run(token string, args ...string) (int, string, string) {
	e.t.Helper()
	return testutil.RunCommand(e.t, e.bin, []string{"TIDEPOOL_ADDR=http://" + e.addr, "TIDEPOOL_TOKEN=" + token}, "", args...)
}

func (e *env) ok(token string, args ...string) string {
	e.t.Helper()
	code, out, errOut := e.run(token, args...)
	if code != 0 {
		e.t.Fatalf("tidepool %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (e *env) status(name string) *api.PoolInfo {
	e.t.Helper()
	var info api.PoolInfo
	if err := json.Unmarshal([]byte(e.ok(e.tokens["alice"], "pool", "status", "-json", name)), &info); err != nil {
		e.t.Fatalf("status -json does not parse: %v", err)
	}
	return &info
}

// waitAlive waits until the pool has n alive members and no others.
func (e *env) waitAlive(name string, n int, within time.Duration) {
	e.t.Helper()
	testutil.Eventually(e.t, within, 200*time.Millisecond, fmt.Sprintf("%s: %d members alive", name, n), func(context.Context) error {
		info := e.status(name)
		if info.AliveMembers != n || len(info.Members) != n {
			return fmt.Errorf("%d alive of %d members, desired %d", info.AliveMembers, len(info.Members), info.DesiredCount)
		}
		return nil
	})
}

// poolSpec is a one-member echo pool, with scaler inserted in its block.
func poolSpec(name, scaler string) string {
	return fmt.Sprintf(`pool %q {
  template      = "echo.nomad.hcl"
  desired_count = 1

  port "http" {
    number = 8080
    public = true
  }

  drain {
    timeout      = "1s"
    grace_period = "1s"
  }
%s}
`, name, scaler)
}

// TestScriptRun_ScalesWithTheCallersToken: `tidepool script run` raises a
// pool's size and the new member comes up; an invalid size exits 1, names
// the line and changes nothing; another user's script cannot see the pool.
func TestScriptRun_ScalesWithTheCallersToken(t *testing.T) {
	e := newEnv(t, "scriptrun")
	alice := e.tokens["alice"]
	e.ok(alice, "pool", "apply", e.write("web.pool.hcl", poolSpec("web", "")))
	e.waitAlive("web", 1, time.Minute)

	grow := e.write("grow.star", `info = pool.get("web")
print("web has", info["desired_count"], "members, rps", info["utilization"]["combined_rps"])
info = pool.set_size("web", info["desired_count"] + 1)
print("web now", info["desired_count"])
`)
	started := time.Now()
	code, out, errOut := e.run(alice, "script", "run", grow)
	if code != 0 || !strings.Contains(out, "web has 1 members, rps 0.0") || !strings.Contains(out, "web now 2") {
		t.Fatalf("script run: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	e.waitAlive("web", 2, time.Minute)
	t.Logf("script run → 2 members alive after %s", time.Since(started).Round(time.Millisecond))

	before := e.status("web")
	bad := e.write("bad.star", `info = pool.get("web")
n = info["desired_count"] - 5
pool.set_size("web", n)
print("not reached")
`)
	code, out, errOut = e.run(alice, "script", "run", bad)
	if code != 1 || !strings.HasPrefix(errOut, bad+":3:") || !strings.Contains(errOut, "desired_count: must not be negative") || strings.Contains(out, "not reached") {
		t.Fatalf("invalid size: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	after := e.status("web")
	if after.DesiredCount != 2 || after.Generation != before.Generation {
		t.Fatalf("an invalid size changed the pool: desired %d, generation %d → %d", after.DesiredCount, before.Generation, after.Generation)
	}

	// Bob's token cannot see alice's pool, so neither can his script.
	code, _, errOut = e.run(e.tokens["bob"], "script", "run", grow)
	if code != 1 || !strings.Contains(errOut, grow+":1:") || !strings.Contains(errOut, `pool "web" not found`) {
		t.Fatalf("bob's script: exit %d, stderr %s", code, errOut)
	}
	if n := e.status("web").DesiredCount; n != 2 {
		t.Fatalf("bob's script changed alice's pool: desired %d", n)
	}
}

// TestScheduledScaler_ScalesAndSurvivesALoop: a pool's scheduled scaler
// brings it to 2 alive members within two intervals; a script that loops
// forever is stopped by the step limit, recorded in PoolInfo.scaler, and
// its pool keeps working; a stopped pool's scaler does not run.
func TestScheduledScaler_ScalesAndSurvivesALoop(t *testing.T) {
	e := newEnv(t, "scheduled")
	alice := e.tokens["alice"]
	const interval = 5 * time.Second

	e.write("to2.star", `info = pool.get("sched")
if info["desired_count"] != 2:
    pool.set_size("sched", 2)
    print("sched: %d -> 2" % info["desired_count"])
else:
    print("sched: already 2")
`)
	spec := e.write("sched.pool.hcl", poolSpec("sched", `
  scaler {
    script   = "to2.star"
    interval = "5s"
  }
`))
	applied := time.Now()
	e.ok(alice, "pool", "apply", "-detach", spec)
	e.waitAlive("sched", 2, 2*interval)
	t.Logf("scheduled scaler: 2 members alive %s after apply (interval %s)", time.Since(applied).Round(time.Millisecond), interval)
	sc := e.status("sched").Scaler
	if sc == nil || sc.Script != "to2.star" || sc.Outcome != "ok" || sc.Runs < 1 || sc.LastRun == nil || len(sc.Output) == 0 {
		t.Fatalf("scaler status %+v", sc)
	}

	// A script that does not parse is refused at apply, with its line.
	e.write("broken.star", "info = pool.get(\"sched\")\nif info[\"desired_count\"] >\n    pass\n")
	code, _, errOut := e.run(alice, "pool", "apply", "-detach", e.write("broken.pool.hcl", poolSpec("broken", `
  scaler {
    script = "broken.star"
  }
`)))
	if code != 1 || !strings.Contains(errOut, "broken.star:2:") {
		t.Fatalf("apply of a broken script: exit %d, stderr %s", code, errOut)
	}
	if code, _, _ := e.run(alice, "pool", "status", "broken"); code != 1 {
		t.Fatal("a pool with a broken script was stored")
	}

	// An endless loop is stopped by the step limit, every interval.
	e.write("loop.star", "print(\"looping\")\nfor i in range(1 << 60):\n    pass\n")
	e.ok(alice, "pool", "apply", e.write("loop.pool.hcl", poolSpec("loop", `
  scaler {
    script   = "loop.star"
    interval = "2s"
  }
`)))
	testutil.Eventually(t, 30*time.Second, 250*time.Millisecond, "the loop is stopped and recorded twice", func(context.Context) error {
		sc := e.status("loop").Scaler
		if sc == nil || sc.Outcome != "step_limit" || sc.Runs < 2 {
			return fmt.Errorf("scaler %+v", sc)
		}
		if sc.ErrorLine != 2 || !strings.Contains(sc.Error, "loop.star:2:") || !strings.Contains(sc.Error, "step limit of 100000 exceeded") || len(sc.Output) != 1 || sc.Output[0] != "looping" {
			return fmt.Errorf("recorded %+v", sc)
		}
		return nil
	})
	if out := e.ok(alice, "pool", "status", "loop"); !strings.Contains(out, "step_limit") || !strings.Contains(out, "loop.star:2:") {
		t.Fatalf("status does not show the stopped loop:\n%s", out)
	}
	// The pool and the controller keep working.
	e.ok(alice, "pool", "set-size", "loop", "2")
	e.waitAlive("loop", 2, time.Minute)
	if metrics := e.get("/metrics"); !strings.Contains(metrics, `tidepool_scaler_runs_total{outcome="step_limit"}`) || !strings.Contains(metrics, `tidepool_scaler_runs_total{outcome="ok"}`) {
		t.Fatalf("metrics lack scaler runs:\n%s", metrics)
	}

	// A stopped pool's scaler does not run.
	e.ok(alice, "pool", "stop", "loop")
	stopped := time.Now()
	testutil.Never(t, 3*2*time.Second, 250*time.Millisecond, "a stopped pool's scaler runs", func(context.Context) error {
		if sc := e.status("loop").Scaler; sc.LastRun.After(stopped) {
			return fmt.Errorf("it ran at %s, after the stop at %s", sc.LastRun, stopped)
		}
		return nil
	})
}

func (e *env) get(path string) string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.addr + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestScheduledScaler_OnceAcrossAFailover: the standby that takes over
// reads the last run from KV and does not run the script again before one
// interval has passed since it.
func TestScheduledScaler_OnceAcrossAFailover(t *testing.T) {
	e := newEnv(t, "failover")
	alice := e.tokens["alice"]
	_, standby := e.startServer("ctrl-b") // ctrl-a leads already
	const interval = 30 * time.Second
	e.write("tick.star", "print(\"tick\")\n")
	e.ok(alice, "pool", "apply", "-detach", e.write("tick.pool.hcl", poolSpec("tick", `
  scaler {
    script   = "tick.star"
    interval = "30s"
  }
`)))
	var first time.Time
	testutil.Eventually(t, 20*time.Second, 200*time.Millisecond, "the first run", func(context.Context) error {
		sc := e.status("tick").Scaler
		if sc == nil || sc.Runs != 1 || sc.Outcome != "ok" {
			return fmt.Errorf("scaler %+v", sc)
		}
		first = *sc.LastRun
		return nil
	})
	if err := e.server.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.addr = standby
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "the standby leads", func(context.Context) error {
		var h api.Health
		if err := json.Unmarshal([]byte(e.get("/v1/health")), &h); err != nil {
			return fmt.Errorf("health: %w", err)
		}
		if !h.Leader {
			return fmt.Errorf("health %+v", h)
		}
		return nil
	})
	tookOver := time.Now()
	if !tookOver.Before(first.Add(interval)) {
		t.Fatalf("the standby took over %s after the first run: too late to tell", tookOver.Sub(first))
	}
	testutil.Eventually(t, interval+15*time.Second, 250*time.Millisecond, "the second run, by the new leader", func(context.Context) error {
		sc := e.status("tick").Scaler
		if sc.Runs < 2 {
			return fmt.Errorf("%d runs", sc.Runs)
		}
		if sc.Runs > 2 || sc.LastRun.Before(first.Add(interval)) {
			t.Fatalf("the new leader ran early: run %d at %s, %s after the first (interval %s)", sc.Runs, sc.LastRun, sc.LastRun.Sub(first), interval)
		}
		t.Logf("new leader %s after the first run; second run %s after it (interval %s)", tookOver.Sub(first).Round(time.Millisecond), sc.LastRun.Sub(first).Round(time.Millisecond), interval)
		return nil
	})
}
