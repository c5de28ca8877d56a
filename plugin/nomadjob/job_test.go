package nomadjob

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/reconcile"
)

// testInstallation is the KV prefix the tests' jobs are marked with.
const testInstallation = "tidepool-test"

func testTemplate() *api.Job {
	job := api.NewServiceJob("echo", "echo", "global", 50)
	job.Meta = map[string]string{"team": "search"}
	tg := api.NewTaskGroup("echo", 3)
	tg.Networks = []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: "http"}}}}
	tg.Services = []*api.Service{{Name: "echo", PortLabel: "http", Tags: []string{"web"}}}
	tg.Update = &api.UpdateStrategy{MaxParallel: new(2)}
	tg.AddTask(api.NewTask("echo", "raw_exec"))
	job.AddTaskGroup(tg)
	return job
}

func testPool() *pool.Pool {
	return &pool.Pool{
		ID: "p-1", Owner: "alice", TemplateGeneration: 2,
		Spec: pool.Spec{Name: "web", Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: "http"}}},
	}
}

func member(id string, phase pool.Phase, gen int64, created int) *pool.Member {
	return &pool.Member{ID: id, PoolID: "p-1", Phase: phase, Generation: gen, CreatedAt: time.Unix(int64(created), 0)}
}

func groupNames(job *api.Job) []string {
	var out []string
	for _, tg := range job.TaskGroups {
		out = append(out, *tg.Name)
	}
	return out
}

func TestDesired_NewJobStampsMembers(t *testing.T) {
	p := testPool()
	job, changed, err := Desired(p, nil, testTemplate(), []*pool.Member{
		member("m-b", pool.PhaseRunning, 2, 2),
		member("m-a", pool.PhaseRunning, 2, 1),
		member("m-gone", pool.PhaseDeleting, 2, 0),
	}, testInstallation)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if *job.ID != "alice--web--p-1" || job.Meta[MetaManaged] != "true" || job.Meta[MetaInstallation] != testInstallation || job.Meta["team"] != "search" {
		t.Fatalf("job id %s meta %v", *job.ID, job.Meta)
	}
	if *job.Update.MaxParallel != 0 {
		t.Fatal("Nomad deployments must be off")
	}
	if got := groupNames(job); !slices.Equal(got, []string{"m-a", "m-b"}) {
		t.Fatalf("groups %v", got)
	}
	tg := job.TaskGroups[0]
	if *tg.Count != 1 || tg.Update != nil || tg.Meta[MetaMember] != "m-a" || tg.Meta[MetaGeneration] != "2" {
		t.Fatalf("group: count %d update %v meta %v", *tg.Count, tg.Update, tg.Meta)
	}
	s := tg.Services[0]
	for _, tag := range []string{"web", TagTidepool, "member=m-a", "pool=p-1", "port=http"} {
		if !slices.Contains(s.Tags, tag) {
			t.Errorf("service tags %v lack %q", s.Tags, tag)
		}
	}
	if s.Meta[MetaMember] != "m-a" || s.Meta[MetaPort] != "http" || s.Meta[MetaPoolID] != "p-1" {
		t.Errorf("service meta %v", s.Meta)
	}
}

// A template asks for placement with Nomad's own blocks; every one of them,
// at job and at group level, reaches the pool's job unchanged.
func TestDesired_KeepsTemplatePlacement(t *testing.T) {
	tmpl := testTemplate()
	jobConstraint := &api.Constraint{LTarget: "${meta.zone}", Operand: api.ConstraintDistinctProperty, RTarget: "2"}
	jobSpread := &api.Spread{Attribute: "${node.datacenter}", Weight: new(int8(50))}
	jobAffinity := &api.Affinity{LTarget: "${node.class}", Operand: "=", RTarget: "fast", Weight: new(int8(20))}
	groupConstraint := &api.Constraint{LTarget: "${attr.kernel.name}", Operand: "=", RTarget: "linux"}
	groupSpread := &api.Spread{Attribute: "${meta.zone}"}
	tmpl.Constraints = []*api.Constraint{jobConstraint}
	tmpl.Spreads = []*api.Spread{jobSpread}
	tmpl.Affinities = []*api.Affinity{jobAffinity}
	tmpl.TaskGroups[0].Constraints = []*api.Constraint{groupConstraint}
	tmpl.TaskGroups[0].Spreads = []*api.Spread{groupSpread}

	job, _, err := Desired(testPool(), nil, tmpl, []*pool.Member{member("m-a", pool.PhaseRunning, 2, 1), member("m-b", pool.PhaseRunning, 2, 2)}, testInstallation)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(job.Constraints, []*api.Constraint{jobConstraint}) ||
		!reflect.DeepEqual(job.Spreads, []*api.Spread{jobSpread}) ||
		!reflect.DeepEqual(job.Affinities, []*api.Affinity{jobAffinity}) {
		t.Errorf("job placement: constraints %v spreads %v affinities %v", job.Constraints, job.Spreads, job.Affinities)
	}
	for _, tg := range job.TaskGroups {
		if !reflect.DeepEqual(tg.Constraints, []*api.Constraint{groupConstraint}) || !reflect.DeepEqual(tg.Spreads, []*api.Spread{groupSpread}) {
			t.Errorf("group %s placement: constraints %v spreads %v", *tg.Name, tg.Constraints, tg.Spreads)
		}
	}
}

// registered simulates what Nomad returns for a job Tidepool registered.
func registered(t *testing.T, p *pool.Pool, members ...*pool.Member) *api.Job {
	t.Helper()
	job, _, err := Desired(p, nil, testTemplate(), members, testInstallation)
	if err != nil {
		t.Fatal(err)
	}
	job.JobModifyIndex = new(uint64(42))
	return job
}

func TestDesired_KeepsExistingGroupsAndOnlyChangesCountAndTags(t *testing.T) {
	p := testPool()
	current := registered(t, p, member("m-a", pool.PhaseRunning, 2, 1), member("m-b", pool.PhaseRunning, 2, 2))
	// The template changes; m-a and m-b must keep what they run.
	p.TemplateGeneration = 3
	tmpl := testTemplate()
	tmpl.TaskGroups[0].Tasks[0].Config = map[string]any{"command": "/new"}

	t.Run("no change", func(t *testing.T) {
		_, changed, err := Desired(p, current, tmpl, []*pool.Member{member("m-a", pool.PhaseRunning, 2, 1), member("m-b", pool.PhaseRunning, 2, 2)}, testInstallation)
		if err != nil || changed {
			t.Fatalf("changed=%v err=%v", changed, err)
		}
	})
	t.Run("drain, stop, delete, create", func(t *testing.T) {
		job, changed, err := Desired(p, current, tmpl, []*pool.Member{
			member("m-a", pool.PhaseDraining, 2, 1),
			member("m-b", pool.PhaseStopped, 2, 2),
			member("m-c", pool.PhaseRunning, 3, 3),
		}, testInstallation)
		if err != nil || !changed {
			t.Fatalf("changed=%v err=%v", changed, err)
		}
		if got := groupNames(job); !slices.Equal(got, []string{"m-a", "m-b", "m-c"}) {
			t.Fatalf("groups %v", got)
		}
		a, b, c := job.TaskGroups[0], job.TaskGroups[1], job.TaskGroups[2]
		if *a.Count != 1 || !draining(a) {
			t.Errorf("m-a: count %d draining %v", *a.Count, draining(a))
		}
		if *b.Count != 0 || draining(b) {
			t.Errorf("m-b: count %d draining %v", *b.Count, draining(b))
		}
		if a.Tasks[0].Config["command"] == "/new" {
			t.Error("an old member got the new template")
		}
		if c.Tasks[0].Config["command"] != "/new" || c.Meta[MetaGeneration] != "3" {
			t.Error("the new member did not get the new template")
		}
	})
	t.Run("undrain removes the tag", func(t *testing.T) {
		drained, _, _ := Desired(p, current, tmpl, []*pool.Member{member("m-a", pool.PhaseDraining, 2, 1)}, testInstallation)
		drained.JobModifyIndex = new(uint64(43))
		job, changed, err := Desired(p, drained, tmpl, []*pool.Member{member("m-a", pool.PhaseRunning, 2, 1)}, testInstallation)
		if err != nil || !changed || draining(job.TaskGroups[0]) {
			t.Fatalf("changed=%v err=%v draining=%v", changed, err, draining(job.TaskGroups[0]))
		}
	})
	t.Run("nothing left to run stops the job", func(t *testing.T) {
		job, changed, err := Desired(p, current, tmpl, []*pool.Member{member("m-a", pool.PhaseDeleting, 2, 1)}, testInstallation)
		if err != nil || !changed {
			t.Fatalf("changed=%v err=%v", changed, err)
		}
		if job == nil || !isStopped(job) {
			t.Fatalf("job %v: want current registered with Stop set", job)
		}
		// The stop is a registration of the job as it is: same id, same
		// meta, same groups (Nomad refuses a job without any), so Sync can
		// check it against current's modify index.
		if *job.ID != *current.ID || !reflect.DeepEqual(job.Meta, current.Meta) || !slices.Equal(groupNames(job), groupNames(current)) {
			t.Fatalf("stopped job %s meta %v groups %v, want %s's", *job.ID, job.Meta, groupNames(job), *current.ID)
		}
		if *job.JobModifyIndex != *current.JobModifyIndex {
			t.Fatalf("modify index %d, want current's %d", *job.JobModifyIndex, *current.JobModifyIndex)
		}
		if isStopped(current) {
			t.Fatal("Desired changed current")
		}
	})
	t.Run("a stopped job stays stopped", func(t *testing.T) {
		stopped, _, _ := Desired(p, current, tmpl, nil, testInstallation)
		job, changed, err := Desired(p, stopped, tmpl, []*pool.Member{member("m-a", pool.PhaseDeleting, 2, 1)}, testInstallation)
		if err != nil || changed || job != stopped {
			t.Fatalf("job=%v changed=%v err=%v; want the stopped job unchanged", job, changed, err)
		}
	})
	t.Run("a stopped job starts with the new members", func(t *testing.T) {
		stopped, _, _ := Desired(p, current, tmpl, nil, testInstallation)
		job, changed, err := Desired(p, stopped, tmpl, []*pool.Member{member("m-c", pool.PhaseRunning, 3, 3)}, testInstallation)
		if err != nil || !changed || isStopped(job) {
			t.Fatalf("changed=%v err=%v stopped=%v", changed, err, isStopped(job))
		}
		if got := groupNames(job); !slices.Equal(got, []string{"m-c"}) {
			t.Fatalf("groups %v, want only the new member", got)
		}
	})
	t.Run("no job and nothing to run", func(t *testing.T) {
		job, changed, err := Desired(p, nil, tmpl, nil, testInstallation)
		if err != nil || changed || job != nil {
			t.Fatalf("job=%v changed=%v err=%v", job, changed, err)
		}
	})
}

func TestDesired_RefusesForeignJobs(t *testing.T) {
	foreign := testTemplate()
	_, _, err := Desired(testPool(), foreign, testTemplate(), nil, testInstallation)
	if !errors.Is(err, ErrNotOwned) {
		t.Fatalf("err = %v, want ErrNotOwned", err)
	}
}

var rawExec = Policy{AllowedDrivers: []string{"raw_exec"}}

func TestCheckTemplate(t *testing.T) {
	spec := &pool.Spec{Ports: []pool.Port{{Label: "http"}, {Label: "admin"}}}
	tmpl := testTemplate()
	err := CheckTemplate(tmpl, spec, rawExec)
	var verr *pool.ValidationError
	if !errors.As(err, &verr) || verr.Fields[0].Field != "template" {
		t.Fatalf("want a template field error, got %v", err)
	}
	tmpl.TaskGroups[0].Networks[0].DynamicPorts = append(tmpl.TaskGroups[0].Networks[0].DynamicPorts, api.Port{Label: "admin"})
	if err := CheckTemplate(tmpl, spec, rawExec); err == nil {
		t.Fatal("a port without a service passed")
	}
	tmpl.TaskGroups[0].Services = append(tmpl.TaskGroups[0].Services, &api.Service{Name: "admin", PortLabel: "admin"})
	if err := CheckTemplate(tmpl, spec, rawExec); err != nil {
		t.Fatalf("valid template: %v", err)
	}
	tmpl.AddTaskGroup(api.NewTaskGroup("second", 1))
	if err := CheckTemplate(tmpl, spec, rawExec); err == nil {
		t.Fatal("two task groups passed")
	}
}

func TestCheckTemplate_ConfinesTenants(t *testing.T) {
	spec := &pool.Spec{Ports: []pool.Port{{Label: "http"}}}
	svc := func(tmpl *api.Job) *api.Service { return tmpl.TaskGroups[0].Services[0] }
	tests := []struct {
		name   string
		edit   func(*api.Job)
		policy Policy
		want   string
	}{
		{"address override aimed at the control plane", func(j *api.Job) { svc(j).Address = "127.0.0.1" }, rawExec, "address is not allowed"},
		{"reserved service name", func(j *api.Job) { svc(j).Name = "tidepool-gateway" }, rawExec, "reserved for Tidepool"},
		{"reserved service name, any case", func(j *api.Job) { svc(j).Name = "TidePool-x" }, rawExec, "reserved for Tidepool"},
		{"static host port", func(j *api.Job) {
			j.TaskGroups[0].Networks[0].ReservedPorts = []api.Port{{Label: "http", Value: 8500}}
			j.TaskGroups[0].Networks[0].DynamicPorts = nil
		}, rawExec, "static number"},
		{"driver address mode", func(j *api.Job) { svc(j).AddressMode = "driver" }, rawExec, "address_mode"},
		{"nomad service provider", func(j *api.Job) { svc(j).Provider = "nomad" }, rawExec, "provider"},
		{"pool tag of another pool", func(j *api.Job) { svc(j).Tags = append(svc(j).Tags, "pool=p-victim") }, rawExec, "reserved for Tidepool"},
		{"member meta", func(j *api.Job) { svc(j).Meta = map[string]string{"tidepool_member": "m-x"} }, rawExec, "reserved for Tidepool"},
		{"group meta", func(j *api.Job) { j.TaskGroups[0].Meta = map[string]string{"tidepool_pool_id": "p-x"} }, rawExec, "reserved for Tidepool"},
		{"job meta", func(j *api.Job) { j.Meta["tidepool_managed"] = "false" }, rawExec, "reserved for Tidepool"},
		{"batch job", func(j *api.Job) { j.Type = new(api.JobTypeBatch) }, rawExec, "job type"},
		{"system job", func(j *api.Job) { j.Type = new(api.JobTypeSystem) }, rawExec, "job type"},
		{"periodic", func(j *api.Job) { j.Periodic = &api.PeriodicConfig{Spec: new("* * * * *")} }, rawExec, "periodic"},
		{"parameterized", func(j *api.Job) { j.ParameterizedJob = &api.ParameterizedJobConfig{} }, rawExec, "parameterized"},
		{"another namespace", func(j *api.Job) { j.Namespace = new("ops") }, rawExec, "namespace"},
		{"another region", func(j *api.Job) { j.Region = new("eu") }, rawExec, "region"},
		{"high priority", func(j *api.Job) { j.Priority = new(90) }, rawExec, "priority"},
		{"driver not allowed", func(*api.Job) {}, Policy{AllowedDrivers: []string{"docker"}}, `driver "raw_exec" is not allowed`},
		{"connect sidecar", func(j *api.Job) { svc(j).Connect = &api.ConsulConnect{} }, rawExec, "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := testTemplate()
			tt.edit(tmpl)
			err := CheckTemplate(tmpl, spec, tt.policy)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckTemplate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if err := CheckTemplate(testTemplate(), spec, rawExec); err != nil {
		t.Fatalf("the unedited template: %v", err)
	}
	lower := testTemplate()
	lower.Priority = new(20)
	if err := CheckTemplate(lower, spec, rawExec); err != nil {
		t.Fatalf("a lower priority is allowed: %v", err)
	}
}

func TestObserve(t *testing.T) {
	p := testPool()
	job := registered(t, p, member("m-a", pool.PhaseRunning, 2, 1), member("m-b", pool.PhaseStopped, 2, 2))
	allocs := []*api.AllocationListStub{
		{ID: "a-old", TaskGroup: "m-a", CreateIndex: 5, DesiredStatus: "run", ClientStatus: "failed"},
		{ID: "a-new", TaskGroup: "m-a", CreateIndex: 9, DesiredStatus: "run", ClientStatus: "running"},
		{ID: "b-1", TaskGroup: "m-b", CreateIndex: 7, DesiredStatus: "stop", ClientStatus: "complete"},
		{ID: "c-1", TaskGroup: "m-c", CreateIndex: 8, DesiredStatus: "run", ClientStatus: "failed"},
	}
	addrs := AllocAddresses{"a-new": {"http": "127.0.0.1:20001"}}
	entry := func(poolID, member, status string, port int) *consulapi.ServiceEntry {
		return &consulapi.ServiceEntry{
			Service: &consulapi.AgentService{Address: "127.0.0.1", Port: port, Meta: map[string]string{MetaPoolID: poolID, MetaMember: member, MetaPort: "http"}},
			Checks:  consulapi.HealthChecks{{Status: status}},
		}
	}
	obs := Observe(p, job, allocs, addrs, []*consulapi.ServiceEntry{entry("p-1", "m-a", "passing", 20001), entry("p-1", "m-b", "passing", 20002)})

	want := map[string]reconcile.Observation{
		"m-a": {InJob: true, Count: 1, Alloc: reconcile.AllocRunning, AllocID: "a-new", Healthy: true, Address: "127.0.0.1:20001", Addresses: map[string]string{"http": "127.0.0.1:20001"}},
		// m-b's allocation is stopped: it has no addresses, so its
		// instance (left over in Consul) is not its own.
		"m-b": {InJob: true, Count: 0, Alloc: reconcile.AllocStopped, AllocID: "b-1"},
		"m-c": {Alloc: reconcile.AllocDead, AllocID: "c-1"},
	}
	for id, w := range want {
		if !reflect.DeepEqual(obs[id], w) {
			t.Errorf("%s: got %+v, want %+v", id, obs[id], w)
		}
	}
	critical := Observe(p, job, allocs, addrs, []*consulapi.ServiceEntry{entry("p-1", "m-a", "critical", 20001)})
	if critical["m-a"].Healthy {
		t.Error("a critical check counted as healthy")
	}
	stopped := *job
	stopped.Stop = new(true)
	if Observe(p, &stopped, allocs, addrs, nil)["m-a"].InJob {
		t.Error("groups of a stopped job counted as in the job")
	}
}

func TestObserve_IgnoresInstancesNomadDidNotPlace(t *testing.T) {
	p := testPool()
	job := registered(t, p, member("m-a", pool.PhaseRunning, 2, 1))
	allocs := []*api.AllocationListStub{{ID: "a-1", TaskGroup: "m-a", CreateIndex: 9, DesiredStatus: "run", ClientStatus: "running"}}
	addrs := AllocAddresses{"a-1": {"http": "127.0.0.1:20001"}}
	tests := []struct {
		name     string
		instance *consulapi.AgentService
	}{
		{"elsewhere: aimed at the control plane", &consulapi.AgentService{Address: "127.0.0.1", Port: 8500,
			Meta: map[string]string{MetaPoolID: "p-1", MetaMember: "m-a", MetaPort: "http"}}},
		{"another pool's member with the same id", &consulapi.AgentService{Address: "127.0.0.1", Port: 20001,
			Meta: map[string]string{MetaPoolID: "p-2", MetaMember: "m-a", MetaPort: "http"}}},
		{"another port label", &consulapi.AgentService{Address: "127.0.0.1", Port: 20001,
			Meta: map[string]string{MetaPoolID: "p-1", MetaMember: "m-a", MetaPort: "admin"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := Observe(p, job, allocs, addrs, []*consulapi.ServiceEntry{{Service: tt.instance, Checks: consulapi.HealthChecks{{Status: "passing"}}}})
			if o := obs["m-a"]; o.Healthy || o.Address != "" {
				t.Fatalf("observation %+v: an instance Nomad did not place made the member healthy", o)
			}
		})
	}
}

func TestPortAddresses(t *testing.T) {
	a := &api.Allocation{AllocatedResources: &api.AllocatedResources{
		Shared: api.AllocatedSharedResources{Ports: []api.PortMapping{{Label: "http", Value: 20001, To: 8080, HostIP: "10.0.0.5"}}},
		Tasks: map[string]*api.AllocatedTaskResources{"t": {Networks: []*api.NetworkResource{
			{IP: "10.0.0.5", DynamicPorts: []api.Port{{Label: "legacy", Value: 20002}}},
		}}},
	}}
	got := PortAddresses(a)
	want := map[string]string{"http": "10.0.0.5:20001", "legacy": "10.0.0.5:20002"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PortAddresses = %v, want %v", got, want)
	}
	if len(PortAddresses(&api.Allocation{})) != 0 {
		t.Fatal("an allocation without resources has no addresses")
	}
}

func TestIsNotFound(t *testing.T) {
	if isNotFound(errors.New("Unexpected response code: 404 (job not found)")) {
		t.Error("a plain error string is not Nomad's 404")
	}
	if isNotFound(nil) {
		t.Error("nil is not a 404")
	}
}

func TestUsagePercent(t *testing.T) {
	alloc := &api.Allocation{AllocatedResources: &api.AllocatedResources{Tasks: map[string]*api.AllocatedTaskResources{
		"echo": {Cpu: api.AllocatedCpuResources{CpuShares: 200}, Memory: api.AllocatedMemoryResources{MemoryMB: 64}},
	}}}
	usage := &api.AllocResourceUsage{ResourceUsage: &api.ResourceUsage{
		CpuStats:    &api.CpuStats{TotalTicks: 50},
		MemoryStats: &api.MemoryStats{RSS: 16 << 20},
	}}
	cpu, mem, err := UsagePercent(alloc, usage)
	if err != nil || cpu != 25 || mem != 25 {
		t.Fatalf("cpu %v mem %v err %v; want 25, 25", cpu, mem, err)
	}
	if _, _, err := UsagePercent(alloc, &api.AllocResourceUsage{}); err == nil {
		t.Fatal("no usage must be an error")
	}
}

// parser answers like a Nomad agent: with a parse error, or not at all.
type parser struct{ err error }

func (p parser) ParseHCLOpts(*api.JobsParseRequest) (*api.Job, error) { return nil, p.err }

func TestParseTemplate_NomadDownIsNotTheTemplatesFault(t *testing.T) {
	spec := &pool.Spec{Template: "job {}", Ports: []pool.Port{{Label: "http"}}}
	_, err := ParseTemplate(parser{errors.New("dial tcp 127.0.0.1:4646: connect: connection refused")}, spec, rawExec)
	if !errors.Is(err, ErrNomadUnavailable) {
		t.Fatalf("Nomad unreachable: %v, want ErrNomadUnavailable", err)
	}
	var verr *pool.ValidationError
	if errors.As(err, &verr) {
		t.Fatal("Nomad being down was blamed on the template")
	}
}
