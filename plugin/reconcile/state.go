package reconcile

import "github.com/tidepool-run/tidepool/plugin/pool"

// MemberState is what users see for a member: its phase, refined by what
// Nomad and Consul report while it should run.
func MemberState(m *pool.Member, o Observation) pool.MemberState {
	switch m.Phase {
	case pool.PhaseDraining:
		return pool.MemberDraining
	case pool.PhaseStopped:
		return pool.MemberStopped
	case pool.PhaseDeleting:
		return pool.MemberDeleting
	}
	switch {
	case o.Alloc == AllocDead:
		return pool.MemberDead
	case o.Healthy:
		return pool.MemberAlive
	case o.Alloc == AllocRunning:
		return pool.MemberStarting
	default:
		return pool.MemberPending
	}
}
