package reconcile

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// genInput draws an arbitrary planning situation: any mix of phases,
// generations, timers, observations and in-flight reports.
func genInput(t *rapid.T) Input {
	active := rapid.Bool().Draw(t, "active")
	p := testPool(active, rapid.Int64Range(1, 3).Draw(t, "gen"))
	p.Deleting = !active && rapid.IntRange(0, 9).Draw(t, "deletingRoll") == 0
	p.Spec.Drain.Timeout = pool.Duration(time.Duration(rapid.IntRange(0, 30).Draw(t, "timeout")) * time.Second)
	p.Spec.Drain.GracePeriod = pool.Duration(time.Duration(rapid.IntRange(0, 30).Draw(t, "grace")) * time.Second)

	phases := []pool.Phase{pool.PhaseRunning, pool.PhaseDraining, pool.PhaseStopped, pool.PhaseDeleting}
	allocs := []AllocState{AllocNone, AllocPending, AllocRunning, AllocStopped, AllocDead}
	n := rapid.IntRange(0, 8).Draw(t, "members")
	in := Input{
		Pool: p, Observed: map[string]Observation{}, JobExists: rapid.Bool().Draw(t, "jobExists"),
		Target: rapid.IntRange(0, 8).Draw(t, "target"), Now: now,
	}
	if rapid.Bool().Draw(t, "inFlightKnown") {
		in.InFlight = map[string]int{}
	}
	for i := range n {
		id := fmt.Sprintf("m-%d", i)
		phase := rapid.SampledFrom(phases).Draw(t, "phase")
		in.Members = append(in.Members, mem(id, phase, rapid.Int64Range(1, p.TemplateGeneration).Draw(t, "mgen"),
			rapid.IntRange(0, 60).Draw(t, "sinceAgo"), rapid.IntRange(0, 120).Draw(t, "createdAgo")))
		if rapid.Bool().Draw(t, "observed") {
			in.Observed[id] = Observation{
				InJob:   rapid.Bool().Draw(t, "inJob"),
				Count:   phase.RunningCount(),
				Alloc:   rapid.SampledFrom(allocs).Draw(t, "alloc"),
				Healthy: rapid.Bool().Draw(t, "healthy"),
			}
		}
		if in.InFlight != nil && rapid.Bool().Draw(t, "reported") {
			in.InFlight[id] = rapid.IntRange(0, 3).Draw(t, "inFlight")
		}
	}
	in.NewID = ids()
	return in
}

func TestPlan_Invariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := genInput(t)
		got := Plan(in)
		spec := in.Pool.Spec
		before := map[string]*pool.Member{}
		for _, m := range in.Members {
			before[m.ID] = m
		}

		// A stopped or deleting pool never gets new members.
		if (!spec.Active || in.Pool.Deleting) && len(got.Create) > 0 {
			t.Fatalf("stopped pool got %d new members", len(got.Create))
		}

		// Creation never takes the running count past target + surge.
		if len(got.Create) > 0 {
			after := map[string]pool.Phase{}
			for _, m := range in.Members {
				after[m.ID] = m.Phase
			}
			for _, m := range got.Update {
				after[m.ID] = m.Phase
			}
			for _, m := range got.Forget {
				delete(after, m.ID)
			}
			running := len(got.Create)
			for _, ph := range after {
				if ph == pool.PhaseRunning {
					running++
				}
			}
			if limit := in.Target + Surge(in.Target); running > limit {
				t.Fatalf("%d members running after creating %d; limit %d", running, len(got.Create), limit)
			}
		}

		for _, u := range got.Update {
			b, ok := before[u.ID]
			if !ok {
				t.Fatalf("update of unknown member %s", u.ID)
			}
			if u.Phase == b.Phase {
				t.Fatalf("%s: update keeps phase %s (and would reset its timer)", u.ID, u.Phase)
			}
			if u.Generation != b.Generation || u.CreatedAt != b.CreatedAt {
				t.Fatalf("%s: update changed identity fields", u.ID)
			}
			o := in.Observed[u.ID]
			deadByNomad := b.Phase == pool.PhaseRunning && o.InJob && o.Count > 0 && o.Alloc == AllocDead
			drainDone := !now.Before(b.Since.Add(spec.Drain.Timeout.D())) ||
				(o.Alloc != AllocRunning && !o.Healthy) ||
				func() bool { n, ok := in.InFlight[u.ID]; return ok && n == 0 }()
			switch u.Phase {
			case pool.PhaseStopped:
				// Never stop a member that has not drained.
				switch {
				case b.Phase == pool.PhaseDraining && drainDone:
				case b.Phase == pool.PhaseRunning && (deadByNomad || (o.Alloc != AllocRunning && !o.Healthy) || spec.Drain.Timeout == 0):
				default:
					t.Fatalf("%s: %s → stopped without a finished drain", u.ID, b.Phase)
				}
			case pool.PhaseDeleting:
				// Never delete a member not stopped for its grace period.
				switch {
				case in.Pool.Deleting:
				case deadByNomad:
				case b.Phase == pool.PhaseStopped && !now.Before(b.Since.Add(spec.Drain.GracePeriod.D())):
				case spec.Drain.GracePeriod == 0 && b.Phase != pool.PhaseDeleting:
				default:
					t.Fatalf("%s: %s (since %s) → deleting before its grace period", u.ID, b.Phase, now.Sub(b.Since))
				}
			case pool.PhaseRunning:
				if !spec.Active || b.Generation != in.Pool.TemplateGeneration {
					t.Fatalf("%s: revived in a stopped pool or from an old generation", u.ID)
				}
			}
			if b.Phase == pool.PhaseDeleting {
				t.Fatalf("%s: a deleting member moved to %s", u.ID, u.Phase)
			}
		}

		// Only deleting members whose group is gone are forgotten.
		for _, f := range got.Forget {
			b := before[f.ID]
			gone := !in.Observed[f.ID].InJob && !now.Before(b.Since.Add(DeletingDwell))
			if in.Pool.Deleting {
				gone = !in.JobExists
			}
			if b == nil || !gone || (b.Phase != pool.PhaseDeleting && !in.Pool.Deleting) {
				t.Fatalf("%s forgotten while its group may still run", f.ID)
			}
		}
	})
}
