package controller

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tidepool-run/tidepool/plugin/nomadjob"
)

// listed is a job as Nomad lists it, with the meta Tidepool writes for pool
// poolID of installation (no marker when installation is empty).
func listed(poolID, installation string) *api.JobListStub {
	meta := map[string]string{nomadjob.MetaManaged: "true", nomadjob.MetaPoolID: poolID}
	if installation != "" {
		meta[nomadjob.MetaInstallation] = installation
	}
	return &api.JobListStub{ID: "alice--web--" + poolID, Meta: meta}
}

// newGCController is a controller of installation "tp" over r, logging to
// the returned buffer.
func newGCController(r *recorder) (*Controller, *GCMetrics, *bytes.Buffer) {
	var logs bytes.Buffer
	m := NewGCMetrics(prometheus.NewRegistry())
	c := New(r, r, nil, Config{Installation: "tp", GCMetrics: m}, hclog.New(&hclog.LoggerOptions{Output: &logs}))
	return c, m, &logs
}

func TestCollectGarbage_PurgesOnlyThisInstallationsOrphans(t *testing.T) {
	r := &recorder{
		jobs: []*api.JobListStub{
			listed("p-gone", "tp"),
			listed("p-live", "tp"),
			listed("p-theirs", "tp-staging"),
			listed("p-old", ""),
		},
		poolIDs: []string{"p-live"},
	}
	c, m, logs := newGCController(r)
	if err := c.CollectGarbage(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Jobs are listed before pools, so a pool created in between keeps
	// its job (nomadjob.PlanGC).
	want := []string{"list jobs", "list pool ids", "purge alice--web--p-gone"}
	if got := strings.Join(r.calls, "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if n := testutil.ToFloat64(m.purgedJobs); n != 1 {
		t.Fatalf("purged counter %v, want 1", n)
	}
	if !strings.Contains(logs.String(), "orphaned job purged") || !strings.Contains(logs.String(), "job=alice--web--p-gone") {
		t.Fatalf("the purge was not logged:\n%s", logs)
	}

	// The unmarked job is logged once, however often it is seen.
	if err := c.CollectGarbage(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "job=alice--web--p-old"); n != 1 {
		t.Fatalf("the unmarked job was logged %d times, want once:\n%s", n, logs)
	}
}

func TestCollectGarbage_AFailedListingPurgesNothing(t *testing.T) {
	down := errors.New("connection refused")
	tests := map[string]*recorder{
		"jobs":  {jobs: []*api.JobListStub{listed("p-1", "tp")}, failList: down},
		"pools": {jobs: []*api.JobListStub{listed("p-1", "tp")}, failIDs: down},
	}
	for name, r := range tests {
		t.Run(name, func(t *testing.T) {
			c, m, _ := newGCController(r)
			if err := c.CollectGarbage(context.Background()); !errors.Is(err, down) {
				t.Fatalf("err = %v, want the listing's", err)
			}
			for _, call := range r.calls {
				if strings.HasPrefix(call, "purge") {
					t.Fatalf("purged without a listing: %v", r.calls)
				}
			}
			if n := testutil.ToFloat64(m.purgedJobs); n != 0 {
				t.Fatalf("purged counter %v", n)
			}
		})
	}
}

func TestCollectGarbage_AFailedPurgeDoesNotStopTheOthers(t *testing.T) {
	refused := errors.New("permission denied")
	r := &recorder{
		jobs:      []*api.JobListStub{listed("p-a", "tp"), listed("p-b", "tp")},
		failPurge: map[string]error{"alice--web--p-a": refused},
	}
	c, m, _ := newGCController(r)
	if err := c.CollectGarbage(context.Background()); !errors.Is(err, refused) {
		t.Fatalf("err = %v, want the failed purge's", err)
	}
	if got := r.calls[len(r.calls)-1]; got != "purge alice--web--p-b" {
		t.Fatalf("calls %v: the second orphan was not purged", r.calls)
	}
	if n := testutil.ToFloat64(m.purgedJobs); n != 1 {
		t.Fatalf("purged counter %v, want 1", n)
	}
}
