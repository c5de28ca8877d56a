package autoscale

import (
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// t0 is the tests' epoch; nothing reads the wall clock.
var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func sec(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }

// knSpec is the spec Knative's autoscaler tests use: a per-member target of
// target (utilization 100 %, so target × utilization = TargetValue), a 60 s
// stable window, a 6 s panic window, panic at 200 %.
func knSpec(target float64) pool.Autoscaling {
	s := pool.DefaultAutoscaling()
	s.Target, s.TargetUtilization = target, 100
	s.StableWindow = pool.Duration(60 * time.Second)
	s.PanicWindowPercentage, s.PanicThresholdPercentage = 10, 200
	s.ActivationScale, s.InitialScale = 1, 0
	return s
}

// knConfig is Knative's test config: rates of 10 both ways.
func knConfig() Config {
	c := DefaultConfig()
	c.MaxScaleUpRate, c.MaxScaleDownRate = 10, 10
	return c
}

// setAverages replaces the decider's observations with 90 one-second ticks
// ending at now whose stable (60 s) average is stable and whose panic
// (6 s) average is panicAvg, the way Knative's tests set a fake metric
// client. Panic, delay and last-traffic state carry over.
func setAverages(t *testing.T, d *Decider, now time.Time, stable, panicAvg float64) {
	t.Helper()
	older := (60*stable - 6*panicAvg) / 54
	if older < -1e-9 {
		t.Fatalf("stable %v and panic %v cannot both hold over 60 s and 6 s", stable, panicAvg)
	}
	last := d.window.LastTraffic()
	d.window = NewWindow(d.cfg.TickInterval)
	d.window.lastTraffic = last
	for i := 89; i >= 0; i-- {
		v := max(older, 0)
		if i < 6 {
			v = panicAvg
		}
		d.window.Record(now.Add(-sec(float64(i))), v, v)
	}
}
