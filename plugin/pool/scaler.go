package pool

import "time"

// ScalerStatus is the record of a pool's scheduled scaler
// (scaler-runs/<pool-id> in KV). The leader writes LastRun before it runs the
// script, with a check-and-set, so every controller — a new leader after
// a failover too — runs a pool's script at most once per interval.
type ScalerStatus struct {
	PoolID string `json:"pool_id"`
	// LastRun is when the last run started.
	LastRun  time.Time `json:"last_run"`
	Duration Duration  `json:"duration"`
	// Outcome is ScalerRunning while a run is under way, then how it ended.
	Outcome   string   `json:"outcome"`
	Error     string   `json:"error,omitempty"`
	ErrorLine int      `json:"error_line,omitempty"`
	Output    []string `json:"output,omitempty"`
	Runs      int64    `json:"runs"`

	// ModifyIndex is the KV index the record was read at. Not stored.
	ModifyIndex uint64 `json:"-"`
}

// ScalerRunning is the outcome of a run that has started and not ended.
const ScalerRunning = "running"

// NextRun is when the scaler is due: at once before its first run, then
// one interval after the last run started.
func (s *ScalerStatus) NextRun(interval time.Duration) time.Time {
	if s.LastRun.IsZero() {
		return time.Time{}
	}
	return s.LastRun.Add(interval)
}
