package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/hashicorp/cli"

	"github.com/tidepool-run/tidepool/plugin/api/client"
)

// command is one CLI subcommand that talks to the API: it parses the
// shared flags (-address, -token, -json) and its own, checks the number of
// arguments, and runs with a client and a context cancelled by Ctrl-C.
type command struct {
	ui       cli.Ui
	synopsis string
	usage    string // e.g. "tidepool pool start <pool>"
	details  string
	// args names the positional arguments, all required.
	args []string
	// json: the command takes -json.
	json  bool
	flags func(fs *flag.FlagSet)
	run   func(ctx context.Context, r *runner, args []string) int
}

// runner is what a command body gets.
type runner struct {
	ui     cli.Ui
	client *client.Client
	token  string
	json   bool
}

func (c *command) Synopsis() string { return c.synopsis }

func (c *command) Help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n  %s\n", c.usage, strings.TrimSpace(c.details))
	fs := c.flagSet(new(string), new(string), new(string), new(bool))
	b.WriteString("\nOptions:\n\n")
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(&b, "  -%s\n      %s\n", f.Name, f.Usage)
	})
	return strings.TrimRight(b.String(), "\n")
}

func (c *command) flagSet(addr, token, caCert *string, asJSON *bool) *flag.FlagSet {
	fs := newFlagSet(c.usage, c.ui, c.Help)
	fs.StringVar(addr, "address", "", "Tidepool API address (default $TIDEPOOL_ADDR or "+client.DefaultAddress+")")
	fs.StringVar(token, "token", "", "API token (default $TIDEPOOL_TOKEN)")
	fs.StringVar(caCert, "ca-cert", "", "PEM file of the CA that signed the API's TLS certificate (default $TIDEPOOL_CACERT)")
	if c.json {
		fs.BoolVar(asJSON, "json", false, "print JSON instead of text")
	}
	if c.flags != nil {
		c.flags(fs)
	}
	return fs
}

func (c *command) Run(args []string) int {
	var addr, token, caCert string
	var asJSON bool
	fs := c.flagSet(&addr, &token, &caCert, &asJSON)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(positional) != len(c.args) {
		c.ui.Error(fmt.Sprintf("%s takes %d argument(s) (%s), got %d\n\n%s", c.usage, len(c.args), strings.Join(c.args, ", "), len(positional), c.Help()))
		return exitUsage
	}
	if addr == "" {
		addr = os.Getenv("TIDEPOOL_ADDR")
	}
	if token == "" {
		token = os.Getenv("TIDEPOOL_TOKEN")
	}
	if caCert == "" {
		caCert = os.Getenv("TIDEPOOL_CACERT")
	}
	cl, err := client.New(addr, token)
	if err != nil {
		c.ui.Error(err.Error())
		return exitUsage
	}
	if caCert != "" {
		if err := cl.UseCA(caCert); err != nil {
			c.ui.Error(err.Error())
			return exitError
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return c.run(ctx, &runner{ui: c.ui, client: cl, token: token, json: asJSON}, positional)
}

// parseInterspersed parses flags wherever they stand among the arguments
// (`pool apply web.hcl -detach` as well as `pool apply -detach web.hcl`);
// "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// fail prints an API or local error and returns exit 1.
func (r *runner) fail(err error) int {
	r.ui.Error("Error: " + err.Error())
	return exitError
}

// print writes v as indented JSON.
func (r *runner) print(v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return r.fail(err)
	}
	r.ui.Output(string(b))
	return exitOK
}

// table renders rows under a header, aligned.
func table(header []string, rows [][]string) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	_ = w.Flush()
	return strings.TrimRight(b.String(), "\n")
}
