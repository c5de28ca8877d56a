package nomadjob

import (
	"slices"
	"testing"

	"github.com/hashicorp/nomad/api"
)

// stub is a listed job with meta as Tidepool writes it for pool poolID of
// installation (no marker when installation is empty).
func stub(id, poolID, installation string) *api.JobListStub {
	meta := map[string]string{MetaManaged: "true", MetaPoolID: poolID}
	if installation != "" {
		meta[MetaInstallation] = installation
	}
	return &api.JobListStub{ID: id, Meta: meta}
}

func stubIDs(jobs []*api.JobListStub) []string {
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

func TestPlanGC(t *testing.T) {
	const mine = "tp"
	unmanaged := stub("alice--web--p-plain", "p-plain", mine)
	unmanaged.Meta[MetaManaged] = "false"
	tests := []struct {
		name     string
		jobs     []*api.JobListStub
		pools    []string
		purge    []string
		unmarked []string
	}{
		{
			name:  "a job whose pool record is gone is purged",
			jobs:  []*api.JobListStub{stub("alice--web--p-gone", "p-gone", mine)},
			purge: []string{"alice--web--p-gone"},
		},
		{
			name:  "a pool record in any state keeps its job",
			jobs:  []*api.JobListStub{stub("alice--web--p-live", "p-live", mine), stub("bob--api--p-deleting", "p-deleting", mine)},
			pools: []string{"p-live", "p-deleting"},
		},
		{
			name: "another installation's jobs are never touched",
			jobs: []*api.JobListStub{stub("alice--web--p-other", "p-other", "tidepool-staging")},
		},
		{
			name:     "jobs without a marker are reported, never purged",
			jobs:     []*api.JobListStub{stub("alice--web--p-old", "p-old", ""), stub("alice--web--p-oldlive", "p-oldlive", "")},
			pools:    []string{"p-oldlive"},
			unmarked: []string{"alice--web--p-old"},
		},
		{
			name: "jobs Tidepool did not create are never touched",
			jobs: []*api.JobListStub{
				{ID: "redis", Meta: nil},
				{ID: "batch--x--p-none", Meta: map[string]string{MetaPoolID: "p-none", MetaInstallation: mine}},
				unmanaged,
				stub("alice--web--p-nopool", "", mine),
			},
		},
		{
			name: "a job id that is not its pool's job id is never touched",
			jobs: []*api.JobListStub{stub("hand-made", "p-gone", mine), stub("alice--web--p-other", "p-gone", mine)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := PlanGC(tt.jobs, tt.pools, mine)
			if got := stubIDs(plan.Purge); !slices.Equal(got, tt.purge) {
				t.Errorf("purge %v, want %v", got, tt.purge)
			}
			if got := stubIDs(plan.Unmarked); !slices.Equal(got, tt.unmarked) {
				t.Errorf("unmarked %v, want %v", got, tt.unmarked)
			}
		})
	}
	t.Run("no installation, nothing purged", func(t *testing.T) {
		if plan := PlanGC([]*api.JobListStub{stub("alice--web--p-gone", "p-gone", "")}, nil, ""); len(plan.Purge) > 0 {
			t.Fatalf("purge %v without an installation", stubIDs(plan.Purge))
		}
	})
}
