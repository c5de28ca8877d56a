package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
)

// flakyAgent fails the first failures registrations, then records what
// happens, in order.
type flakyAgent struct {
	mu       sync.Mutex
	failures int
	events   []string
}

func (a *flakyAgent) ServiceRegister(*consulapi.AgentServiceRegistration) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failures > 0 {
		a.failures--
		return errors.New("consul: connection refused")
	}
	a.events = append(a.events, "register")
	return nil
}

func (a *flakyAgent) ServiceDeregister(string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, "deregister")
	return nil
}

func (a *flakyAgent) log() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.events...)
}

func healthOf(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/health")
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func TestRegistration_RetriedAndNotReadyUntilDone_DeregisteredLast(t *testing.T) {
	upstream := newGatedUpstream(t, 500*time.Millisecond)
	cfg := Config{Name: "reg", Register: true, DeregisterDelay: 300 * time.Millisecond, ShutdownTimeout: 5 * time.Second}
	g := newGatewayWith(t, cfg, autoscaledSnapshot(0, time.Second, upstream.Listener.Addr().String()))
	agent := &flakyAgent{failures: 2}
	g.agent = agent
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln) }()

	sawNotReady := false
	for deadline := time.Now().Add(10 * time.Second); len(agent.log()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never registered after two failures")
		}
		if healthOf(t, addr) == http.StatusServiceUnavailable {
			sawNotReady = true
		}
	}
	if !sawNotReady {
		t.Error("the gateway reported ready before it was registered")
	}
	testEventually(t, func() bool { return healthOf(t, addr) == http.StatusOK })

	// Shutdown with a request in flight: the check fails first, the request
	// finishes, the gateway deregisters last.
	inflight := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Host = "alice--web--8080.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			inflight <- 0
			return
		}
		_ = resp.Body.Close()
		inflight <- resp.StatusCode
	}()
	testEventually(t, func() bool { return upstream.now.Load() == 1 })
	stop()
	testEventually(t, func() bool { return healthOf(t, addr) == http.StatusServiceUnavailable })
	if got := agent.log(); len(got) != 1 {
		t.Fatalf("events %v while failing the check: deregistered too early", got)
	}
	if code := <-inflight; code != http.StatusOK {
		t.Fatalf("in-flight request across shutdown: %d", code)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if got := agent.log(); len(got) != 2 || got[1] != "deregister" {
		t.Fatalf("events %v, want register then deregister last", got)
	}
}
