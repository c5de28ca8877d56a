// Command tidepool is the single Tidepool binary: the controller
// (`tidepool server`), the gateway (`tidepool gateway`) and the CLI that
// drives them. This package is wiring only: flags and config become objects,
// signals become a context.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/cli"
)

// Exit codes shared by every command (SPEC.md §6).
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ui := &cli.BasicUi{Reader: os.Stdin, Writer: stdout, ErrorWriter: stderr}
	c := &cli.CLI{
		Name:         "tidepool",
		Version:      versionString(),
		Args:         args,
		Commands:     commands(ui),
		HelpWriter:   stdout,
		ErrorWriter:  stderr,
		Autocomplete: false,
	}
	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return exitError
	}
	// cli.CLI answers an unknown command with its help and exit 127, and
	// a bare command group (RunResultHelp) with exit 1; both are usage
	// errors, which the contract says exit 2.
	if code == 127 || (code == 1 && !c.IsHelp() && isGroup(args)) {
		return exitUsage
	}
	return code
}

func commands(ui cli.Ui) map[string]cli.CommandFactory {
	cmds := map[string]cli.CommandFactory{
		"version": func() (cli.Command, error) { return &versionCommand{ui: ui}, nil },
		"server":  func() (cli.Command, error) { return &serverCommand{ui: ui}, nil },
		"gateway": func() (cli.Command, error) { return &gatewayCommand{ui: ui}, nil },
	}
	for _, group := range []map[string]cli.CommandFactory{poolCommands(ui), tokenCommands(ui), scriptCommands(ui)} {
		for name, f := range group {
			cmds[name] = f
		}
	}
	return cmds
}

// isGroup reports whether args name only a command group, such as `pool`.
func isGroup(args []string) bool {
	return len(args) == 1 && (args[0] == "pool" || args[0] == "token" || args[0] == "script")
}
