package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/cli"

	"github.com/tidepool-run/tidepool/plugin/sandbox"
	"github.com/tidepool-run/tidepool/plugin/script"
)

func scriptCommands(ui cli.Ui) map[string]cli.CommandFactory {
	var timeout time.Duration
	var maxSteps uint64
	run := &command{
		ui:       ui,
		synopsis: "Run a Starlark scaler script once",
		usage:    "tidepool script run [options] <file.star>",
		details: `Runs a Starlark script once, now, with your token. The predeclared pool
  module calls the API: pool.list(), pool.get(name), pool.set_size(name, n),
  pool.start(name), pool.stop(name); print goes to stdout. A script error is
  shown as file:line:column: message and exits 1. See docs/scripting.md.`,
		args: []string{"file.star"},
		flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&timeout, "timeout", time.Minute, "wall-clock limit for the whole run, API calls included")
			fs.Uint64Var(&maxSteps, "max-steps", 10*sandbox.DefaultMaxSteps, "Starlark computation step limit")
		},
		run: func(ctx context.Context, r *runner, args []string) int {
			return scriptRun(ctx, r, args[0], sandbox.Limits{MaxSteps: maxSteps, Timeout: timeout})
		},
	}
	return map[string]cli.CommandFactory{
		"script": func() (cli.Command, error) {
			return &groupCommand{ui: ui, name: "script", synopsis: "Run Starlark scaler scripts"}, nil
		},
		"script run": func() (cli.Command, error) { return run, nil },
	}
}

func scriptRun(ctx context.Context, r *runner, path string, limits sandbox.Limits) int {
	if limits.Timeout <= 0 || limits.MaxSteps == 0 {
		r.ui.Error("-timeout and -max-steps must be positive")
		return exitUsage
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return r.fail(fmt.Errorf("read script: %w", err))
	}
	_, err = script.Run(ctx, path, src, r.client, script.Options{Limits: limits, Print: r.ui.Output})
	var se *sandbox.Error
	switch {
	case errors.As(err, &se):
		r.ui.Error(se.Error())
		return exitError
	case err != nil:
		return r.fail(err)
	}
	return exitOK
}
