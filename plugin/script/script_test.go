package script

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/sandbox"
)

// fakeAPI is a recording fake of the REST API: pools by name, every call
// recorded as "verb name [n]".
type fakeAPI struct {
	pools map[string]*api.PoolInfo
	calls []string
}

func newFakeAPI(infos ...*api.PoolInfo) *fakeAPI {
	f := &fakeAPI{pools: map[string]*api.PoolInfo{}}
	for _, i := range infos {
		f.pools[i.Name] = i
	}
	return f
}

func (f *fakeAPI) find(ref string) (*api.PoolInfo, error) {
	if p, ok := f.pools[ref]; ok {
		return p, nil
	}
	return nil, &client.Error{Status: http.StatusNotFound, Message: fmt.Sprintf("pool %q not found", ref)}
}

func (f *fakeAPI) ListPools(context.Context) (*api.PoolList, error) {
	f.calls = append(f.calls, "list")
	out := &api.PoolList{}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range f.pools {
			if !yield(k) {
				return
			}
		}
	}) {
		out.Pools = append(out.Pools, *f.pools[name])
	}
	out.Count = len(out.Pools)
	return out, nil
}

func (f *fakeAPI) GetPool(_ context.Context, ref string) (*api.PoolInfo, error) {
	f.calls = append(f.calls, "get "+ref)
	return f.find(ref)
}

func (f *fakeAPI) SetSize(_ context.Context, ref string, n int) (*api.PoolInfo, error) {
	f.calls = append(f.calls, fmt.Sprintf("set_size %s %d", ref, n))
	p, err := f.find(ref)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, &client.Error{Status: http.StatusBadRequest, Message: "invalid", Fields: []pool.FieldError{{Field: "desired_count", Message: "must not be negative"}}}
	}
	if p.Autoscaling != nil {
		return nil, &client.Error{Status: http.StatusConflict, Message: "autoscaling owns this pool's size"}
	}
	p.DesiredCount = n
	return p, nil
}

func (f *fakeAPI) setActive(verb, ref string, active bool) (*api.PoolInfo, error) {
	f.calls = append(f.calls, verb+" "+ref)
	p, err := f.find(ref)
	if err != nil {
		return nil, err
	}
	p.Active = active
	return p, nil
}

func (f *fakeAPI) Start(_ context.Context, ref string) (*api.PoolInfo, error) {
	return f.setActive("start", ref, true)
}

func (f *fakeAPI) Stop(_ context.Context, ref string) (*api.PoolInfo, error) {
	return f.setActive("stop", ref, false)
}

var _ API = (*fakeAPI)(nil)

// samplePool is a PoolInfo with every kind of field set.
func samplePool(name string) *api.PoolInfo {
	at := time.Date(2026, 11, 23, 17, 4, 5, 6, time.UTC)
	return &api.PoolInfo{
		PoolID: "p-0a1b2c3d", Name: name, Owner: "alice", DesiredCount: 2, Active: true, State: pool.StateActive,
		AliveMembers: 2, Generation: 7, TemplateGeneration: 3, NomadJobID: "alice--" + name + "--p-0a1b2c3d",
		Utilization: api.Utilization{CombinedRPS: 120.5, HTTPRPS: 100, TCPRPS: 20.5, AvgCPUPercent: 0, AvgMemoryPercent: 12.25},
		Members: []api.MemberInfo{
			{ID: "m-aaaaaa", State: pool.MemberAlive, Healthy: true, Address: "127.0.0.1:20001", AllocID: "a1", Generation: 3, Since: at, CombinedRPS: 60},
			{ID: "m-bbbbbb", State: pool.MemberDraining, Generation: 2, Since: at},
		},
		Spec: pool.Spec{
			Name: name, Template: "job {}", DesiredCount: 2, Active: true,
			Ports: []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: true}},
			Drain: pool.Drain{Timeout: pool.Duration(15 * time.Second), GracePeriod: pool.Duration(time.Minute)},
		},
		CreatedAt: at, UpdatedAt: at,
	}
}

func TestToStarlark_PoolInfoRoundTrip(t *testing.T) {
	autoscaled := samplePool("auto")
	autoscaled.Autoscaling = &api.AutoscalingInfo{Autoscaling: pool.DefaultAutoscaling(), Desired: 4, Panic: true,
		Observed:  pool.ScaleObserved{Metric: pool.MetricConcurrency, Stable: 3.5, Panic: 4, ReadyMembers: 2, Held: 1, LastTraffic: autoscaled.CreatedAt, Complete: true},
		ColdStart: pool.Duration(1200 * time.Millisecond)} // DecidedAt zero: omitted (omitzero)
	scaled := samplePool("scaled")
	last := time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC)
	scaled.Spec.Scaler = &pool.Scaler{Script: "scale.star", Source: "pass\n", Interval: pool.Duration(15 * time.Second)}
	scaled.Scaler = &api.ScalerInfo{Script: "scale.star", Interval: pool.Duration(15 * time.Second), LastRun: &last,
		Duration: pool.Duration(12 * time.Millisecond), Outcome: "error", Error: "scale.star:3:1: boom", ErrorLine: 3, Output: []string{"a", "b"}}

	for _, info := range []*api.PoolInfo{samplePool("plain"), autoscaled, scaled} {
		t.Run(info.Name, func(t *testing.T) {
			v, err := ToStarlark(info)
			if err != nil {
				t.Fatal(err)
			}
			back, err := FromStarlark(v)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(back)
			if err != nil {
				t.Fatal(err)
			}
			var got api.PoolInfo
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&got, info) {
				want, _ := json.Marshal(info)
				t.Fatalf("round trip differs:\n got %s\nwant %s", b, want)
			}
			// The same keys as the API's JSON.
			var viaJSON, viaStarlark map[string]any
			want, _ := json.Marshal(info)
			_ = json.Unmarshal(want, &viaJSON)
			_ = json.Unmarshal(b, &viaStarlark)
			if !reflect.DeepEqual(viaJSON, viaStarlark) {
				t.Fatalf("keys differ from the API's JSON:\n got %s\nwant %s", b, want)
			}
		})
	}
}

func TestToStarlark_Types(t *testing.T) {
	v, err := ToStarlark(samplePool("web"))
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*starlark.Dict)
	get := func(path ...string) starlark.Value {
		t.Helper()
		var cur starlark.Value = d
		for _, k := range path {
			x, found, err := cur.(*starlark.Dict).Get(starlark.String(k))
			if err != nil || !found {
				t.Fatalf("no key %q in %v", k, path)
			}
			cur = x
		}
		return cur
	}
	tests := []struct {
		path []string
		want starlark.Value
	}{
		{[]string{"desired_count"}, starlark.MakeInt(2)},
		{[]string{"active"}, starlark.True},
		{[]string{"state"}, starlark.String("active")},
		// A float stays a float when it is whole, or zero.
		{[]string{"utilization", "http_rps"}, starlark.Float(100)},
		{[]string{"utilization", "avg_cpu_percent"}, starlark.Float(0)},
		{[]string{"spec", "drain", "grace_period"}, starlark.String("1m")},
		{[]string{"created_at"}, starlark.String("2026-11-23T17:04:05.000000006Z")},
		{[]string{"spec", "methods"}, nil}, // omitted, like the JSON
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.path, "."), func(t *testing.T) {
			if tt.want == nil {
				x, found, _ := get(tt.path[:len(tt.path)-1]...).(*starlark.Dict).Get(starlark.String(tt.path[len(tt.path)-1]))
				if found {
					t.Fatalf("present: %v", x)
				}
				return
			}
			got := get(tt.path...)
			if got.Type() != tt.want.Type() || got.String() != tt.want.String() {
				t.Fatalf("got %s %s, want %s %s", got.Type(), got, tt.want.Type(), tt.want)
			}
		})
	}
	if l := get("members").(*starlark.List); l.Len() != 2 {
		t.Fatalf("members: %v", l)
	}
	var none *api.AutoscalingInfo
	if v, _ := ToStarlark(none); v != starlark.None {
		t.Fatalf("nil pointer: %v", v)
	}
}

func TestFromStarlark_Rejects(t *testing.T) {
	d := starlark.NewDict(1)
	_ = d.SetKey(starlark.MakeInt(1), starlark.None)
	for _, v := range []starlark.Value{d, starlark.NewBuiltin("f", nil)} {
		if _, err := FromStarlark(v); err == nil {
			t.Errorf("%s converted", v.Type())
		}
	}
}

func run(t *testing.T, f *fakeAPI, src string) ([]string, error) {
	t.Helper()
	res, err := Run(context.Background(), "s.star", []byte(src), f, Options{Limits: sandbox.Limits{Timeout: 5 * time.Second}})
	return res.Output, err
}

func TestModule_Calls(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		calls   []string
		output  []string
		errLine int
		errMsg  string
	}{
		{
			name:  "get and grow",
			src:   "info = pool.get(\"web\")\nif info[\"utilization\"][\"combined_rps\"] > 100:\n    info = pool.set_size(\"web\", info[\"desired_count\"] + 1)\nprint(info[\"desired_count\"])\n",
			calls: []string{"get web", "set_size web 3"}, output: []string{"3"},
		},
		{
			name:  "list",
			src:   "print([p[\"name\"] for p in pool.list()])\n",
			calls: []string{"list"}, output: []string{`["api", "web"]`},
		},
		{
			name:  "stop and start",
			src:   "print(pool.stop(\"web\")[\"active\"])\nprint(pool.start(name = \"web\")[\"active\"])\n",
			calls: []string{"stop web", "start web"}, output: []string{"False", "True"},
		},
		{
			name:  "negative size carries the API's message",
			src:   "x = 1\npool.set_size(\"web\", -1)\nprint(\"not reached\")\n",
			calls: []string{"set_size web -1"}, errLine: 2, errMsg: "pool.set_size: desired_count: must not be negative",
		},
		{
			name:  "unknown pool",
			src:   "def f():\n    return pool.get(\"nope\")\n\nf()\n",
			calls: []string{"get nope"}, errLine: 2, errMsg: `pool.get: pool "nope" not found`,
		},
		{
			name:  "409 while autoscaling",
			src:   "pool.set_size(\"api\", 1)\n",
			calls: []string{"set_size api 1"}, errLine: 1, errMsg: "pool.set_size: autoscaling owns this pool's size",
		},
		{
			name:    "bad arguments",
			src:     "pool.set_size(\"web\", \"two\")\n",
			errLine: 1, errMsg: "pool.set_size: for parameter n: got string, want int",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			autoscaled := samplePool("api")
			autoscaled.Autoscaling = &api.AutoscalingInfo{Autoscaling: pool.DefaultAutoscaling()}
			f := newFakeAPI(samplePool("web"), autoscaled)
			out, err := run(t, f, tt.src)
			if !slices.Equal(f.calls, tt.calls) {
				t.Errorf("calls %q, want %q", f.calls, tt.calls)
			}
			if tt.errMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(out, tt.output) {
					t.Fatalf("output %q, want %q", out, tt.output)
				}
				return
			}
			var e *sandbox.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a script error", err)
			}
			if want := fmt.Sprintf("s.star:%d:", tt.errLine); !strings.HasPrefix(err.Error(), want) || e.Msg != tt.errMsg {
				t.Fatalf("got %q, want %s… %q", err, want, tt.errMsg)
			}
		})
	}
}

// TestExamples runs every example script in jobspecs/examples against a
// recording fake.
func TestExamples(t *testing.T) {
	weekday := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) // Monday, 11:00 in Berlin
	night := time.Date(2026, 11, 23, 22, 0, 0, 0, time.UTC)
	tests := []struct {
		script string
		now    time.Time
		setup  func(p *api.PoolInfo)
		calls  []string
	}{
		{script: "scale-rps.star", setup: func(p *api.PoolInfo) { p.Utilization.CombinedRPS = 201 }, calls: []string{"get echo", "set_size echo 5"}},
		{script: "scale-rps.star", setup: func(p *api.PoolInfo) { p.Utilization.CombinedRPS = 60 }, calls: []string{"get echo"}},
		{script: "scale-rps.star", setup: func(p *api.PoolInfo) { p.Utilization.CombinedRPS = 0 }, calls: []string{"get echo", "set_size echo 1"}},
		{script: "scale-rps.star", setup: func(p *api.PoolInfo) { p.Utilization.CombinedRPS = 5000 }, calls: []string{"get echo", "set_size echo 10"}},
		{script: "scale-cpu.star", setup: func(p *api.PoolInfo) { p.Utilization.AvgCPUPercent = 90 }, calls: []string{"get echo", "set_size echo 3"}},
		{script: "scale-cpu.star", setup: func(p *api.PoolInfo) { p.Utilization.AvgCPUPercent = 50 }, calls: []string{"get echo"}},
		{script: "scale-cpu.star", setup: func(p *api.PoolInfo) { p.Utilization.AvgCPUPercent = 10 }, calls: []string{"get echo", "set_size echo 1"}},
		{script: "scale-cpu.star", setup: func(p *api.PoolInfo) { p.Utilization.AvgCPUPercent = 10; p.DesiredCount = 1 }, calls: []string{"get echo"}},
		{script: "scale-floor.star", now: weekday, calls: []string{"get echo", "set_size echo 3"}},
		{script: "scale-floor.star", now: weekday, setup: func(p *api.PoolInfo) { p.DesiredCount = 5 }, calls: []string{"get echo"}},
		{script: "scale-floor.star", now: night, calls: []string{"get echo"}},
		{script: "scale-floor.star", now: night, setup: func(p *api.PoolInfo) { p.DesiredCount = 3 }, calls: []string{"get echo", "set_size echo 1"}},
		{script: "scale-floor.star", now: night, setup: func(p *api.PoolInfo) { p.DesiredCount = 0 }, calls: []string{"get echo", "set_size echo 1"}},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.script, i), func(t *testing.T) {
			path := filepath.Join("..", "..", "jobspecs", "examples", tt.script)
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			p := samplePool("echo")
			if tt.setup != nil {
				tt.setup(p)
			}
			f := newFakeAPI(p)
			now := tt.now
			if now.IsZero() {
				now = weekday
			}
			res, err := Run(context.Background(), tt.script, src, f, Options{Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.calls, tt.calls) {
				t.Fatalf("calls %q, want %q (output %q)", f.calls, tt.calls, res.Output)
			}
			if len(res.Output) != 1 || !strings.HasPrefix(res.Output[0], "echo: ") {
				t.Fatalf("output %q", res.Output)
			}
		})
	}
}
