package autoscale

import (
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// genSpec draws a valid autoscaling block (checked with pool's own
// validation, so the generator cannot drift from the rules).
func genSpec(t *rapid.T) pool.Autoscaling {
	s := pool.DefaultAutoscaling()
	s.Metric = rapid.SampledFrom([]string{pool.MetricConcurrency, pool.MetricRPS}).Draw(t, "metric")
	s.Target = rapid.Float64Range(0.5, 50).Draw(t, "target")
	s.TargetUtilization = rapid.Float64Range(1, 100).Draw(t, "utilization")
	s.MinScale = rapid.IntRange(0, 3).Draw(t, "min")
	s.MaxScale = rapid.SampledFrom([]int{0, 0, 1, 2, 5, 20}).Draw(t, "max")
	if s.MaxScale > 0 {
		s.MaxScale = max(s.MaxScale, s.MinScale, 1)
	}
	hi := s.MaxScale
	if hi == 0 {
		hi = 6
	}
	s.ActivationScale = rapid.IntRange(max(1, s.MinScale), hi).Draw(t, "activation")
	s.InitialScale = rapid.IntRange(0, hi).Draw(t, "initial")
	s.ScaleDownDelay = pool.Duration(time.Duration(rapid.SampledFrom([]int{0, 0, 3, 20}).Draw(t, "delay")) * time.Second)
	s.StableWindow = pool.Duration(time.Duration(rapid.IntRange(6, 40).Draw(t, "stable")) * time.Second)
	s.PanicWindowPercentage = rapid.Float64Range(1, 100).Draw(t, "panicPct")
	s.PanicThresholdPercentage = rapid.Float64Range(110, 1000).Draw(t, "threshold")
	full := pool.Spec{
		Name: "p", Template: "job", Active: true,
		Ports:       []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP}},
		Drain:       pool.Drain{Timeout: pool.Duration(time.Second), GracePeriod: pool.Duration(time.Second)},
		Autoscaling: &s,
	}
	if err := full.Validate(pool.Limits{AllowZeroInitialScale: true}); err != nil {
		t.Fatalf("generated an invalid spec: %v", err)
	}
	return s
}

// tickKind is what the leader got for one second.
type tickKind int

const (
	tickRecorded tickKind = iota
	tickMissing           // Miss: a gateway could not be read
	tickSkipped           // nothing at all: a new leader, a stalled loop
)

type modelTick struct {
	at    time.Time
	kind  tickKind
	value float64 // of the pool's metric
}

// model is the test's own, simpler account of the data: one slot per
// second, so "complete" and "traffic" need no gap arithmetic.
type model []modelTick

// complete: every one of the last span seconds was recorded. A tick not
// reported at now itself may still be on its way (the decider tolerates
// half a tick of lateness), so only a later tick proves it lost.
func (m model) complete(now time.Time, span time.Duration) bool {
	need := int(span / time.Second)
	seen := 0
	for i := len(m) - 1; i >= 0 && now.Sub(m[i].at) < span; i-- {
		switch {
		case m[i].kind == tickSkipped && m[i].at.Equal(now):
			need--
		case m[i].kind != tickRecorded:
			return false
		default:
			seen++
		}
	}
	return seen >= need
}

// traffic: any recorded demand in (now-span, now].
func (m model) traffic(now time.Time, span time.Duration) bool {
	for i := len(m) - 1; i >= 0 && now.Sub(m[i].at) < span; i-- {
		if m[i].kind == tickRecorded && m[i].value > 0 {
			return true
		}
	}
	return false
}

func TestDecider_Invariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		spec := genSpec(t)
		cfg := DefaultConfig()
		cfg.MaxScaleUpRate = rapid.Float64Range(1.1, 1000).Draw(t, "upRate")
		cfg.MaxScaleDownRate = rapid.Float64Range(1.1, 10).Draw(t, "downRate")
		cfg.ScaleToZeroGrace = time.Duration(rapid.IntRange(1, 40).Draw(t, "grace")) * time.Second
		if rapid.Bool().Draw(t, "limited") {
			cfg.MaxScaleLimit = rapid.IntRange(max(spec.MinScale, spec.ActivationScale, spec.InitialScale, spec.MaxScale, 1), 30).Draw(t, "limit")
		}
		if spec.MaxScale == 0 && cfg.MaxScaleLimit > 0 {
			spec.MaxScale = cfg.MaxScaleLimit // validation wants max_scale under a limit
		}
		stableWin := spec.StableWindow.D()
		zeroSpan := stableWin + cfg.ScaleToZeroGrace

		d := NewDecider(cfg)
		current := 0
		if spec.MinScale > 0 || rapid.Bool().Draw(t, "startUp") {
			current = max(spec.ActivationScale, spec.MinScale)
		}
		reached := rapid.Bool().Draw(t, "reached")
		var m model
		now := t0
		steps := rapid.IntRange(1, 250).Draw(t, "steps")
		for i := range steps {
			now = now.Add(time.Second)
			kind := rapid.SampledFrom([]tickKind{tickRecorded, tickRecorded, tickRecorded, tickRecorded, tickRecorded, tickRecorded, tickMissing, tickSkipped}).Draw(t, "kind")
			value := 0.0
			if rapid.IntRange(0, 2).Draw(t, "busy") == 0 {
				value = rapid.Float64Range(0, 300).Draw(t, "value")
			}
			switch kind {
			case tickRecorded:
				d.Record(now, value, value) // same value on both series: the model need not know the metric
			case tickMissing:
				d.Miss(now)
			}
			m = append(m, modelTick{at: now, kind: kind, value: value})

			ready := rapid.IntRange(0, current).Draw(t, "ready")
			reached = reached || ready >= spec.InitialScale
			held := 0
			if rapid.IntRange(0, 9).Draw(t, "holding") == 0 {
				held = rapid.IntRange(1, 5).Draw(t, "held")
			}
			dec := d.Decide(now, Input{Spec: spec, Ready: ready, Current: current, Held: held, InitialScaleReached: reached})
			got := dec.Desired

			if got < spec.MinScale || (spec.MaxScale > 0 && got > spec.MaxScale) || (cfg.MaxScaleLimit > 0 && got > cfg.MaxScaleLimit) {
				t.Fatalf("step %d: Desired %d outside [%d, %d] (limit %d)", i, got, spec.MinScale, spec.MaxScale, cfg.MaxScaleLimit)
			}
			if got > 0 && got < spec.ActivationScale {
				t.Fatalf("step %d: Desired %d below activation_scale %d", i, got, spec.ActivationScale)
			}
			if dec.Panic && got < current {
				t.Fatalf("step %d: scaled down %d → %d while panicking", i, current, got)
			}
			if !m.complete(now, stableWin) && got < current {
				t.Fatalf("step %d: scaled down %d → %d on an incomplete window", i, current, got)
			}
			if got == 0 && (held > 0 || m.traffic(now, stableWin)) {
				t.Fatalf("step %d: zero with traffic in the stable window (held %d)", i, held)
			}
			if got == 0 && current > 0 && (m.traffic(now, zeroSpan) || !m.complete(now, zeroSpan)) {
				t.Fatalf("step %d: %d → 0 before a fully observed, quiet stable window plus grace", i, current)
			}
			if held > 0 && ready == 0 && got < max(spec.ActivationScale, spec.MinScale, 1) {
				t.Fatalf("step %d: Desired %d with a held request and no ready member", i, got)
			}
			floor := spec.MinScale
			if !reached {
				floor = max(floor, spec.InitialScale)
			}
			if floor > 0 {
				floor = max(floor, spec.ActivationScale)
			}
			if held == 0 && !m.traffic(now, stableWin) && got > max(current, floor) {
				t.Fatalf("step %d: a quiet pool went up %d → %d", i, current, got)
			}
			current = got
		}
	})
}
