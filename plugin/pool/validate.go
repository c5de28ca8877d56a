package pool

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// nameRE is the shape of pool and user names (SPEC.md §2).
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// labelRE is the shape of a Nomad port label.
var labelRE = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)

// ValidName reports whether s may name a pool or a user. Names never contain
// "--", which separates owner, pool and port in gateway host names.
func ValidName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%q must start with a lowercase letter and contain only lowercase letters, digits and '-' (at most 63 characters)", s)
	}
	if strings.Contains(s, "--") {
		return fmt.Errorf("%q must not contain \"--\"", s)
	}
	return nil
}

// Limits are server-wide bounds applied on top of a spec's own rules.
type Limits struct {
	// MaxDesiredCount caps desired_count; 0 means DefaultMaxDesiredCount.
	MaxDesiredCount int
	// MaxScaleLimit caps autoscaling.max_scale; 0 means no cap.
	MaxScaleLimit int
	// AllowZeroInitialScale permits autoscaling.initial_scale = 0.
	AllowZeroInitialScale bool
}

// DefaultMaxDesiredCount bounds desired_count when the server sets no limit.
const DefaultMaxDesiredCount = 1000

func (l Limits) maxDesired() int {
	if l.MaxDesiredCount > 0 {
		return l.MaxDesiredCount
	}
	return DefaultMaxDesiredCount
}

// Validate checks a spec against SPEC.md §2 and Knative's autoscaling rules.
// It returns every problem at once as a *ValidationError naming each field by
// its JSON path (for example "autoscaling.min_scale" or "ports[1].number"),
// or nil. The template's content is checked elsewhere: that needs Nomad.
func (s *Spec) Validate(l Limits) error {
	var v validator
	if err := ValidName(s.Name); err != nil {
		v.add("name", "%s", err.Error())
	}
	switch {
	case strings.TrimSpace(s.Template) == "":
		v.add("template", "is required: a Nomad jobspec with exactly one task group")
	case len(s.Template) > MaxTemplateBytes:
		v.add("template", "is %d bytes; at most %d (256 KiB) are accepted", len(s.Template), MaxTemplateBytes)
	}
	v.checkCount(s.DesiredCount, l)
	v.checkPorts(s.Ports)
	if s.Methods != nil {
		v.checkMethods(s.Methods, s.Ports)
	}
	v.durationRange("drain.timeout", s.Drain.Timeout, 0, time.Hour)
	v.durationRange("drain.grace_period", s.Drain.GracePeriod, 0, 24*time.Hour)
	if s.Autoscaling != nil {
		v.checkAutoscaling(s.Autoscaling, l)
	}
	if s.Scaler != nil {
		v.checkScaler(s.Scaler)
		if s.Autoscaling != nil {
			v.add("scaler", "cannot be used together with autoscaling: both would own the member count")
		}
	}
	return v.err()
}

// MaxTemplateBytes bounds a template: it is stored in the pool record, and
// Consul refuses transactions much larger (512 KiB by default).
const MaxTemplateBytes = 256 << 10

// MaxHostLabel is DNS's limit on one label of a host name.
const MaxHostLabel = 63

// ValidateHostLabels checks that every port of owner's pool makes a host
// label a DNS client accepts: <owner>--<name>--<port> of at most 63 bytes.
func ValidateHostLabels(owner string, s *Spec) error {
	var v validator
	for i, p := range s.Ports {
		label := owner + "--" + s.Name + "--" + strconv.Itoa(p.Number)
		if len(label) > MaxHostLabel {
			v.add("name", "with owner %q and port %d makes the host label %q, %d bytes; DNS allows %d (ports[%d])", owner, p.Number, label, len(label), MaxHostLabel, i)
			break
		}
	}
	return v.err()
}

// ValidateCount checks a desired count on its own, for the size API.
func ValidateCount(n int, l Limits) error {
	var v validator
	v.checkCount(n, l)
	return v.err()
}

type validator struct{ errs []FieldError }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Fields: v.errs}
}

func (v *validator) checkCount(n int, l Limits) {
	if n < 0 {
		v.add("desired_count", "must not be negative")
	} else if n > l.maxDesired() {
		v.add("desired_count", "must be at most %d (the server's limit)", l.maxDesired())
	}
}

func (v *validator) checkPorts(ports []Port) {
	if len(ports) == 0 {
		v.add("ports", "at least one port block is required")
	}
	labels := map[string]int{}
	numbers := map[int]int{}
	for i, p := range ports {
		f := fmt.Sprintf("ports[%d]", i)
		if !labelRE.MatchString(p.Label) {
			v.add(f+".label", "%q is not a port label (letters, digits and '_')", p.Label)
		} else if j, dup := labels[p.Label]; dup {
			v.add(f+".label", "%q is already declared by ports[%d]", p.Label, j)
		} else {
			labels[p.Label] = i
		}
		if p.Number < 1 || p.Number > 65535 {
			v.add(f+".number", "must be from 1 to 65535")
		} else if j, dup := numbers[p.Number]; dup {
			v.add(f+".number", "%d is already used by ports[%d]", p.Number, j)
		} else {
			numbers[p.Number] = i
		}
		if p.Protocol != ProtocolHTTP && p.Protocol != ProtocolTCP {
			v.add(f+".protocol", "must be %q or %q", ProtocolHTTP, ProtocolTCP)
		}
	}
}

func (v *validator) checkMethods(m *Methods, ports []Port) {
	if len(m.Names) == 0 {
		v.add("methods.names", "at least one method name is required")
	}
	seen := map[string]bool{}
	for i, n := range m.Names {
		switch {
		case n == "" || strings.ContainsAny(n, " \t\r\n"):
			v.add(fmt.Sprintf("methods.names[%d]", i), "%q is not a method name", n)
		case strings.HasPrefix(n, "rpc."):
			v.add(fmt.Sprintf("methods.names[%d]", i), "%q: names starting with \"rpc.\" are reserved by JSON-RPC", n)
		case seen[n]:
			v.add(fmt.Sprintf("methods.names[%d]", i), "%q is listed twice", n)
		}
		seen[n] = true
	}
	var port *Port
	for i := range ports {
		if ports[i].Label == m.Port {
			port = &ports[i]
		}
	}
	switch {
	case port == nil:
		v.add("methods.port", "%q is not one of the pool's port labels", m.Port)
	case port.Protocol != ProtocolHTTP:
		v.add("methods.port", "%q must be an http port", m.Port)
	}
	if !strings.HasPrefix(m.Path, "/") {
		v.add("methods.path", "must start with '/'")
	}
}

// MaxScalerSourceBytes bounds a scaler script's text.
const MaxScalerSourceBytes = 64 << 10

// checkScaler checks the scaler's shape; whether its source compiles is
// checked where Starlark is linked (plugin/sandbox), not here.
func (v *validator) checkScaler(sc *Scaler) {
	if strings.TrimSpace(sc.Script) == "" {
		v.add("scaler.script", "is required: the script's file name")
	}
	switch {
	case strings.TrimSpace(sc.Source) == "":
		v.add("scaler.source", "is required: the script's text")
	case len(sc.Source) > MaxScalerSourceBytes:
		v.add("scaler.source", "is %d bytes; at most %d", len(sc.Source), MaxScalerSourceBytes)
	}
	v.durationRange("scaler.interval", sc.Interval, time.Second, time.Hour)
}

func (v *validator) checkAutoscaling(a *Autoscaling, l Limits) {
	const f = "autoscaling."
	if a.Metric != MetricConcurrency && a.Metric != MetricRPS {
		v.add(f+"metric", "must be %q or %q", MetricConcurrency, MetricRPS)
	}
	if a.Target < 0.01 {
		v.add(f+"target", "must be at least 0.01")
	}
	if a.TargetUtilization < 1 || a.TargetUtilization > 100 {
		v.add(f+"target_utilization", "must be from 1 to 100 (percent)")
	}
	if a.ContainerConcurrency < 0 || a.ContainerConcurrency > 1000 {
		v.add(f+"container_concurrency", "must be from 0 (unlimited) to 1000")
	}
	if a.MinScale < 0 {
		v.add(f+"min_scale", "must not be negative")
	}
	switch {
	case a.MaxScale < 0:
		v.add(f+"max_scale", "must not be negative")
	case l.MaxScaleLimit > 0 && a.MaxScale == 0:
		v.add(f+"max_scale", "must be set (0 means unlimited, which the server's max_scale_limit of %d forbids)", l.MaxScaleLimit)
	case l.MaxScaleLimit > 0 && a.MaxScale > l.MaxScaleLimit:
		v.add(f+"max_scale", "must be at most %d (the server's max_scale_limit)", l.MaxScaleLimit)
	case a.MaxScale > 0 && a.MinScale > a.MaxScale:
		v.add(f+"min_scale", "must not exceed max_scale (%d)", a.MaxScale)
	}
	switch {
	case a.ActivationScale < 1:
		v.add(f+"activation_scale", "must be at least 1")
	case a.ActivationScale < a.MinScale:
		v.add(f+"activation_scale", "must be at least min_scale (%d)", a.MinScale)
	case a.MaxScale > 0 && a.ActivationScale > a.MaxScale:
		v.add(f+"activation_scale", "must not exceed max_scale (%d)", a.MaxScale)
	}
	switch {
	case a.InitialScale < 0:
		v.add(f+"initial_scale", "must not be negative")
	case a.InitialScale == 0 && !l.AllowZeroInitialScale:
		v.add(f+"initial_scale", "0 needs the server's allow_zero_initial_scale")
	case a.MaxScale > 0 && a.InitialScale > a.MaxScale:
		v.add(f+"initial_scale", "must not exceed max_scale (%d)", a.MaxScale)
	}
	v.wholeSeconds(f+"scale_down_delay", a.ScaleDownDelay, 0, time.Hour)
	v.wholeSeconds(f+"stable_window", a.StableWindow, 6*time.Second, time.Hour)
	if a.PanicWindowPercentage < 1 || a.PanicWindowPercentage > 100 {
		v.add(f+"panic_window_percentage", "must be from 1 to 100")
	}
	if a.PanicThresholdPercentage < 110 || a.PanicThresholdPercentage > 1000 {
		v.add(f+"panic_threshold_percentage", "must be from 110 to 1000")
	}
	v.durationRange(f+"queue_timeout", a.QueueTimeout, time.Second, 10*time.Minute)
}

func (v *validator) durationRange(field string, d Duration, lo, hi time.Duration) {
	if d.D() < lo || d.D() > hi {
		v.add(field, "must be from %s to %s", fmtDur(lo), fmtDur(hi))
	}
}

func (v *validator) wholeSeconds(field string, d Duration, lo, hi time.Duration) {
	switch {
	case d.D() < lo || d.D() > hi:
		v.add(field, "must be from %s to %s", fmtDur(lo), fmtDur(hi))
	case d.D()%time.Second != 0:
		v.add(field, "must be a whole number of seconds")
	}
}
