// Command tidepool-autoscaler-target is a nomad-autoscaler (v0.5) target
// plugin that scales Tidepool pools through the Tidepool REST API. Put the
// binary in the autoscaler's plugin_dir and declare it in the agent config:
//
//	target "tidepool" {
//	  driver = "tidepool-autoscaler-target"
//	  config = {
//	    address = "http://127.0.0.1:4680"
//	    token   = "<a token with use-pools>"
//	  }
//	}
//
// A scaling policy then names a pool: `target "tidepool" { pool = "web" }`.
package main

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/plugins"
)

func main() {
	plugins.Serve(func(log hclog.Logger) any { return NewTarget(log) })
}
