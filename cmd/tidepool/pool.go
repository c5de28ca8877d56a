package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/cli"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
)

func poolCommands(ui cli.Ui) map[string]cli.CommandFactory {
	cmd := func(c *command) cli.CommandFactory {
		c.ui = ui
		return func() (cli.Command, error) { return c, nil }
	}
	var deleteYes bool
	var detach bool
	var timeout time.Duration
	applyFlags := func(fs *flag.FlagSet) {
		fs.BoolVar(&detach, "detach", false, "return once the spec is stored, without waiting for members")
		fs.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for members")
	}
	return map[string]cli.CommandFactory{
		"pool": func() (cli.Command, error) {
			return &groupCommand{ui: ui, name: "pool", synopsis: "Create, inspect, scale and delete pools"}, nil
		},
		"pool forward": cmd(forwardCommand()),
		"pool list": cmd(&command{
			synopsis: "List pools", usage: "tidepool pool list [options]", json: true,
			details: "Lists the pools your token may see: yours, or all of them for an admin.",
			run:     poolList,
		}),
		"pool status": cmd(&command{
			synopsis: "Show a pool, its members and utilization", usage: "tidepool pool status [options] <pool>",
			details: "Shows a pool by name or id: its state, utilization and every member.",
			args:    []string{"pool"}, json: true, run: poolStatus,
		}),
		"pool apply": cmd(&command{
			synopsis: "Create or update a pool from a spec file", usage: "tidepool pool apply [options] <spec.hcl>",
			details: "Creates the pool a spec file describes, or updates it, then follows its members until\n  they are alive (unless -detach). Spec errors are shown with file:line:column.",
			args:    []string{"spec.hcl"}, flags: applyFlags,
			run: func(ctx context.Context, r *runner, args []string) int {
				return poolApply(ctx, r, args[0], detach, timeout)
			},
		}),
		"pool plan": cmd(&command{
			synopsis: "Show what apply would change", usage: "tidepool pool plan [options] <spec.hcl>",
			details: "Compares a spec file with the stored pool and prints what `pool apply` would change.",
			args:    []string{"spec.hcl"}, run: poolPlan,
		}),
		"pool start": cmd(&command{
			synopsis: "Start a stopped pool", usage: "tidepool pool start [options] <pool>",
			details: "Restarts a pool's stopped members and creates missing ones.",
			args:    []string{"pool"}, json: true,
			run: poolAction("started", func(ctx context.Context, r *runner, ref string) (*api.PoolInfo, error) {
				return r.client.Start(ctx, ref)
			}),
		}),
		"pool stop": cmd(&command{
			synopsis: "Stop a pool, keeping its members", usage: "tidepool pool stop [options] <pool>",
			details: "Drains and stops every member; none is deleted, so `pool start` brings them back.",
			args:    []string{"pool"}, json: true,
			run: poolAction("stopping", func(ctx context.Context, r *runner, ref string) (*api.PoolInfo, error) {
				return r.client.Stop(ctx, ref)
			}),
		}),
		"pool set-size": cmd(&command{
			synopsis: "Set how many members a pool runs", usage: "tidepool pool set-size [options] <pool> <count>",
			details: "Sets the desired member count. Excess members drain, stop and are deleted after the grace period.",
			args:    []string{"pool", "count"}, json: true,
			run: func(ctx context.Context, r *runner, args []string) int {
				n, err := strconv.Atoi(args[1])
				if err != nil {
					r.ui.Error(fmt.Sprintf("count must be a whole number, got %q", args[1]))
					return exitUsage
				}
				return poolAction("resized", func(ctx context.Context, r *runner, ref string) (*api.PoolInfo, error) {
					return r.client.SetSize(ctx, ref, n)
				})(ctx, r, args)
			},
		}),
		"pool delete": cmd(&command{
			synopsis: "Delete a stopped pool", usage: "tidepool pool delete [options] <pool>",
			details: "Deletes a stopped pool: its members and Nomad job are removed. Asks for confirmation unless -y.",
			args:    []string{"pool"}, json: true,
			flags: func(fs *flag.FlagSet) { fs.BoolVar(&deleteYes, "y", false, "do not ask for confirmation") },
			run: func(ctx context.Context, r *runner, args []string) int {
				if !deleteYes {
					answer, err := r.ui.Ask(fmt.Sprintf("Delete pool %q and all its members? [y/N]", args[0]))
					if err != nil || !strings.EqualFold(strings.TrimSpace(answer), "y") && !strings.EqualFold(strings.TrimSpace(answer), "yes") {
						r.ui.Error("Not deleted.")
						return exitError
					}
				}
				return poolAction("deleting", deleteWhenDrained)(ctx, r, args)
			},
		}),
	}
}

// poolAction runs a pool mutation and reports the result.
func poolAction(verb string, fn func(ctx context.Context, r *runner, ref string) (*api.PoolInfo, error)) func(context.Context, *runner, []string) int {
	return func(ctx context.Context, r *runner, args []string) int {
		info, err := fn(ctx, r, args[0])
		if err != nil {
			return r.fail(err)
		}
		if r.json {
			return r.print(info)
		}
		r.ui.Output(fmt.Sprintf("Pool %q %s: state %s, %d/%d alive, generation %d.", info.Name, verb, info.State, info.AliveMembers, target(info), info.Generation))
		return exitOK
	}
}

// target is how many members the pool should run.
func target(info *api.PoolInfo) int {
	if !info.Active {
		return 0
	}
	if info.Autoscaling != nil {
		return info.Autoscaling.Desired
	}
	return info.DesiredCount
}

func poolList(ctx context.Context, r *runner, _ []string) int {
	list, err := r.client.ListPools(ctx)
	if err != nil {
		return r.fail(err)
	}
	if r.json {
		return r.print(list)
	}
	if list.Count == 0 {
		r.ui.Output("No pools.")
		return exitOK
	}
	rows := make([][]string, 0, len(list.Pools))
	for i := range list.Pools {
		p := &list.Pools[i]
		rows = append(rows, []string{p.Name, string(p.State), fmt.Sprintf("%d/%d", p.AliveMembers, target(p)), strconv.FormatInt(p.Generation, 10), p.NomadJobID})
	}
	r.ui.Output(table([]string{"NAME", "STATE", "ALIVE/DESIRED", "GENERATION", "JOB"}, rows))
	return exitOK
}

func poolStatus(ctx context.Context, r *runner, args []string) int {
	info, err := r.client.GetPool(ctx, args[0])
	if err != nil {
		return r.fail(err)
	}
	if r.json {
		return r.print(info)
	}
	r.ui.Output(formatStatus(info, time.Now()))
	return exitOK
}

func formatStatus(info *api.PoolInfo, now time.Time) string {
	var b strings.Builder
	u := info.Utilization
	fmt.Fprintf(&b, "%s\n\n", table([]string{"Name", info.Name}, [][]string{
		{"ID", info.PoolID},
		{"Owner", info.Owner},
		{"State", string(info.State)},
		{"Alive/Desired", fmt.Sprintf("%d/%d", info.AliveMembers, target(info))},
		{"Generation", fmt.Sprintf("%d (template %d)", info.Generation, info.TemplateGeneration)},
		{"Nomad job", info.NomadJobID},
		{"Drain", fmt.Sprintf("timeout %s, grace period %s", info.Spec.Drain.Timeout, info.Spec.Drain.GracePeriod)},
	}))
	if a := info.Autoscaling; a != nil {
		fmt.Fprintf(&b, "Autoscaling: %s target %g per member, scale %d..%d (activation %d), desired %d, panic %v\n", a.Metric, a.Target, a.MinScale, a.MaxScale, a.ActivationScale, a.Desired, a.Panic)
		o := a.Observed
		last := "never"
		if !o.LastTraffic.IsZero() {
			last = time.Since(o.LastTraffic).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(&b, "  observed: %s %.2f stable, %.2f panic; %d ready, %d held; last traffic %s; complete data %v; last cold start %s\n\n",
			o.Metric, o.Stable, o.Panic, o.ReadyMembers, o.Held, last, o.Complete, a.ColdStart)
	}
	if sc := info.Scaler; sc != nil {
		b.WriteString(formatScaler(sc, now))
	}
	fmt.Fprintf(&b, "Utilization: %.1f rps (http %.1f, tcp %.1f, methods %.1f), in flight %.0f http / %.0f methods, cpu %.0f%%, memory %.0f%%\n\n",
		u.CombinedRPS, u.HTTPRPS, u.TCPRPS, u.MethodRPS, u.HTTPInflight, u.MethodInflight, u.AvgCPUPercent, u.AvgMemoryPercent)
	if len(info.Members) == 0 {
		b.WriteString("No members.")
		return b.String()
	}
	rows := make([][]string, 0, len(info.Members))
	for _, m := range info.Members {
		alloc := m.AllocID
		if len(alloc) > 8 {
			alloc = alloc[:8]
		}
		rows = append(rows, []string{m.ID, string(m.State), strconv.FormatBool(m.Healthy), orDash(m.Address), orDash(alloc),
			strconv.FormatInt(m.Generation, 10), age(now.Sub(m.Since))})
	}
	b.WriteString(table([]string{"MEMBER", "STATE", "HEALTHY", "ADDRESS", "ALLOC", "GEN", "AGE"}, rows))
	return b.String()
}

// formatScaler shows a pool's scheduled scaler and its last run.
func formatScaler(sc *api.ScalerInfo, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Scaler: %s every %s", sc.Script, sc.Interval)
	if sc.LastRun == nil {
		b.WriteString(", not run yet\n\n")
		return b.String()
	}
	fmt.Fprintf(&b, ", last run %s ago", age(now.Sub(*sc.LastRun)))
	if sc.Outcome != "running" {
		fmt.Fprintf(&b, " (%s)", sc.Duration)
	}
	fmt.Fprintf(&b, ": %s, %d runs\n", sc.Outcome, sc.Runs)
	if sc.Error != "" {
		fmt.Fprintf(&b, "  error: %s\n", sc.Error)
	}
	if len(sc.Output) > 0 {
		b.WriteString("  output:\n")
		for _, l := range sc.Output {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	}
	b.WriteString("\n")
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age prints a duration the way `nomad status` does: 5s, 3m12s, 2h4m.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
}

// groupCommand is the help-only parent of a command group; run alone it is
// a usage error.
type groupCommand struct {
	ui             cli.Ui
	name, synopsis string
}

func (g *groupCommand) Synopsis() string { return g.synopsis }
func (g *groupCommand) Help() string {
	return "Usage: tidepool " + g.name + " <subcommand> [options] [args]\n\n  " + g.synopsis + ".\n\n  Run `tidepool " + g.name + " -h` for the subcommands."
}
func (g *groupCommand) Run([]string) int { return cli.RunResultHelp }

// deleteWhenDrained deletes a pool, waiting while the server refuses
// because members are still draining (409): their in-flight work ends by
// drain.timeout at the latest.
func deleteWhenDrained(ctx context.Context, r *runner, ref string) (*api.PoolInfo, error) {
	told := false
	for {
		info, err := r.client.DeletePool(ctx, ref)
		var apiErr *client.Error
		if err == nil || !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || !strings.Contains(apiErr.Message, "draining") {
			return info, err
		}
		if !told && !r.json {
			r.ui.Output("Waiting for draining members to finish their in-flight work…")
		}
		told = true
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
