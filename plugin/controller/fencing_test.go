package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/leader"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/store"
)

const fenceTemplate = `job "t" {
  group "g" {
    network {
      port "http" {}
    }
    service {
      name = "fence-echo"
      port = "http"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
    }
  }
}`

// frozenStore freezes a leader just before its first member write, as a
// SIGSTOP there would: while it is frozen, takeOver runs. The write then
// goes out as it was issued — a request already on the wire is not
// recalled when the leader later notices it lost the lock — so only the
// fence it carries can stop it.
type frozenStore struct {
	*store.Store
	takeOver func()
	frozen   bool
}

func (f *frozenStore) PutMembers(ctx context.Context, ms []*pool.Member) error {
	if !f.frozen {
		f.frozen = true
		f.takeOver()
	}
	return f.Store.PutMembers(context.WithoutCancel(ctx), ms)
}

// TestReconcile_ALeaderFrozenMidPassWritesNothing runs a reconcile pass on
// real Consul and Nomad that is frozen between reading the pool and writing
// its plan; meanwhile the lock passes to another session, whose leader
// creates the member the pool lacks. The thawed pass plans the same member
// under another id; its write must be refused, leaving one member, not two.
func TestReconcile_ALeaderFrozenMidPassWritesNothing(t *testing.T) {
	c := devcluster.New(t, devcluster.Config{Name: "ctrl-fence"})
	s := store.New(c.Consul, "tp-ctrl-fence")
	ctx := context.Background()
	p := &pool.Pool{ID: "p-fence", Owner: "alice", TemplateGeneration: 1, Spec: pool.Spec{
		Name: "web", Template: fenceTemplate, DesiredCount: 1, Active: true,
		Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP}},
	}}
	if err := s.CreatePool(ctx, p); err != nil {
		t.Fatal(err)
	}
	driver := nomadjob.NewDriver(c.Nomad.Jobs(), c.Nomad.Allocations(), c.Consul.Health(), nomadjob.Policy{AllowedDrivers: []string{"raw_exec"}}, s.Prefix())

	lock := s.Layout().LeaderKey()
	session := func() string {
		id, _, err := c.Consul.Session().Create(&consulapi.SessionEntry{TTL: "10s", LockDelay: time.Millisecond, Behavior: consulapi.SessionBehaviorRelease}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	acquire := func(id string) context.Context {
		if ok, _, err := c.Consul.KV().Acquire(&consulapi.KVPair{Key: lock, Session: id}, nil); err != nil || !ok {
			t.Fatalf("acquire the lock: %v %v", ok, err)
		}
		return leader.WithFence(ctx, leader.Fence{Key: lock, Session: id})
	}
	oldSession := session()
	oldLeader := acquire(oldSession)

	var newMembers []*pool.Member
	frozen := &frozenStore{Store: s, takeOver: func() {
		// The old session expires (Consul destroys it; the lock is
		// released) and the standby leads and reconciles the pool.
		if _, err := c.Consul.Session().Destroy(oldSession, nil); err != nil {
			t.Fatal(err)
		}
		newLeader := acquire(session())
		b := New(s, driver, nil, Config{NewMemberID: func() string { return "m-new-leader" }}, hclog.NewNullLogger())
		if _, err := b.Reconcile(newLeader, p.ID); err != nil {
			t.Fatalf("the new leader's pass: %v", err)
		}
		var err error
		if newMembers, err = s.ListMembers(ctx, p.ID); err != nil || len(newMembers) != 1 {
			t.Fatalf("after the new leader's pass: %d members, %v", len(newMembers), err)
		}
	}}
	a := New(frozen, driver, nil, Config{NewMemberID: func() string { return "m-old-leader" }}, hclog.NewNullLogger())
	passCtx, cancel := context.WithTimeout(oldLeader, time.Minute)
	defer cancel()
	if _, err := a.Reconcile(passCtx, p.ID); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the thawed pass: %v, want its write refused (store.ErrConflict)", err)
	}
	if !frozen.frozen {
		t.Fatal("the pass never wrote a member: nothing was tested")
	}
	got, err := s.ListMembers(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "m-new-leader" {
		ids := []string{}
		for _, m := range got {
			ids = append(ids, m.ID)
		}
		t.Fatalf("members %v, want only the new leader's m-new-leader", ids)
	}
	job, _, err := c.Nomad.Jobs().Info(p.JobID(), nil)
	if err != nil {
		t.Fatalf("the new leader's job: %v", err)
	}
	if len(job.TaskGroups) != 1 || *job.TaskGroups[0].Name != "m-new-leader" {
		t.Fatalf("job groups %d (first %q), want only m-new-leader", len(job.TaskGroups), *job.TaskGroups[0].Name)
	}
}
