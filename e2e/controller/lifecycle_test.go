package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// TestPool_ScaleDownDrainsStopsDeletesAndScaleUpRestarts covers SPEC.md §4's
// scale-down path and the restart of stopped members on a rising target.
func TestPool_ScaleDownDrainsStopsDeletesAndScaleUpRestarts(t *testing.T) {
	e := newEnv(t)
	e.startServer("ctrl-a")
	p := e.createPool("p-scale001", 3, 2*time.Second, 4*time.Second)

	created := time.Now()
	addrs := e.waitRunning(p.ID, 3, 90*time.Second)
	t.Logf("3 members running and passing %s after the pool was stored", time.Since(created).Round(time.Millisecond))

	job := e.job(p)
	if !nomadjob.Owned(job, p.ID) || job.Meta[nomadjob.MetaOwner] != "alice" || job.Meta[nomadjob.MetaPool] != "web" {
		t.Fatalf("job meta %v", job.Meta)
	}
	for id, tg := range groups(job) {
		if tg.Meta[nomadjob.MetaMember] != id || tg.Meta[nomadjob.MetaGeneration] != "1" || *tg.Count != 1 {
			t.Fatalf("group %s: meta %v count %d", id, tg.Meta, *tg.Count)
		}
	}

	// Every member is probed; the one that stays must never fail.
	probes := map[string]*prober{}
	for m, addr := range addrs {
		probes[m] = probe(addr)
	}
	log := e.recordPhases(p.ID)
	changed := e.modify(p.ID, func(p *pool.Pool) { p.Spec.DesiredCount = 1 })

	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, "first drain", func(context.Context) error {
		if _, ok := log.firstSeen(pool.PhaseDraining); !ok {
			return errors.New("no member draining yet")
		}
		return nil
	})
	first, _ := log.firstSeen(pool.PhaseDraining)
	t.Logf("desired_count 3→1 acted on %s after the write (sweep interval 15s)", first.Sub(changed).Round(time.Millisecond))

	// Nomad shows the drain as a service tag, the stop as count 0.
	var draining []string
	for id, m := range e.members(p.ID) {
		if m.Phase == pool.PhaseDraining {
			draining = append(draining, id)
		}
	}
	if len(draining) != 2 {
		t.Fatalf("draining members %v, want 2", draining)
	}
	testutil.Eventually(t, 5*time.Second, 50*time.Millisecond, "drain visible in Nomad", func(context.Context) error {
		gs := groups(e.job(p))
		for _, id := range draining {
			if tg := gs[id]; tg == nil || !slices.Contains(tg.Services[0].Tags, nomadjob.TagDraining) {
				return fmt.Errorf("group %s not tagged draining", id)
			}
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, "stop visible in Nomad", func(context.Context) error {
		gs := groups(e.job(p))
		for _, id := range draining {
			if tg := gs[id]; tg == nil || *tg.Count != 0 {
				return fmt.Errorf("group %s not at count 0", id)
			}
		}
		return nil
	})
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "excess members deleted", func(context.Context) error {
		if n := len(e.members(p.ID)); n != 1 {
			return fmt.Errorf("%d member records", n)
		}
		if n := len(e.job(p).TaskGroups); n != 1 {
			return fmt.Errorf("%d task groups", n)
		}
		return nil
	})
	var survivor string
	for id := range e.members(p.ID) {
		survivor = id
	}
	for _, id := range draining {
		if h := log.history(id); h != "running→draining→stopped→deleting→gone" {
			t.Errorf("member %s went %s", id, h)
		}
	}
	for m, pr := range probes {
		calls, failures, lastErr := pr.finish()
		if m == survivor && (failures > 0 || calls == 0) {
			t.Errorf("surviving member %s failed %d of %d calls: %v", m, failures, calls, lastErr)
		}
	}

	// Rising again during the grace period restarts stopped members rather
	// than creating new ones.
	e.modify(p.ID, func(p *pool.Pool) {
		p.Spec.DesiredCount = 3
		p.Spec.Drain.GracePeriod = pool.Duration(5 * time.Minute)
	})
	e.waitRunning(p.ID, 3, 60*time.Second)
	before := keys(e.members(p.ID))
	e.modify(p.ID, func(p *pool.Pool) { p.Spec.DesiredCount = 1 })
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "two members stopped", func(context.Context) error {
		stopped := 0
		for _, m := range e.members(p.ID) {
			if m.Phase == pool.PhaseStopped {
				stopped++
			}
		}
		if stopped != 2 {
			return fmt.Errorf("%d stopped", stopped)
		}
		return nil
	})
	log.reset()
	e.modify(p.ID, func(p *pool.Pool) { p.Spec.DesiredCount = 3 })
	e.waitRunning(p.ID, 3, 60*time.Second)
	if after := keys(e.members(p.ID)); !slices.Equal(before, after) {
		t.Fatalf("members %v after restart, want the same %v", after, before)
	}
	for _, id := range log.ids() {
		if h := log.history(id); h != "stopped→running" && h != "running" {
			t.Errorf("member %s went %s on the way back up", id, h)
		}
	}
}

// TestMember_DeadIsReplaced kills a member's process; with no restarts left
// its allocation fails and the controller replaces the member.
func TestMember_DeadIsReplaced(t *testing.T) {
	e := newEnv(t)
	e.startServer("ctrl-a")
	p := e.createPool("p-dead0001", 2, 2*time.Second, 4*time.Second)
	e.waitRunning(p.ID, 2, 90*time.Second)

	victim := keys(e.members(p.ID))[0]
	// Nomad's servers learn an allocation runs a little after its checks
	// pass: wait for both the allocation and its process.
	var allocID string
	var pids []int
	testutil.Eventually(t, 15*time.Second, 100*time.Millisecond, "the victim's process", func(ctx context.Context) error {
		allocs, _, err := e.c.Nomad.Jobs().Allocations(p.JobID(), false, (&nomadapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		for _, a := range allocs {
			if a.TaskGroup == victim && a.ClientStatus == nomadapi.AllocClientStatusRunning {
				allocID = a.ID
			}
		}
		if allocID == "" {
			return errors.New("no running allocation yet")
		}
		if pids = testutil.PIDsWithEnv("NOMAD_ALLOC_ID", allocID); len(pids) == 0 {
			return fmt.Errorf("no process for alloc %s", allocID)
		}
		return nil
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
	}
	t.Logf("killed member %s (alloc %s, pids %v)", victim, allocID, pids)

	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, "dead member replaced", func(ctx context.Context) error {
		ms := e.members(p.ID)
		if _, ok := ms[victim]; ok {
			return fmt.Errorf("%s still recorded (%s)", victim, ms[victim].Phase)
		}
		addrs, err := e.passing(ctx, p.ID)
		if err != nil {
			return err
		}
		if len(ms) != 2 || len(addrs) != 2 {
			return fmt.Errorf("%d members, %d passing", len(ms), len(addrs))
		}
		return nil
	})
}

// TestPool_StopStartDelete: stop keeps members at count 0, start brings the
// same members back, delete needs a stopped pool and removes the job.
func TestPool_StopStartDelete(t *testing.T) {
	e := newEnv(t)
	e.startServer("ctrl-a")
	p := e.createPool("p-stop0001", 2, 2*time.Second, 2*time.Second)
	e.waitRunning(p.ID, 2, 90*time.Second)
	original := keys(e.members(p.ID))

	e.modify(p.ID, func(p *pool.Pool) { p.Spec.Active = false })
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "members stopped", func(context.Context) error {
		for id, m := range e.members(p.ID) {
			if m.Phase != pool.PhaseStopped {
				return fmt.Errorf("%s is %s", id, m.Phase)
			}
		}
		for id, tg := range groups(e.job(p)) {
			if *tg.Count != 0 {
				return fmt.Errorf("group %s count %d", id, *tg.Count)
			}
		}
		return nil
	})
	// Past the grace period, still nothing is deleted.
	testutil.Never(t, 3*time.Second, 200*time.Millisecond, "a stopped pool lost members", func(context.Context) error {
		if got := keys(e.members(p.ID)); !slices.Equal(got, original) {
			return fmt.Errorf("members %v after stop, want %v", got, original)
		}
		if n := len(e.job(p).TaskGroups); n != 2 {
			return fmt.Errorf("%d task groups after stop, want 2", n)
		}
		return nil
	})

	ctx := context.Background()
	active, _ := e.store.GetPool(ctx, p.ID)
	active.Spec.Active = true
	if err := e.store.UpdatePool(ctx, active); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(p.ID, 2, 60*time.Second)
	if got := keys(e.members(p.ID)); !slices.Equal(got, original) {
		t.Fatalf("members %v after start, want %v", got, original)
	}

	cur, _ := e.store.GetPool(ctx, p.ID)
	if err := e.store.MarkDeleting(ctx, cur, time.Now()); !errors.Is(err, store.ErrPoolActive) {
		t.Fatalf("delete of an active pool: %v, want refusal", err)
	}
	e.modify(p.ID, func(p *pool.Pool) { p.Spec.Active = false })
	cur, _ = e.store.GetPool(ctx, p.ID)
	if err := e.store.MarkDeleting(ctx, cur, time.Now()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "pool and job gone", func(context.Context) error {
		if _, err := e.store.GetPool(ctx, p.ID); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("pool record: %w", err)
		}
		if n := len(e.members(p.ID)); n != 0 {
			return fmt.Errorf("%d member records", n)
		}
		if _, _, err := e.c.Nomad.Jobs().Info(p.JobID(), nil); err == nil {
			return errors.New("job still registered")
		}
		return nil
	})
	if _, err := e.store.GetTombstone(ctx, p.ID); err != nil {
		t.Fatalf("tombstone: %v", err)
	}
}

// TestPool_ScaleToZeroStopsTheJobAndScaleUpStartsIt: with no member left
// the job is registered with Stop set (an index-checked write, unlike a
// deregistration) and Nomad stops every allocation; members created later
// start the job again.
func TestPool_ScaleToZeroStopsTheJobAndScaleUpStartsIt(t *testing.T) {
	e := newEnv(t)
	e.startServer("ctrl-a")
	p := e.createPool("p-zero0001", 2, 2*time.Second, 2*time.Second)
	e.waitRunning(p.ID, 2, 90*time.Second)

	e.modify(p.ID, func(p *pool.Pool) { p.Spec.DesiredCount = 0 })
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, "job stopped, nothing running", func(ctx context.Context) error {
		if n := len(e.members(p.ID)); n != 0 {
			return fmt.Errorf("%d member records", n)
		}
		if job := e.job(p); !*job.Stop {
			return fmt.Errorf("job %s, not stopped", *job.Status)
		}
		allocs, _, err := e.c.Nomad.Jobs().Allocations(p.JobID(), false, (&nomadapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		for _, a := range allocs {
			if a.ClientStatus == nomadapi.AllocClientStatusRunning {
				return fmt.Errorf("allocation %s of %s still running", a.ID, a.TaskGroup)
			}
		}
		addrs, err := e.passing(ctx, p.ID)
		if err == nil && len(addrs) > 0 {
			err = fmt.Errorf("%d members passing", len(addrs))
		}
		return err
	})

	e.modify(p.ID, func(p *pool.Pool) { p.Spec.DesiredCount = 2 })
	e.waitRunning(p.ID, 2, 60*time.Second)
	if job := e.job(p); *job.Stop || len(job.TaskGroups) != 2 {
		t.Fatalf("job stopped %v with %d groups, want running with 2", *job.Stop, len(job.TaskGroups))
	}
}

// TestLeaderFailover_FinishesDrain kills the leader mid-drain; the standby
// takes over and finishes the drain where it stood.
func TestLeaderFailover_FinishesDrain(t *testing.T) {
	e := newEnv(t)
	_, a := e.startServer("ctrl-a")
	p := e.createPool("p-fail0001", 3, 8*time.Second, 2*time.Second)
	e.waitRunning(p.ID, 3, 90*time.Second)
	_, b := e.startServer("ctrl-b") // standby: a leads already
	original := keys(e.members(p.ID))

	log := e.recordPhases(p.ID)
	e.modify(p.ID, func(p *pool.Pool) { p.Spec.DesiredCount = 1 })
	var drainSince map[string]time.Time
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, "two members draining", func(context.Context) error {
		drainSince = map[string]time.Time{}
		for id, m := range e.members(p.ID) {
			if m.Phase == pool.PhaseDraining {
				drainSince[id] = m.Since
			}
		}
		if len(drainSince) != 2 {
			return fmt.Errorf("%d draining", len(drainSince))
		}
		return nil
	})
	killed := time.Now()
	a.Kill()
	t.Logf("killed the leader mid-drain")

	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, "standby finishes the drain", func(context.Context) error {
		ms := e.members(p.ID)
		if len(ms) != 1 {
			return fmt.Errorf("%d members", len(ms))
		}
		return nil
	})
	if took, ok := log.firstSeen(pool.PhaseStopped); ok {
		t.Logf("first drained member stopped %s after the leader was killed (session TTL 10s, lock-delay 1s)", took.Sub(killed).Round(time.Millisecond))
	}
	for id, since := range drainSince {
		if h := log.history(id); h != "running→draining→stopped→deleting→gone" {
			t.Errorf("member %s went %s: the drain was restarted", id, h)
		}
		if got := log.sinces(id, pool.PhaseDraining); len(got) != 1 || !got[0].Equal(since) {
			t.Errorf("member %s drain start rewritten: %v, want only %v", id, got, since)
		}
	}
	if ids := log.ids(); len(ids) != 3 || !slices.Equal(ids, original) {
		t.Fatalf("members seen %v, want only the original %v (no duplicates)", ids, original)
	}
	if !strings.Contains(b.Log(), "acquired leadership") {
		t.Fatal("the standby never logged taking leadership")
	}
}
