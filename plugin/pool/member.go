package pool

import "time"

// Phase is where Tidepool is driving a member. It is stored in KV, so a new
// leader continues a drain or a grace period where the old one stopped.
//
//	         create
//	           │
//	           ▼      target falls        in-flight 0 or drain.timeout
//	      ┌─ running ────────────▶ draining ──────────────────────┐
//	      │    ▲  ▲      undrain      │                            ▼
//	dead  │    │  └───────────────────┘                         stopped
//	      │    └──────────────── restart (target rises) ───────────┤
//	      ▼                                                        │ grace_period
//	   deleting ◀──────────────────────────────────────────────────┘
//	      │ group gone from the Nomad job
//	      ▼
//	  (forgotten)
type Phase string

// Member phases.
const (
	PhaseRunning  Phase = "running"
	PhaseDraining Phase = "draining"
	PhaseStopped  Phase = "stopped"
	PhaseDeleting Phase = "deleting"
)

// Member is the stored record of one member: one task group of the pool's
// Nomad job, named by the member id.
type Member struct {
	ID     string `json:"id"`
	PoolID string `json:"pool_id"`
	// Generation is the pool template generation the member runs.
	Generation int64 `json:"generation"`
	Phase      Phase `json:"phase"`
	// Since is when the member entered its phase: drain and grace timers
	// count from it.
	Since     time.Time `json:"since"`
	CreatedAt time.Time `json:"created_at"`
	// Addresses maps each port label to the host:port Nomad allocated to
	// the member's current allocation. Gateways route only to Consul
	// instances that agree with it, so a service registered by other means
	// (or a template's address override) cannot aim a gateway elsewhere.
	Addresses map[string]string `json:"addresses,omitempty"`

	// ModifyIndex is the Consul KV index the record was read at. Not stored.
	ModifyIndex uint64 `json:"-"`
}

// MemberState is a member's state as users see it (SPEC.md §3): the phase,
// refined by what Nomad and Consul report for a running member.
type MemberState string

// Member states.
const (
	MemberPending  MemberState = "pending"
	MemberStarting MemberState = "starting"
	MemberAlive    MemberState = "alive"
	MemberDraining MemberState = "draining"
	MemberStopped  MemberState = "stopped"
	MemberDeleting MemberState = "deleting"
	MemberDead     MemberState = "dead"
)

// RunningCount is the Nomad task group count for a member in phase p.
func (p Phase) RunningCount() int {
	if p == PhaseRunning || p == PhaseDraining {
		return 1
	}
	return 0
}
