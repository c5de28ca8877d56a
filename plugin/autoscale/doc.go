// Package autoscale decides how many members an autoscaled pool should run,
// with the semantics of Knative Serving's KPA: a stable and a panic window
// over the pool's demand, rate limits relative to the ready members,
// activation scale, scale-down delay, initial scale, min/max bounds and
// scale to zero after a stable window plus a grace period.
//
// It is pure: no I/O, no goroutines and no time.Now(). The leader feeds each
// pool's Decider one aggregated observation per tick (Record, or Miss when a
// gateway could not be read) and asks it for a Decision with the current
// time; storing the decision and acting on it belong to the controller.
// Where Knative treats missing data as zero, this package holds the current
// scale instead: a leader that has just taken over, or that cannot read
// every gateway, knows less than it did, not that the load is gone.
//
// See README.md for the decision pipeline and a glossary.
package autoscale
