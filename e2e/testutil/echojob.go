package testutil

import (
	"fmt"
	"strings"
)

// EchoJob is a pool template running tidepool-echo under raw_exec: one
// task group with a port and a checked Consul service per label.
type EchoJob struct {
	// Bin is the absolute path of the tidepool-echo binary.
	Bin string
	// Service prefixes the service names: <Service>-<label>, or just
	// <Service> for the first port.
	Service string
	// Ports are the port labels; "tcp" gets a TCP check, others HTTP.
	// Default: ["http"].
	Ports []string
	// NoRestart makes a crashed member dead at once (no restarts, no
	// reschedules), so Tidepool replaces it.
	NoRestart bool
	// JobBlocks is HCL added at job level, e.g. a constraint or spread.
	JobBlocks string
}

// HCL renders the jobspec.
func (j EchoJob) HCL() string {
	ports := j.Ports
	if len(ports) == 0 {
		ports = []string{"http"}
	}
	var b strings.Builder
	b.WriteString("job \"echo\" {\n")
	b.WriteString(j.JobBlocks)
	b.WriteString("  group \"echo\" {\n    network {\n")
	for _, p := range ports {
		fmt.Fprintf(&b, "      port %q {}\n", p)
	}
	b.WriteString("    }\n")
	if j.NoRestart {
		b.WriteString("    restart {\n      attempts = 0\n      mode     = \"fail\"\n    }\n")
		b.WriteString("    reschedule {\n      attempts  = 0\n      unlimited = false\n    }\n")
	}
	for i, p := range ports {
		name := j.Service
		if i > 0 {
			name += "-" + p
		}
		check := "type     = \"http\"\n        path     = \"/healthz\""
		if p == "tcp" {
			check = "type     = \"tcp\""
		}
		fmt.Fprintf(&b, `    service {
      name = %q
      port = %q
      check {
        %s
        interval = "1s"
        timeout  = "1s"
      }
    }
`, name, p, check)
	}
	fmt.Fprintf(&b, `    task "echo" {
      driver = "raw_exec"
      config {
        command = %q
      }
      kill_timeout = "10s"
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
`, j.Bin)
	return b.String()
}
