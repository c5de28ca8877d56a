package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
)

// TestGC_PurgesOrphanedJobsOfThisInstallationOnly deletes a running pool's
// KV records behind the controller's back, as `consul kv delete -recurse`
// would: the leader purges the pool's job. Jobs that look like Tidepool's
// but carry another installation's marker, or none, are left alone.
func TestGC_PurgesOrphanedJobsOfThisInstallationOnly(t *testing.T) {
	e := newEnv(t)
	addr, server := e.startServer("ctrl-a")
	p := e.createPool("p-orphan01", 2, 2*time.Second, 2*time.Second)
	e.waitRunning(p.ID, 2, 90*time.Second)
	if got := e.job(p).Meta[nomadjob.MetaInstallation]; got != kvPrefix {
		t.Fatalf("installation marker %q, want the KV prefix %q", got, kvPrefix)
	}

	theirs := e.registerLookalike("p-theirs01", "tp-other")
	unmarked := e.registerLookalike("p-unmark01", "")

	kv := e.c.Consul.KV()
	for _, prefix := range []string{kvPrefix + "/pools/" + p.ID, kvPrefix + "/members/" + p.ID + "/"} {
		if _, err := kv.DeleteTree(prefix, nil); err != nil {
			t.Fatal(err)
		}
	}
	deleted := time.Now()
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "orphaned job purged", func(ctx context.Context) error {
		_, _, err := e.c.Nomad.Jobs().Info(p.JobID(), (&nomadapi.QueryOptions{}).WithContext(ctx))
		var ure nomadapi.UnexpectedResponseError
		switch {
		case err == nil:
			return errors.New("job still registered")
		case errors.As(err, &ure) && ure.StatusCode() == http.StatusNotFound:
			return nil
		default:
			return err
		}
	})
	t.Logf("orphaned job purged %s after its KV records were deleted (gc interval 2s)", time.Since(deleted).Round(time.Millisecond))
	testutil.Eventually(t, 30*time.Second, 200*time.Millisecond, "the orphan's members gone from Consul", func(ctx context.Context) error {
		addrs, err := e.passing(ctx, p.ID)
		if err == nil && len(addrs) > 0 {
			err = fmt.Errorf("%d members still passing", len(addrs))
		}
		return err
	})
	if !strings.Contains(server.Log(), "orphaned job purged") {
		t.Error("the purge was not logged")
	}
	if m := metrics(t, addr); !strings.Contains(m, "\ntidepool_gc_purged_jobs_total 1\n") {
		t.Errorf("purge not counted:\n%s", m)
	}

	// Several more passes leave the others registered and running.
	testutil.Never(t, 5*time.Second, 500*time.Millisecond, "a job of no installation or another one was touched", func(ctx context.Context) error {
		for _, id := range []string{theirs, unmarked} {
			job, _, err := e.c.Nomad.Jobs().Info(id, (&nomadapi.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			if *job.Stop {
				return fmt.Errorf("%s stopped", id)
			}
		}
		return nil
	})
	log := server.Log()
	if n := strings.Count(log, "job="+unmarked); n != 1 {
		t.Errorf("the unmarked job was logged %d times, want once", n)
	}
	if strings.Contains(log, "job="+theirs) {
		t.Error("another installation's job was logged")
	}
}

// registerLookalike registers, straight through Nomad's API, a job with
// Tidepool's id scheme and meta for a pool that has no record here, marked
// as installation's (no marker when installation is empty). Its task runs
// Nomad's mock driver: no process, no service.
func (e *env) registerLookalike(poolID, installation string) string {
	e.t.Helper()
	id := "alice--web--" + poolID
	job := nomadapi.NewServiceJob(id, id, "global", 50)
	job.Meta = map[string]string{nomadjob.MetaManaged: "true", nomadjob.MetaPoolID: poolID}
	if installation != "" {
		job.Meta[nomadjob.MetaInstallation] = installation
	}
	task := nomadapi.NewTask("mock", "mock_driver")
	task.Config = map[string]any{"run_for": "10m"}
	task.Resources = &nomadapi.Resources{CPU: new(20), MemoryMB: new(16)}
	job.AddTaskGroup(nomadapi.NewTaskGroup("m-1", 1).AddTask(task))
	if _, _, err := e.c.Nomad.Jobs().Register(job, nil); err != nil {
		e.t.Fatalf("register %s: %v", id, err)
	}
	return id
}

// metrics reads a controller's Prometheus metrics.
func metrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
