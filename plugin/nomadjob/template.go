// Package nomadjob maps pools to Nomad (DESIGN.md decisions 1 and 2): one
// job per pool, one task group per member, stamped from the pool's template.
// It turns Nomad and Consul reports back into the planner's observations,
// and registers the jobs the planner's decisions imply.
package nomadjob

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// Parser is the part of *api.Jobs that parses jobspecs.
type Parser interface {
	ParseHCLOpts(req *api.JobsParseRequest) (*api.Job, error)
}

// ParseTemplate has Nomad parse a pool's template and checks that it fits
// the spec: exactly one task group, and a network port and a service for
// every pool port. Problems are a *pool.ValidationError on field
// "template".
func ParseTemplate(p Parser, spec *pool.Spec) (*api.Job, error) {
	job, err := p.ParseHCLOpts(&api.JobsParseRequest{JobHCL: spec.Template})
	if err != nil {
		return nil, templateError("Nomad cannot parse it: %s", nomadMessage(err))
	}
	if err := CheckTemplate(job, spec); err != nil {
		return nil, err
	}
	return job, nil
}

// CheckTemplate checks a parsed template against the spec's ports.
func CheckTemplate(job *api.Job, spec *pool.Spec) error {
	if n := len(job.TaskGroups); n != 1 {
		return templateError("must have exactly one task group, has %d", n)
	}
	tg := job.TaskGroups[0]
	labels := map[string]bool{}
	for _, n := range tg.Networks {
		for _, p := range slices.Concat(n.DynamicPorts, n.ReservedPorts) {
			labels[p.Label] = true
		}
	}
	services := map[string]bool{}
	for _, s := range groupServices(tg) {
		services[s.PortLabel] = true
	}
	var missing []string
	for _, p := range spec.Ports {
		switch {
		case !labels[p.Label]:
			missing = append(missing, fmt.Sprintf("port %q is not in the task group's network block", p.Label))
		case !services[p.Label]:
			missing = append(missing, fmt.Sprintf("port %q has no service (Tidepool finds members through Consul)", p.Label))
		}
	}
	if len(missing) > 0 {
		return templateError("%s", strings.Join(missing, "; "))
	}
	return nil
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

// ServiceForPort names the template's service for a port label, or "".
func ServiceForPort(tmpl *api.Job, label string) string {
	for _, tg := range tmpl.TaskGroups {
		for _, s := range groupServices(tg) {
			if s.PortLabel == label {
				return s.Name
			}
		}
	}
	return ""
}
