// Package multinode tests Tidepool on a Nomad cluster of one server and two
// client nodes, with gateways run by Nomad from jobspecs/ (a system job, one
// per node): members spread over the nodes, and a node is lost.
package multinode

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// The server's heartbeat settings: a silent node is marked down between
// TTL + grace and 2 × TTL + grace after its last heartbeat (Nomad staggers
// each node's TTL by up to one TTL). Nomad's defaults are 10s and 10s.
const (
	heartbeatTTL   = 2 * time.Second
	heartbeatGrace = 3 * time.Second
)

const (
	service = "nl-web"
	host    = "admin--web--8080.localhost"
)

type env struct {
	t    *testing.T
	c    *devcluster.Cluster
	api  *client.Client
	http *http.Client
}

// newEnv starts the cluster, a controller (outside Nomad, so losing a node
// never costs the leader), and the gateway system job from jobspecs/.
func newEnv(t *testing.T) *env {
	t.Helper()
	bin := testutil.BuildBinary(t, "./cmd/tidepool")
	e := &env{
		t: t,
		c: devcluster.New(t, devcluster.Config{
			Name: "nl", Clients: 2, HeartbeatTTL: heartbeatTTL, HeartbeatGrace: heartbeatGrace,
			SchedulerAlgorithm: "spread",
		}),
		http: &http.Client{Timeout: 10 * time.Second},
	}
	apiAddr, _ := testutil.StartServer(t, bin, e.c.Env(), "-log-level", "debug")
	_, e.api = testutil.Bootstrap(t, apiAddr)

	src, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(t), "jobspecs/tidepool-gateway.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := e.c.Nomad.Jobs().ParseHCLOpts(&nomadapi.JobsParseRequest{
		JobHCL: string(src), Variables: fmt.Sprintf("tidepool_bin = %q\nconsul_addr = %q\n", bin, e.c.ConsulAddr),
	})
	if err != nil {
		t.Fatalf("parse the gateway jobspec: %v", err)
	}
	if _, _, err := e.c.Nomad.Jobs().Register(job, nil); err != nil {
		t.Fatalf("register the gateway job: %v", err)
	}

	return e
}

// gateways maps node name → address of the passing gateway on that node.
func (e *env) gateways(ctx context.Context) (map[string]string, error) {
	entries, _, err := e.c.Consul.Health().Service(pool.GatewayService, "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, en := range entries {
		out[en.Service.Meta["gateway"]] = fmt.Sprintf("%s:%d", en.Service.Address, en.Service.Port)
	}
	return out, nil
}

// placement is where the pool's members run, as Nomad and Consul say.
type placement struct {
	byNode  map[string][]string // node name → members with a running alloc there
	running map[string]int      // member → running allocs (more than 1 is a duplicate)
	passing map[string]int      // member → passing service instances
}

func (e *env) placement(ctx context.Context, jobID string) (placement, error) {
	pl := placement{byNode: map[string][]string{}, running: map[string]int{}, passing: map[string]int{}}
	allocs, _, err := e.c.Nomad.Jobs().Allocations(jobID, true, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return pl, fmt.Errorf("list allocations: %w", err)
	}
	for _, a := range allocs {
		if a.ClientStatus == nomadapi.AllocClientStatusRunning {
			pl.byNode[a.NodeName] = append(pl.byNode[a.NodeName], a.TaskGroup)
			pl.running[a.TaskGroup]++
		}
	}
	entries, _, err := e.c.Consul.Health().Service(service, "", true, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return pl, fmt.Errorf("consul health: %w", err)
	}
	for _, en := range entries {
		pl.passing[en.Service.Meta[nomadjob.MetaMember]]++
	}
	return pl, nil
}

// settled is nil when the pool has want alive members, each with exactly
// one running allocation and one passing instance, all on the given nodes.
func (e *env) settled(ctx context.Context, want int, nodes ...string) (placement, error) {
	info, err := e.api.GetPool(ctx, "web")
	if err != nil {
		return placement{}, err
	}
	pl, err := e.placement(ctx, info.NomadJobID)
	if err != nil {
		return pl, err
	}
	if info.AliveMembers != want || len(info.Members) != want {
		return pl, fmt.Errorf("%d alive of %d members, want %d", info.AliveMembers, len(info.Members), want)
	}
	onNodes := 0
	for _, n := range nodes {
		onNodes += len(pl.byNode[n])
	}
	for _, m := range info.Members {
		if pl.running[m.ID] != 1 || pl.passing[m.ID] != 1 {
			return pl, fmt.Errorf("member %s: %d running allocs, %d passing instances", m.ID, pl.running[m.ID], pl.passing[m.ID])
		}
	}
	if onNodes != want {
		return pl, fmt.Errorf("placement %v: %d members on %v, want %d", pl.byNode, onNodes, nodes, want)
	}
	return pl, nil
}

// failure is one request through the gateway that did not answer 200.
type failure struct {
	at  time.Time
	err string
}

// load sends requests through gw until stopped, recording every failure.
type load struct {
	mu       sync.Mutex
	ok       int
	failures []failure
	stop     func()
}

func (e *env) startLoad(gw string, workers int) *load {
	l := &load{}
	l.stop = testutil.Repeat(workers, func() {
		err := e.get(context.Background(), gw)
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			l.failures = append(l.failures, failure{at: time.Now(), err: err.Error()})
			return
		}
		l.ok++
	})
	return l
}

func (e *env) get(ctx context.Context, gw string) error {
	return testutil.GetVia(ctx, e.http, gw, host, "/hello")
}

func (e *env) nodeStatus(ctx context.Context, id string) (string, error) {
	n, _, err := e.c.Nomad.Nodes().Info(id, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", err
	}
	return n.Status, nil
}

func TestNodeLoss_MembersMoveToTheSurvivingNode(t *testing.T) {
	e := newEnv(t)
	echo := testutil.BuildBinary(t, "./cmd/tidepool-echo")
	victim, survivor := e.c.Nodes[1], e.c.Nodes[0]

	// The template's job-level constraint must reach the pool's job intact.
	spec := pool.Spec{
		Name: "web", DesiredCount: 4, Active: true,
		Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: true}},
		Drain: pool.Drain{Timeout: pool.Duration(5 * time.Second), GracePeriod: pool.Duration(5 * time.Second)},
		Template: testutil.EchoJob{Bin: echo, Service: service, JobBlocks: `  constraint {
    attribute = "${meta.zone}"
    operator  = "regexp"
    value     = "^z[0-9]+$"
  }
`}.HCL(),
	}
	ctx := context.Background()
	info, err := e.api.CreatePool(ctx, &spec)
	if err != nil {
		t.Fatal(err)
	}
	var before placement
	testutil.Eventually(t, 120*time.Second, 200*time.Millisecond, "4 members spread 2 + 2", func(ctx context.Context) error {
		var err error
		if before, err = e.settled(ctx, 4, victim.Name, survivor.Name); err != nil {
			return err
		}
		if len(before.byNode[victim.Name]) != 2 || len(before.byNode[survivor.Name]) != 2 {
			return fmt.Errorf("placement %v", before.byNode)
		}
		return nil
	})
	job, _, err := e.c.Nomad.Jobs().Info(info.NomadJobID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(job.Constraints) != 1 || job.Constraints[0].LTarget != "${meta.zone}" {
		t.Fatalf("the template's job constraint is not on the pool's job: %+v", job.Constraints)
	}

	var gw string
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, "a gateway on each node answering", func(ctx context.Context) error {
		gws, err := e.gateways(ctx)
		if err != nil {
			return err
		}
		if len(gws) != 2 {
			return fmt.Errorf("gateways %v", gws)
		}
		gw = gws[survivor.Name]
		for _, addr := range gws {
			if err := e.get(ctx, addr); err != nil {
				return err
			}
		}
		return nil
	})
	victimID, err := e.c.NodeID(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}

	l := e.startLoad(gw, 4)
	defer l.stop()
	killed := time.Now()
	victim.Kill()
	t.Logf("killed %s (SIGKILL: agent, executors and tasks) at %s", victim.Name, killed.Format(time.RFC3339Nano))

	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, "the node marked down", func(ctx context.Context) error {
		st, err := e.nodeStatus(ctx, victimID)
		if err != nil {
			return err
		}
		if st != nomadapi.NodeStatusDown {
			return fmt.Errorf("node is %s", st)
		}
		return nil
	})
	down := time.Since(killed)
	var after placement
	testutil.Eventually(t, 90*time.Second, 100*time.Millisecond, "4 members alive on the surviving node", func(ctx context.Context) error {
		var err error
		after, err = e.settled(ctx, 4, survivor.Name)
		return err
	})
	recovered := time.Since(killed)
	// Nomad replaces a lost allocation of a group itself, so the members
	// keep their ids and move with their groups.
	t.Logf("members on %s before: %v; on %s after: %v", victim.Name, before.byNode[victim.Name], survivor.Name, after.byNode[survivor.Name])
	// Keep the load going a little past recovery, to see requests keep
	// succeeding on the new members.
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "more requests after recovery", func(context.Context) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ok < 200 {
			return fmt.Errorf("%d requests so far", l.ok)
		}
		return nil
	})
	l.stop()
	lost := 0
	allocs, _, err := e.c.Nomad.Jobs().Allocations(info.NomadJobID, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range allocs {
		if a.NodeName == victim.Name && a.ClientStatus == nomadapi.AllocClientStatusLost {
			lost++
		}
	}
	l.mu.Lock()
	t.Logf("node down after %s (heartbeat TTL %s, grace %s); %d allocations lost; 4 members alive on %s after %s",
		down.Round(time.Millisecond), heartbeatTTL, heartbeatGrace, lost, survivor.Name, recovered.Round(time.Millisecond))
	t.Logf("through the surviving gateway: %d requests succeeded, %d failed", l.ok, len(l.failures))
	if n := len(l.failures); n > 0 {
		first, last := l.failures[0], l.failures[n-1]
		t.Logf("failures from %s to %s after the kill; first: %s; last: %s",
			first.at.Sub(killed).Round(time.Millisecond), last.at.Sub(killed).Round(time.Millisecond), first.err, last.err)
	}
	failures := len(l.failures)
	l.mu.Unlock()
	if lost != 2 {
		t.Errorf("%d allocations on %s marked lost, want 2", lost, victim.Name)
	}
	if failures > 0 {
		t.Errorf("%d requests through the surviving gateway failed", failures)
	}

	// The node comes back: its old allocations must not run again, and the
	// pool keeps exactly its 4 members.
	restarted := time.Now()
	if err := victim.Restart(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s ready again after %s", victim.Name, time.Since(restarted).Round(time.Millisecond))
	testutil.Never(t, 8*time.Second, 200*time.Millisecond, "a duplicate or missing member after the restart", func(ctx context.Context) error {
		_, err := e.settled(ctx, 4, survivor.Name, victim.Name)
		return err
	})
}
