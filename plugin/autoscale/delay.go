package autoscale

import "time"

// maxWindow is the scale-down delay: the largest decision of the trailing
// delay, so a drop in demand lowers the pool only once it has lasted that
// long, while a rise passes at once. It is a monotonic queue (decisions in
// time order, each smaller than the one before), so a tick costs O(1)
// amortized however long the delay is.
type maxWindow struct {
	q ring[point]
}

type point struct {
	at time.Time
	v  int
}

// record adds the decision made at now and returns the largest decision in
// (now-span, now].
func (m *maxWindow) record(now time.Time, v int, span time.Duration) int {
	for m.q.len() > 0 && m.q.back().v <= v {
		m.q.popBack()
	}
	m.q.push(point{at: now, v: v})
	for m.q.len() > 1 && now.Sub(m.q.front().at) >= span {
		m.q.popFront()
	}
	return m.q.front().v
}
