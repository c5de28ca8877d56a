package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/reconcile"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// recorder is a recording fake of the store and of Nomad: it serves fixed
// state and logs every write, in order.
type recorder struct {
	pool    *pool.Pool
	members []*pool.Member
	snap    *nomadjob.Snapshot
	calls   []string
	failPut error

	// For the garbage collector: the jobs Nomad lists, the pool records
	// (beside pool), and failures to inject.
	jobs      []*api.JobListStub
	poolIDs   []string
	failList  error
	failIDs   error
	failPurge map[string]error
}

func (r *recorder) GetPool(_ context.Context, id string) (*pool.Pool, error) {
	if r.pool == nil || r.pool.ID != id {
		return nil, store.ErrNotFound
	}
	return r.pool, nil
}

func (r *recorder) ListPools(context.Context, uint64, time.Duration) ([]*pool.Pool, uint64, error) {
	return []*pool.Pool{r.pool}, 1, nil
}

func (r *recorder) ListMembers(context.Context, string) ([]*pool.Member, error) {
	return r.members, nil
}

func (r *recorder) PoolIDs(context.Context) ([]string, error) {
	r.calls = append(r.calls, "list pool ids")
	return r.poolIDs, r.failIDs
}

func (r *recorder) ListJobs(context.Context) ([]*api.JobListStub, error) {
	r.calls = append(r.calls, "list jobs")
	return r.jobs, r.failList
}

func (r *recorder) PutMembers(_ context.Context, ms []*pool.Member) error {
	if r.failPut != nil {
		return r.failPut
	}
	r.calls = append(r.calls, "put "+describe(ms))
	return nil
}

func (r *recorder) DeleteMembers(_ context.Context, ms []*pool.Member) error {
	r.calls = append(r.calls, "delete "+describe(ms))
	return nil
}

func (r *recorder) RemovePool(_ context.Context, p *pool.Pool) error {
	r.calls = append(r.calls, "remove pool "+p.ID)
	return nil
}

func (r *recorder) Observe(context.Context, *pool.Pool) (*nomadjob.Snapshot, error) {
	return r.snap, nil
}

func (r *recorder) Template(*pool.Pool) (*api.Job, error) {
	r.calls = append(r.calls, "parse template")
	return &api.Job{}, nil
}

func (r *recorder) Sync(_ context.Context, _ *pool.Pool, _, _ *api.Job, ms []*pool.Member) error {
	r.calls = append(r.calls, "sync "+describe(ms))
	return nil
}

func (r *recorder) Purge(_ context.Context, jobID string) error {
	if err := r.failPurge[jobID]; err != nil {
		return err
	}
	r.calls = append(r.calls, "purge "+jobID)
	return nil
}

func describe(ms []*pool.Member) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.ID + ":" + string(m.Phase)
	}
	return strings.Join(parts, ",")
}

func newTestController(r *recorder) *Controller {
	c := New(r, r, nil, Config{}, hclog.NewNullLogger())
	c.now = func() time.Time { return time.Unix(1000, 0) }
	n := 0
	c.newID = func() string { n++; return fmt.Sprintf("m-new%d", n) }
	return c
}

func TestReconcile_WritesRecordsThenJobThenForgets(t *testing.T) {
	r := &recorder{
		pool: &pool.Pool{ID: "p-1", TemplateGeneration: 1, Spec: pool.Spec{Active: true, DesiredCount: 2}},
		members: []*pool.Member{
			{ID: "m-a", Phase: pool.PhaseRunning, Generation: 1},
			{ID: "m-gone", Phase: pool.PhaseDeleting, Generation: 1},
		},
		snap: &nomadjob.Snapshot{Job: &api.Job{}, Members: map[string]reconcile.Observation{
			"m-a": {InJob: true, Count: 1, Alloc: reconcile.AllocRunning, Healthy: true},
		}},
	}
	c := newTestController(r)
	if _, err := c.Reconcile(context.Background(), "p-1"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"parse template",
		"put m-new1:running",
		"sync m-new1:running,m-a:running",
		"delete m-gone:deleting",
	}
	if strings.Join(r.calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(r.calls, "\n"), strings.Join(want, "\n"))
	}

	// The parsed template is cached per generation.
	r.calls = nil
	if _, err := c.Reconcile(context.Background(), "p-1"); err != nil {
		t.Fatal(err)
	}
	if len(r.calls) > 0 && r.calls[0] == "parse template" {
		t.Fatal("template parsed again for the same generation")
	}
}

func TestReconcile_FailedRecordWriteTouchesNothingElse(t *testing.T) {
	r := &recorder{
		pool:    &pool.Pool{ID: "p-1", TemplateGeneration: 1, Spec: pool.Spec{Active: true, DesiredCount: 1}},
		snap:    &nomadjob.Snapshot{Members: map[string]reconcile.Observation{}},
		failPut: store.ErrConflict,
	}
	c := newTestController(r)
	if _, err := c.Reconcile(context.Background(), "p-1"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("err = %v", err)
	}
	for _, call := range r.calls {
		if strings.HasPrefix(call, "sync") || strings.HasPrefix(call, "delete") {
			t.Fatalf("acted on Nomad after a failed record write: %v", r.calls)
		}
	}
}

func TestReconcile_DeletedPool(t *testing.T) {
	r := &recorder{
		pool:    &pool.Pool{ID: "p-1", Owner: "alice", Deleting: true, Spec: pool.Spec{Name: "web"}},
		members: []*pool.Member{{ID: "m-a", Phase: pool.PhaseDeleting}},
		snap:    &nomadjob.Snapshot{Members: map[string]reconcile.Observation{}},
	}
	c := newTestController(r)
	if _, err := c.Reconcile(context.Background(), "p-1"); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(r.calls, "\n")
	if !strings.Contains(got, "delete m-a:deleting\nremove pool p-1") || strings.Contains(got, "purge") {
		t.Fatalf("calls:\n%s", got)
	}
}

func TestReconcile_UnknownPoolIsANoOp(t *testing.T) {
	r := &recorder{}
	c := newTestController(r)
	if _, err := c.Reconcile(context.Background(), "p-missing"); err != nil || len(r.calls) > 0 {
		t.Fatalf("err %v calls %v", err, r.calls)
	}
}
