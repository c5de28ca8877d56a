package nomadjob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/reconcile"
)

// Jobs is the part of Nomad's job API the driver uses; *api.Jobs satisfies
// it.
type Jobs interface {
	Parser
	Info(jobID string, q *api.QueryOptions) (*api.Job, *api.QueryMeta, error)
	Allocations(jobID string, allAllocs bool, q *api.QueryOptions) ([]*api.AllocationListStub, *api.QueryMeta, error)
	ListOptions(opts *api.JobListOptions, q *api.QueryOptions) ([]*api.JobListStub, *api.QueryMeta, error)
	EnforceRegister(job *api.Job, modifyIndex uint64, q *api.WriteOptions) (*api.JobRegisterResponse, *api.WriteMeta, error)
	Deregister(jobID string, purge bool, q *api.WriteOptions) (string, *api.WriteMeta, error)
}

// Allocs is the part of Nomad's allocation API the driver uses;
// *api.Allocations satisfies it.
type Allocs interface {
	Info(allocID string, q *api.QueryOptions) (*api.Allocation, *api.QueryMeta, error)
	Stats(alloc *api.Allocation, q *api.QueryOptions) (*api.AllocResourceUsage, error)
}

// Health is the part of Consul's health API the driver uses;
// *consulapi.Health satisfies it.
type Health interface {
	ServiceMultipleTags(service string, tags []string, passingOnly bool, q *consulapi.QueryOptions) ([]*consulapi.ServiceEntry, *consulapi.QueryMeta, error)
}

var (
	_ Jobs   = (*api.Jobs)(nil)
	_ Allocs = (*api.Allocations)(nil)
	_ Health = (*consulapi.Health)(nil)
)

// ErrJobChanged means a job was written by someone else since it was read,
// so a registration checked against its modify index was refused. A
// deposed leader's writes fail this way; a leader reads the job again on
// its next pass.
var ErrJobChanged = errors.New("the job changed since it was read")

// Driver observes and drives pools' Nomad jobs.
type Driver struct {
	jobs         Jobs
	allocs       Allocs
	health       Health
	policy       Policy
	installation string

	mu    sync.Mutex
	ports map[string]map[string]string // allocation id → label → host:port
}

// NewDriver returns a driver over Nomad's job and allocation APIs and
// Consul's health API that accepts templates within policy. installation
// (the store's KV prefix) marks the jobs it creates as this installation's
// (MetaInstallation).
func NewDriver(jobs Jobs, allocs Allocs, health Health, policy Policy, installation string) *Driver {
	return &Driver{jobs: jobs, allocs: allocs, health: health, policy: policy, installation: installation, ports: map[string]map[string]string{}}
}

// Usage is an allocation's CPU and memory use as a percentage of what it
// was allocated (CPU in MHz, memory in MB).
func (d *Driver) Usage(ctx context.Context, allocID string) (cpuPercent, memPercent float64, err error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	alloc, _, err := d.allocs.Info(allocID, q)
	if err != nil {
		return 0, 0, fmt.Errorf("read allocation %s: %w", allocID, err)
	}
	usage, err := d.allocs.Stats(alloc, q)
	if err != nil {
		return 0, 0, fmt.Errorf("read allocation stats %s: %w", allocID, err)
	}
	return UsagePercent(alloc, usage)
}

// UsagePercent relates measured usage to the allocation's resources.
func UsagePercent(alloc *api.Allocation, usage *api.AllocResourceUsage) (cpuPercent, memPercent float64, err error) {
	if usage == nil || usage.ResourceUsage == nil || alloc.AllocatedResources == nil {
		return 0, 0, errors.New("no usage reported")
	}
	var cpuMHz, memMB int64
	for _, t := range alloc.AllocatedResources.Tasks {
		cpuMHz += t.Cpu.CpuShares
		memMB += t.Memory.MemoryMB
	}
	ru := usage.ResourceUsage
	if ru.CpuStats != nil && cpuMHz > 0 {
		cpuPercent = ru.CpuStats.TotalTicks / float64(cpuMHz) * 100
	}
	if ru.MemoryStats != nil && memMB > 0 {
		used := ru.MemoryStats.RSS
		if used == 0 {
			used = ru.MemoryStats.Usage
		}
		memPercent = float64(used) / float64(memMB<<20) * 100
	}
	return cpuPercent, memPercent, nil
}

// Snapshot is what Nomad and Consul say about one pool at one moment.
type Snapshot struct {
	// Job is the registered job, nil when there is none.
	Job      *api.Job
	Allocs   []*api.AllocationListStub
	Services []*consulapi.ServiceEntry
	Members  map[string]reconcile.Observation
}

// JobExists reports whether Nomad has the job (running or stopped).
func (s *Snapshot) JobExists() bool { return s.Job != nil }

// Observe reads the pool's job, its allocations and its members' Consul
// services.
func (d *Driver) Observe(ctx context.Context, p *pool.Pool) (*Snapshot, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	snap := &Snapshot{}
	job, _, err := d.jobs.Info(p.JobID(), q)
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("read job %s: %w", p.JobID(), err)
	default:
		if !Owned(job, p.ID) {
			return nil, fmt.Errorf("%s: %w", p.JobID(), ErrNotOwned)
		}
		snap.Job = job
	}
	if snap.Job != nil {
		if snap.Allocs, _, err = d.jobs.Allocations(p.JobID(), false, q); err != nil {
			return nil, fmt.Errorf("list allocations of %s: %w", p.JobID(), err)
		}
		cq := (&consulapi.QueryOptions{}).WithContext(ctx)
		for _, name := range serviceNames(snap.Job) {
			entries, _, err := d.health.ServiceMultipleTags(name, []string{pool.SelectorTag(p.ID)}, false, cq)
			if err != nil {
				return nil, fmt.Errorf("read health of %s: %w", name, err)
			}
			snap.Services = append(snap.Services, entries...)
		}
	}
	addrs, err := d.addresses(ctx, snap.Allocs)
	if err != nil {
		return nil, err
	}
	snap.Members = Observe(p, snap.Job, snap.Allocs, addrs, snap.Services)
	return snap, nil
}

// maxCachedAllocs bounds the allocation address cache.
const maxCachedAllocs = 50000

// addresses returns the port addresses of every allocation that should
// run. Nomad's allocation listings leave resources out, so each is read
// once; an allocation keeps its ports for life, so the answer is cached.
func (d *Driver) addresses(ctx context.Context, allocs []*api.AllocationListStub) (AllocAddresses, error) {
	out := AllocAddresses{}
	for _, a := range allocs {
		if a.DesiredStatus != api.AllocDesiredStatusRun || (a.ClientStatus != api.AllocClientStatusPending && a.ClientStatus != api.AllocClientStatusRunning) {
			continue
		}
		d.mu.Lock()
		ports, ok := d.ports[a.ID]
		d.mu.Unlock()
		if !ok {
			alloc, _, err := d.allocs.Info(a.ID, (&api.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return nil, fmt.Errorf("read allocation %s: %w", a.ID, err)
			}
			ports = PortAddresses(alloc)
			d.mu.Lock()
			if len(d.ports) >= maxCachedAllocs {
				clear(d.ports)
			}
			d.ports[a.ID] = ports
			d.mu.Unlock()
		}
		out[a.ID] = ports
	}
	return out, nil
}

// Template has Nomad parse the pool's current template.
func (d *Driver) Template(p *pool.Pool) (*api.Job, error) {
	return ParseTemplate(d.jobs, &p.Spec, d.policy)
}

// Sync registers the job the member records imply, if it differs from
// current; with no member left to run, it registers the job stopped. Every
// write, the stop included, is checked against current's modify index, so
// a deposed leader's write fails with ErrJobChanged and leaves the job as
// the new leader wrote it.
func (d *Driver) Sync(ctx context.Context, p *pool.Pool, current, tmpl *api.Job, members []*pool.Member) error {
	job, changed, err := Desired(p, current, tmpl, members, d.installation)
	if err != nil || !changed {
		return err
	}
	var index uint64
	if current != nil && current.JobModifyIndex != nil {
		index = *current.JobModifyIndex
	}
	verb := "register"
	if isStopped(job) {
		verb = "stop"
	}
	if _, _, err := d.jobs.EnforceRegister(job, index, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		if strings.Contains(err.Error(), enforceIndexError) {
			err = fmt.Errorf("%w (read at modify index %d; the next pass reads it again): %w", ErrJobChanged, index, err)
		}
		return fmt.Errorf("%s job %s: %w", verb, p.JobID(), err)
	}
	return nil
}

// enforceIndexError begins Nomad's refusal of a registration whose
// modify index is stale (nomad.RegisterEnforceIndexErrPrefix).
const enforceIndexError = "Enforcing job modify index"

// Purge deregisters and purges a job; a missing job is fine.
func (d *Driver) Purge(ctx context.Context, jobID string) error {
	if _, _, err := d.jobs.Deregister(jobID, true, (&api.WriteOptions{}).WithContext(ctx)); err != nil && !isNotFound(err) {
		return fmt.Errorf("purge job %s: %w", jobID, err)
	}
	return nil
}

// ListJobs lists the jobs in the client's namespace with their meta, for
// the garbage collector (PlanGC).
func (d *Driver) ListJobs(ctx context.Context) ([]*api.JobListStub, error) {
	opts := &api.JobListOptions{Fields: &api.JobListFields{Meta: true}}
	jobs, _, err := d.jobs.ListOptions(opts, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return jobs, nil
}

func serviceNames(job *api.Job) []string {
	var names []string
	for _, tg := range job.TaskGroups {
		for _, s := range groupServices(tg) {
			if !slices.Contains(names, s.Name) {
				names = append(names, s.Name)
			}
		}
	}
	return names
}

// isNotFound recognises Nomad's 404, which the api package returns as an
// UnexpectedResponseError value.
func isNotFound(err error) bool {
	var ure api.UnexpectedResponseError
	if errors.As(err, &ure) {
		return ure.StatusCode() == http.StatusNotFound
	}
	var ptr *api.UnexpectedResponseError
	return errors.As(err, &ptr) && ptr.StatusCode() == http.StatusNotFound
}
