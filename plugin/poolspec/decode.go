// Package poolspec reads pool spec files (SPEC.md §2): HCL is decoded into
// structs kept apart from the domain types, defaults are applied, the result
// is validated by package pool, and every problem is reported at once with
// the file, line and column it comes from.
package poolspec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/sandbox"
)

// Defaults fill what a spec leaves out; Limits bound what it may ask for.
type Defaults struct {
	// Autoscaling seeds every key an autoscaling block omits (the server's
	// autoscaler {} block, like Knative's config-autoscaler).
	Autoscaling pool.Autoscaling
	Limits      pool.Limits
}

// DefaultDefaults are the built-in defaults, used by the CLI before the
// server applies its own.
func DefaultDefaults() Defaults {
	return Defaults{Autoscaling: pool.DefaultAutoscaling()}
}

// Result is a decoded, validated spec and where its parts came from.
type Result struct {
	Spec pool.Spec
	// TemplatePath is the template file, resolved against the spec file.
	TemplatePath string
	// Source locates spec fields in the file, to attribute errors the
	// server reports by field name.
	Source *SourceMap
}

// ParseFile reads and decodes the spec at path and the template it names.
// On failure the error is a Diagnostics value listing every problem.
func ParseFile(path string, d Defaults) (*Result, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pool spec: %w", err)
	}
	res, diags := Parse(path, src, os.ReadFile, d)
	if diags.HasErrors() {
		return nil, Diagnostics(diags)
	}
	return res, nil
}

// Parse decodes src (named filename) and validates it. readFile loads the
// template, whose path is relative to filename.
func Parse(filename string, src []byte, readFile func(string) ([]byte, error), d Defaults) (*Result, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	var doc fileBlock
	if ds := gohcl.DecodeBody(file.Body, nil, &doc); ds.HasErrors() {
		return nil, ds
	}
	source := newSourceMap(file)
	b := &doc.Pool

	spec := pool.Spec{
		Name:         b.Name,
		DesiredCount: deref(b.DesiredCount, 1),
		Active:       deref(b.Active, true),
		Drain: pool.Drain{
			Timeout:     pool.Duration(pool.DefaultDrainTimeout),
			GracePeriod: pool.Duration(pool.DefaultDrainGracePeriod),
		},
	}
	dur := durationDecoder{source: source}
	for _, p := range b.Ports {
		spec.Ports = append(spec.Ports, pool.Port{
			Label: p.Label, Number: p.Number, Protocol: deref(p.Protocol, pool.ProtocolHTTP), Public: deref(p.Public, false),
		})
	}
	if m := b.Methods; m != nil {
		spec.Methods = &pool.Methods{Names: m.Names, Port: m.Port, Path: deref(m.Path, "/")}
	}
	if dr := b.Drain; dr != nil {
		dur.set(&spec.Drain.Timeout, dr.Timeout, "drain.timeout")
		dur.set(&spec.Drain.GracePeriod, dr.GracePeriod, "drain.grace_period")
	}
	if a := b.Autoscaling; a != nil {
		as := d.Autoscaling
		a.ApplyTo(&as, func(dst *pool.Duration, v *string, key string) { dur.set(dst, v, "autoscaling."+key) })
		spec.Autoscaling = &as
	}
	scriptRead := false
	if s := b.Scaler; s != nil {
		spec.Scaler = &pool.Scaler{Script: s.Script, Interval: pool.Duration(pool.DefaultScalerInterval)}
		dur.set(&spec.Scaler.Interval, s.Interval, "scaler.interval")
		var ds hcl.Diagnostics
		scriptRead, ds = readScript(filename, spec.Scaler, readFile, source)
		diags = append(diags, ds...)
	}
	diags = append(diags, dur.diags...)

	templatePath := b.Template
	if templatePath != "" && !filepath.IsAbs(templatePath) {
		templatePath = filepath.Join(filepath.Dir(filename), templatePath)
	}
	if b.Template != "" {
		tmpl, err := readFile(templatePath)
		switch {
		case err != nil:
			diags = append(diags, source.diag("template", fmt.Sprintf("cannot read template %s: %v", templatePath, unwrapPathError(err))))
		case strings.TrimSpace(string(tmpl)) == "":
			diags = append(diags, source.diag("template", fmt.Sprintf("template %s is empty", templatePath)))
		default:
			spec.Template = string(tmpl)
		}
	}

	if err := spec.Validate(d.Limits); err != nil {
		var verr *pool.ValidationError
		if errors.As(err, &verr) {
			for _, f := range verr.Fields {
				if f.Field == "template" && b.Template != "" {
					continue // already reported with the file's own problem
				}
				if f.Field == "scaler.source" && !scriptRead {
					continue // likewise
				}
				diags = append(diags, source.diag(f.Field, f.Message))
			}
		}
	}
	if diags.HasErrors() {
		sortDiags(diags)
		return nil, diags
	}
	return &Result{Spec: spec, TemplatePath: templatePath, Source: source}, nil
}

// readScript loads a scaler's script, relative to the spec file as the
// template is, and compiles it: a script that does not parse is reported
// at its own file:line:column. It reports whether the file was read.
func readScript(specFile string, sc *pool.Scaler, readFile func(string) ([]byte, error), source *SourceMap) (bool, hcl.Diagnostics) {
	if sc.Script == "" {
		return false, nil // Validate reports it
	}
	path := sc.Script
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(specFile), path)
	}
	src, err := readFile(path)
	if err != nil {
		return false, hcl.Diagnostics{source.diag("scaler.script", fmt.Sprintf("cannot read script %s: %v", path, unwrapPathError(err)))}
	}
	sc.Source = string(src)
	if strings.TrimSpace(sc.Source) == "" {
		return true, nil // Validate reports it
	}
	var serr *sandbox.Error
	if err := sandbox.Check(path, src); errors.As(err, &serr) {
		if serr.Line == 0 {
			return true, hcl.Diagnostics{source.diag("scaler.script", serr.Msg)}
		}
		pos := hcl.Pos{Line: serr.Line, Column: serr.Col}
		return true, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: serr.Msg, Subject: &hcl.Range{Filename: serr.File, Start: pos, End: pos}}}
	}
	return true, nil
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func setIf[T any](dst *T, p *T) {
	if p != nil {
		*dst = *p
	}
}

// ApplyTo overrides dst with every key the block sets. Durations go
// through dur, which reports a bad one under its key.
func (a *AutoscalingBlock) ApplyTo(dst *pool.Autoscaling, dur func(dst *pool.Duration, v *string, key string)) {
	setIf(&dst.Metric, a.Metric)
	setIf(&dst.Target, a.Target)
	setIf(&dst.TargetUtilization, a.TargetUtilization)
	setIf(&dst.ContainerConcurrency, a.ContainerConcurrency)
	setIf(&dst.MinScale, a.MinScale)
	setIf(&dst.MaxScale, a.MaxScale)
	setIf(&dst.InitialScale, a.InitialScale)
	setIf(&dst.ActivationScale, a.ActivationScale)
	if a.ActivationScale == nil {
		// Knative's rule is min ≤ activation: follow a raised floor.
		dst.ActivationScale = max(dst.ActivationScale, dst.MinScale)
	}
	setIf(&dst.PanicWindowPercentage, a.PanicWindowPercentage)
	setIf(&dst.PanicThresholdPercentage, a.PanicThresholdPercentage)
	dur(&dst.ScaleDownDelay, a.ScaleDownDelay, "scale_down_delay")
	dur(&dst.StableWindow, a.StableWindow, "stable_window")
	dur(&dst.QueueTimeout, a.QueueTimeout, "queue_timeout")
}

// durationDecoder parses duration strings, collecting errors at their
// attributes.
type durationDecoder struct {
	source *SourceMap
	diags  hcl.Diagnostics
}

func (d *durationDecoder) set(dst *pool.Duration, s *string, field string) {
	if s == nil {
		return
	}
	v, err := time.ParseDuration(*s)
	if err != nil {
		d.diags = append(d.diags, d.source.diag(field, fmt.Sprintf("%q is not a duration: use a number with a unit, such as \"15s\" or \"1m\"", *s)))
		return
	}
	*dst = pool.Duration(v)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func sortDiags(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		if a == nil || b == nil {
			return a != nil
		}
		if a.Start.Line != b.Start.Line {
			return a.Start.Line < b.Start.Line
		}
		return a.Start.Column < b.Start.Column
	})
}

// Diagnostics is an error listing every problem of a spec file, one per
// line as file:line:column: message.
type Diagnostics hcl.Diagnostics

func (ds Diagnostics) Error() string {
	lines := make([]string, 0, len(ds))
	for _, d := range ds {
		lines = append(lines, FormatDiagnostic(d))
	}
	return strings.Join(lines, "\n")
}

// FormatDiagnostic renders one diagnostic as file:line:column: message.
func FormatDiagnostic(d *hcl.Diagnostic) string {
	msg := d.Summary
	if d.Detail != "" {
		msg += "; " + d.Detail
	}
	// HCL's type errors read like its internals ("Unsuitable value type;
	// Unsuitable value: value must be a whole number, between
	// -9223372036854775808 and ..."): say what is wrong, plainly.
	if detail, ok := strings.CutPrefix(d.Detail, "Unsuitable value: "); ok {
		detail = strings.TrimPrefix(detail, "value ")
		if i := strings.Index(detail, ", between -9223372036854775808"); i >= 0 {
			detail = detail[:i]
		}
		msg = detail
	}
	if d.Subject == nil {
		return msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, msg)
}
