package pool

import "time"

// Scale is the autoscaler's decision for one autoscaled pool, kept in its
// own KV record (KV.ScaleKey) so the user's spec and its generation are
// never rewritten by the autoscaler. The planner's target is Desired.
type Scale struct {
	// Desired is how many members should run.
	Desired int `json:"desired"`
	// Panic: the pool is in panic mode (no scale-down).
	Panic bool `json:"panic"`
	// InitialScaleReached: the pool has once had initial_scale ready
	// members; until then the autoscaler keeps at least that many.
	InitialScaleReached bool `json:"initial_scale_reached"`
	// Observed is what the decision was made from.
	Observed ScaleObserved `json:"observed"`
	// ColdStart is how long the last scale from zero took: from the first
	// held request to a routable member.
	ColdStart Duration  `json:"cold_start,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`

	// ModifyIndex is the KV index the record was read at. Not stored.
	ModifyIndex uint64 `json:"-"`
}

// ScaleObserved is the demand behind a decision.
type ScaleObserved struct {
	Metric string `json:"metric"`
	// Stable and Panic are the metric averaged over the stable and panic
	// windows (concurrency or requests per second, over the whole pool).
	Stable float64 `json:"stable"`
	Panic  float64 `json:"panic"`
	// ReadyMembers can take traffic; Held requests wait in gateways.
	ReadyMembers int       `json:"ready_members"`
	Held         int       `json:"held"`
	LastTraffic  time.Time `json:"last_traffic,omitzero"`
	// Complete: every tick of the stable window had data from every
	// gateway. An incomplete window never scales a pool down.
	Complete bool `json:"complete"`
}
