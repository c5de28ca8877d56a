package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/cli"

	"github.com/tidepool-run/tidepool/plugin/api"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func tokenCommands(ui cli.Ui) map[string]cli.CommandFactory {
	var user, ttl string
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
			synopsis: "Create a token for a user (admin)", usage: "tidepool token create [options] -user <user> [-permission <p>]... [-ttl <d>]",
			details: "Creates a token for a user. Permissions: use-pools (create and change pools), admin.\n  Without -permission the token can only read. With -ttl it expires that long after now.",
			json:    true,
			flags: func(fs *flag.FlagSet) {
				fs.StringVar(&user, "user", "", "the user the token acts as")
				fs.Var(&perms, "permission", "a permission to grant (repeatable): use-pools or admin")
				fs.StringVar(&ttl, "ttl", "", "expire the token after this long, e.g. 720h (default: never)")
			},
			run: func(ctx context.Context, r *runner, _ []string) int {
				if user == "" {
					r.ui.Error("-user is required")
					return exitUsage
				}
				t, err := r.client.CreateTokenTTL(ctx, user, perms, ttl)
				return printToken(r, t, err)
			},
		}),
		"token list": cmd(&command{
			synopsis: "List tokens, without their secrets (admin)", usage: "tidepool token list [options]",
			details: "Lists every token's accessor id, user, permissions, creation and expiry. Secrets are never stored, so never shown.",
			json:    true,
			run: func(ctx context.Context, r *runner, _ []string) int {
				list, err := r.client.ListTokens(ctx)
				if err != nil {
					return r.fail(err)
				}
				if r.json {
					return r.print(list)
				}
				rows := make([][]string, 0, len(list.Tokens))
				for _, t := range list.Tokens {
					expires := "never"
					if !t.ExpiresAt.IsZero() {
						expires = t.ExpiresAt.Format(time.RFC3339)
					}
					rows = append(rows, []string{t.AccessorID, t.User, strings.Join(t.Permissions, ","), t.CreatedAt.Format(time.RFC3339), expires})
				}
				r.ui.Output(table([]string{"ACCESSOR", "USER", "PERMISSIONS", "CREATED", "EXPIRES"}, rows))
				return exitOK
			},
		}),
		"token revoke": cmd(&command{
			synopsis: "Revoke a token by accessor id (admin)", usage: "tidepool token revoke [options] <accessor-id>",
			details: "Deletes a token: the API refuses it at once; gateways within 10 s (their cache).",
			args:    []string{"accessor-id"}, json: true,
			run: func(ctx context.Context, r *runner, args []string) int {
				t, err := r.client.RevokeToken(ctx, args[0])
				if err != nil {
					return r.fail(err)
				}
				if r.json {
					return r.print(t)
				}
				r.ui.Output(fmt.Sprintf("Revoked token %s of user %q.", t.AccessorID, t.User))
				return exitOK
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
	if !t.ExpiresAt.IsZero() {
		rows = append(rows, []string{"Expires", t.ExpiresAt.Format(time.RFC3339)})
	}
	r.ui.Output(table([]string{"Field", "Value"}, rows)[len("Field  Value")+1:])
	if t.Token != "" {
		r.ui.Output(fmt.Sprintf("\nUse it with: export TIDEPOOL_TOKEN=%s", t.Token))
	}
	return exitOK
}
