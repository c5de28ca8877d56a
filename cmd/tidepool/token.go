package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/hashicorp/cli"

	"github.com/tidepool-run/tidepool/plugin/api"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func tokenCommands(ui cli.Ui) map[string]cli.CommandFactory {
	var user string
	var perms stringList
	cmd := func(c *command) cli.CommandFactory {
		c.ui = ui
		return func() (cli.Command, error) { return c, nil }
	}
	return map[string]cli.CommandFactory{
		"token": func() (cli.Command, error) {
			return &groupCommand{ui: ui, name: "token", synopsis: "Bootstrap, create and inspect API tokens"}, nil
		},
		"token bootstrap": cmd(&command{
			synopsis: "Issue the cluster's first admin token", usage: "tidepool token bootstrap [options]",
			details: "Issues an admin token. It works once per cluster; keep the token safe.",
			json:    true,
			run: func(ctx context.Context, r *runner, _ []string) int {
				t, err := r.client.Bootstrap(ctx)
				return printToken(r, t, err)
			},
		}),
		"token create": cmd(&command{
			synopsis: "Create a token for a user (admin)", usage: "tidepool token create [options] -user <user> [-permission <p>]...",
			details: "Creates a token for a user. Permissions: use-pools (create and change pools), admin.\n  Without -permission the token can only read.",
			json:    true,
			flags: func(fs *flag.FlagSet) {
				fs.StringVar(&user, "user", "", "the user the token acts as")
				fs.Var(&perms, "permission", "a permission to grant (repeatable): use-pools or admin")
			},
			run: func(ctx context.Context, r *runner, _ []string) int {
				if user == "" {
					r.ui.Error("-user is required")
					return exitUsage
				}
				t, err := r.client.CreateToken(ctx, user, perms)
				return printToken(r, t, err)
			},
		}),
		"token self": cmd(&command{
			synopsis: "Show the token in use", usage: "tidepool token self [options]",
			details: "Shows the user and permissions of the token in use.",
			json:    true,
			run: func(ctx context.Context, r *runner, _ []string) int {
				t, err := r.client.Self(ctx)
				return printToken(r, t, err)
			},
		}),
	}
}

func printToken(r *runner, t *api.TokenInfo, err error) int {
	if err != nil {
		return r.fail(err)
	}
	if r.json {
		return r.print(t)
	}
	rows := [][]string{{"User", t.User}, {"Permissions", strings.Join(t.Permissions, ", ")}}
	if t.Token != "" {
		rows = append([][]string{{"Token", t.Token}}, rows...)
	}
	rows = append(rows, []string{"Accessor ID", t.AccessorID})
	r.ui.Output(table([]string{"Field", "Value"}, rows)[len("Field  Value")+1:])
	if t.Token != "" {
		r.ui.Output(fmt.Sprintf("\nUse it with: export TIDEPOOL_TOKEN=%s", t.Token))
	}
	return exitOK
}
