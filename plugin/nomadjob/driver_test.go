package nomadjob

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// nomadEnv is a driver over a real Nomad dev agent, with a pool whose
// members run Nomad's mock driver (no processes, no services).
type nomadEnv struct {
	t      *testing.T
	jobs   *api.Jobs
	driver *Driver
	pool   *pool.Pool
	tmpl   *api.Job
}

func newNomadEnv(t *testing.T, name string) *nomadEnv {
	t.Helper()
	c := devcluster.New(t, devcluster.Config{Name: name})
	tmpl := api.NewServiceJob("mock", "mock", "global", 50)
	tg := api.NewTaskGroup("mock", 1)
	task := api.NewTask("mock", "mock_driver")
	task.Config = map[string]any{"run_for": "10m"}
	task.Resources = &api.Resources{CPU: new(20), MemoryMB: new(16)}
	tg.AddTask(task)
	tmpl.AddTaskGroup(tg)
	return &nomadEnv{
		t:      t,
		jobs:   c.Nomad.Jobs(),
		driver: NewDriver(c.Nomad.Jobs(), c.Nomad.Allocations(), c.Consul.Health(), rawExec, testInstallation),
		pool:   &pool.Pool{ID: "p-" + name, Owner: "alice", TemplateGeneration: 1, Spec: pool.Spec{Name: "web"}},
		tmpl:   tmpl,
	}
}

// job reads the pool's job as Nomad has it.
func (e *nomadEnv) job() *api.Job {
	e.t.Helper()
	job, _, err := e.jobs.Info(e.pool.JobID(), nil)
	if err != nil {
		e.t.Fatalf("read job: %v", err)
	}
	return job
}

// sync registers the job for members, reading the current job first as a
// leader's pass does.
func (e *nomadEnv) sync(members ...*pool.Member) {
	e.t.Helper()
	var current *api.Job
	if _, _, err := e.jobs.Info(e.pool.JobID(), nil); err == nil {
		current = e.job()
	}
	if err := e.driver.Sync(context.Background(), e.pool, current, e.tmpl, members); err != nil {
		e.t.Fatalf("sync: %v", err)
	}
}

// waitRunning waits until exactly the groups named run an allocation, and
// every other allocation is stopped, with blocking queries that wake on
// each change of the job's allocations.
func (e *nomadEnv) waitRunning(groups ...string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var index uint64
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(ctx)
		allocs, meta, err := e.jobs.Allocations(e.pool.JobID(), false, q)
		if err != nil {
			e.t.Fatalf("allocations of %v running, others stopped: %v", groups, err)
		}
		index = meta.LastIndex
		if err = allocsRunning(allocs, groups); err == nil {
			return
		}
		if ctx.Err() != nil {
			e.t.Fatalf("allocations of %v running, others stopped: not within a minute: %v", groups, err)
		}
	}
}

// allocsRunning reports whether exactly groups (sorted) run an allocation
// and every other allocation is stopped.
func allocsRunning(allocs []*api.AllocationListStub, groups []string) error {
	var up []string
	for _, a := range allocs {
		switch {
		case a.DesiredStatus == api.AllocDesiredStatusRun && a.ClientStatus == api.AllocClientStatusRunning:
			up = append(up, a.TaskGroup)
		case a.DesiredStatus == api.AllocDesiredStatusRun || a.ClientStatus == api.AllocClientStatusRunning:
			return fmt.Errorf("allocation %s of %s is %s/%s", a.ID[:8], a.TaskGroup, a.DesiredStatus, a.ClientStatus)
		}
	}
	slices.Sort(up)
	if !slices.Equal(up, groups) {
		return fmt.Errorf("running %v", up)
	}
	return nil
}

func running(id string, created int) *pool.Member {
	return &pool.Member{ID: id, Phase: pool.PhaseRunning, Generation: 1, CreatedAt: time.Unix(int64(created), 0)}
}

func deleting(m *pool.Member) *pool.Member {
	d := *m
	d.Phase = pool.PhaseDeleting
	return &d
}

// Stopping is a registration with Stop set (so it can be index-checked):
// Nomad stops every allocation, and a later registration with new groups
// starts the job again.
func TestSync_StopsAndStartsTheJobByRegistering(t *testing.T) {
	e := newNomadEnv(t, "nj-stop")
	a, b := running("m-a", 1), running("m-b", 2)
	e.sync(a, b)
	e.waitRunning("m-a", "m-b")
	if got := e.job().Meta[MetaInstallation]; got != testInstallation {
		t.Fatalf("installation marker %q, want %q", got, testInstallation)
	}

	e.sync(deleting(a), deleting(b))
	if job := e.job(); !isStopped(job) {
		t.Fatalf("job not stopped: status %s", *job.Status)
	}
	e.waitRunning()

	c := running("m-c", 3)
	e.sync(deleting(a), deleting(b), c)
	job := e.job()
	if isStopped(job) || !slices.Equal(groupNames(job), []string{"m-c"}) {
		t.Fatalf("restarted job: stopped %v groups %v", isStopped(job), groupNames(job))
	}
	e.waitRunning("m-c")
}

// A leader that read the job before another leader wrote it cannot write
// it: neither a scale change nor a stop lands, and the job stays as the
// other leader left it.
func TestSync_StaleJobIsNotWritten(t *testing.T) {
	e := newNomadEnv(t, "nj-stale")
	a, b := running("m-a", 1), running("m-b", 2)
	e.sync(a)
	e.waitRunning("m-a")
	stale := e.job() // what a leader read before it paused

	e.sync(a, b) // the new leader scales up
	e.waitRunning("m-a", "m-b")
	after := e.job()
	if *after.JobModifyIndex == *stale.JobModifyIndex {
		t.Fatal("the new leader's write did not change the job's modify index")
	}

	tests := map[string][]*pool.Member{
		"scale change": {a, b, running("m-c", 3)},
		"stop":         {deleting(a), deleting(b)},
	}
	for name, members := range tests {
		t.Run(name, func(t *testing.T) {
			err := e.driver.Sync(context.Background(), e.pool, stale, e.tmpl, members)
			if !errors.Is(err, ErrJobChanged) {
				t.Fatalf("stale sync: %v, want ErrJobChanged", err)
			}
			t.Logf("refused: %v", err)
			job := e.job()
			if *job.JobModifyIndex != *after.JobModifyIndex || isStopped(job) || !slices.Equal(groupNames(job), []string{"m-a", "m-b"}) {
				t.Fatalf("job changed: modify index %d (want %d), stopped %v, groups %v",
					*job.JobModifyIndex, *after.JobModifyIndex, isStopped(job), groupNames(job))
			}
			e.waitRunning("m-a", "m-b")
		})
	}
}
