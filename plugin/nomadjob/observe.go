package nomadjob

import (
	"fmt"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/reconcile"
)

// Observe condenses what Nomad (the job and its allocations) and Consul (the
// pool's service instances with their checks) report into one observation
// per member, keyed by member id. job may be nil.
func Observe(job *api.Job, allocs []*api.AllocationListStub, services []*consulapi.ServiceEntry, ports []pool.Port) map[string]reconcile.Observation {
	obs := map[string]reconcile.Observation{}
	if job != nil && !isStopped(job) {
		for _, tg := range job.TaskGroups {
			o := obs[*tg.Name]
			o.InJob = true
			if tg.Count != nil {
				o.Count = *tg.Count
			}
			obs[*tg.Name] = o
		}
	}

	latest := map[string]*api.AllocationListStub{}
	for _, a := range allocs {
		if l, ok := latest[a.TaskGroup]; !ok || a.CreateIndex > l.CreateIndex {
			latest[a.TaskGroup] = a
		}
	}
	for group, a := range latest {
		o := obs[group]
		o.Alloc = allocState(a)
		o.AllocID = a.ID
		obs[group] = o
	}

	// A member is healthy when every pool port has a passing instance.
	type portHealth struct{ passing, seen int }
	health := map[string]*portHealth{}
	addr := map[string]string{}
	for _, e := range services {
		member := e.Service.Meta[MetaMember]
		if member == "" {
			continue
		}
		h := health[member]
		if h == nil {
			h = &portHealth{}
			health[member] = h
		}
		h.seen++
		if e.Checks.AggregatedStatus() == consulapi.HealthPassing {
			h.passing++
		}
		if len(ports) > 0 && e.Service.Meta[MetaPort] == ports[0].Label {
			addr[member] = fmt.Sprintf("%s:%d", e.Service.Address, e.Service.Port)
		}
	}
	for member, h := range health {
		o := obs[member]
		// Consul alone decides health: the allocation status Nomad's
		// servers hold can trail the checks.
		o.Healthy = h.seen >= len(ports) && h.passing == h.seen && o.Alloc != reconcile.AllocStopped && o.Alloc != reconcile.AllocDead
		o.Address = addr[member]
		obs[member] = o
	}
	return obs
}

// allocState maps an allocation's desired and client status to what the
// planner needs.
func allocState(a *api.AllocationListStub) reconcile.AllocState {
	if a.DesiredStatus != api.AllocDesiredStatusRun {
		return reconcile.AllocStopped
	}
	switch a.ClientStatus {
	case api.AllocClientStatusPending:
		return reconcile.AllocPending
	case api.AllocClientStatusRunning:
		return reconcile.AllocRunning
	case api.AllocClientStatusFailed, api.AllocClientStatusLost, api.AllocClientStatusComplete:
		return reconcile.AllocDead
	default:
		return reconcile.AllocPending
	}
}
