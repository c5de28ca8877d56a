package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// fakeAPI is a recording stand-in for the Tidepool REST API's pool routes.
type fakeAPI struct {
	mu    sync.Mutex
	pools map[string]*api.PoolInfo
	sizes []int    // desired counts posted, in order
	auth  []string // Authorization headers seen
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	name, size := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/api/pools/"), "/size")
	p, ok := f.pools[name]
	switch {
	case !ok:
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(api.Error{Error: "pool not found"})
	case size && p.Spec.Autoscaling != nil:
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(api.Error{Error: "autoscaling owns this pool's size: remove the autoscaling block to set it by hand"})
	case size:
		var req api.SizeRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.sizes = append(f.sizes, *req.DesiredCount)
		p.DesiredCount = *req.DesiredCount
		_ = json.NewEncoder(w).Encode(p)
	default:
		_ = json.NewEncoder(w).Encode(p)
	}
}

func newTarget(t *testing.T, f *fakeAPI) *Target {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	tg := NewTarget(hclog.NewNullLogger())
	if err := tg.SetConfig(map[string]string{ConfigKeyAddress: srv.URL, ConfigKeyToken: "secret"}); err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestStatus_ReadsCountAndReadiness(t *testing.T) {
	cases := []struct {
		name      string
		info      api.PoolInfo
		wantReady bool
	}{
		{"settled", api.PoolInfo{State: pool.StateActive, DesiredCount: 3, AliveMembers: 3}, true},
		{"members starting", api.PoolInfo{State: pool.StateActive, DesiredCount: 3, AliveMembers: 1}, false},
		{"stopped", api.PoolInfo{State: pool.StateStopped, DesiredCount: 3}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info := tc.info
			info.PoolID = "p-1"
			f := &fakeAPI{pools: map[string]*api.PoolInfo{"web": &info}}
			st, err := newTarget(t, f).Status(map[string]string{ConfigKeyPool: "web"})
			if err != nil {
				t.Fatal(err)
			}
			if st.Count != int64(tc.info.DesiredCount) || st.Ready != tc.wantReady {
				t.Fatalf("status = count %d ready %v, want %d %v", st.Count, st.Ready, tc.info.DesiredCount, tc.wantReady)
			}
			if st.Meta[MetaKeyPoolID] != "p-1" || st.Meta[MetaKeyState] != string(tc.info.State) {
				t.Fatalf("meta = %v", st.Meta)
			}
			if f.auth[0] != "Bearer secret" {
				t.Fatalf("Authorization = %q", f.auth[0])
			}
		})
	}
}

func TestScale_SetsSizeWithToken(t *testing.T) {
	f := &fakeAPI{pools: map[string]*api.PoolInfo{"web": {State: pool.StateActive, DesiredCount: 1}}}
	tg := newTarget(t, f)
	if err := tg.Scale(sdk.ScalingAction{Count: 4, Reason: "test"}, map[string]string{ConfigKeyPool: "web"}); err != nil {
		t.Fatal(err)
	}
	if len(f.sizes) != 1 || f.sizes[0] != 4 || f.auth[0] != "Bearer secret" {
		t.Fatalf("sizes %v, auth %v", f.sizes, f.auth)
	}
}

func TestScale_AutoscaledPoolRefuses(t *testing.T) {
	f := &fakeAPI{pools: map[string]*api.PoolInfo{"auto": {
		State: pool.StateActive, DesiredCount: 1, Spec: pool.Spec{Autoscaling: &pool.Autoscaling{}},
	}}}
	tg := newTarget(t, f)
	err := tg.Scale(sdk.ScalingAction{Count: 4}, map[string]string{ConfigKeyPool: "auto"})
	if !errors.Is(err, ErrAutoscaled) || !strings.Contains(err.Error(), "409") {
		t.Fatalf("Scale = %v, want ErrAutoscaled with the 409", err)
	}
	if _, err := tg.Status(map[string]string{ConfigKeyPool: "auto"}); !errors.Is(err, ErrAutoscaled) {
		t.Fatalf("Status = %v, want ErrAutoscaled", err)
	}
}

func TestConfig_Errors(t *testing.T) {
	tg := NewTarget(hclog.NewNullLogger())
	t.Setenv("TIDEPOOL_TOKEN", "")
	if err := tg.SetConfig(map[string]string{ConfigKeyAddress: "http://127.0.0.1:1"}); err == nil {
		t.Fatal("SetConfig without a token succeeded")
	}
	if err := tg.SetConfig(map[string]string{ConfigKeyAddress: "::", ConfigKeyToken: "x"}); err == nil {
		t.Fatal("SetConfig with a bad address succeeded")
	}
	if _, err := tg.Status(map[string]string{}); err == nil || !strings.Contains(err.Error(), "pool") {
		t.Fatalf("Status without a pool = %v", err)
	}
}
