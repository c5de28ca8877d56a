package reconcile

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// BenchmarkPlan_1000Pools20Members times one planning pass over 1,000 pools
// of 20 members each — the leader's work per sweep, without I/O. The pools
// mix steady state, scale-down, scale-up, drains and a rollout.
func BenchmarkPlan_1000Pools20Members(b *testing.B) {
	inputs := make([]Input, 1000)
	for i := range inputs {
		p := testPool(true, 1)
		p.ID = fmt.Sprintf("p-%04d", i)
		in := Input{Pool: p, Observed: map[string]Observation{}, InFlight: map[string]int{}, JobExists: true, Now: now, NewID: ids()}
		for j := range 20 {
			id := fmt.Sprintf("m-%04d-%02d", i, j)
			m := mem(id, pool.PhaseRunning, 1, 600, 600+j)
			if j%10 == 9 {
				m.Phase = pool.PhaseDraining
				m.Since = now.Add(-5 * time.Second)
			}
			in.Members = append(in.Members, m)
			in.Observed[id] = alive
			in.InFlight[id] = j % 3
		}
		switch i % 4 {
		case 0:
			in.Target = 18 // steady
		case 1:
			in.Target = 12 // scale down
		case 2:
			in.Target = 24 // scale up: undrain and create
		case 3:
			p.TemplateGeneration = 2 // rollout
			in.Target = 18
		}
		inputs[i] = in
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range inputs {
			inputs[i].NewID = ids()
			_ = Plan(inputs[i])
		}
	}
}
