// Package cli tests the tidepool CLI end to end: the real binary against a
// real controller, Consul and Nomad, the way a user works.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

type cliEnv struct {
	t     *testing.T
	bin   string
	addr  string
	token string
	dir   string
}

// run executes the CLI and returns its exit code, stdout and stderr.
func (e *cliEnv) run(stdin string, args ...string) (int, string, string) {
	e.t.Helper()
	return testutil.RunCommand(e.t, e.bin, []string{"TIDEPOOL_ADDR=http://" + e.addr, "TIDEPOOL_TOKEN=" + e.token}, stdin, args...)
}

// ok runs the CLI and fails the test unless it exits 0.
func (e *cliEnv) ok(args ...string) string {
	e.t.Helper()
	code, out, errOut := e.run("", args...)
	if code != 0 {
		e.t.Fatalf("tidepool %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (e *cliEnv) status(name string) *api.PoolInfo { //nolint:unparam // reads better with the name
	e.t.Helper()
	var info api.PoolInfo
	if err := json.Unmarshal([]byte(e.ok("pool", "status", "-json", name)), &info); err != nil {
		e.t.Fatalf("status -json does not parse: %v", err)
	}
	return &info
}

func (e *cliEnv) write(name, content string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	e := &cliEnv{t: t, bin: testutil.BuildBinary(t, "./cmd/tidepool"), dir: t.TempDir()}
	echo := testutil.BuildBinary(t, "./cmd/tidepool-echo")
	c := devcluster.New(t, devcluster.Config{Name: "cli"})
	testutil.HoldDrains(t, c.Consul) // so status can show each drain phase
	e.addr, _ = testutil.StartServer(t, e.bin, c.Env())

	var boot api.TokenInfo
	if err := json.Unmarshal([]byte(e.ok("token", "bootstrap", "-json")), &boot); err != nil || boot.Token == "" {
		t.Fatalf("bootstrap: %v %+v", err, boot)
	}
	admin := boot.Token
	e.token = admin
	var alice api.TokenInfo
	if err := json.Unmarshal([]byte(e.ok("token", "create", "-user", "alice", "-permission", "use-pools", "-json")), &alice); err != nil {
		t.Fatal(err)
	}
	e.token = alice.Token

	e.write("web.nomad.hcl", testutil.EchoJob{Bin: echo, Service: "cli-web"}.HCL())
	return e
}

const webSpec = `pool "web" {
  template      = "web.nomad.hcl"
  desired_count = 3

  port "http" {
    number = 8080
    public = true
  }

  drain {
    timeout      = "2s"
    grace_period = "3s"
  }
}
`

func TestCLI_PoolLifecycle(t *testing.T) {
	e := newCLIEnv(t)
	spec := e.write("web.pool.hcl", webSpec)

	if out := e.ok("pool", "plan", spec); !strings.Contains(out, `+ create pool "web" with 3 members`) {
		t.Fatalf("plan before create: %s", out)
	}
	started := time.Now()
	out := e.ok("pool", "apply", spec)
	if !strings.Contains(out, `Created pool "web"`) || !strings.Contains(out, `3/3 members alive`) {
		t.Fatalf("apply output:\n%s", out)
	}
	t.Logf("pool apply returned with 3 members alive after %s", time.Since(started).Round(time.Millisecond))
	if out := e.ok("pool", "apply", spec, "-detach"); !strings.Contains(out, "up to date") {
		t.Fatalf("re-apply of the same spec: %s", out)
	}

	var list api.PoolList
	if err := json.Unmarshal([]byte(e.ok("pool", "list", "-json")), &list); err != nil || list.Count != 1 {
		t.Fatalf("list -json: %v, %+v", err, list)
	}
	if out := e.ok("pool", "list"); !strings.Contains(out, "web") || !strings.Contains(out, "3/3") {
		t.Fatalf("list:\n%s", out)
	}
	if out := e.ok("pool", "status", "web"); !strings.Contains(out, "alive") || strings.Count(out, "alive") < 3 {
		t.Fatalf("status:\n%s", out)
	}
	info := e.status("web")
	if info.AliveMembers != 3 || len(info.Members) != 3 || info.Members[0].Address == "" || info.Members[0].AllocID == "" {
		t.Fatalf("status -json: %+v", info)
	}
	// Memory comes from Nomad's allocation stats: a running echo uses some.
	testutil.Eventually(t, 20*time.Second, 500*time.Millisecond, "memory utilization from Nomad", func(context.Context) error {
		if u := e.status("web").Utilization; u.AvgMemoryPercent <= 0 {
			return fmt.Errorf("avg_memory_percent %v", u.AvgMemoryPercent)
		}
		return nil
	})

	// set-size 3 → 1: status shows the excess members draining, stopped,
	// deleting, then gone.
	var mu sync.Mutex
	seen := map[pool.MemberState]bool{}
	stopWatching := testutil.Repeat(1, func() {
		code, out, _ := e.run("", "pool", "status", "-json", "web")
		var info api.PoolInfo
		if code != 0 || json.Unmarshal([]byte(out), &info) != nil {
			return
		}
		mu.Lock()
		for _, m := range info.Members {
			seen[m.State] = true
		}
		mu.Unlock()
	})
	e.ok("pool", "set-size", "web", "1")
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "scale-down to 1 seen through status", func(context.Context) error {
		if n := len(e.status("web").Members); n != 1 {
			return fmt.Errorf("%d members", n)
		}
		return nil
	})
	stopWatching()
	for _, s := range []pool.MemberState{pool.MemberDraining, pool.MemberStopped, pool.MemberDeleting} {
		if !seen[s] {
			t.Errorf("status never showed a member %s (saw %v)", s, seen)
		}
	}

	code, _, errOut := e.run("", "pool", "delete", "-y", "web")
	if code != 1 || !strings.Contains(errOut, "stop the pool before deleting it") {
		t.Fatalf("delete of an active pool: exit %d, %s", code, errOut)
	}

	e.ok("pool", "stop", "web")
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, "stopped", func(context.Context) error {
		info := e.status("web")
		for _, m := range info.Members {
			if m.State != pool.MemberStopped {
				return fmt.Errorf("%s is %s", m.ID, m.State)
			}
		}
		if info.State != pool.StateStopped {
			return fmt.Errorf("pool %s", info.State)
		}
		return nil
	})
	e.ok("pool", "start", "web")
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, "started", func(context.Context) error {
		if info := e.status("web"); info.AliveMembers != 1 {
			return fmt.Errorf("%d alive", info.AliveMembers)
		}
		return nil
	})

	e.ok("pool", "stop", "web")
	if code, _, _ := e.run("n\n", "pool", "delete", "web"); code != 1 {
		t.Fatalf("delete answered 'n': exit %d", code)
	}
	e.status("web") // still there
	e.ok("pool", "delete", "-y", "web")
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, "deleted", func(context.Context) error {
		code, _, errOut := e.run("", "pool", "status", "web")
		if code != 1 || !strings.Contains(errOut, "not found") {
			return fmt.Errorf("status after delete: exit %d %s", code, errOut)
		}
		return nil
	})
}

func TestCLI_BadInputChangesNothing(t *testing.T) {
	e := newCLIEnv(t)
	bad := e.write("bad.pool.hcl", strings.Replace(webSpec, "desired_count = 3", "desired_count = -3", 1))
	code, _, errOut := e.run("", "pool", "apply", bad)
	if code != 1 || !strings.Contains(errOut, bad+":3:3: desired_count: must not be negative") {
		t.Fatalf("malformed spec: exit %d, stderr %q", code, errOut)
	}
	broken := e.write("broken.pool.hcl", "pool \"web\" {\n  template = \n}\n")
	code, _, errOut = e.run("", "pool", "apply", broken)
	if code != 1 || !strings.Contains(errOut, broken+":2:") {
		t.Fatalf("syntax error: exit %d, stderr %q", code, errOut)
	}
	// The server finds the template unusable: the error points at the
	// template attribute of the spec file.
	e.write("nogroup.nomad.hcl", `job "x" {}`)
	noGroup := e.write("nogroup.pool.hcl", strings.Replace(webSpec, "web.nomad.hcl", "nogroup.nomad.hcl", 1))
	code, _, errOut = e.run("", "pool", "apply", noGroup)
	if code != 1 || !strings.Contains(errOut, noGroup+":2:3: template:") {
		t.Fatalf("bad template: exit %d, stderr %q", code, errOut)
	}
	var list api.PoolList
	if err := json.Unmarshal([]byte(e.ok("pool", "list", "-json")), &list); err != nil || list.Count != 0 {
		t.Fatalf("something was stored: %+v", list)
	}
	if code, _, _ := e.run("", "pool", "set-size", "web", "many"); code != 2 {
		t.Fatalf("set-size with a word: exit %d, want 2", code)
	}
	if code, _, _ := e.run("", "pool", "status"); code != 2 {
		t.Fatalf("status without a pool: exit %d, want 2", code)
	}
	e.token = "tp_bogus"
	if code, _, errOut := e.run("", "pool", "list"); code != 1 || !strings.Contains(errOut, "invalid token") {
		t.Fatalf("bogus token: exit %d, %s", code, errOut)
	}
}

func TestCLI_TLS(t *testing.T) {
	bin := testutil.BuildBinary(t, "./cmd/tidepool")
	c := devcluster.New(t, devcluster.Config{Name: "cli-tls"})
	cert, key := testutil.SelfSignedTLS(t)
	addr, _ := testutil.StartServer(t, bin, c.Env(), "-tls-cert", cert, "-tls-key", key)
	e := &cliEnv{t: t, bin: bin, addr: addr, dir: t.TempDir()}
	https := "https://" + addr

	if code, _, errOut := e.run("", "token", "bootstrap", "-address", https); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Fatalf("without the CA: exit %d, %s; want a certificate error", code, errOut)
	}
	var boot api.TokenInfo
	if err := json.Unmarshal([]byte(e.ok("token", "bootstrap", "-address", https, "-ca-cert", cert, "-json")), &boot); err != nil || boot.Token == "" {
		t.Fatalf("bootstrap over TLS: %v %+v", err, boot)
	}
	if code, out, errOut := testutil.RunCommand(t, bin, []string{"TIDEPOOL_TOKEN=" + boot.Token, "TIDEPOOL_CACERT=" + cert}, "", "token", "self", "-address", https, "-json"); code != 0 || !strings.Contains(out, `"user": "admin"`) {
		t.Fatalf("TIDEPOOL_CACERT: exit %d %s %s", code, out, errOut)
	}

	// A gateway serving TLS registers as https, and answers over it.
	gw, _ := testutil.StartGateway(t, bin, c.Env(), "-tls-cert", cert, "-tls-key", key, "-name", "gw-tls")
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "the gateway ready over TLS", func(context.Context) error {
		resp, err := hc.Get("https://" + gw + "/v1/health")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health %d", resp.StatusCode)
		}
		return nil
	})
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, "the gateway passing its https check in Consul", func(context.Context) error {
		entries, _, err := c.Consul.Health().Service(pool.GatewayService, "", true, nil)
		if err != nil {
			return err
		}
		if len(entries) != 1 || entries[0].Service.Meta[pool.GatewaySchemeMeta] != "https" {
			return fmt.Errorf("passing gateways %d", len(entries))
		}
		return nil
	})
}
