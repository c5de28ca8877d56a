package nomadjob

import (
	"net"
	"slices"
	"strconv"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/reconcile"
)

// Observe condenses what Nomad (the job and its allocations, with the
// addresses each allocation was given) and Consul (the pool's service
// instances with their checks) report into one observation per member,
// keyed by member id. job may be nil.
//
// A Consul instance counts only when it belongs to pool p and sits at the
// address Nomad allocated to the member's latest allocation for its port:
// Consul accepts registrations from anyone who can reach an agent, Nomad's
// allocations only from the scheduler.
func Observe(p *pool.Pool, job *api.Job, allocs []*api.AllocationListStub, addrs AllocAddresses, services []*consulapi.ServiceEntry) map[string]reconcile.Observation {
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
		if o.Alloc == reconcile.AllocPending || o.Alloc == reconcile.AllocRunning {
			o.Addresses = addrs[a.ID]
		}
		obs[group] = o
	}

	// A member is healthy when every pool port has a passing instance.
	type portHealth struct{ passing, seen int }
	health := map[string]*portHealth{}
	addr := map[string]string{}
	for _, e := range services {
		member := e.Service.Meta[MetaMember]
		label := e.Service.Meta[MetaPort]
		if member == "" || e.Service.Meta[MetaPoolID] != p.ID {
			continue
		}
		at := net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))
		if want, ok := obs[member].Addresses[label]; !ok || at != want {
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
		if len(p.Spec.Ports) > 0 && label == p.Spec.Ports[0].Label {
			addr[member] = at
		}
	}
	for member, h := range health {
		o := obs[member]
		// Consul alone decides health: the allocation status Nomad's
		// servers hold can trail the checks.
		o.Healthy = h.seen >= len(p.Spec.Ports) && h.passing == h.seen && o.Alloc != reconcile.AllocStopped && o.Alloc != reconcile.AllocDead
		o.Address = addr[member]
		obs[member] = o
	}
	return obs
}

// AllocAddresses maps allocation id → port label → host:port.
type AllocAddresses map[string]map[string]string

// PortAddresses lists the host:port Nomad allocated to each port label of
// an allocation: its group network's ports and any task network's.
func PortAddresses(a *api.Allocation) map[string]string {
	out := map[string]string{}
	if a == nil || a.AllocatedResources == nil {
		return out
	}
	for _, pm := range a.AllocatedResources.Shared.Ports {
		out[pm.Label] = net.JoinHostPort(pm.HostIP, strconv.Itoa(pm.Value))
	}
	for _, t := range a.AllocatedResources.Tasks {
		for _, n := range t.Networks {
			for _, port := range slices.Concat(n.ReservedPorts, n.DynamicPorts) {
				if _, ok := out[port.Label]; !ok {
					out[port.Label] = net.JoinHostPort(n.IP, strconv.Itoa(port.Value))
				}
			}
		}
	}
	return out
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
