package autoscale

import (
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// loop plays the leader: one observation and one decision per second,
// feeding each decision back as the count in effect.
type loop struct {
	t       *testing.T
	d       *Decider
	spec    pool.Autoscaling
	now     time.Time
	current int
	ready   int // -1: follow current (members come up at once)
	held    int
	reached bool
}

func newLoop(t *testing.T, spec pool.Autoscaling, current int) *loop {
	t.Helper()
	return &loop{t: t, d: NewDecider(DefaultConfig()), spec: spec, now: t0, current: current, ready: -1, reached: true}
}

// tick advances a second, records concurrency (nil: the tick is missing)
// and decides.
func (l *loop) tick(concurrency *float64) Decision {
	l.t.Helper()
	l.now = l.now.Add(time.Second)
	if concurrency == nil {
		l.d.Miss(l.now)
	} else {
		l.d.Record(l.now, *concurrency, *concurrency)
	}
	return l.decide()
}

func (l *loop) decide() Decision {
	ready := l.ready
	if ready < 0 {
		ready = l.current
	}
	dec := l.d.Decide(l.now, Input{Spec: l.spec, Ready: ready, Current: l.current, Held: l.held, InitialScaleReached: l.reached})
	l.current = dec.Desired
	return dec
}

// run ticks n times at a steady concurrency and returns the last decision.
func (l *loop) run(n int, concurrency float64) Decision {
	l.t.Helper()
	var dec Decision
	for range n {
		dec = l.tick(&concurrency)
	}
	return dec
}

func ptr(f float64) *float64 { return &f }

func TestDecider_NewLeaderHoldsUntilWindowIsFull(t *testing.T) {
	spec := knSpec(10)
	l := newLoop(t, spec, 8) // the previous leader left 8 members
	for i := 1; i < 60; i++ {
		dec := l.tick(ptr(0))
		if dec.Desired != 8 || !dec.Hold || dec.Observed.Complete {
			t.Fatalf("after %ds: %+v, want 8 held on an incomplete window", i, dec)
		}
	}
	dec := l.tick(ptr(0))
	if !dec.Observed.Complete || dec.Desired != 4 {
		t.Fatalf("after 60s: %+v, want a complete window and the first halving (8 → 4)", dec)
	}
}

func TestDecider_NewLeaderScalesUpOnPartialData(t *testing.T) {
	l := newLoop(t, knSpec(10), 2)
	dec := l.run(3, 95)
	if dec.Desired != 10 || dec.Observed.Complete {
		t.Errorf("%+v, want 10 from three seconds of data", dec)
	}
}

func TestDecider_MissingTickHoldsForAStableWindow(t *testing.T) {
	tests := []struct {
		name string
		gap  func(l *loop)
	}{
		{"marked missing", func(l *loop) { l.tick(nil) }},
		{"never reported", func(l *loop) { l.now = l.now.Add(time.Second) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := knSpec(10)
			spec.MinScale, spec.ActivationScale = 2, 2
			l := newLoop(t, spec, 4)
			if dec := l.run(60, 35); dec.Desired != 4 || !dec.Observed.Complete {
				t.Fatalf("steady: %+v, want 4 on a complete window", dec)
			}
			tt.gap(l)
			// Load halves: the window that includes the gap cannot say so.
			for i := 1; i < 60; i++ {
				if dec := l.tick(ptr(15)); dec.Desired != 4 {
					t.Fatalf("%ds after the gap: %+v, want 4 held", i, dec)
				}
			}
			if dec := l.tick(ptr(15)); dec.Desired != 2 || dec.Hold {
				t.Fatalf("a stable window after the gap: %+v, want 2", dec)
			}
		})
	}
}

func TestDecider_ScaleToZeroTiming(t *testing.T) {
	tests := []struct {
		name     string
		delay    time.Duration
		wantZero time.Duration // after the last tick with traffic
	}{
		{"stable window plus grace", 0, 90 * time.Second},
		// The stable window asks for members until the traffic has left it
		// (59 s), and the delay keeps that for two minutes more.
		{"a longer scale-down delay wins", 2 * time.Minute, 59*time.Second + 2*time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := knSpec(10)
			spec.ActivationScale = 2
			spec.ScaleDownDelay = pool.Duration(tt.delay)
			l := newLoop(t, spec, 3)
			l.run(120, 25)
			lastTraffic := l.now
			var zeroAt time.Duration
			for i := 1; i <= 400 && zeroAt == 0; i++ {
				dec := l.tick(ptr(0))
				switch {
				case dec.Desired == 0:
					zeroAt = l.now.Sub(lastTraffic)
				case dec.Desired < 2:
					t.Fatalf("%ds after traffic: Desired %d, below activation_scale 2", i, dec.Desired)
				}
			}
			if zeroAt != tt.wantZero {
				t.Errorf("reached zero %s after the last traffic, want %s", zeroAt, tt.wantZero)
			}
		})
	}
}

func TestDecider_NoZeroWithTrafficOrGapInWindow(t *testing.T) {
	spec := knSpec(10)
	l := newLoop(t, spec, 1)
	l.run(100, 0)
	if l.current != 0 {
		t.Fatalf("idle pool at %d, want 0", l.current)
	}
	l.current = 1
	l.run(10, 0)
	l.tick(ptr(0.01)) // one short request
	for i := 1; i < 90; i++ {
		if dec := l.tick(ptr(0)); dec.Desired == 0 {
			t.Fatalf("zero %ds after traffic, want not before 90s", i)
		}
	}
	l.run(80, 0)
	l.current = 1
	l.tick(nil) // a gateway went unread
	for i := 1; i < 90; i++ {
		if dec := l.tick(ptr(0)); dec.Desired == 0 {
			t.Fatalf("zero %ds after a missing tick, want a fully observed stable window plus grace first", i)
		}
	}
	if dec := l.tick(ptr(0)); dec.Desired != 0 {
		t.Errorf("%+v, want 0 once the gap has left the window", dec)
	}
}

func TestDecider_IdlePoolStaysAtZeroUnderNewLeader(t *testing.T) {
	l := newLoop(t, knSpec(10), 0)
	if dec := l.decide(); dec.Desired != 0 {
		t.Errorf("no data at all: %+v, want 0", dec)
	}
	if dec := l.run(5, 0); dec.Desired != 0 {
		t.Errorf("five quiet seconds: %+v, want 0", dec)
	}
}

func TestDecider_HeldRequestAtZero(t *testing.T) {
	tests := []struct {
		name       string
		min, act   int
		ready      int
		current    int
		wantAtOnce int
	}{
		{"activation scale", 0, 3, 0, 0, 3},
		{"one at least", 0, 1, 0, 0, 1},
		{"members starting already", 0, 2, 0, 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := knSpec(10)
			spec.MinScale, spec.ActivationScale = tt.min, tt.act
			l := newLoop(t, spec, tt.current)
			l.ready = tt.ready
			l.held = 1
			// No observation yet: the gateway's report arrives between ticks.
			if dec := l.decide(); dec.Desired != tt.wantAtOnce || dec.Observed.Held != 1 {
				t.Errorf("%+v, want %d at once", dec, tt.wantAtOnce)
			}
			if lt := l.d.window.LastTraffic(); !lt.Equal(l.now) {
				t.Errorf("LastTraffic = %v, want now: a held request is traffic", lt)
			}
		})
	}
}

func TestDecider_InitialScaleUntilReached(t *testing.T) {
	spec := knSpec(10)
	spec.InitialScale = 5
	l := newLoop(t, spec, 5)
	l.reached = false
	l.ready = 2
	if dec := l.run(200, 0); dec.Desired != 5 {
		t.Fatalf("before initial_scale was reached: %+v, want 5", dec)
	}
	l.reached, l.ready = true, -1
	if dec := l.run(1, 0); dec.Desired != 0 {
		t.Fatalf("after: %+v, want 0 at once (quiet for longer than a stable window plus grace)", dec)
	}
}

func TestDecider_BoundsApplyLast(t *testing.T) {
	tests := []struct {
		name     string
		min, max int
		limit    int
		load     float64
		want     int
	}{
		{"max_scale caps", 0, 8, 0, 500, 8},
		{"server limit caps", 0, 8, 6, 500, 6},
		{"min_scale floors an idle pool", 3, 8, 0, 0, 3},
		{"unbounded", 0, 0, 0, 500, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := knSpec(10)
			spec.MinScale, spec.MaxScale = tt.min, tt.max
			spec.ActivationScale = max(1, tt.min)
			cfg := DefaultConfig()
			cfg.MaxScaleLimit = tt.limit
			l := newLoop(t, spec, 1)
			l.d = NewDecider(cfg)
			if dec := l.run(200, tt.load); dec.Desired != tt.want {
				t.Errorf("%+v, want %d", dec, tt.want)
			}
		})
	}
}

func TestDecider_PanicNeverBelowCountInEffect(t *testing.T) {
	// Knative starts a new panic's floor at zero, so with members still
	// starting (ready 2 of 10) a panic could ask for fewer than in effect.
	d := NewDecider(knConfig())
	setAverages(t, d, t0, 2, 8)
	dec := d.Decide(t0, Input{Spec: knSpec(1), Ready: 2, Current: 10})
	if !dec.Panic || dec.Desired != 10 {
		t.Errorf("%+v, want panic at 10", dec)
	}
}

func TestDecider_MetricSelectsSeries(t *testing.T) {
	for _, tt := range []struct {
		metric string
		want   int
	}{{pool.MetricConcurrency, 3}, {pool.MetricRPS, 20}} {
		t.Run(tt.metric, func(t *testing.T) {
			spec := knSpec(10)
			spec.Metric = tt.metric
			d := NewDecider(DefaultConfig())
			for i := 1; i <= 60; i++ {
				d.Record(t0.Add(sec(float64(i))), 25, 200)
			}
			dec := d.Decide(t0.Add(60*time.Second), Input{Spec: spec, Ready: 3, Current: 3})
			if dec.Desired != tt.want || dec.Observed.Metric != tt.metric {
				t.Errorf("%+v, want %d on %s", dec, tt.want, tt.metric)
			}
		})
	}
}

func TestDecider_TargetUtilization(t *testing.T) {
	spec := knSpec(10)
	spec.TargetUtilization = 70 // 7 per member
	l := newLoop(t, spec, 1)
	if dec := l.run(60, 70); dec.Desired != 10 {
		t.Errorf("%+v, want ceil(70 / 7) = 10", dec)
	}
	if dec := l.run(60, 70.7); dec.Desired != 11 {
		t.Errorf("%+v, want ceil(70.7 / 7) = 11", dec)
	}
}

func TestDecider_DownRateNeverLifts(t *testing.T) {
	// Ten members still count as ready while eight of them drain; the
	// count in effect is already 2 and demand asks for 1.
	d := NewDecider(DefaultConfig())
	setAverages(t, d, t0, 8, 8)
	dec := d.Decide(t0, Input{Spec: knSpec(10), Ready: 10, Current: 2})
	if dec.Desired != 2 {
		t.Errorf("%+v, want 2: floor(10 / 2) = 5 must not raise the pool", dec)
	}
}
