package devcluster

import (
	"fmt"
	"os"
	"path/filepath"
)

// Fingerprinters that probe cloud metadata endpoints. The environment sets
// AWS_CA_BUNDLE, which makes the AWS one abort the agent; none of them can
// reach anything from a loopback-only test cluster anyway.
const fingerprintDenylist = "env_aws,env_gce,env_azure,env_digitalocean"

type consulPortSet struct{ HTTP, SerfLAN, Server int }

type nomadPortSet struct{ HTTP, RPC, Serf int }

func consulPorts(httpPort int) (consulPortSet, error) {
	p, err := freePorts(3)
	if err != nil {
		return consulPortSet{}, err
	}
	if httpPort != 0 {
		p[0] = httpPort
	}
	return consulPortSet{HTTP: p[0], SerfLAN: p[1], Server: p[2]}, nil
}

func nomadPorts(httpPort int) (nomadPortSet, error) {
	p, err := freePorts(3)
	if err != nil {
		return nomadPortSet{}, err
	}
	if httpPort != 0 {
		p[0] = httpPort
	}
	return nomadPortSet{HTTP: p[0], RPC: p[1], Serf: p[2]}, nil
}

// startConsul runs `consul agent -dev` on loopback with DNS, WAN gossip and
// gRPC off, so nothing but the three ports it needs is bound.
func startConsul(dir, name, bin string, p consulPortSet) (*agent, error) {
	cfg := fmt.Sprintf(`node_name            = %q
bind_addr            = "127.0.0.1"
client_addr          = "127.0.0.1"
disable_update_check = true
log_level            = "INFO"
ports {
  http     = %d
  serf_lan = %d
  server   = %d
  dns      = -1
  serf_wan = -1
  grpc     = -1
  grpc_tls = -1
}
`, name+"-consul", p.HTTP, p.SerfLAN, p.Server)
	path := filepath.Join(dir, "consul.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("write consul config: %w", err)
	}
	return startAgent(dir, "consul", bin, "agent", "-dev", "-config-file="+path)
}

// startNomad runs `nomad agent -dev` (server and client, raw_exec enabled)
// registered with the given Consul, handing tasks ports from the block.
func startNomad(dir, name, bin string, p nomadPortSet, consulAddr string, ports *portBlock) (*agent, error) {
	dataDir := filepath.Join(dir, "n") // short: socket paths below it are limited
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create nomad data dir: %w", err)
	}
	cfg := nomadAgentHCL(name+"-nomad", dataDir, p) + fmt.Sprintf(`consul {
  address = %q
}
client {
  enabled          = true
  min_dynamic_port = %d
  max_dynamic_port = %d
  options = {
    "fingerprint.denylist" = %q
  }
}
`, consulAddr, ports.min, ports.max, fingerprintDenylist) + rawExecHCL
	path := filepath.Join(dir, "nomad.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("write nomad config: %w", err)
	}
	return startAgent(dir, "nomad", bin, "agent", "-dev", "-config="+path)
}

// nomadAgentHCL is the part of every Nomad agent's config that says who it
// is and where it listens: on loopback only, at the given ports.
func nomadAgentHCL(name, dataDir string, p nomadPortSet) string {
	return fmt.Sprintf(`name                 = %q
data_dir             = %q
bind_addr            = "127.0.0.1"
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}
disable_update_check = true
log_level            = "INFO"
ports {
  http = %d
  rpc  = %d
  serf = %d
}
`, name, dataDir, p.HTTP, p.RPC, p.Serf)
}

// rawExecHCL enables the raw_exec driver, which test templates use.
const rawExecHCL = `plugin "raw_exec" {
  config {
    enabled = true
  }
}
`
