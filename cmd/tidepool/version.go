package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/hashicorp/cli"
)

// version is set at build time with -ldflags "-X main.version=v0.1.0".
var version = "dev"

// versionString is the version plus the VCS revision the binary was built
// from, when the build recorded one.
func versionString() string {
	rev := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	if rev == "" {
		return version
	}
	return fmt.Sprintf("%s (%s)", version, rev)
}

type versionCommand struct {
	ui cli.Ui
}

func (c *versionCommand) Synopsis() string { return "Print the Tidepool version" }

func (c *versionCommand) Help() string {
	return strings.TrimSpace(`
Usage: tidepool version

  Prints the version of this binary and the Go toolchain that built it.
`)
}

func (c *versionCommand) Run(args []string) int {
	fs := newFlagSet("version", c.ui, c.Help)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		c.ui.Error("version takes no arguments\n\n" + c.Help())
		return exitUsage
	}
	c.ui.Output(fmt.Sprintf("tidepool %s %s/%s %s", versionString(), runtime.GOOS, runtime.GOARCH, runtime.Version()))
	return exitOK
}
