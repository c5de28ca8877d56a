package autoscale

import (
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// The cases of Knative Serving's pkg/autoscaler/scaling/autoscaler_test.go,
// restated for this decider: Knative's fake metric client becomes
// setAverages, its fake pod counter Input.Ready, and a result of 0 needs the
// quiet, fully observed window that Knative's KPA reconciler checks
// separately (setAverages provides it when both averages are 0).

// knStep is one Scale call of a Knative test.
type knStep struct {
	at            time.Duration // since the test's start
	stable, panic float64
	ready         int
	current       int // the count in effect; -1: the previous step's result (ready on the first)
	want          int
	wantPanic     *bool
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// delayFiveMinutes is the spec of Knative's scale-down delay tests: a
// five-minute delay, and a panic threshold no step reaches.
func delayFiveMinutes(s *pool.Autoscaling) {
	s.ScaleDownDelay = pool.Duration(5 * time.Minute)
	s.PanicThresholdPercentage = 1000
}

func TestDecider_Knative(t *testing.T) {
	tests := []struct {
		name   string
		target float64
		spec   func(*pool.Autoscaling)
		config func(*Config)
		prep   func(*Decider)
		steps  []knStep
	}{
		{name: "NoDataAtZero", target: 10, steps: []knStep{{stable: 0, panic: 0, ready: 1, current: 1, want: 0}}},
		{name: "StableModeNoChange", target: 10, steps: []knStep{{stable: 50, panic: 50, ready: 1, current: 1, want: 5}}},
		{name: "StableModeNoChangeAlreadyScaled", target: 10, steps: []knStep{{stable: 50, panic: 50, ready: 5, current: 5, want: 5}}},
		{
			name: "PanicStableLargerThanPanic", target: 1,
			prep:  func(d *Decider) { d.panicking, d.lastOver, d.maxPanic = true, t0.Add(-5*time.Second), 5 },
			steps: []knStep{{stable: 50, panic: 30, ready: 5, current: 5, want: 50, wantPanic: yes()}},
		},
		{
			name: "PanicStableLessThanPanic", target: 1,
			prep:  func(d *Decider) { d.panicking, d.lastOver, d.maxPanic = true, t0.Add(-5*time.Second), 5 },
			steps: []knStep{{stable: 20, panic: 30, ready: 5, current: 5, want: 30, wantPanic: yes()}},
		},
		{
			name: "StableModeIncreaseWithSmallScaleUpRate", target: 1,
			config: func(c *Config) { c.MaxScaleUpRate = 1.1 },
			// ceil(1.1 × 2) = 3: a small rate still grows by one.
			steps: []knStep{{stable: 3, panic: 3.1, ready: 2, current: 2, want: 3}},
		},
		{
			name: "StableModeDecreaseWithSmallScaleDownRate", target: 10,
			config: func(c *Config) { c.MaxScaleDownRate = 1.1 },
			steps:  []knStep{{stable: 1, panic: 1, ready: 100, current: 100, want: 90}},
		},
		{name: "PanicModeDoublePodCount", target: 10, steps: []knStep{{stable: 50, panic: 100, ready: 1, current: 1, want: 10, wantPanic: yes()}}},
		{name: "StableModeIncreaseWithConcurrencyDefault", target: 10, steps: []knStep{
			{stable: 50, panic: 10, ready: 1, current: 1, want: 5},
			{stable: 100, panic: 10, ready: 1, current: -1, want: 10},
		}},
		{
			name: "StableModeIncreaseWithRPS", target: 10,
			spec: func(s *pool.Autoscaling) { s.Metric = pool.MetricRPS },
			steps: []knStep{
				{stable: 50, panic: 50, ready: 1, current: 1, want: 5},
				{stable: 100, panic: 99, ready: 1, current: -1, want: 10},
			},
		},
		{name: "StableModeDecrease", target: 10, steps: []knStep{
			{stable: 100, panic: 100, ready: 8, current: 8, want: 10},
			{stable: 50, panic: 50, ready: 8, current: -1, want: 5},
		}},
		{name: "StableModeNoTrafficScaleToZero", target: 10, steps: []knStep{
			{stable: 1, panic: 0, ready: 1, current: 1, want: 1},
			{at: 90 * time.Second, stable: 0, panic: 0, ready: 1, current: -1, want: 0},
		}},
		{
			name: "ActivationScale", target: 10,
			spec: func(s *pool.Autoscaling) { s.ActivationScale = 2 },
			steps: []knStep{
				{stable: 0, panic: 0, ready: 1, current: 1, want: 0},
				{stable: 1, panic: 0, ready: 1, current: -1, want: 2},
			},
		},
		{name: "RateLimitScaleUp", target: 10, steps: []knStep{
			{stable: 1000, panic: 1001, ready: 1, current: 1, want: 10}, // needs 100, ×10 at most
			{stable: 1000, panic: 1001, ready: 10, current: -1, want: 100},
		}},
		{name: "RateLimitScaleDown", target: 10, steps: []knStep{
			{stable: 1, panic: 1, ready: 100, current: 100, want: 10}, // needs 1, ÷10 at most
			{stable: 1, panic: 1, ready: 10, current: -1, want: 1},
		}},
		{name: "UseOnePodAsMinimumIfNoneReady", target: 10, steps: []knStep{
			{stable: 1000, panic: 888, ready: 0, current: 0, want: 10},
		}},
		{name: "PanicThenUnPanicScaleDown", target: 10, steps: []knStep{
			{stable: 100, panic: 100, ready: 1, current: 1, want: 10, wantPanic: yes()},
			{at: time.Second, stable: 100, panic: 1000, ready: 10, current: -1, want: 100, wantPanic: yes()},
			// Traffic dropped off; the scale stays while panicking.
			{at: 31 * time.Second, stable: 1, panic: 1, ready: 10, current: -1, want: 100, wantPanic: yes()},
			// A stable window after the last tick over the threshold.
			{at: 62 * time.Second, stable: 1, panic: 1, ready: 10, current: -1, want: 1, wantPanic: no()},
		}},
		{name: "UnpanicAfterSlowIncrease", target: 1, steps: []knStep{
			{stable: 11, panic: 25, ready: 10, current: 10, want: 25, wantPanic: yes()},
			{at: 30 * time.Second, stable: 30, panic: 41, ready: 40, current: -1, want: 41, wantPanic: yes()},
			{at: 61 * time.Second, stable: 50, panic: 56, ready: 55, current: 55, want: 50, wantPanic: no()},
		}},
		{name: "ExtendPanicWindow", target: 1, steps: []knStep{
			{stable: 11, panic: 25, ready: 10, current: 10, want: 25, wantPanic: yes()},
			{at: 30 * time.Second, stable: 30, panic: 80, ready: 40, current: -1, want: 80, wantPanic: yes()},
			// Still panicking 61 s after the start: the window was extended at 30 s.
			{at: 61 * time.Second, stable: 30, panic: 30, ready: 80, current: -1, want: 80, wantPanic: yes()},
		}},
		{name: "PanicModeExponentialTrackAndStabilize", target: 1, steps: []knStep{
			{stable: 6, panic: 6, ready: 1, current: 1, want: 6, wantPanic: yes()},
			{at: time.Second, stable: 36, panic: 36, ready: 6, current: -1, want: 36, wantPanic: yes()},
			{at: 2 * time.Second, stable: 216, panic: 216, ready: 36, current: -1, want: 216, wantPanic: yes()},
			{at: 3 * time.Second, stable: 1296, panic: 1296, ready: 216, current: -1, want: 1296, wantPanic: yes()},
			{at: 4 * time.Second, stable: 1296, panic: 1296, ready: 1296, current: -1, want: 1296, wantPanic: yes()},
		}},
		{
			name: "UpdateTarget", target: 10,
			steps: []knStep{{stable: 100, panic: 101, ready: 1, current: 1, want: 10}},
		},
		{
			name: "ScaleDownDelaySimple", target: 10,
			spec: delayFiveMinutes,
			steps: []knStep{
				{at: 2 * time.Second, stable: 40, panic: 40, ready: 0, current: 0, want: 4},
				// Five minutes at no load: not yet past the delay.
				{at: 5 * time.Minute, stable: 0, panic: 0, ready: 0, current: -1, want: 4},
				{at: 5*time.Minute + 2*time.Second, stable: 0, panic: 0, ready: 0, current: -1, want: 0},
			},
		},
		{
			name: "ScaleDownDelayGradual", target: 10,
			spec: delayFiveMinutes,
			steps: []knStep{
				{at: 9 * time.Minute, stable: 40, panic: 40, ready: 0, current: 0, want: 4},
				{at: 10 * time.Minute, stable: 30, panic: 30, ready: 0, current: -1, want: 4}, // 4 still dominates
				{at: 11 * time.Minute, stable: 0, panic: 0, ready: 0, current: -1, want: 4},
				{at: 14 * time.Minute, stable: 0, panic: 0, ready: 0, current: -1, want: 3}, // 4 scrolls out
				{at: 15 * time.Minute, stable: 0, panic: 0, ready: 0, current: -1, want: 0},
			},
		},
		{
			name: "ScaleDownDelayZero", target: 10,
			spec: func(s *pool.Autoscaling) { s.PanicThresholdPercentage = 1000 },
			steps: []knStep{
				{stable: 40, panic: 40, ready: 0, current: 0, want: 4},
				// No delay: down at once (a one-tick delay would keep 4).
				{at: 500 * time.Millisecond, stable: 20, panic: 20, ready: 0, current: -1, want: 2},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := knSpec(tt.target)
			if tt.spec != nil {
				tt.spec(&spec)
			}
			cfg := knConfig()
			if tt.config != nil {
				tt.config(&cfg)
			}
			d := NewDecider(cfg)
			if tt.prep != nil {
				tt.prep(d)
			}
			prev := 0
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				setAverages(t, d, now, s.stable, s.panic)
				cur := s.current
				if cur < 0 {
					cur = prev
				}
				got := d.Decide(now, Input{Spec: spec, Ready: s.ready, Current: cur})
				if got.Desired != s.want {
					t.Errorf("step %d (%s): Desired = %d, want %d (%+v)", i, s.at, got.Desired, s.want, got)
				}
				if s.wantPanic != nil && got.Panic != *s.wantPanic {
					t.Errorf("step %d (%s): Panic = %v, want %v", i, s.at, got.Panic, *s.wantPanic)
				}
				prev = got.Desired
			}
		})
	}
}
