package nomadjob

import (
	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// GCPlan is what one garbage collection pass does with the jobs it listed.
type GCPlan struct {
	// Purge are jobs this installation created whose pool has no record:
	// nothing would ever stop them.
	Purge []*api.JobListStub
	// Unmarked are Tidepool jobs without an installation marker (created
	// before jobs carried one) whose pool has no record here. They may
	// belong to another installation, so they are never touched; an
	// operator purges them by hand.
	Unmarked []*api.JobListStub
}

// PlanGC decides which of jobs to purge: those marked managed by Tidepool
// for installation (MetaInstallation), whose id is their pool's job id, and
// whose pool id is not in poolIDs, the ids of every pool record in any
// state.
//
// jobs must be listed before poolIDs: a job is registered only after its
// pool record exists, so a pool whose job appears in the earlier listing
// appears in the later one unless it was deleted since. Listing the other
// way round would purge the job of a pool created in between.
func PlanGC(jobs []*api.JobListStub, poolIDs []string, installation string) GCPlan {
	var plan GCPlan
	if installation == "" {
		return plan
	}
	known := make(map[string]bool, len(poolIDs))
	for _, id := range poolIDs {
		known[id] = true
	}
	for _, j := range jobs {
		poolID := j.Meta[MetaPoolID]
		if j.Meta[MetaManaged] != "true" || poolID == "" || known[poolID] {
			continue
		}
		if idOf, ok := pool.IDFromJobID(j.ID); !ok || idOf != poolID {
			continue // not a job id Tidepool gives its pools
		}
		switch j.Meta[MetaInstallation] {
		case installation:
			plan.Purge = append(plan.Purge, j)
		case "":
			plan.Unmarked = append(plan.Unmarked, j)
		}
	}
	return plan
}
