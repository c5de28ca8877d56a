package devcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
)

// Node is one Nomad client agent of a multi-node cluster: its own process,
// data directory, ports, node name, node meta and block of dynamic ports.
type Node struct {
	// Name is the Nomad node name, <cluster>-client-<i>.
	Name string
	// Index is the node's position, 0-based; its meta "zone" is "z<Index>".
	Index int
	// Meta is the node meta the agent advertises (usable as ${meta.<key>} in
	// constraints and spreads).
	Meta map[string]string
	// MinDynamicPort and MaxDynamicPort bound the ports this node hands to
	// tasks; nodes of one cluster never share them.
	MinDynamicPort, MaxDynamicPort int
	// HTTPAddr is the client agent's own HTTP address as a URL.
	HTTPAddr string

	dir, bin, config string
	ports            *portBlock
	agent            *agent
}

// Kill ends the node as a machine dies: the agent gets SIGKILL, and so does
// every task and executor it started, with nothing deregistered and nothing
// told to the servers. Nomad notices only when the node's heartbeat TTL and
// the server's heartbeat grace run out.
func (n *Node) Kill() {
	n.agent.kill()
	killReferencing(n.dir)
	unmountUnder(n.dir)
}

// Restart starts the killed node's agent again on the same data directory,
// ports and name, as a rebooted machine would, and waits until the servers
// see it ready.
func (n *Node) Restart(ctx context.Context, c *Cluster) error {
	select {
	case <-n.agent.exited:
	default:
		return fmt.Errorf("node %s is still running", n.Name)
	}
	a, err := startAgent(n.dir, "nomad", n.bin, "agent", "-config="+n.config)
	if err != nil {
		return err
	}
	n.agent = a
	return waitFor(ctx, a, "node "+n.Name+" ready", func(ctx context.Context) error {
		return c.nodesReady(ctx, []*Node{n})
	})
}

// LogFile is the node agent's log.
func (n *Node) LogFile() string { return filepath.Join(n.dir, "nomad.log") }

// NodeID looks up the node's Nomad node id by name.
func (c *Cluster) NodeID(ctx context.Context, n *Node) (string, error) {
	nodes, _, err := c.Nomad.Nodes().List((&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("list nodes: %w", err)
	}
	for _, s := range nodes {
		if s.Name == n.Name {
			return s.ID, nil
		}
	}
	return "", fmt.Errorf("node %s is not registered", n.Name)
}

// serverTuning is what a multi-node cluster's server is tuned with.
type serverTuning struct {
	ttl, grace time.Duration
	algorithm  string
}

// startNomadServer runs a Nomad server alone (no client), bootstrapping a
// one-server cluster. The heartbeat settings decide how soon a silent
// client is marked down: at most TTL (plus a stagger) + grace after its
// last heartbeat.
func startNomadServer(dir, name, bin string, p nomadPortSet, consulAddr string, hb serverTuning) (*agent, error) {
	sdir := filepath.Join(dir, "server")
	dataDir := filepath.Join(sdir, "d")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create nomad server data dir: %w", err)
	}
	var tuning strings.Builder
	if hb.ttl > 0 {
		fmt.Fprintf(&tuning, "  min_heartbeat_ttl = %q\n", hb.ttl)
	}
	if hb.grace > 0 {
		fmt.Fprintf(&tuning, "  heartbeat_grace   = %q\n", hb.grace)
	}
	if hb.algorithm != "" {
		fmt.Fprintf(&tuning, "  default_scheduler_config {\n    scheduler_algorithm = %q\n  }\n", hb.algorithm)
	}
	cfg := nomadAgentHCL(name+"-server", dataDir, p) + fmt.Sprintf(`consul {
  address = %q
}
server {
  enabled          = true
  bootstrap_expect = 1
%s}
client {
  enabled = false
}
`, consulAddr, tuning.String())
	path := filepath.Join(sdir, "nomad.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("write nomad server config: %w", err)
	}
	return startAgent(sdir, "nomad", bin, "agent", "-config="+path)
}

// newNode writes the config of client i and starts it, joined to the server
// at serverRPC. Clients fingerprint the loopback interface, so tasks bind
// 127.0.0.1 and register that address in Consul; each node hands out ports
// from its own block.
func newNode(dir, name, bin string, i int, serverRPC int, consulAddr, root string) (*Node, error) {
	n := &Node{
		Name:  fmt.Sprintf("%s-client-%d", name, i),
		Index: i,
		Meta:  map[string]string{"zone": fmt.Sprintf("z%d", i), "tidepool_test_node": fmt.Sprint(i)},
		dir:   filepath.Join(dir, fmt.Sprintf("c%d", i)), // short: socket paths below it are limited
		bin:   bin,
	}
	dataDir := filepath.Join(n.dir, "d")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create nomad client data dir: %w", err)
	}
	var err error
	if n.ports, err = lockPortBlock(root); err != nil {
		return nil, err
	}
	n.MinDynamicPort, n.MaxDynamicPort = n.ports.min, n.ports.max
	p, err := nomadPorts(0)
	if err != nil {
		n.ports.release()
		return nil, err
	}
	n.HTTPAddr = fmt.Sprintf("http://127.0.0.1:%d", p.HTTP)
	var meta strings.Builder
	for k, v := range n.Meta {
		fmt.Fprintf(&meta, "    %q = %q\n", k, v)
	}
	cfg := nomadAgentHCL(n.Name, dataDir, p) + fmt.Sprintf(`consul {
  address          = %q
  client_auto_join = false
}
client {
  enabled           = true
  servers           = ["127.0.0.1:%d"]
  network_interface = "lo"
  min_dynamic_port  = %d
  max_dynamic_port  = %d
  meta {
%s  }
  options = {
    "fingerprint.denylist" = %q
  }
}
`, consulAddr, serverRPC, n.ports.min, n.ports.max, meta.String(), fingerprintDenylist) + rawExecHCL
	n.config = filepath.Join(n.dir, "nomad.hcl")
	if err := os.WriteFile(n.config, []byte(cfg), 0o644); err != nil {
		n.ports.release()
		return nil, fmt.Errorf("write nomad client config: %w", err)
	}
	if n.agent, err = startAgent(n.dir, "nomad", bin, "agent", "-config="+n.config); err != nil {
		n.ports.release()
		return nil, err
	}
	return n, nil
}

// nodesReady is nil when every given node is ready with raw_exec healthy.
func (c *Cluster) nodesReady(ctx context.Context, want []*Node) error {
	nodes, _, err := c.Nomad.Nodes().List((&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	byName := map[string]*nomadapi.NodeListStub{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	for _, w := range want {
		n := byName[w.Name]
		switch {
		case n == nil:
			return fmt.Errorf("node %s not registered yet", w.Name)
		case n.Status != nomadapi.NodeStatusReady:
			return fmt.Errorf("node %s is %s", w.Name, n.Status)
		case n.Drivers["raw_exec"] == nil || !n.Drivers["raw_exec"].Healthy:
			return fmt.Errorf("node %s is ready but raw_exec is not healthy", w.Name)
		}
	}
	return nil
}

// waitNodes waits until every node is ready, failing early when any agent
// exits.
func (c *Cluster) waitNodes(ctx context.Context) error {
	for _, n := range c.Nodes {
		if err := waitFor(ctx, n.agent, "nomad nodes ready with raw_exec", func(ctx context.Context) error {
			return c.nodesReady(ctx, c.Nodes)
		}); err != nil {
			return err
		}
	}
	return nil
}
