package testutil

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/tidepool-run/tidepool/plugin/api/client"
)

// StartServer runs `tidepool server` (bin) on a free loopback address with
// env, allowing raw_exec (the echo member's driver) and short leader
// timings unless args say otherwise, and waits until it answers.
func StartServer(t testing.TB, bin string, env []string, args ...string) (addr string, p *Process) {
	t.Helper()
	addr = FreeAddr(t)
	base := []string{"server", "-http-addr", addr, "-allowed-drivers", "raw_exec", "-session-ttl", "10s", "-lock-delay", "1s"}
	p = StartProcess(t, "server", bin, env, append(base, args...)...)
	WaitHealthy(t, addr)
	return addr, p
}

// StartGateway runs `tidepool gateway` (bin) on a free loopback address
// and waits until it answers.
func StartGateway(t testing.TB, bin string, env []string, args ...string) (addr string, p *Process) {
	t.Helper()
	addr = FreeAddr(t)
	p = StartProcess(t, "gateway", bin, env, append([]string{"gateway", "-http-addr", addr}, args...)...)
	WaitHealthy(t, addr)
	return addr, p
}

// Bootstrap issues the first admin token of the controller at addr and
// returns it with a client that uses it.
func Bootstrap(t testing.TB, addr string) (string, *client.Client) {
	t.Helper()
	anon, err := client.New(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	boot, err := anon.Bootstrap(context.Background())
	if err != nil {
		t.Fatalf("bootstrap a token: %v", err)
	}
	admin, err := client.New(addr, boot.Token)
	if err != nil {
		t.Fatal(err)
	}
	return boot.Token, admin
}

// Passing maps each passing instance of service (with every tag in tags)
// to its address, keyed by the tidepool_member meta of Tidepool's members
// (the "member" meta of hand-made ones), else by service id.
func Passing(ctx context.Context, c *consulapi.Client, service string, tags ...string) (map[string]string, error) {
	entries, _, err := c.Health().ServiceMultipleTags(service, tags, true, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("health of %s: %w", service, err)
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		key := e.Service.ID
		for _, meta := range []string{"tidepool_member", "member"} {
			if m := e.Service.Meta[meta]; m != "" {
				key = m
				break
			}
		}
		out[key] = net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))
	}
	return out, nil
}
