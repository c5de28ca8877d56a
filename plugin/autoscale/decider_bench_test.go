package autoscale

import (
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// BenchmarkDecide_1000Pools is one leader tick over 1,000 autoscaled pools:
// record each pool's observation and decide. The pools are warm (their
// windows full) and varied: both metrics, half with a scale-down delay,
// some idle, some busy, some panicking. Target: under 5 ms per tick.
func BenchmarkDecide_1000Pools(b *testing.B) {
	const pools = 1000
	type poolState struct {
		d       *Decider
		spec    pool.Autoscaling
		load    float64
		current int
	}
	ps := make([]poolState, pools)
	for i := range ps {
		spec := pool.DefaultAutoscaling()
		spec.Target, spec.MaxScale = 10, 50
		if i%2 == 0 {
			spec.Metric = pool.MetricRPS
		}
		if i%4 < 2 {
			spec.ScaleDownDelay = pool.Duration(30 * time.Second)
		}
		ps[i] = poolState{d: NewDecider(DefaultConfig()), spec: spec, load: float64(i % 300), current: 1}
	}
	now := t0
	step := func() {
		now = now.Add(time.Second)
		for i := range ps {
			p := &ps[i]
			// A sawtooth of the pool's own period keeps every rule busy.
			load := p.load * float64(now.Unix()%int64(20+i%40)) / 20
			p.d.Record(now, load, 2*load)
			dec := p.d.Decide(now, Input{Spec: p.spec, Ready: p.current, Current: p.current, InitialScaleReached: true})
			p.current = dec.Desired
		}
	}
	for range 200 { // fill every window: stable 60 s + grace 30 s
		step()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		step()
	}
}
