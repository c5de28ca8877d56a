package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/poolspec"
)

// readSpec parses a spec file, printing every problem with its position.
func readSpec(r *runner, path string) (*poolspec.Result, bool) {
	res, err := poolspec.ParseFile(path, poolspec.DefaultDefaults())
	if err != nil {
		r.ui.Error(err.Error())
		return nil, false
	}
	return res, true
}

// serverError prints an API error, placing field errors in the spec file.
func serverError(r *runner, res *poolspec.Result, err error) int {
	var e *client.Error
	if errors.As(err, &e) && len(e.Fields) > 0 {
		for _, f := range e.Fields {
			r.ui.Error(res.Source.Locate(f.Field, f.Message))
		}
		return exitError
	}
	return r.fail(err)
}

func poolApply(ctx context.Context, r *runner, path string, detach bool, timeout time.Duration) int {
	res, ok := readSpec(r, path)
	if !ok {
		return exitError
	}
	name := res.Spec.Name
	existing, err := r.client.GetPool(ctx, name)
	var info *api.PoolInfo
	switch {
	case client.IsNotFound(err):
		if info, err = r.client.CreatePool(ctx, &res.Spec); err != nil {
			return serverError(r, res, err)
		}
		r.ui.Output(fmt.Sprintf("Created pool %q (%s), Nomad job %s.", name, info.PoolID, info.NomadJobID))
	case err != nil:
		return r.fail(err)
	case len(specDiff(&existing.Spec, &res.Spec, existing.TemplateGeneration)) == 0:
		info = existing
		r.ui.Output(fmt.Sprintf("Pool %q is up to date (generation %d).", name, info.Generation))
	default:
		if info, err = r.client.UpdatePool(ctx, name, &res.Spec, existing.Generation); err != nil {
			return serverError(r, res, err)
		}
		r.ui.Output(fmt.Sprintf("Updated pool %q: generation %d.", name, info.Generation))
	}
	if detach {
		return exitOK
	}
	if err := follow(ctx, r, info.PoolID, timeout); err != nil {
		return r.fail(err)
	}
	return exitOK
}

// follow polls the pool until its members have settled, showing progress:
// a live line on a terminal, a line per change otherwise.
func follow(ctx context.Context, r *runner, ref string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	live := isatty.IsTerminal(os.Stdout.Fd())
	last := ""
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := r.client.GetPool(ctx, ref)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			line, done := progress(info)
			switch {
			case live:
				fmt.Printf("\r\033[K%s", line)
			case line != last:
				r.ui.Output(line)
			}
			last = line
			if done {
				if live {
					fmt.Println()
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if live {
				fmt.Println()
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("members not settled after %s (%s); see `tidepool pool status %s`", timeout, last, ref)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// progress summarises a pool's members; done when an active pool has its
// target of alive current-generation members and no older one alive, or a
// stopped pool has every member stopped.
func progress(info *api.PoolInfo) (line string, done bool) {
	counts := map[pool.MemberState]int{}
	aliveCurrent, aliveOld := 0, 0
	for _, m := range info.Members {
		counts[m.State]++
		if m.State == pool.MemberAlive {
			if m.Generation == info.TemplateGeneration {
				aliveCurrent++
			} else {
				aliveOld++
			}
		}
	}
	var parts []string
	for _, s := range []pool.MemberState{pool.MemberPending, pool.MemberStarting, pool.MemberDraining, pool.MemberStopped, pool.MemberDeleting, pool.MemberDead} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	detail := ""
	if len(parts) > 0 {
		detail = " (" + strings.Join(parts, ", ") + ")"
	}
	t := target(info)
	if !info.Active {
		done = counts[pool.MemberStopped] == len(info.Members)
		return fmt.Sprintf("Pool %q stopping: %d/%d members stopped%s", info.Name, counts[pool.MemberStopped], len(info.Members), detail), done
	}
	done = aliveCurrent == t && aliveOld == 0
	return fmt.Sprintf("Pool %q: %d/%d members alive%s", info.Name, counts[pool.MemberAlive], t, detail), done
}

func poolPlan(ctx context.Context, r *runner, args []string) int {
	res, ok := readSpec(r, args[0])
	if !ok {
		return exitError
	}
	existing, err := r.client.GetPool(ctx, res.Spec.Name)
	switch {
	case client.IsNotFound(err):
		r.ui.Output(fmt.Sprintf("+ create pool %q with %d members", res.Spec.Name, res.Spec.DesiredCount))
		return exitOK
	case err != nil:
		return r.fail(err)
	}
	diff := specDiff(&existing.Spec, &res.Spec, existing.TemplateGeneration)
	if len(diff) == 0 {
		r.ui.Output(fmt.Sprintf("No changes: pool %q matches %s.", res.Spec.Name, args[0]))
		return exitOK
	}
	r.ui.Output(fmt.Sprintf("~ update pool %q (generation %d)", res.Spec.Name, existing.Generation))
	for _, d := range diff {
		r.ui.Output("    " + d)
	}
	return exitOK
}

// specDiff lists what changes from old to new, one line per field.
func specDiff(old, new *pool.Spec, templateGen int64) []string {
	var out []string
	if old.Template != new.Template {
		out = append(out, "~ template: changed")
	}
	if old.Scaler != nil && new.Scaler != nil && old.Scaler.Source != new.Scaler.Source {
		out = append(out, "~ scaler.source: changed")
	}
	a, b := flatten(old), flatten(new)
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		va, inA := a[k]
		vb, inB := b[k]
		switch {
		case !inA:
			out = append(out, fmt.Sprintf("+ %s: %s", k, vb))
		case !inB:
			out = append(out, fmt.Sprintf("- %s: %s", k, va))
		case va != vb:
			out = append(out, fmt.Sprintf("~ %s: %s → %s", k, va, vb))
		}
	}
	// The controller's own rule decides whether members roll out.
	if pool.MembersChanged(old, new) {
		out = append(out, fmt.Sprintf("  (members roll out as generation %d)", templateGen+1))
	}
	return out
}

// flatten renders a spec, template aside, as dotted keys to JSON values.
func flatten(s *pool.Spec) map[string]string {
	c := *s
	c.Template = ""
	raw, _ := json.Marshal(c)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if obj, ok := v.(map[string]any); ok && prefix != "" && !strings.HasPrefix(prefix, "ports") {
			for k, x := range obj {
				walk(prefix+"."+k, x)
			}
			return
		}
		b, _ := json.Marshal(v)
		out[prefix] = string(b)
	}
	for k, v := range m {
		if k == "template" {
			continue
		}
		if obj, ok := v.(map[string]any); ok {
			for kk, x := range obj {
				walk(k+"."+kk, x)
			}
			continue
		}
		walk(k, v)
	}
	// The script is shown as changed or not (specDiff), not line by line.
	delete(out, "scaler.source")
	return out
}
