package nomadjob

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// Job and group meta keys. They are written once, when a job or group is
// created, and never changed: Nomad restarts tasks whose combined meta
// changes.
const (
	MetaManaged    = "tidepool_managed"
	MetaPoolID     = pool.ServiceMetaPoolID
	MetaOwner      = "tidepool_owner"
	MetaPool       = "tidepool_pool"
	MetaMember     = pool.ServiceMetaMember
	MetaGeneration = "tidepool_generation"
	MetaPort       = pool.ServiceMetaPort
	// MetaInstallation names the Tidepool installation that created the
	// job: the KV prefix of its store. Installations sharing a Nomad
	// cluster tell their jobs apart by it, and the garbage collector
	// purges only its own installation's jobs (see PlanGC).
	MetaInstallation = "tidepool_kv_prefix"
)

// Service tags Tidepool adds to every member service. TagDraining marks a
// draining member; unlike meta, a tag change is an in-place update.
const (
	TagTidepool = pool.ServiceTag
	TagDraining = "tidepool-draining"
)

// ErrNotOwned means the job id is taken by a job Tidepool did not create for
// this pool; it is never touched.
var ErrNotOwned = errors.New("job exists and is not managed by tidepool for this pool")

// Owned reports whether job was created by Tidepool for pool id.
func Owned(job *api.Job, poolID string) bool {
	return job.Meta[MetaManaged] == "true" && job.Meta[MetaPoolID] == poolID
}

// Desired computes the job to register for the pool's members.
//
// Groups Nomad already runs are kept as they are, changing only their count
// and draining tag, so a template change never restarts an old member; new
// members are stamped from tmpl (the current generation's parsed
// template). current is the registered job or nil; a job Desired creates
// is marked with installation (MetaInstallation). changed is false when
// registering would change nothing.
//
// When no member needs a group, job is current with Stop set: stopping is
// a registration like any other, so it can be checked against current's
// modify index (a deregistration cannot). Its groups stay as they were, as
// Nomad refuses a job without groups. job is nil only when there is no job
// and none is needed.
func Desired(p *pool.Pool, current, tmpl *api.Job, members []*pool.Member, installation string) (job *api.Job, changed bool, err error) {
	if current != nil && !Owned(current, p.ID) {
		return nil, false, fmt.Errorf("%s: %w", p.JobID(), ErrNotOwned)
	}
	live := current != nil && !isStopped(current)
	have := map[string]*api.TaskGroup{}
	if live {
		for _, tg := range current.TaskGroups {
			have[*tg.Name] = tg
		}
	}

	ordered := slices.Clone(members)
	slices.SortFunc(ordered, func(a, b *pool.Member) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	var groups []*api.TaskGroup
	for _, m := range ordered {
		if m.Phase == pool.PhaseDeleting {
			continue
		}
		if tg, ok := have[m.ID]; ok {
			next := clone(tg)
			setCount(next, m.Phase)
			if !changed {
				changed = *tg.Count != *next.Count || draining(tg) != draining(next)
			}
			groups = append(groups, next)
			continue
		}
		if m.Generation != p.TemplateGeneration || tmpl == nil {
			continue // an old generation's template is gone; the planner replaces it
		}
		groups = append(groups, Stamp(p, tmpl, m))
		changed = true
	}
	if live && len(groups) != len(current.TaskGroups) {
		changed = true
	}
	if len(groups) == 0 {
		if !live {
			return current, false, nil
		}
		stopped := clone(current)
		stopped.Stop = new(true)
		return stopped, true, nil
	}

	var base *api.Job
	if live {
		base = clone(current)
	} else {
		if tmpl == nil {
			return nil, false, errors.New("no template to create the job from")
		}
		base = newJob(p, tmpl, installation)
		changed = true
	}
	base.TaskGroups = groups
	base.Stop = new(false)
	return base, changed, nil
}

// newJob takes the job-level settings of the template and makes it the
// pool's job. Job-level settings are fixed at creation: changing job meta
// would restart every member. (A stopped job is created anew when it
// starts again; nothing runs then that a meta change could restart.)
func newJob(p *pool.Pool, tmpl *api.Job, installation string) *api.Job {
	job := clone(tmpl)
	id := p.JobID()
	job.ID, job.Name = &id, &id
	job.ParentID = nil
	job.TaskGroups = nil
	if job.Meta == nil {
		job.Meta = map[string]string{}
	}
	job.Meta[MetaManaged] = "true"
	job.Meta[MetaPoolID] = p.ID
	job.Meta[MetaOwner] = p.Owner
	job.Meta[MetaPool] = p.Spec.Name
	if installation != "" {
		job.Meta[MetaInstallation] = installation
	}
	// Tidepool rolls members out itself; Nomad deployments (and their
	// auto-revert) would fight it.
	job.Update = &api.UpdateStrategy{MaxParallel: new(0)}
	job.Version, job.JobModifyIndex, job.ModifyIndex, job.CreateIndex = nil, nil, nil, nil
	job.Status, job.StatusDescription, job.SubmitTime = nil, nil, nil
	return job
}

// Stamp makes member m's task group from the template's single group.
func Stamp(p *pool.Pool, tmpl *api.Job, m *pool.Member) *api.TaskGroup {
	tg := clone(tmpl.TaskGroups[0])
	tg.Name = &m.ID
	tg.Update = nil
	if tg.Meta == nil {
		tg.Meta = map[string]string{}
	}
	tg.Meta[MetaMember] = m.ID
	tg.Meta[MetaGeneration] = strconv.FormatInt(m.Generation, 10)
	tg.Meta[MetaPoolID] = p.ID
	for _, s := range groupServices(tg) {
		s.Tags = append(s.Tags, TagTidepool, "member="+m.ID, pool.SelectorTag(p.ID), "port="+s.PortLabel)
		if s.Meta == nil {
			s.Meta = map[string]string{}
		}
		s.Meta[MetaPoolID] = p.ID
		s.Meta[MetaOwner] = p.Owner
		s.Meta[MetaPool] = p.Spec.Name
		s.Meta[MetaMember] = m.ID
		s.Meta[MetaPort] = s.PortLabel
		s.Meta[MetaGeneration] = strconv.FormatInt(m.Generation, 10)
	}
	setCount(tg, m.Phase)
	return tg
}

// setCount sets the group's count for phase and tags its services when the
// member is draining.
func setCount(tg *api.TaskGroup, phase pool.Phase) {
	tg.Count = new(phase.RunningCount())
	for _, s := range groupServices(tg) {
		s.Tags = slices.DeleteFunc(s.Tags, func(t string) bool { return t == TagDraining })
		if phase == pool.PhaseDraining {
			s.Tags = append(s.Tags, TagDraining)
		}
	}
}

func draining(tg *api.TaskGroup) bool {
	for _, s := range groupServices(tg) {
		return slices.Contains(s.Tags, TagDraining)
	}
	return false
}

func isStopped(job *api.Job) bool { return job.Stop != nil && *job.Stop }
