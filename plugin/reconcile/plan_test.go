package reconcile

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

const (
	drainTimeout = 15 * time.Second
	grace        = 30 * time.Second
)

func testPool(active bool, gen int64) *pool.Pool {
	return &pool.Pool{
		ID: "p-1", Owner: "alice", TemplateGeneration: gen,
		Spec: pool.Spec{
			Name: "web", Active: active,
			Drain: pool.Drain{Timeout: pool.Duration(drainTimeout), GracePeriod: pool.Duration(grace)},
		},
	}
}

// mem builds a member: id, phase, generation, seconds since the phase
// began, seconds since creation.
func mem(id string, phase pool.Phase, gen int64, sinceAgo, createdAgo int) *pool.Member {
	return &pool.Member{
		ID: id, PoolID: "p-1", Generation: gen, Phase: phase,
		Since:     now.Add(-time.Duration(sinceAgo) * time.Second),
		CreatedAt: now.Add(-time.Duration(createdAgo) * time.Second),
	}
}

var (
	alive   = Observation{InJob: true, Count: 1, Alloc: AllocRunning, Healthy: true}
	booting = Observation{InJob: true, Count: 1, Alloc: AllocRunning}
	pending = Observation{InJob: true, Count: 1, Alloc: AllocPending}
	dead    = Observation{InJob: true, Count: 1, Alloc: AllocDead}
	halted  = Observation{InJob: true, Count: 0, Alloc: AllocStopped}
	gone    = Observation{}
)

func ids() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("m-new%d", n) }
}

// summary renders a plan compactly: "create m-new1; m-a→draining; forget m-b".
func summary(a Actions) string {
	var parts []string
	for _, m := range a.Create {
		parts = append(parts, "create "+m.ID)
	}
	for _, m := range a.Update {
		parts = append(parts, fmt.Sprintf("%s→%s", m.ID, m.Phase))
	}
	for _, m := range a.Forget {
		parts = append(parts, "forget "+m.ID)
	}
	if a.Job == JobPurge {
		parts = append(parts, "purge job")
	}
	if a.DeletePool {
		parts = append(parts, "delete pool")
	}
	return strings.Join(parts, "; ")
}

func TestPlan_Transitions(t *testing.T) {
	tests := []struct {
		name     string
		pool     *pool.Pool
		members  []*pool.Member
		obs      map[string]Observation
		target   int
		inFlight map[string]int
		noJob    bool
		want     string
		requeue  time.Duration
	}{
		{
			name: "creates below target", pool: testPool(true, 1), target: 3,
			want: "create m-new1; create m-new2; create m-new3",
		},
		{
			name: "at target does nothing", pool: testPool(true, 1), target: 2,
			members: []*pool.Member{mem("m-a", pool.PhaseRunning, 1, 60, 60), mem("m-b", pool.PhaseRunning, 1, 60, 60)},
			obs:     map[string]Observation{"m-a": alive, "m-b": alive},
			want:    "",
		},
		{
			name: "scale-down drains unhealthy first, then least in flight, then newest", pool: testPool(true, 1), target: 1,
			members: []*pool.Member{
				mem("m-old-busy", pool.PhaseRunning, 1, 90, 90),
				mem("m-new-busy", pool.PhaseRunning, 1, 10, 10),
				mem("m-idle", pool.PhaseRunning, 1, 80, 80),
				mem("m-sick", pool.PhaseRunning, 1, 95, 95),
			},
			obs:      map[string]Observation{"m-old-busy": alive, "m-new-busy": alive, "m-idle": alive, "m-sick": booting},
			inFlight: map[string]int{"m-old-busy": 3, "m-new-busy": 3, "m-idle": 0, "m-sick": 9},
			want:     "m-sick→draining; m-idle→draining; m-new-busy→draining",
			requeue:  drainTimeout,
		},
		{
			name: "drain waits for timeout when in-flight is unknown", pool: testPool(true, 1), target: 0,
			members: []*pool.Member{mem("m-a", pool.PhaseDraining, 1, 5, 60)},
			obs:     map[string]Observation{"m-a": alive},
			want:    "", requeue: 10 * time.Second,
		},
		{
			name: "drain ends at timeout", pool: testPool(true, 1), target: 0,
			members: []*pool.Member{mem("m-a", pool.PhaseDraining, 1, 15, 60)},
			obs:     map[string]Observation{"m-a": alive},
			want:    "m-a→stopped", requeue: grace,
		},
		{
			name: "drain ends early when gateways report nothing in flight", pool: testPool(true, 1), target: 0,
			members:  []*pool.Member{mem("m-a", pool.PhaseDraining, 1, 1, 60), mem("m-b", pool.PhaseDraining, 1, 1, 60)},
			obs:      map[string]Observation{"m-a": alive, "m-b": alive},
			inFlight: map[string]int{"m-a": 0, "m-b": 2},
			want:     "m-a→stopped", requeue: 14 * time.Second,
		},
		{
			name: "a member that never started drains at once", pool: testPool(true, 1), target: 0,
			members: []*pool.Member{mem("m-a", pool.PhaseDraining, 1, 1, 60)},
			obs:     map[string]Observation{"m-a": pending},
			want:    "m-a→stopped", requeue: grace,
		},
		{
			name: "stopped member waits out its grace period", pool: testPool(true, 1), target: 0,
			members: []*pool.Member{mem("m-a", pool.PhaseStopped, 1, 10, 60)},
			obs:     map[string]Observation{"m-a": halted},
			want:    "", requeue: 20 * time.Second,
		},
		{
			name: "stopped member is deleted after grace", pool: testPool(true, 1), target: 0,
			members: []*pool.Member{mem("m-a", pool.PhaseStopped, 1, 30, 60)},
			obs:     map[string]Observation{"m-a": halted},
			want:    "m-a→deleting", requeue: DeletingDwell,
		},
		{
			name: "deleted member is forgotten once its group is gone", pool: testPool(true, 1), target: 0,
			members: []*pool.Member{mem("m-a", pool.PhaseDeleting, 1, 3, 60), mem("m-b", pool.PhaseDeleting, 1, 3, 60)},
			obs:     map[string]Observation{"m-a": gone, "m-b": halted},
			want:    "forget m-a",
		},
		{
			name: "a deleted member stays visible for the dwell", pool: testPool(true, 1), target: 0,
			members: []*pool.Member{mem("m-a", pool.PhaseDeleting, 1, 1, 60)},
			obs:     map[string]Observation{"m-a": gone},
			want:    "", requeue: DeletingDwell - time.Second,
		},
		{
			name: "rising target undrains before restarting before creating", pool: testPool(true, 1), target: 4,
			members: []*pool.Member{
				mem("m-run", pool.PhaseRunning, 1, 60, 60),
				mem("m-drain", pool.PhaseDraining, 1, 5, 60),
				mem("m-stop", pool.PhaseStopped, 1, 5, 60),
			},
			obs:  map[string]Observation{"m-run": alive, "m-drain": alive, "m-stop": halted},
			want: "create m-new1; m-drain→running; m-stop→running",
		},
		{
			name: "dead member is replaced", pool: testPool(true, 1), target: 2,
			members: []*pool.Member{mem("m-a", pool.PhaseRunning, 1, 60, 60), mem("m-b", pool.PhaseRunning, 1, 60, 60)},
			obs:     map[string]Observation{"m-a": alive, "m-b": dead},
			want:    "create m-new1; m-b→deleting", requeue: DeletingDwell,
		},
		{
			name: "a restarted member's old stopped allocation is not death", pool: testPool(true, 1), target: 1,
			members: []*pool.Member{mem("m-a", pool.PhaseRunning, 1, 1, 60)},
			obs:     map[string]Observation{"m-a": {InJob: true, Count: 1, Alloc: AllocStopped}},
			want:    "",
		},
		{
			name: "stopping a pool drains everything and creates nothing", pool: testPool(false, 1), target: 3,
			members: []*pool.Member{mem("m-a", pool.PhaseRunning, 1, 60, 60), mem("m-b", pool.PhaseRunning, 1, 60, 60)},
			obs:     map[string]Observation{"m-a": alive, "m-b": pending},
			want:    "m-a→draining; m-b→stopped", requeue: drainTimeout,
		},
		{
			name: "a stopped pool keeps stopped members past grace", pool: testPool(false, 1), target: 3,
			members: []*pool.Member{mem("m-a", pool.PhaseStopped, 1, 3600, 7200)},
			obs:     map[string]Observation{"m-a": halted},
			want:    "",
		},
		{
			name: "a dead member of a stopped pool is stopped, not deleted", pool: testPool(false, 1), target: 1,
			members: []*pool.Member{mem("m-a", pool.PhaseRunning, 1, 60, 60)},
			obs:     map[string]Observation{"m-a": dead},
			want:    "m-a→stopped",
		},
		{
			name: "starting a pool restarts stopped members and creates the rest", pool: testPool(true, 1), target: 3,
			members: []*pool.Member{mem("m-a", pool.PhaseStopped, 1, 3600, 7200), mem("m-b", pool.PhaseStopped, 1, 3600, 7200)},
			obs:     map[string]Observation{"m-a": halted, "m-b": halted},
			want:    "create m-new1; m-a→running; m-b→running",
		},
		{
			name: "rollout surges one new member while old ones serve", pool: testPool(true, 2), target: 3,
			members: []*pool.Member{mem("m-a", pool.PhaseRunning, 1, 60, 60), mem("m-b", pool.PhaseRunning, 1, 60, 60), mem("m-c", pool.PhaseRunning, 1, 60, 60)},
			obs:     map[string]Observation{"m-a": alive, "m-b": alive, "m-c": alive},
			want:    "create m-new1",
		},
		{
			name: "rollout drains an old member per healthy new one and surges again", pool: testPool(true, 2), target: 3,
			members: []*pool.Member{
				mem("m-a", pool.PhaseRunning, 1, 60, 60), mem("m-b", pool.PhaseRunning, 1, 50, 50), mem("m-c", pool.PhaseRunning, 1, 40, 40),
				mem("m-n1", pool.PhaseRunning, 2, 5, 5),
			},
			obs:  map[string]Observation{"m-a": alive, "m-b": alive, "m-c": alive, "m-n1": alive},
			want: "create m-new1; m-c→draining", requeue: drainTimeout,
		},
		{
			name: "rollout keeps old members while new ones are not healthy", pool: testPool(true, 2), target: 2,
			members: []*pool.Member{
				mem("m-a", pool.PhaseRunning, 1, 60, 60), mem("m-b", pool.PhaseRunning, 1, 60, 60),
				mem("m-n1", pool.PhaseRunning, 2, 5, 5),
			},
			obs:  map[string]Observation{"m-a": alive, "m-b": alive, "m-n1": booting},
			want: "",
		},
		{
			name: "old stopped members are never restarted", pool: testPool(true, 2), target: 1,
			members: []*pool.Member{mem("m-old", pool.PhaseStopped, 1, 5, 60)},
			obs:     map[string]Observation{"m-old": halted},
			want:    "create m-new1", requeue: 25 * time.Second,
		},
		{
			name: "deleting a pool marks members and purges the job", pool: func() *pool.Pool { p := testPool(false, 1); p.Deleting = true; return p }(),
			members: []*pool.Member{mem("m-a", pool.PhaseStopped, 1, 60, 60)},
			obs:     map[string]Observation{"m-a": halted},
			want:    "m-a→deleting; purge job",
		},
		{
			name: "a deleted pool's records go once its job is gone", pool: func() *pool.Pool { p := testPool(false, 1); p.Deleting = true; return p }(),
			members: []*pool.Member{mem("m-a", pool.PhaseDeleting, 1, 60, 60)},
			noJob:   true,
			want:    "forget m-a; purge job; delete pool",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{
				Pool: tt.pool, Members: tt.members, Observed: tt.obs, JobExists: !tt.noJob,
				Target: tt.target, InFlight: tt.inFlight, Now: now, NewID: ids(),
			}
			before := cloneMembers(tt.members)
			got := Plan(in)
			if s := summary(got); s != tt.want {
				t.Errorf("plan:\n got: %s\nwant: %s", s, tt.want)
			}
			if got.RequeueAfter != tt.requeue {
				t.Errorf("RequeueAfter = %s, want %s", got.RequeueAfter, tt.requeue)
			}
			if !slices.EqualFunc(before, tt.members, func(a, b *pool.Member) bool { return reflect.DeepEqual(a, b) }) {
				t.Error("Plan mutated its input members")
			}
			for _, m := range append(slices.Clone(got.Update), got.Create...) {
				if !m.Since.Equal(now) {
					t.Errorf("%s: Since = %s, want now", m.ID, m.Since)
				}
			}
		})
	}
}

func cloneMembers(ms []*pool.Member) []*pool.Member {
	out := make([]*pool.Member, len(ms))
	for i, m := range ms {
		c := *m
		out[i] = &c
	}
	return out
}

func TestPlan_NewIDCollisionsAreRetried(t *testing.T) {
	seq := []string{"m-a", "m-a", "m-b"}
	in := Input{
		Pool: testPool(true, 1), Target: 2, Now: now,
		Members:  []*pool.Member{},
		Observed: nil,
		NewID:    func() string { id := seq[0]; seq = seq[1:]; return id },
	}
	got := Plan(in)
	if s := summary(got); s != "create m-a; create m-b" {
		t.Fatalf("plan: %s", s)
	}
}

func TestSurge(t *testing.T) {
	for target, want := range map[int]int{0: 1, 1: 1, 4: 1, 5: 2, 8: 2, 9: 3, 100: 25} {
		if got := Surge(target); got != want {
			t.Errorf("Surge(%d) = %d, want %d", target, got, want)
		}
	}
}

// TestPlan_PassingMemberWithLaggingAllocStatusDrains: Consul may pass a
// member's checks before Nomad's servers learn its allocation runs. Such a
// member can have work in flight, so scale-down drains it.
func TestPlan_PassingMemberWithLaggingAllocStatusDrains(t *testing.T) {
	lagging := Observation{InJob: true, Count: 1, Alloc: AllocPending, Healthy: true}
	got := Plan(Input{
		Pool: testPool(true, 1), Target: 0, Now: now, NewID: ids(), JobExists: true,
		Members:  []*pool.Member{mem("m-a", pool.PhaseRunning, 1, 60, 60)},
		Observed: map[string]Observation{"m-a": lagging},
	})
	if s := summary(got); s != "m-a→draining" {
		t.Fatalf("plan: %s", s)
	}
}

func TestPlan_RecordsAllocatedAddresses(t *testing.T) {
	at := func(addr string) Observation {
		o := alive
		o.Addresses = map[string]string{"http": addr}
		return o
	}
	recorded := mem("m-a", pool.PhaseRunning, 1, 60, 60)
	recorded.Addresses = map[string]string{"http": "127.0.0.1:20001"}
	tests := []struct {
		name   string
		member *pool.Member
		obs    Observation
		want   map[string]string // nil: no update
	}{
		{"first allocation", mem("m-a", pool.PhaseRunning, 1, 60, 60), at("127.0.0.1:20001"), map[string]string{"http": "127.0.0.1:20001"}},
		{"unchanged", recorded, at("127.0.0.1:20001"), nil},
		{"restarted elsewhere", recorded, at("127.0.0.1:20999"), map[string]string{"http": "127.0.0.1:20999"}},
		{"no allocation yet: the old record stands", recorded, booting, nil},
		{"stopped members are not followed", func() *pool.Member { m := *recorded; m.Phase = pool.PhaseStopped; return &m }(), at("127.0.0.1:20999"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPool(true, 1)
			p.Spec.DesiredCount = 1
			got := Plan(Input{Pool: p, Members: []*pool.Member{tt.member}, Observed: map[string]Observation{"m-a": tt.obs},
				JobExists: true, Target: 1, Now: now, NewID: ids()})
			var update *pool.Member
			for _, m := range got.Update {
				if m.ID == "m-a" {
					update = m
				}
			}
			switch {
			case tt.want == nil && update != nil && !reflect.DeepEqual(update.Addresses, tt.member.Addresses):
				t.Fatalf("addresses rewritten to %v", update.Addresses)
			case tt.want != nil && (update == nil || !reflect.DeepEqual(update.Addresses, tt.want)):
				t.Fatalf("update = %+v, want addresses %v", update, tt.want)
			case tt.want != nil && update.Phase != tt.member.Phase:
				t.Fatalf("recording addresses changed the phase to %s", update.Phase)
			}
		})
	}
}
