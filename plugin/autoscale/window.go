package autoscale

import (
	"github.com/tidepool-run/tidepool/plugin/pool"

	"math"
	"time"
)

// Window is one pool's recent demand: one observation per tick, each the
// pool's total over every gateway for that tick, or a mark that the tick's
// data is missing. It answers averages over the trailing stable and panic
// windows, and whether a span of time was observed without a gap.
//
// Unlike Knative's buckets, which count an interval without a report as
// zero, a Window keeps "no data" apart from "no load": a missing tick makes
// the span incomplete, and an incomplete span never justifies scaling down.
type Window struct {
	tick        time.Duration
	samples     ring[sample]
	lastTraffic time.Time
	// base is the time observations are stored relative to: integer
	// offsets compare a hundred times faster than time.Time, and one
	// Sub per call keeps the monotonic clock's protection from wall-clock
	// steps.
	base    time.Time
	hasBase bool
}

type sample struct {
	at          time.Duration // since base
	concurrency float64
	rps         float64
	ok          bool
}

// NewWindow returns an empty window for observations taken every tick.
func NewWindow(tick time.Duration) *Window {
	if tick <= 0 {
		tick = DefaultTickInterval
	}
	return &Window{tick: tick}
}

// Record adds the tick ending at now: concurrency is the time-weighted
// average number of requests in flight during the tick, summed over the
// gateways and including requests they hold waiting for a member; rps is
// the requests started per second. Negative values count as zero; a NaN or
// infinite value, or a time before the previous observation, counts as a
// missing tick.
func (w *Window) Record(now time.Time, concurrency, rps float64) {
	if bad(concurrency) || bad(rps) {
		w.Miss(now)
		return
	}
	if !w.append(sample{at: w.offset(now), concurrency: max(concurrency, 0), rps: max(rps, 0), ok: true}) {
		return
	}
	if concurrency > 0 || rps > 0 {
		w.lastTraffic = now
	}
}

// Miss marks the tick ending at now as missing: a gateway could not be
// read, so the total is unknown. A tick that is never recorded counts as
// missing too; Miss makes it explicit and exact.
func (w *Window) Miss(now time.Time) { w.append(sample{at: w.offset(now)}) }

// NoteTraffic records that the pool had demand at now without adding an
// observation: a request held for a pool at zero, reported between ticks.
func (w *Window) NoteTraffic(now time.Time) {
	if now.After(w.lastTraffic) {
		w.lastTraffic = now
	}
}

// LastTraffic is the latest time the pool was seen with demand, or the zero
// time if it never was since the window was created.
func (w *Window) LastTraffic() time.Time { return w.lastTraffic }

// offset is now relative to base, which the first call sets.
func (w *Window) offset(now time.Time) time.Duration {
	if !w.hasBase {
		w.base, w.hasBase = now, true
	}
	return now.Sub(w.base)
}

func bad(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }

// append keeps the samples in time order, dropping an observation that
// would go back in time: the leader's loop is the only writer, so that can
// only be a clock step, and the samples after it are the better ones.
func (w *Window) append(s sample) bool {
	if w.samples.len() > 0 && s.at < w.samples.back().at {
		return false
	}
	w.samples.push(s)
	return true
}

// prune forgets observations that no window reaching back span from now
// can include.
func (w *Window) prune(now time.Time, span time.Duration) {
	n := w.offset(now)
	for w.samples.len() > 0 && n-w.samples.front().at >= span {
		w.samples.popFront()
	}
}

// Average returns the mean of the metric over the observations in
// (now-span, now] that have data, and how many there were. Each
// observation is already a one-tick average, so they weigh the same.
func (w *Window) Average(now time.Time, span time.Duration, metric string) (avg float64, n int) {
	sum, end := 0.0, w.offset(now)
	for i := w.samples.len() - 1; i >= 0; i-- {
		s := w.samples.at(i)
		if end-s.at >= span {
			break
		}
		if !s.ok || s.at > end {
			continue
		}
		if metric == pool.MetricRPS {
			sum += s.rps
		} else {
			sum += s.concurrency
		}
		n++
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}

// Complete reports whether (now-span, now] was observed throughout: no
// missing tick, and no gap longer than 1.5 ticks between observations, from
// the window's start to now. The half tick absorbs scheduling jitter; a lost
// tick makes a gap of about two.
func (w *Window) Complete(now time.Time, span time.Duration) bool {
	gap := w.tick + w.tick/2
	end := w.offset(now)
	start := end - span
	// Walk back from now: each observation must be within gap of the
	// next, and the oldest within gap of the window's start.
	next, seen := end, false
	for i := w.samples.len() - 1; i >= 0; i-- {
		s := w.samples.at(i)
		if s.at <= start {
			break
		}
		if s.at > end {
			continue
		}
		if !s.ok || next-s.at > gap {
			return false
		}
		next, seen = s.at, true
	}
	return seen && next-start <= gap
}
