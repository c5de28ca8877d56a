// Package isolation tests, against real agents and binaries, that tenants
// sharing one controller and one gateway cannot reach each other's members,
// receive a caller's token, or aim the gateway at the control plane
// (docs/security.md).
package isolation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/controller"
	"github.com/tidepool-run/tidepool/plugin/gatewaystats"
	"github.com/tidepool-run/tidepool/plugin/leader"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// echoReply is what tidepool-echo answers.
type echoReply struct {
	Member  string      `json:"member"`
	AllocID string      `json:"alloc_id"`
	Headers http.Header `json:"headers"`
}

// get sends GET path to the gateway for host label owner--pool--port.
func get(t *testing.T, gwAddr, host, path string, header http.Header) (int, echoReply, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+gwAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host + ".localhost"
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	var r echoReply
	_ = json.Unmarshal(body, &r)
	return resp.StatusCode, r, string(body)
}

// cyclingIDs hands out the same few member ids over and over: every pool's
// first member gets the first, and so on, so members of different pools
// collide on purpose.
func cyclingIDs(ids ...string) func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return ids[(n-1)%len(ids)]
	}
}

// runController runs a leader-elected controller in this process, wired as
// `tidepool server` wires it but naming members with newID.
func runController(t *testing.T, c *devcluster.Cluster, st *store.Store, newID func() string) {
	t.Helper()
	log := hclog.New(&hclog.LoggerOptions{Name: "ctrl", Level: hclog.Info, Output: testWriter{t}})
	driver := nomadjob.NewDriver(c.Nomad.Jobs(), c.Nomad.Allocations(), c.Consul.Health(), nomadjob.Policy{AllowedDrivers: []string{"raw_exec"}}, st.Prefix())
	traffic := gatewaystats.New(c.Consul.Health(), st, time.Second, log)
	ctrl := controller.New(st, driver, traffic, controller.Config{SweepInterval: 5 * time.Second, NewMemberID: newID, Installation: st.Prefix()}, log)
	elector := leader.New(c.Consul, leader.Config{Key: st.Layout().LeaderKey(), Name: "iso", SessionTTL: 10 * time.Second, LockDelay: time.Second}, log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { traffic.Run(ctx) })
	wg.Go(func() {
		_ = elector.Run(ctx, func(lead context.Context) error {
			return ctrl.Run(lead, controller.NomadEvents(c.Nomad.EventStream(), time.Second, log))
		})
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// testWriter sends logs to t.Log until the test ends.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestIsolation_CollidingMemberIDsReachOnlyTheirOwnPool(t *testing.T) {
	c := devcluster.New(t, devcluster.Config{Name: "iso-ids"})
	echo := testutil.BuildBinary(t, "./cmd/tidepool-echo")
	tidepool := testutil.BuildBinary(t, "./cmd/tidepool")
	st := store.New(c.Consul, "")
	runController(t, c, st, cyclingIDs("m-00000000000000aa", "m-00000000000000bb", "m-00000000000000cc"))
	gwAddr, _ := testutil.StartGateway(t, tidepool, c.Env(), "-name", "gw-iso")

	jobOf := map[string]string{} // owner → Nomad job id
	for _, owner := range []string{"alice", "bob"} {
		p := &pool.Pool{
			ID: pool.NewID(), Owner: owner, TemplateGeneration: 1, CreatedAt: time.Now(), UpdatedAt: time.Now(),
			Spec: pool.Spec{
				Name: "web", Active: true, DesiredCount: 2,
				Template: testutil.EchoJob{Bin: echo, Service: "iso-" + owner}.HCL(),
				Ports:    []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: true}},
				Drain:    pool.Drain{Timeout: pool.Duration(5 * time.Second), GracePeriod: pool.Duration(5 * time.Second)},
			},
		}
		if err := st.CreatePool(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		jobOf[owner] = p.JobID()
	}

	// Four ids drawn from three: by pigeonhole the two pools share one.
	// Wait until each pool's two members both serve.
	testutil.Eventually(t, 90*time.Second, 100*time.Millisecond, "both members of both pools serve through the gateway", func(ctx context.Context) error {
		for owner := range jobOf {
			members := map[string]bool{}
			for range 10 {
				status, r, body := get(t, gwAddr, owner+"--web--8080", "/", nil)
				if status != http.StatusOK {
					return fmt.Errorf("%s: %d %s", owner, status, body)
				}
				members[r.Member] = true
			}
			if len(members) != 2 {
				return fmt.Errorf("%s's pool answers from %v", owner, members)
			}
		}
		return nil
	})
	ids := map[string]map[string]bool{}
	for owner, job := range jobOf {
		allocs, _, err := c.Nomad.Jobs().Allocations(job, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids[owner] = map[string]bool{}
		for _, a := range allocs {
			ids[owner][a.TaskGroup] = true
		}
	}
	t.Logf("member ids: %v", ids)
	shared := 0
	for m := range ids["alice"] {
		if ids["bob"][m] {
			shared++
		}
	}
	if shared == 0 {
		t.Fatal("the pools' member ids did not collide: the test proves nothing")
	}

	// Every answer must come from an allocation of the host's own pool.
	owned := map[string]string{} // alloc id → owner
	refresh := func() {
		for owner, job := range jobOf {
			allocs, _, err := c.Nomad.Jobs().Allocations(job, true, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range allocs {
				owned[a.ID] = owner
			}
		}
	}
	refresh()
	seen := map[string]map[string]bool{"alice": {}, "bob": {}}
	for i := range 200 {
		owner := []string{"alice", "bob"}[i%2]
		status, r, body := get(t, gwAddr, owner+"--web--8080", "/", nil)
		if status != http.StatusOK {
			t.Fatalf("request %d for %s: %d %s", i, owner, status, body)
		}
		if _, ok := owned[r.AllocID]; !ok {
			refresh()
		}
		if got := owned[r.AllocID]; got != owner {
			t.Fatalf("request %d for %s's pool was answered by member %s of %q's pool (alloc %s)", i, owner, r.Member, got, r.AllocID)
		}
		seen[owner][r.Member] = true
	}
	for owner, members := range seen {
		if len(members) != 2 {
			t.Errorf("%s's requests reached members %v, want both of its own", owner, members)
		}
	}
}

// apiEnv is a real `tidepool server` and gateway with a bootstrapped admin.
type apiEnv struct {
	c      *devcluster.Cluster
	echo   string
	gwAddr string
	admin  *client.Client
	token  string
	addr   string
}

func newAPIEnv(t *testing.T, name string) *apiEnv {
	t.Helper()
	e := &apiEnv{echo: testutil.BuildBinary(t, "./cmd/tidepool-echo")}
	tidepool := testutil.BuildBinary(t, "./cmd/tidepool")
	e.c = devcluster.New(t, devcluster.Config{Name: name})
	e.addr, _ = testutil.StartServer(t, tidepool, e.c.Env())
	e.gwAddr, _ = testutil.StartGateway(t, tidepool, e.c.Env(), "-name", "gw-"+name)
	e.token, e.admin = testutil.Bootstrap(t, e.addr)
	return e
}

func (e *apiEnv) spec(tmpl string, public bool) pool.Spec {
	return pool.Spec{
		Name: "web", Template: tmpl, DesiredCount: 1, Active: true,
		Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: public}},
		Drain: pool.Drain{Timeout: pool.Duration(5 * time.Second), GracePeriod: pool.Duration(5 * time.Second)},
	}
}

func TestIsolation_HostileTemplatesAreRefusedAndNothingIsStored(t *testing.T) {
	e := newAPIEnv(t, "iso-tmpl")
	good := testutil.EchoJob{Bin: e.echo, Service: "iso-web"}.HCL()
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"address override aimed at Consul", func(s string) string {
			return strings.Replace(s, `port = "http"`, `port = "http"`+"\n      address = \"127.0.0.1\"", 1)
		}, "address is not allowed"},
		{"reserved service name", func(s string) string {
			return strings.Replace(s, `name = "iso-web"`, `name = "tidepool-gateway"`, 1)
		}, "reserved for Tidepool"},
		{"static port on the host's Consul", func(s string) string {
			return strings.Replace(s, `port "http" {}`, `port "http" { static = 8500 }`, 1)
		}, "static number"},
		{"batch job", func(s string) string {
			return strings.Replace(s, `job "echo" {`, "job \"echo\" {\n  type = \"batch\"", 1)
		}, "job type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := tt.edit(good)
			if tmpl == good {
				t.Fatal("the edit changed nothing")
			}
			_, err := e.admin.CreatePool(context.Background(), new(e.spec(tmpl, true)))
			var apiErr *client.Error
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("create = %v, want 400 mentioning %q", err, tt.want)
			}
			if len(apiErr.Fields) == 0 || apiErr.Fields[0].Field != "template" {
				t.Fatalf("error fields %+v, want the template named", apiErr.Fields)
			}
		})
	}
	list, err := e.admin.ListPools(context.Background())
	if err != nil || list.Count != 0 {
		t.Fatalf("pools after refused creates: %+v, %v", list, err)
	}
	jobs, _, err := e.c.Nomad.Jobs().List(nil)
	if err != nil || len(jobs) != 0 {
		t.Fatalf("Nomad jobs after refused creates: %d, %v", len(jobs), err)
	}
	if _, err := e.admin.CreatePool(context.Background(), new(e.spec(good, true))); err != nil {
		t.Fatalf("the unedited template: %v", err)
	}
}

func TestIsolation_PrivatePortMemberNeverSeesTheCallersToken(t *testing.T) {
	e := newAPIEnv(t, "iso-token")
	if _, err := e.admin.CreatePool(context.Background(), new(e.spec(testutil.EchoJob{Bin: e.echo, Service: "iso-priv"}.HCL(), false))); err != nil {
		t.Fatal(err)
	}
	host := "admin--web--8080"
	var r echoReply
	testutil.Eventually(t, 90*time.Second, 200*time.Millisecond, "the private port answers", func(context.Context) error {
		status, reply, body := get(t, e.gwAddr, host, "/headers", http.Header{"Authorization": {"Bearer " + e.token}, "X-Tidepool-User": {"mallory"}})
		if status != http.StatusOK {
			return fmt.Errorf("%d %s", status, body)
		}
		r = reply
		return nil
	})
	if got := r.Headers.Get("Authorization"); got != "" {
		t.Fatalf("the member received Authorization %q", got)
	}
	for k, v := range r.Headers {
		if strings.Contains(strings.Join(v, ","), e.token) {
			t.Fatalf("the member received the caller's token in %s", k)
		}
	}
	if got := r.Headers.Values("X-Tidepool-User"); len(got) != 1 || got[0] != "admin" {
		t.Fatalf("X-Tidepool-User = %q, want the gateway's word: [admin]", got)
	}
	if status, _, _ := get(t, e.gwAddr, host, "/headers", nil); status != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", status)
	}
}

func TestIsolation_OneCorruptRecordBreaksNobody(t *testing.T) {
	e := newAPIEnv(t, "iso-corrupt")
	if _, err := e.admin.CreatePool(context.Background(), new(e.spec(testutil.EchoJob{Bin: e.echo, Service: "iso-ok"}.HCL(), true))); err != nil {
		t.Fatal(err)
	}
	layout := pool.NewKV("")
	if _, err := e.c.Consul.KV().Put(&consulapi.KVPair{Key: layout.PoolKey("p-garbage"), Value: []byte("{not json")}, nil); err != nil {
		t.Fatal(err)
	}
	list, err := e.admin.ListPools(context.Background())
	if err != nil || list.Count != 1 || list.Pools[0].Name != "web" {
		t.Fatalf("listing with a corrupt record beside: %+v, %v", list, err)
	}
	// The leader keeps reconciling the good pool.
	if _, err := e.admin.SetSize(context.Background(), "web", 2); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 90*time.Second, 250*time.Millisecond, "the good pool at 2 alive members", func(ctx context.Context) error {
		info, err := e.admin.GetPool(ctx, "web")
		if err != nil {
			return err
		}
		if info.AliveMembers != 2 {
			return fmt.Errorf("%d alive", info.AliveMembers)
		}
		return nil
	})
}
