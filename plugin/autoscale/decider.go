package autoscale

import (
	"math"
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// Decider is the autoscaler of one pool. It keeps what KPA keeps between
// ticks: the demand window, whether the pool is panicking and since when,
// the largest decision of the current panic, and the scale-down delay's
// recent decisions. A new leader starts with a new Decider; what it lacks in
// history it makes up for by holding the current scale until its window is
// complete.
//
// A Decider is not safe for concurrent use: the leader's loop owns it.
type Decider struct {
	cfg    Config
	window *Window
	delay  maxWindow

	// panicking is KPA's panic mode; lastOver is the last decision over
	// the panic threshold, which ends it a stable window later.
	panicking bool
	lastOver  time.Time
	// maxPanic is the largest decision of the current panic: the floor
	// of every decision until the panic ends.
	maxPanic int
}

// NewDecider returns the autoscaler of one pool. cfg should have passed
// Validate; a zero field takes its default.
func NewDecider(cfg Config) *Decider {
	def := DefaultConfig()
	if cfg.MaxScaleUpRate <= 1 {
		cfg.MaxScaleUpRate = def.MaxScaleUpRate
	}
	if cfg.MaxScaleDownRate <= 1 {
		cfg.MaxScaleDownRate = def.MaxScaleDownRate
	}
	if cfg.ScaleToZeroGrace <= 0 {
		cfg.ScaleToZeroGrace = def.ScaleToZeroGrace
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = def.TickInterval
	}
	return &Decider{cfg: cfg, window: NewWindow(cfg.TickInterval)}
}

// Record adds the pool's observation for the tick ending at now (see
// Window.Record).
func (d *Decider) Record(now time.Time, concurrency, rps float64) {
	d.window.Record(now, concurrency, rps)
}

// Miss marks the tick ending at now as having no data (see Window.Miss).
func (d *Decider) Miss(now time.Time) { d.window.Miss(now) }

// Input is what the decider needs to know about the pool besides its
// demand.
type Input struct {
	// Spec is the pool's autoscaling block, already validated.
	Spec pool.Autoscaling
	// Ready is the number of members that pass their health checks: the
	// base of the rate limits and of the panic threshold, as in KPA.
	Ready int
	// Current is the autoscaled desired count in effect (the one stored).
	// Missing data holds the pool here, and a panic never goes below it.
	Current int
	// Held is how many requests the gateways hold right now for want of a
	// routable member; reported as it happens, not once per tick.
	Held int
	// InitialScaleReached is whether Ready has reached the spec's
	// initial_scale at least once since the pool was created; the caller
	// stores it, because it must survive a change of leader.
	InitialScaleReached bool
}

// Decision is the decider's answer for one pool at one instant, with what
// it was based on so that the API and the metrics can show why.
type Decision struct {
	// Desired is the member count the pool should have.
	Desired int `json:"desired"`
	// Panic is KPA's panic mode: demand over the panic window reached
	// panic_threshold_percentage of the ready members' capacity; no
	// scale-down until a stable window has passed below the threshold.
	Panic bool `json:"panic"`
	// StableDesired and PanicDesired are the counts the two windows ask
	// for on their own, after the rate limits and activation scale.
	StableDesired int `json:"stable_desired"`
	PanicDesired  int `json:"panic_desired"`
	// Hold is set when missing data kept the pool from scaling down.
	Hold     bool     `json:"hold"`
	Observed Observed `json:"observed"`
}

// Observed is the demand the decision was made on.
type Observed struct {
	// Metric is "concurrency" or "rps", the series Stable and Panic
	// average.
	Metric string  `json:"metric"`
	Stable float64 `json:"stable"`
	Panic  float64 `json:"panic"`
	// ReadyMembers is Input.Ready.
	ReadyMembers int `json:"ready_members"`
	// Held is Input.Held.
	Held int `json:"held"`
	// LastTraffic is the latest time the pool had demand, zero if it has
	// had none since this leader started observing it.
	LastTraffic time.Time `json:"last_traffic"`
	// Complete is whether the whole stable window was observed: without
	// it, the decider holds the current scale rather than scale down.
	Complete bool `json:"complete"`
}

// Decide returns the pool's desired member count at now. The steps, in
// order (README.md has the diagram):
//
//  1. averages of the metric over the stable and panic windows;
//  2. per window, desired = ceil(average / (target × utilization)); if
//     not zero, rate-limited relative to the ready members and at least
//     activation_scale;
//  3. panic mode: entered at panic desired / ready ≥ threshold, left a
//     stable window after the last tick over it; while in it the larger of
//     both windows, never less than before;
//  4. scale-down delay: the largest decision of the trailing delay;
//  5. missing data: never below Current;
//  6. from a non-zero count, zero only after a whole stable window plus
//     the grace period observed without traffic and with nothing held;
//     until then the rate-limited minimum;
//  7. a held request with no ready member: at least
//     max(activation_scale, min_scale, 1), at once;
//  8. initial_scale until reached, activation_scale as the floor of any
//     non-zero count, then min_scale, max_scale and max_scale_limit.
func (d *Decider) Decide(now time.Time, in Input) Decision {
	spec := in.Spec
	stableWin, panicWin := d.windows(spec)
	zeroSpan := stableWin + d.cfg.ScaleToZeroGrace
	d.window.prune(now, zeroSpan+2*d.cfg.TickInterval)
	if in.Held > 0 {
		d.window.NoteTraffic(now)
	}

	metric := spec.Metric
	if metric != pool.MetricRPS {
		metric = pool.MetricConcurrency
	}
	stable, nStable := d.window.Average(now, stableWin, metric)
	panicAvg, nPanic := d.window.Average(now, panicWin, metric)
	if nPanic == 0 {
		panicAvg = stable
	}
	complete := d.window.Complete(now, stableWin)
	dec := Decision{Observed: Observed{
		Metric: metric, Stable: stable, Panic: panicAvg, ReadyMembers: in.Ready,
		Held: in.Held, LastTraffic: d.window.LastTraffic(), Complete: complete,
	}}

	// 2. What each window asks for, within the rate limits.
	ready := float64(max(in.Ready, 1)) // KPA: rates and panic relative to at least one
	perMember := spec.Target * spec.TargetUtilization / 100
	stablePods, panicPods := podsFor(stable, perMember), podsFor(panicAvg, perMember)
	maxUp := int(math.Min(math.Ceil(d.cfg.MaxScaleUpRate*ready), math.MaxInt32))
	// The down rate bounds how far a decision may fall, never lifts one:
	// members still draining count as ready for a while, and KPA's
	// floor(ready / rate) would then raise an idle pool above its count.
	maxDown := min(int(math.Floor(ready/d.cfg.MaxScaleDownRate)), max(in.Current, 0))
	dec.StableDesired = limit(stablePods, maxDown, maxUp, spec)
	dec.PanicDesired = limit(panicPods, maxDown, maxUp, spec)

	// 3. Panic mode. An empty window says nothing about the threshold, so
	// it neither starts nor ends a panic.
	desired := dec.StableDesired
	if nStable == 0 {
		desired = in.Current
	} else {
		d.updatePanic(now, float64(panicPods)/ready >= spec.PanicThresholdPercentage/100, stableWin, in.Current)
	}
	if d.panicking {
		desired = max(desired, dec.PanicDesired, d.maxPanic, in.Current)
		d.maxPanic = desired
	}
	dec.Panic = d.panicking

	// 4. Scale-down delay.
	if delay := spec.ScaleDownDelay.D(); delay > 0 {
		desired = d.delay.record(now, desired, delay)
	} else {
		d.delay.q.clear()
	}

	// 5. No data is not zero.
	if !complete && desired < in.Current {
		desired, dec.Hold = in.Current, true
	}

	// 6. Scale to zero only after a quiet, fully observed stable window
	// plus grace. A pool already at zero stays there: that is no
	// scale-down, and a new leader must not wake idle pools.
	if desired == 0 && in.Current > 0 && !d.zeroAllowed(now, zeroSpan, in.Held) {
		desired = max(1, maxDown)
	}

	// 7. Demand at zero.
	if in.Held > 0 && in.Ready == 0 {
		desired = max(desired, spec.ActivationScale, spec.MinScale, 1)
	}

	// 8. Floors, then bounds last. An initial_scale or min_scale below
	// activation_scale is raised to it, like any other non-zero count:
	// Knative lets an idle pool with min_scale 1 and activation_scale 2
	// sit at 1, then jump to 2 on its first request.
	if !in.InitialScaleReached {
		desired = max(desired, spec.InitialScale)
	}
	desired = max(desired, spec.MinScale)
	if desired > 0 {
		desired = max(desired, spec.ActivationScale)
	}
	if spec.MaxScale > 0 {
		desired = min(desired, spec.MaxScale)
	}
	if d.cfg.MaxScaleLimit > 0 {
		desired = min(desired, d.cfg.MaxScaleLimit)
	}
	dec.Desired = desired
	return dec
}

// windows returns the stable and panic window lengths. The panic window is
// rounded up to whole ticks (at least one), as Knative rounds it up to whole
// buckets, so it always holds an observation.
func (d *Decider) windows(spec pool.Autoscaling) (stable, panicWin time.Duration) {
	tick := d.cfg.TickInterval
	stable = max(spec.StableWindow.D(), tick)
	pct := min(max(spec.PanicWindowPercentage, 1), 100)
	panicWin = time.Duration(math.Ceil(float64(stable)*pct/100/float64(tick))) * tick
	return stable, min(max(panicWin, tick), stable)
}

// updatePanic applies KPA's panic transitions. Entering, the panic's floor
// starts at the count in effect: Knative starts it at zero, which lets the
// first panic decision land below members that are still starting.
func (d *Decider) updatePanic(now time.Time, over bool, stableWin time.Duration, current int) {
	switch {
	case over:
		if !d.panicking {
			d.panicking, d.maxPanic = true, current
		}
		d.lastOver = now
	case d.panicking && now.Sub(d.lastOver) > stableWin:
		d.panicking, d.maxPanic = false, 0
	}
}

// limit bounds a window's count by the rate limits and raises it to
// activation_scale, as KPA does, so the panic threshold and the delay see
// the count the pool will really get. Zero is left alone: the step to zero
// is bounded by the scale-to-zero gate (a quiet, fully observed stable
// window plus grace), which is stronger evidence than any rate; rate-limiting
// it instead would keep a pool whose activation_scale is at least the down
// rate from ever reaching zero.
func limit(pods, maxDown, maxUp int, spec pool.Autoscaling) int {
	if pods == 0 {
		return 0
	}
	return max(clamp(pods, maxDown, maxUp), spec.ActivationScale)
}

// zeroAllowed is Knative's "inactive for the grace period" made exact: the
// last stable window plus grace was observed without a gap and without
// traffic, and nothing is held now.
func (d *Decider) zeroAllowed(now time.Time, span time.Duration, held int) bool {
	if held > 0 || !d.window.Complete(now, span) {
		return false
	}
	last := d.window.LastTraffic()
	return last.IsZero() || now.Sub(last) >= span
}

// podsFor is ceil(value / perMember), guarded against the float noise of
// an average (10.000000001 / 10 must not ask for two) and against a spec
// that did not pass validation; any demand at all asks for one.
func podsFor(value, perMember float64) int {
	if !(value > 0) {
		return 0
	}
	if !(perMember > 0) {
		return math.MaxInt32
	}
	return int(math.Min(math.Max(math.Ceil(value/perMember-1e-9), 1), math.MaxInt32))
}

func clamp(v, lo, hi int) int { return min(max(v, lo), hi) }
