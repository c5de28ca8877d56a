package leader

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/internal/devcluster"
)

type candidate struct {
	e       *Elector
	cancel  context.CancelFunc
	done    chan struct{}
	elected chan context.Context
}

func start(t *testing.T, client *api.Client, name string, lockDelay time.Duration) *candidate {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{
		e:       New(client, Config{Key: "test/leader", Name: name, SessionTTL: 10 * time.Second, LockDelay: lockDelay, RetryInterval: 100 * time.Millisecond}, hclog.NewNullLogger()),
		cancel:  cancel,
		done:    make(chan struct{}),
		elected: make(chan context.Context, 10),
	}
	go func() {
		defer close(c.done)
		_ = c.e.Run(ctx, func(ctx context.Context) error {
			c.elected <- ctx
			<-ctx.Done()
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func waitElected(t *testing.T, c *candidate, within time.Duration) context.Context {
	t.Helper()
	select {
	case ctx := <-c.elected:
		return ctx
	case <-time.After(within):
		t.Fatalf("not elected within %s", within)
		return nil
	}
}

func TestElector_OneLeaderAndCleanHandover(t *testing.T) {
	cl := devcluster.New(t, devcluster.Config{Name: "leader", ConsulOnly: true})
	a := start(t, cl.Consul, "a", 15*time.Second)
	leadA := waitElected(t, a, 10*time.Second)
	b := start(t, cl.Consul, "b", 15*time.Second)

	select {
	case <-b.elected:
		t.Fatal("two leaders at once")
	case <-time.After(time.Second):
	}
	if !a.e.IsLeader() || b.e.IsLeader() {
		t.Fatalf("IsLeader: a=%v b=%v", a.e.IsLeader(), b.e.IsLeader())
	}

	// A clean stop releases the lock: b takes over without the lock-delay.
	started := time.Now()
	a.cancel()
	<-a.done
	if leadA.Err() == nil {
		t.Fatal("a's leadership context still live after it stopped")
	}
	waitElected(t, b, 5*time.Second)
	if took := time.Since(started); took > 5*time.Second {
		t.Fatalf("handover took %s", took)
	}
}

func TestElector_LostSessionCancelsLeadership(t *testing.T) {
	cl := devcluster.New(t, devcluster.Config{Name: "leader", ConsulOnly: true})
	a := start(t, cl.Consul, "a", time.Second)
	leadA := waitElected(t, a, 10*time.Second)
	b := start(t, cl.Consul, "b", time.Second)

	// Destroying a's session is what TTL expiry does to a dead leader.
	pair, _, err := cl.Consul.KV().Get("test/leader", nil)
	if err != nil || pair == nil || pair.Session == "" {
		t.Fatalf("lock key: %+v, %v", pair, err)
	}
	if _, err := cl.Consul.Session().Destroy(pair.Session, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-leadA.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a kept leading after its session was destroyed")
	}
	a.cancel() // a would contend again; let b show it takes over
	<-a.done
	leadB := waitElected(t, b, 10*time.Second)
	if leadB.Err() != nil {
		t.Fatal("b elected with a dead context")
	}
}
