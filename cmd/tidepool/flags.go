package main

import (
	"flag"
	"strings"

	"github.com/hashicorp/cli"
)

// newFlagSet returns a flag set whose errors and usage go to the UI's error
// stream, as every subcommand's should.
func newFlagSet(name string, ui cli.Ui, help func() string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(uiErrorWriter{ui})
	fs.Usage = func() { ui.Error("\n" + help()) }
	return fs
}

// uiErrorWriter adapts cli.Ui's Error to an io.Writer.
type uiErrorWriter struct{ ui cli.Ui }

func (w uiErrorWriter) Write(p []byte) (int, error) {
	w.ui.Error(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
