// Package nomadjob maps pools to Nomad (DESIGN.md decisions 1 and 2): one
// job per pool, one task group per member, stamped from the pool's template.
// It turns Nomad and Consul reports back into the planner's observations,
// and registers the jobs the planner's decisions imply.
package nomadjob

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// Parser is the part of *api.Jobs that parses jobspecs.
type Parser interface {
	ParseHCLOpts(req *api.JobsParseRequest) (*api.Job, error)
}

// ErrNomadUnavailable means Nomad could not be asked; callers answer 503.
var ErrNomadUnavailable = errors.New("nomad is unavailable")

// Policy is what the operator lets tenants' templates do.
type Policy struct {
	// AllowedDrivers are the task drivers a template may use.
	AllowedDrivers []string
}

// DefaultAllowedDrivers isolate tasks from the host. raw_exec runs tasks
// as the Nomad client's user with the host's network and files: allow it
// only where every tenant is trusted (dev clusters, tests).
var DefaultAllowedDrivers = []string{"docker", "podman", "exec", "java"}

// ParseTemplate has Nomad parse a pool's template and checks that it fits
// the spec and the policy. Problems are a *pool.ValidationError on field
// "template".
func ParseTemplate(p Parser, spec *pool.Spec, policy Policy) (*api.Job, error) {
	job, err := p.ParseHCLOpts(&api.JobsParseRequest{JobHCL: spec.Template})
	var ure api.UnexpectedResponseError
	var urp *api.UnexpectedResponseError
	switch {
	case err == nil:
	case errors.As(err, &ure) && ure.StatusCode() < 500, errors.As(err, &urp) && urp.StatusCode() < 500:
		return nil, templateError("Nomad cannot parse it: %s", nomadMessage(err))
	default:
		// Nomad did not answer (or failed): the template is not at fault.
		return nil, fmt.Errorf("%w: %w", ErrNomadUnavailable, err)
	}
	if err := CheckTemplate(job, spec, policy); err != nil {
		return nil, err
	}
	return job, nil
}

// CheckTemplate checks a parsed template against the spec's ports and
// confines it (docs/security.md): a template describes what one member
// runs, and nothing that reaches past it — other job types, another
// namespace or region, a higher priority, drivers the operator did not
// allow, fixed host ports, service addresses other than the allocation's,
// Tidepool's reserved service names, tags and meta, or Nomad/Consul/Vault
// tokens. Every problem is reported at once.
func CheckTemplate(job *api.Job, spec *pool.Spec, policy Policy) error {
	if n := len(job.TaskGroups); n != 1 {
		return templateError("must have exactly one task group, has %d", n)
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if t := deref(job.Type); t != "" && t != api.JobTypeService {
		bad("job type %q is not allowed: members are a service job", t)
	}
	if job.Periodic != nil {
		bad("periodic is not allowed")
	}
	if job.ParameterizedJob != nil {
		bad("parameterized is not allowed")
	}
	if job.Multiregion != nil {
		bad("multiregion is not allowed")
	}
	if ns := deref(job.Namespace); ns != "" {
		bad("namespace %q is not allowed: pools run in the controller's namespace", ns)
	}
	if r := deref(job.Region); r != "" && r != "global" {
		bad("region %q is not allowed: pools run in the controller's region", r)
	}
	if job.Priority != nil && *job.Priority > maxPriority {
		bad("priority %d is above %d, the highest a template may ask for", *job.Priority, maxPriority)
	}
	if deref(job.NomadTokenID) != "" {
		bad("a Nomad token is not allowed")
	}
	reservedMeta(job.Meta, "job", bad)

	tg := job.TaskGroups[0]
	reservedMeta(tg.Meta, "group", bad)
	labels := map[string]bool{}
	for _, n := range tg.Networks {
		switch n.Mode {
		case "", "host", "bridge":
		default:
			bad("network mode %q is not allowed (host or bridge)", n.Mode)
		}
		for _, p := range n.ReservedPorts {
			bad("port %q has a static number: only dynamic ports are allowed, so a member cannot claim a port of the host's", p.Label)
			labels[p.Label] = true
		}
		for _, p := range n.DynamicPorts {
			labels[p.Label] = true
		}
	}
	for _, t := range tg.Tasks {
		if !slices.Contains(policy.AllowedDrivers, t.Driver) {
			bad("task %q: driver %q is not allowed on this server (allowed: %s)", t.Name, t.Driver, strings.Join(policy.AllowedDrivers, ", "))
		}
		reservedMeta(t.Meta, "task "+t.Name, bad)
		for _, n := range taskNetworks(t) {
			for _, p := range n.ReservedPorts {
				bad("task %q: port %q has a static number: only dynamic ports are allowed", t.Name, p.Label)
			}
		}
	}
	services := map[string]bool{}
	for _, s := range groupServices(tg) {
		checkService(s, bad)
		services[s.PortLabel] = true
	}
	for _, p := range spec.Ports {
		switch {
		case !labels[p.Label]:
			bad("port %q is not in the task group's network block", p.Label)
		case !services[p.Label]:
			bad("port %q has no service (Tidepool finds members through Consul)", p.Label)
		}
	}
	if len(problems) > 0 {
		return templateError("%s", strings.Join(problems, "; "))
	}
	return nil
}

// maxPriority is Nomad's default job priority: a tenant may lower it, not
// raise it over other tenants'.
const maxPriority = 50

// Reserved names: Tidepool's own services (controllers, gateways) and the
// tags and meta it stamps on members, which gateways and controllers trust.
var (
	reservedTagPrefixes = []string{"tidepool", "pool=", "member=", "port="}
	reservedMetaPrefix  = "tidepool"
)

func checkService(s *api.Service, bad func(string, ...any)) {
	name := s.Name
	if strings.HasPrefix(strings.ToLower(name), "tidepool") {
		bad("service %q: names beginning with \"tidepool\" are reserved for Tidepool itself", name)
	}
	if s.Address != "" {
		bad("service %q: address is not allowed: members are reached at the address Nomad allocates", name)
	}
	switch s.AddressMode {
	case "", "auto", "host":
	default:
		bad("service %q: address_mode %q is not allowed (auto or host)", name, s.AddressMode)
	}
	switch s.Provider {
	case "", "consul":
	default:
		bad("service %q: provider %q is not allowed: gateways find members in Consul", name, s.Provider)
	}
	if s.Connect != nil {
		bad("service %q: connect is not supported", name)
	}
	for _, t := range slices.Concat(s.Tags, s.CanaryTags) {
		for _, prefix := range reservedTagPrefixes {
			if strings.HasPrefix(strings.ToLower(t), prefix) {
				bad("service %q: tag %q is reserved for Tidepool", name, t)
				break
			}
		}
	}
	reservedMeta(s.Meta, "service "+strconv.Quote(name), bad)
	for _, c := range s.Checks {
		if c.AddressMode != "" && c.AddressMode != "host" && c.AddressMode != "auto" {
			bad("service %q: check address_mode %q is not allowed", name, c.AddressMode)
		}
	}
}

func reservedMeta(meta map[string]string, where string, bad func(string, ...any)) {
	keys := slices.Sorted(maps.Keys(meta))
	for _, k := range keys {
		if strings.HasPrefix(strings.ToLower(k), reservedMetaPrefix) {
			bad("%s meta %q: keys beginning with %q are reserved for Tidepool", where, k, reservedMetaPrefix)
		}
	}
}

func taskNetworks(t *api.Task) []*api.NetworkResource {
	if t.Resources == nil {
		return nil
	}
	return t.Resources.Networks
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func templateError(format string, args ...any) error {
	return &pool.ValidationError{Fields: []pool.FieldError{{Field: "template", Message: fmt.Sprintf(format, args...)}}}
}

// nomadMessage trims the HTTP framing from a Nomad API error.
func nomadMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 && strings.HasPrefix(msg, "Unexpected response code") {
		msg = msg[i+3:]
	}
	return strings.TrimSpace(msg)
}

// groupServices lists the group's services and its tasks' services.
func groupServices(tg *api.TaskGroup) []*api.Service {
	out := slices.Clone(tg.Services)
	for _, t := range tg.Tasks {
		out = append(out, t.Services...)
	}
	return out
}

// clone deep-copies a Nomad API value through JSON, which every api type
// round-trips.
func clone[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("nomadjob: clone %T: %v", v, err))
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(fmt.Sprintf("nomadjob: clone %T: %v", v, err))
	}
	return out
}
