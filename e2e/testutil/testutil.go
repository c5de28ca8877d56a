// Package testutil holds the helpers every e2e package needs: building the
// repo's binaries and waiting for a condition against real agents.
package testutil

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// BuildBinary compiles the main package at pkg (e.g.
// "./cmd/tidepool-echo", relative to the module root) into a temporary
// directory and returns the binary's path. The Go build cache makes repeat
// builds cheap.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	root := ModuleRoot(t)
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// ModuleRoot is the directory holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == "/dev/null" {
		t.Fatalf("not inside the module")
	}
	return filepath.Dir(gomod)
}

// Eventually calls cond every interval until it returns nil, failing the test
// with cond's last error when timeout passes.
func Eventually(t testing.TB, timeout, interval time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		if last = cond(ctx); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s: %v", what, timeout, last)
		case <-tick.C:
		}
	}
}

// Never calls check every interval for the whole of within, failing the
// test as soon as check returns an error: the way to say "nothing happens
// in this window" without a bare sleep.
func Never(t testing.TB, within, interval time.Duration, what string, check func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := check(ctx); err != nil && ctx.Err() == nil {
			t.Fatalf("%s: %v", what, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// WaitHealthy waits until GET http://addr/v1/health answers.
func WaitHealthy(t testing.TB, addr string) {
	t.Helper()
	Eventually(t, 15*time.Second, 50*time.Millisecond, addr+" health", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/health", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		return nil
	})
}

// GetVia sends GET path to a gateway for host, and returns nil only for a
// 200 answer.
func GetVia(ctx context.Context, hc *http.Client, gateway, host, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+gateway+path, nil)
	if err != nil {
		return err
	}
	req.Host = host
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status + ": " + string(b))
	}
	return nil
}

// HoldDrains registers a tidepool-gateway in Consul that nothing answers
// for. With no gateway at all nothing can route to a member and drains end
// at once; with a gateway the leader cannot read, drains wait for
// drain.timeout, as they must for any gateway it cannot vouch for. Tests
// that follow a drain through its phases use it.
func HoldDrains(t testing.TB, c *consulapi.Client) {
	t.Helper()
	if err := c.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{
		ID: "unreadable-gateway", Name: pool.GatewayService, Address: "127.0.0.1", Port: 1,
	}); err != nil {
		t.Fatalf("register an unreadable gateway: %v", err)
	}
}

// Repeat calls fn over and over in workers goroutines until the returned
// stop is called; stop waits for every worker to return. Load loops in
// tests are bounded by the test that stops them.
func Repeat(workers int, fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				fn()
			}
		})
	}
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
