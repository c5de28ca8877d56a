// Package devcluster runs real Consul and Nomad agents for tests and for
// `make dev`: one Consul dev agent with either one Nomad dev agent (server
// and client in one) or, with Config.Clients, a Nomad server and that many
// Nomad client agents as separate processes, each a "node" with its own
// data directory, ports, name and meta. Every cluster gets its own loopback
// ports, data directory and blocks of Nomad dynamic ports, so several test
// packages can run clusters at the same time.
//
// Agents are started with a parent-death signal and in their own process
// group: when the process that started them dies, however it dies, the agents
// get SIGTERM and Nomad's dev mode destroys its allocations on the way out.
// Client agents outside dev mode keep their tasks when they stop, so a
// multi-node cluster also runs a watchdog that kills everything under the
// cluster directory when its owner dies. Stop kills what is left, and Start
// reaps clusters whose owner is gone.
package devcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// Config says how to start a cluster. The zero value is a test cluster on
// free ports.
type Config struct {
	// Name labels the cluster's directory and nodes; defaults to "tidepool".
	Name string
	// ConsulHTTPPort and NomadHTTPPort fix the agents' HTTP ports (make dev
	// uses the standard 8500 and 4646); 0 picks free ones.
	ConsulHTTPPort int
	NomadHTTPPort  int
	// Root is where cluster directories live; defaults to $TMPDIR/tpc.
	// Keep it short: Nomad puts unix sockets in task directories below it,
	// and socket paths are limited to 108 bytes.
	Root string
	// StartTimeout bounds the wait for both agents to become ready; defaults
	// to 90s.
	StartTimeout time.Duration
	// Binaries locates the agents; the zero value uses LocateBinaries.
	Binaries Binaries
	// ConsulOnly starts no Nomad agent, for tests of Consul-only code.
	ConsulOnly bool
	// Clients, when > 0, runs a Nomad server and this many Nomad client
	// agents (Cluster.Nodes) instead of one dev agent.
	Clients int
	// HeartbeatTTL and HeartbeatGrace set the server's min_heartbeat_ttl
	// and heartbeat_grace (multi-node only; zero keeps Nomad's 10s and 10s):
	// a client that stops heartbeating is marked down after about TTL +
	// grace. Tests of node loss shorten both.
	HeartbeatTTL, HeartbeatGrace time.Duration
	// SchedulerAlgorithm is the server's default scheduler algorithm
	// (multi-node only): "binpack" (Nomad's default) or "spread", which
	// places each allocation on the least used feasible node.
	SchedulerAlgorithm string
}

// Cluster is a running Consul agent with a Nomad dev agent, or with a Nomad
// server and client nodes.
type Cluster struct {
	// Dir holds the agents' configs, data and logs.
	Dir string
	// ConsulAddr is Consul's HTTP address as host:port (CONSUL_HTTP_ADDR).
	ConsulAddr string
	// NomadAddr is Nomad's HTTP address as a URL (NOMAD_ADDR).
	NomadAddr string
	// MinDynamicPort and MaxDynamicPort bound the ports Nomad hands to tasks
	// (of the dev agent; each of Nodes has its own).
	MinDynamicPort, MaxDynamicPort int
	// Nodes are the Nomad client agents of a multi-node cluster, in order.
	Nodes []*Node

	Consul *consulapi.Client
	// Nomad talks to the dev agent, or to the server of a multi-node cluster.
	Nomad *nomadapi.Client

	consul, nomad *agent
	ports         *portBlock
	watchdog      *watchdog
}

// Start launches Consul, then Nomad wired to it, and waits until Consul has a
// leader and every Nomad node is ready with raw_exec healthy. On error
// nothing is left running.
func Start(ctx context.Context, cfg Config) (c *Cluster, err error) {
	if cfg.Name == "" {
		cfg.Name = "tidepool"
	}
	if cfg.Root == "" {
		cfg.Root = filepath.Join(os.TempDir(), "tpc")
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 90 * time.Second
	}
	bins := cfg.Binaries
	if bins == (Binaries{}) {
		if bins, err = LocateBinaries(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
		return nil, fmt.Errorf("create cluster root: %w", err)
	}
	reapOrphans(cfg.Root)

	// The owner's pid is part of the name, so the reaper can tell a dead
	// owner's directory from a live one without reading anything inside.
	dir, err := os.MkdirTemp(cfg.Root, fmt.Sprintf("%s-%d-", cfg.Name, os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("create cluster dir: %w", err)
	}
	c = &Cluster{Dir: dir}
	started := c // the error returns below set c to nil
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()

	if !cfg.ConsulOnly && cfg.Clients == 0 {
		if c.ports, err = lockPortBlock(cfg.Root); err != nil {
			return nil, err
		}
		c.MinDynamicPort, c.MaxDynamicPort = c.ports.min, c.ports.max
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	cp, err := consulPorts(cfg.ConsulHTTPPort)
	if err != nil {
		return nil, err
	}
	c.ConsulAddr = fmt.Sprintf("127.0.0.1:%d", cp.HTTP)
	if c.consul, err = startConsul(dir, cfg.Name, bins.Consul, cp); err != nil {
		return nil, err
	}
	ccfg := consulapi.DefaultNonPooledConfig()
	ccfg.Address = c.ConsulAddr
	ccfg.Scheme = "http"
	ccfg.Token = ""
	if c.Consul, err = consulapi.NewClient(ccfg); err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	if err := waitFor(ctx, c.consul, "consul leader", c.consulReady); err != nil {
		return nil, err
	}

	if cfg.ConsulOnly {
		return c, nil
	}
	np, err := nomadPorts(cfg.NomadHTTPPort)
	if err != nil {
		return nil, err
	}
	c.NomadAddr = fmt.Sprintf("http://127.0.0.1:%d", np.HTTP)
	if cfg.Clients > 0 {
		if c.watchdog, err = startWatchdog(dir); err != nil {
			return nil, err
		}
		hb := serverTuning{ttl: cfg.HeartbeatTTL, grace: cfg.HeartbeatGrace, algorithm: cfg.SchedulerAlgorithm}
		if c.nomad, err = startNomadServer(dir, cfg.Name, bins.Nomad, np, c.ConsulAddr, hb); err != nil {
			return nil, err
		}
		for i := range cfg.Clients {
			n, err := newNode(dir, cfg.Name, bins.Nomad, i, np.RPC, c.ConsulAddr, cfg.Root)
			if err != nil {
				return nil, err
			}
			c.Nodes = append(c.Nodes, n)
		}
	} else if c.nomad, err = startNomad(dir, cfg.Name, bins.Nomad, np, c.ConsulAddr, c.ports); err != nil {
		return nil, err
	}
	ncfg := nomadapi.DefaultConfig()
	ncfg.Address = c.NomadAddr
	ncfg.SecretID = ""
	ncfg.Namespace = ""
	ncfg.Region = ""
	ncfg.HttpClient = &http.Client{Timeout: 70 * time.Second}
	if c.Nomad, err = nomadapi.NewClient(ncfg); err != nil {
		return nil, fmt.Errorf("nomad client: %w", err)
	}
	if cfg.Clients > 0 {
		if err := waitFor(ctx, c.nomad, "nomad server leader", c.nomadLeader); err != nil {
			return nil, err
		}
		if err := c.waitNodes(ctx); err != nil {
			return nil, err
		}
		return c, nil
	}
	if err := waitFor(ctx, c.nomad, "nomad node ready with raw_exec", c.nomadReady); err != nil {
		return nil, err
	}
	return c, nil
}

// Env returns the standard variables that point Consul and Nomad clients,
// including the tidepool binary, at this cluster.
func (c *Cluster) Env() []string {
	return []string{
		"CONSUL_HTTP_ADDR=" + c.ConsulAddr,
		"CONSUL_HTTP_TOKEN=",
		"NOMAD_ADDR=" + c.NomadAddr,
		"NOMAD_TOKEN=",
		"NOMAD_NAMESPACE=",
		"NOMAD_REGION=",
	}
}

// LogFiles returns the agents' log files, Consul's first, then Nomad's
// (dev agent or server), then the nodes'.
func (c *Cluster) LogFiles() []string {
	files := []string{filepath.Join(c.Dir, "consul.log")}
	if c.nomad != nil {
		files = append(files, c.nomad.logPath)
	} else {
		files = append(files, filepath.Join(c.Dir, "nomad.log"))
	}
	for _, n := range c.Nodes {
		files = append(files, n.LogFile())
	}
	return files
}

// StopConsul kills the Consul agent alone, to test behaviour while Consul
// is unreachable.
func (c *Cluster) StopConsul() {
	if c.consul != nil {
		c.consul.kill()
	}
}

// PauseNomad freezes the Nomad agent (the server of a multi-node cluster)
// with SIGSTOP, so calls to it hang as they do when Nomad is overloaded or
// cut off; tasks keep running. Like PauseConsul it returns resume and
// resumes the agent in t.Cleanup.
func (c *Cluster) PauseNomad(t TB) (resume func()) {
	t.Helper()
	return pause(t, c.nomad)
}

// PauseConsul freezes the Consul agent with SIGSTOP, to test behaviour
// while Consul hangs: its ports still accept connections but nothing
// answers, as with a wedged or partitioned agent, so clients get no quick
// "connection refused" and must rely on their own timeouts. It returns
// resume (SIGCONT), which may be called more than once, and also resumes
// the agent in t.Cleanup: a paused agent never outlives the test. (Stop
// kills a paused agent too, and if the test process dies outright, the
// next Start reaps it.)
func (c *Cluster) PauseConsul(t TB) (resume func()) {
	t.Helper()
	return pause(t, c.consul)
}

// pause stops agent a and returns once every thread of it has stopped.
func pause(t TB, a *agent) (resume func()) {
	t.Helper()
	if a == nil {
		t.Fatalf("pause: no such agent in this cluster")
	}
	if err := a.signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("pause %s: %v", a.name, err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			if err := a.signal(syscall.SIGCONT); err != nil {
				t.Logf("resume %s: %v", a.name, err)
			}
		})
	}
	t.Cleanup(resume)
	if err := WaitStopped(a.cmd.Process.Pid, 5*time.Second); err != nil {
		t.Fatalf("pause %s: %v", a.name, err)
	}
	return resume
}

// Stop kills both agents and everything Nomad started, then removes the
// cluster directory. It is safe to call more than once.
func (c *Cluster) Stop() {
	if c.watchdog != nil {
		c.watchdog.stop()
	}
	// Nomad first, clients before the server, so nothing restarts tasks the
	// sweep below kills.
	agents := make([]*agent, 0, len(c.Nodes)+2)
	for _, n := range c.Nodes {
		agents = append(agents, n.agent)
	}
	for _, a := range append(agents, c.nomad, c.consul) {
		if a != nil {
			a.kill()
		}
	}
	if c.Dir != "" {
		killReferencing(c.Dir)
		unmountUnder(c.Dir)
	}
	if c.ports != nil {
		c.ports.release()
		c.ports = nil
	}
	for _, n := range c.Nodes {
		if n.ports != nil {
			n.ports.release()
			n.ports = nil
		}
	}
	if c.Dir != "" {
		removeAll(c.Dir)
	}
}

func (c *Cluster) consulReady(context.Context) error { return elected(c.Consul.Status().Leader()) }

func (c *Cluster) nomadLeader(context.Context) error { return elected(c.Nomad.Status().Leader()) }

// elected is nil when a status/leader call names a leader.
func elected(leader string, err error) error {
	if err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	return nil
}

func (c *Cluster) nomadReady(ctx context.Context) error {
	nodes, _, err := c.Nomad.Nodes().List((&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if n.Status != nomadapi.NodeStatusReady {
			continue
		}
		if d := n.Drivers["raw_exec"]; d != nil && d.Detected && d.Healthy {
			return nil
		}
		return fmt.Errorf("node %s is ready but raw_exec is not healthy", n.Name)
	}
	return errors.New("no ready node yet")
}

// waitFor polls ready until it succeeds, the agent exits or ctx is done.
func waitFor(ctx context.Context, a *agent, what string, ready func(context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-a.exited:
			return fmt.Errorf("waiting for %s: %s exited (%w); see %s", what, a.name, a.waitErr, a.logPath)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %w); see %s", what, ctx.Err(), last, a.logPath)
		case <-tick.C:
		}
	}
}

// removeAll removes dir, retrying briefly: a killed executor may still be
// closing files in it for a moment.
func removeAll(dir string) {
	for range 20 {
		if err := os.RemoveAll(dir); err == nil {
			return
		}
		killReferencing(dir)
		unmountUnder(dir)
		time.Sleep(50 * time.Millisecond)
	}
}
