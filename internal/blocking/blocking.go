// Package blocking runs a Consul blocking query over and over, the way
// Consul's documentation asks clients to: each query waits on the index the
// last one returned, an index that goes backwards (a restored or replaced
// server) starts over from zero, and failures back off exponentially with
// jitter instead of hammering an agent that is down. The routing watcher,
// the controller's pool and health watches all run on it.
package blocking

import (
	"context"
	"math/rand/v2"
	"time"
)

// Query runs one blocking query that waits while the data is still at
// index, for at most wait, and returns the index the answer is at.
type Query func(ctx context.Context, index uint64, wait time.Duration) (uint64, error)

// Loop configures the loop; the zero value is usable.
type Loop struct {
	// Wait is how long one query may block (default 5m, Consul's
	// maximum is 10m).
	Wait time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failure (default
	// 1s and 30s); the pause doubles with each failure in a row.
	MinBackoff, MaxBackoff time.Duration
	// Failing is called with the first error of a run of failures;
	// Recovered when a query succeeds again. Either may be nil.
	Failing   func(err error)
	Recovered func()
	// sleep waits d or until ctx is done; tests replace it.
	sleep func(ctx context.Context, d time.Duration)
}

// Run queries until ctx is done.
func (l Loop) Run(ctx context.Context, q Query) {
	wait := l.Wait
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	lo, hi := l.MinBackoff, l.MaxBackoff
	if lo <= 0 {
		lo = time.Second
	}
	if hi < lo {
		hi = max(lo, 30*time.Second)
	}
	sleep := l.sleep
	if sleep == nil {
		sleep = Sleep
	}
	var index uint64
	failures := 0
	for ctx.Err() == nil {
		next, err := q(ctx, index, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if failures == 0 && l.Failing != nil {
				l.Failing(err)
			}
			failures++
			sleep(ctx, Backoff(failures, lo, hi))
			continue
		}
		if failures > 0 && l.Recovered != nil {
			l.Recovered()
		}
		failures = 0
		index = NextIndex(index, next)
	}
}

// NextIndex is the index to wait on after a query at index returned next:
// next, unless it went backwards, then 0 (start over) — Consul's rule for
// blocking queries.
func NextIndex(index, next uint64) uint64 {
	if next < index {
		return 0
	}
	return next
}

// Backoff is the pause after the n-th failure in a row: lo doubling up to
// hi, with up to 20% jitter so many clients do not retry in step.
func Backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// Sleep waits for d or until ctx is done, whichever comes first.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
