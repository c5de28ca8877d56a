package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/leader"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	c := devcluster.New(t, devcluster.Config{Name: "store", ConsulOnly: true})
	return New(c.Consul, "test-"+t.Name())
}

func newPool(id, owner, name string) *pool.Pool {
	return &pool.Pool{ID: id, Owner: owner, Spec: pool.Spec{Name: name, Active: true, DesiredCount: 0}, TemplateGeneration: 1}
}

func TestStore(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()

	t.Run("CreatePool claims the name once per owner", func(t *testing.T) {
		p := newPool("p-1", "alice", "web")
		if err := s.CreatePool(ctx, p); err != nil {
			t.Fatal(err)
		}
		if p.Generation != 1 || p.ModifyIndex == 0 {
			t.Fatalf("generation %d, index %d", p.Generation, p.ModifyIndex)
		}
		err := s.CreatePool(ctx, newPool("p-2", "alice", "web"))
		if !errors.Is(err, ErrNameTaken) {
			t.Fatalf("second create: %v, want ErrNameTaken", err)
		}
		if _, err := s.GetPool(ctx, "p-2"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the refused pool was stored: %v", err)
		}
		if err := s.CreatePool(ctx, newPool("p-3", "bob", "web")); err != nil {
			t.Fatalf("another owner's pool of the same name: %v", err)
		}
		got, err := s.LookupPool(ctx, "alice", "web")
		if err != nil || got.ID != "p-1" {
			t.Fatalf("LookupPool = %v, %v", got, err)
		}
	})

	t.Run("UpdatePool refuses a stale write", func(t *testing.T) {
		a, _ := s.GetPool(ctx, "p-1")
		b, _ := s.GetPool(ctx, "p-1")
		a.Spec.DesiredCount = 5
		if err := s.UpdatePool(ctx, a); err != nil {
			t.Fatal(err)
		}
		b.Spec.DesiredCount = 7
		if err := s.UpdatePool(ctx, b); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale write: %v, want ErrConflict", err)
		}
		got, _ := s.GetPool(ctx, "p-1")
		if got.Spec.DesiredCount != 5 || got.Generation != a.Generation {
			t.Fatalf("stored count %d gen %d", got.Spec.DesiredCount, got.Generation)
		}
	})

	t.Run("members are written, checked and deleted", func(t *testing.T) {
		m := &pool.Member{ID: "m-a", PoolID: "p-1", Generation: 1, Phase: pool.PhaseRunning}
		if err := s.PutMembers(ctx, []*pool.Member{m}); err != nil {
			t.Fatal(err)
		}
		stale := *m
		m.Phase = pool.PhaseDraining
		if err := s.PutMembers(ctx, []*pool.Member{m}); err != nil {
			t.Fatal(err)
		}
		stale.Phase = pool.PhaseStopped
		if err := s.PutMembers(ctx, []*pool.Member{&stale}); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale member write: %v", err)
		}
		again := &pool.Member{ID: "m-a", PoolID: "p-1"}
		if err := s.PutMembers(ctx, []*pool.Member{again}); !errors.Is(err, ErrConflict) {
			t.Fatalf("creating an existing member: %v", err)
		}
		ms, err := s.ListMembers(ctx, "p-1")
		if err != nil || len(ms) != 1 || ms[0].Phase != pool.PhaseDraining {
			t.Fatalf("ListMembers = %+v, %v", ms, err)
		}
		if err := s.DeleteMembers(ctx, ms); err != nil {
			t.Fatal(err)
		}
		if ms, _ := s.ListMembers(ctx, "p-1"); len(ms) != 0 {
			t.Fatalf("members left: %d", len(ms))
		}
	})

	t.Run("many members span transactions", func(t *testing.T) {
		var ms []*pool.Member
		for i := range 150 {
			ms = append(ms, &pool.Member{ID: fmt.Sprintf("m-%03d", i), PoolID: "p-3", Phase: pool.PhaseRunning})
		}
		if err := s.PutMembers(ctx, ms); err != nil {
			t.Fatal(err)
		}
		got, err := s.ListMembers(ctx, "p-3")
		if err != nil || len(got) != 150 {
			t.Fatalf("got %d members, %v", len(got), err)
		}
	})

	t.Run("delete keeps a tombstone and frees the name", func(t *testing.T) {
		p, _ := s.GetPool(ctx, "p-1")
		if err := s.RemovePool(ctx, p); err == nil {
			t.Fatal("removed a pool not marked deleting")
		}
		if err := s.MarkDeleting(ctx, p, time.Unix(100, 0)); !errors.Is(err, ErrPoolActive) {
			t.Fatalf("deleting an active pool: %v, want ErrPoolActive", err)
		}
		p.Spec.Active = false
		if err := s.UpdatePool(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkDeleting(ctx, p, time.Unix(100, 0)); err != nil {
			t.Fatal(err)
		}
		if err := s.RemovePool(ctx, p); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetPool(ctx, "p-1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("pool still there: %v", err)
		}
		tomb, err := s.GetTombstone(ctx, "p-1")
		if err != nil || tomb.Name != "web" || tomb.JobID != p.JobID() {
			t.Fatalf("tombstone %+v, %v", tomb, err)
		}
		if err := s.CreatePool(ctx, newPool("p-4", "alice", "web")); err != nil {
			t.Fatalf("name not freed: %v", err)
		}
	})
}

// TestStore_ConcurrentBumpsLoseNothing: 50 writers bump desired_count at
// once with a single check-and-set each. Every accepted write must be
// reflected, and the generation must count exactly the accepted writes.
func TestStore_ConcurrentBumpsLoseNothing(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.CreatePool(ctx, newPool("p-c", "alice", "bump")); err != nil {
		t.Fatal(err)
	}
	var accepted, conflicts atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Go(func() {
			<-start
			p, err := s.GetPool(ctx, "p-c")
			if err != nil {
				t.Error(err)
				return
			}
			p.Spec.DesiredCount++
			switch err := s.UpdatePool(ctx, p); {
			case err == nil:
				accepted.Add(1)
			case errors.Is(err, ErrConflict):
				conflicts.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()

	got, err := s.GetPool(ctx, "p-c")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted %d, refused %d", accepted.Load(), conflicts.Load())
	if int64(got.Spec.DesiredCount) != accepted.Load() {
		t.Fatalf("desired_count %d, but %d writes were accepted", got.Spec.DesiredCount, accepted.Load())
	}
	if got.Generation != 1+accepted.Load() {
		t.Fatalf("generation %d, want 1 (create) + %d accepted writes", got.Generation, accepted.Load())
	}
	if accepted.Load()+conflicts.Load() != 50 {
		t.Fatalf("accounted for %d of 50 writes", accepted.Load()+conflicts.Load())
	}
}

// TestStore_ModifyPoolRetriesUntilAccepted: with retries, all 50 bumps land.
func TestStore_ModifyPoolRetriesUntilAccepted(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.CreatePool(ctx, newPool("p-m", "alice", "bump")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_, err := s.ModifyPool(ctx, "p-m", func(p *pool.Pool) error {
				p.Spec.DesiredCount++
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := s.GetPool(ctx, "p-m")
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.DesiredCount != 50 || got.Generation != 51 {
		t.Fatalf("desired_count %d, generation %d; want 50 and 51", got.Spec.DesiredCount, got.Generation)
	}
}

func TestStore_ListPoolsBlocksUntilChange(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, index, err := s.ListPools(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []*pool.Pool, 1)
	go func() {
		pools, _, err := s.ListPools(ctx, index, time.Minute)
		if err != nil {
			t.Error(err)
		}
		done <- pools
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("watch returned before any change")
	default:
	}
	if err := s.CreatePool(ctx, newPool("p-w", "alice", "watched")); err != nil {
		t.Fatal(err)
	}
	select {
	case pools := <-done:
		if len(pools) != 1 || pools[0].ID != "p-w" {
			t.Fatalf("watch saw %+v", pools)
		}
	case <-ctx.Done():
		t.Fatal("watch did not wake on a change")
	}
}

func TestStore_GatewayKeyIsCreatedOnceForEveryone(t *testing.T) {
	c := devcluster.New(t, devcluster.Config{Name: "store-key", ConsulOnly: true})
	stores := []*Store{New(c.Consul, "tp-key"), New(c.Consul, "tp-key"), New(c.Consul, "tp-key")}
	keys := make([][]byte, len(stores)*4)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := stores[i%len(stores)].GatewayKey(context.Background())
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys {
		if len(k) != 32 || string(k) != string(keys[0]) {
			t.Fatalf("controllers disagree on the gateway key: %x vs %x", k, keys[0])
		}
	}
	if other, err := New(c.Consul, "tp-other").GatewayKey(context.Background()); err != nil || string(other) == string(keys[0]) {
		t.Fatalf("another prefix shares the key (%v)", err)
	}
}

func TestStore_ListPoolsSkipsARecordThatDoesNotDecode(t *testing.T) {
	c := devcluster.New(t, devcluster.Config{Name: "store-corrupt", ConsulOnly: true})
	s := New(c.Consul, "tp-corrupt")
	ctx := context.Background()
	if err := s.CreatePool(ctx, newPool("p-good", "alice", "web")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Consul.KV().Put(&api.KVPair{Key: s.Layout().PoolKey("p-bad"), Value: []byte("{not json")}, nil); err != nil {
		t.Fatal(err)
	}
	pools, _, err := s.ListPools(ctx, 0, 0)
	if err != nil {
		t.Fatalf("one bad record broke the listing: %v", err)
	}
	if len(pools) != 1 || pools[0].ID != "p-good" {
		t.Fatalf("pools %v, want only p-good", pools)
	}
	if s.Skipped() != 1 {
		t.Fatalf("skipped %d, want the bad record counted", s.Skipped())
	}
	// The garbage collector must not take the bad record's pool for gone.
	ids, err := s.PoolIDs(ctx)
	if err != nil || !slices.Equal(ids, []string{"p-bad", "p-good"}) {
		t.Fatalf("PoolIDs = %v, %v; want both records, decodable or not", ids, err)
	}
}

func TestStore_FencedWritesLandOnlyWhileTheSessionHoldsTheLock(t *testing.T) {
	c := devcluster.New(t, devcluster.Config{Name: "store-fence", ConsulOnly: true})
	s := New(c.Consul, "tp-fence")
	ctx := context.Background()
	p := newPool("p-1", "alice", "web")
	if err := s.CreatePool(ctx, p); err != nil {
		t.Fatal(err)
	}
	lockKey := s.Layout().LeaderKey()
	session := func() string {
		id, _, err := c.Consul.Session().Create(&api.SessionEntry{TTL: "10s", Behavior: api.SessionBehaviorRelease}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	old := session()
	if ok, _, err := c.Consul.KV().Acquire(&api.KVPair{Key: lockKey, Session: old}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	leading := leader.WithFence(ctx, leader.Fence{Key: lockKey, Session: old})
	m := &pool.Member{ID: "m-1", PoolID: p.ID, Phase: pool.PhaseRunning, Generation: 1}
	if err := s.PutMembers(leading, []*pool.Member{m}); err != nil {
		t.Fatalf("a write while leading: %v", err)
	}
	sc := &pool.Scale{Desired: 3}
	if err := s.PutScale(leading, p.ID, p.ModifyIndex, sc); err != nil || sc.ModifyIndex == 0 {
		t.Fatalf("a fenced scale write: %v (index %d)", err, sc.ModifyIndex)
	}

	// A new session holds the lock: the old leader, paused until now,
	// writes with its old fence.
	if _, _, err := c.Consul.KV().Release(&api.KVPair{Key: lockKey, Session: old}, nil); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := c.Consul.KV().Acquire(&api.KVPair{Key: lockKey, Session: session()}, nil); err != nil || !ok {
		t.Fatalf("the new leader acquires: %v %v", ok, err)
	}
	m.Phase = pool.PhaseDraining
	if err := s.PutMembers(leading, []*pool.Member{m}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a deposed leader's write: %v, want ErrConflict", err)
	}
	got, err := s.ListMembers(ctx, p.ID)
	if err != nil || len(got) != 1 || got[0].Phase != pool.PhaseRunning {
		t.Fatalf("members after the deposed write: %+v %v", got, err)
	}
	if err := s.DeleteMembers(leading, got); !errors.Is(err, ErrConflict) {
		t.Fatalf("a deposed leader's delete: %v, want ErrConflict", err)
	}
}

// TestStore_ScalerStatus: a status is claimed with a check-and-set, so of
// two controllers reading the same record only one writes it, and it goes
// with its pool.
func TestStore_ScalerStatus(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	p := newPool("p-s", "alice", "scaled")
	if err := s.CreatePool(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetScalerStatus(ctx, p.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status before the first run: %v", err)
	}
	first := &pool.ScalerStatus{PoolID: p.ID, LastRun: time.Unix(100, 0).UTC(), Outcome: pool.ScalerRunning, Runs: 1}
	if err := s.PutScalerStatus(ctx, first); err != nil || first.ModifyIndex == 0 {
		t.Fatalf("create: %v (index %d)", err, first.ModifyIndex)
	}
	rival := &pool.ScalerStatus{PoolID: p.ID, LastRun: time.Unix(101, 0).UTC(), Runs: 1}
	if err := s.PutScalerStatus(ctx, rival); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second create: %v, want ErrConflict", err)
	}
	read, err := s.GetScalerStatus(ctx, p.ID)
	if err != nil || !read.LastRun.Equal(first.LastRun) || read.ModifyIndex != first.ModifyIndex {
		t.Fatalf("read %+v, %v", read, err)
	}
	read.Outcome, read.Output = "ok", []string{"done"}
	if err := s.PutScalerStatus(ctx, read); err != nil {
		t.Fatal(err)
	}
	if err := s.PutScalerStatus(ctx, first); !errors.Is(err, ErrConflict) {
		t.Fatalf("a stale write: %v, want ErrConflict", err)
	}
	p.Spec.Active = false
	if err := s.UpdatePool(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDeleting(ctx, p, time.Unix(200, 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.RemovePool(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetScalerStatus(ctx, p.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status outlived its pool: %v", err)
	}
}
