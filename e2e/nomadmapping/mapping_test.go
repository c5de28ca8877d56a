// Package nomadmapping proves the Nomad behaviour DESIGN.md decision 1 rests
// on: in one job with one task group per member, setting one group's count to
// 0 stops exactly that member and removes its service from Consul, while the
// other groups keep running and answering.
package nomadmapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
)

const service = "echo-mapping"

func TestGroupCountZero_StopsOnlyThatMember(t *testing.T) {
	echo := testutil.BuildBinary(t, "./cmd/tidepool-echo")
	c := devcluster.New(t, devcluster.Config{Name: "mapping"})

	job := echoJob("mapping", echo, "m-a", "m-b")
	resp, _, err := c.Nomad.Jobs().Register(job, nil)
	if err != nil {
		t.Fatalf("register job: %v", err)
	}
	t.Logf("registered job, eval %s", resp.EvalID)

	var addrs map[string]string
	testutil.Eventually(t, 90*time.Second, 250*time.Millisecond, "both members passing in Consul", func(ctx context.Context) error {
		var err error
		addrs, err = passing(ctx, c)
		if err != nil {
			return err
		}
		if len(addrs) != 2 {
			return fmt.Errorf("passing members: %v", addrs)
		}
		return nil
	})
	for member, addr := range addrs {
		if got := answeringMember(t, addr); got != member {
			t.Fatalf("member %s at %s answered as %q", member, addr, got)
		}
	}
	allocA := runningAlloc(t, c, "m-a")

	// Keep calling m-a for the whole scale-down of m-b: it must never fail.
	var calls, failures atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		client := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			calls.Add(1)
			if err := get(client, addrs["m-a"]); err != nil {
				failures.Add(1)
				lastErr.Store(err)
			}
		}
	})

	cur, _, err := c.Nomad.Jobs().Info(*job.ID, nil)
	if err != nil {
		t.Fatalf("read job: %v", err)
	}
	for _, tg := range cur.TaskGroups {
		if *tg.Name == "m-b" {
			tg.Count = new(0)
		}
	}
	if _, _, err := c.Nomad.Jobs().EnforceRegister(cur, *cur.JobModifyIndex, nil); err != nil {
		t.Fatalf("register with m-b count 0: %v", err)
	}

	testutil.Eventually(t, 60*time.Second, 250*time.Millisecond, "m-b's service gone from Consul", func(ctx context.Context) error {
		entries, _, err := c.Consul.Catalog().Service(service, "", nil)
		if err != nil {
			return err
		}
		var members []string
		for _, e := range entries {
			members = append(members, e.ServiceMeta["member"])
		}
		sort.Strings(members)
		if len(members) != 1 || members[0] != "m-a" {
			return fmt.Errorf("registered members: %v", members)
		}
		return nil
	})
	testutil.Eventually(t, 30*time.Second, 250*time.Millisecond, "m-b's allocation stopped", func(ctx context.Context) error {
		allocs, _, err := c.Nomad.Jobs().Allocations(*job.ID, false, nil)
		if err != nil {
			return err
		}
		for _, a := range allocs {
			if a.TaskGroup == "m-b" && a.ClientStatus == nomadapi.AllocClientStatusRunning {
				return fmt.Errorf("alloc %s still running", a.ID)
			}
		}
		return nil
	})
	// Let m-a serve a little longer after m-b is gone, then stop the caller.
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	if n := failures.Load(); n > 0 {
		t.Fatalf("m-a failed %d of %d calls during m-b's scale-down; last: %v", n, calls.Load(), lastErr.Load())
	}
	if calls.Load() == 0 {
		t.Fatal("m-a was never called")
	}
	if got := runningAlloc(t, c, "m-a"); got != allocA {
		t.Fatalf("m-a's allocation changed from %s to %s", allocA, got)
	}
	t.Logf("m-a answered %d calls during m-b's scale-down", calls.Load())
}

// echoJob is a raw_exec job with one single-instance group per member.
func echoJob(id, echoBin string, members ...string) *nomadapi.Job {
	job := nomadapi.NewServiceJob(id, id, "global", 50)
	job.Datacenters = []string{"*"}
	for _, m := range members {
		tg := nomadapi.NewTaskGroup(m, 1)
		tg.Networks = []*nomadapi.NetworkResource{{DynamicPorts: []nomadapi.Port{{Label: "http"}}}}
		tg.RestartPolicy = &nomadapi.RestartPolicy{Attempts: new(0), Mode: new("fail")}
		tg.ReschedulePolicy = &nomadapi.ReschedulePolicy{Attempts: new(0), Unlimited: new(false)}
		tg.Services = []*nomadapi.Service{{
			Name:      service,
			PortLabel: "http",
			Meta:      map[string]string{"member": m},
			Tags:      []string{"member=" + m},
			Checks: []nomadapi.ServiceCheck{{
				Type: "http", Path: "/healthz", Interval: time.Second, Timeout: time.Second,
			}},
		}}
		task := nomadapi.NewTask("echo", "raw_exec").SetConfig("command", echoBin)
		task.KillTimeout = new(2 * time.Second)
		task.Resources = &nomadapi.Resources{CPU: new(50), MemoryMB: new(32)}
		tg.AddTask(task)
		job.AddTaskGroup(tg)
	}
	return job
}

// passing maps member → address for the passing instances of the service.
func passing(ctx context.Context, c *devcluster.Cluster) (map[string]string, error) {
	return testutil.Passing(ctx, c.Consul, service)
}

// runningAlloc waits for the group's running allocation: Nomad's client
// reports status to the server in batches, so it may trail Consul's checks.
func runningAlloc(t *testing.T, c *devcluster.Cluster, group string) string {
	t.Helper()
	var id string
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, "running allocation for "+group, func(ctx context.Context) error {
		allocs, _, err := c.Nomad.Jobs().Allocations("mapping", false, (&nomadapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return err
		}
		for _, a := range allocs {
			if a.TaskGroup == group && a.ClientStatus == nomadapi.AllocClientStatusRunning {
				id = a.ID
				return nil
			}
		}
		return errors.New("none running")
	})
	return id
}

func answeringMember(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/hello")
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Member string `json:"member"`
		Path   string `json:"path"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode answer from %s: %v", addr, err)
	}
	if body.Path != "/hello" {
		t.Fatalf("answer from %s has path %q", addr, body.Path)
	}
	return body.Member
}

func get(client *http.Client, addr string) error {
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}
