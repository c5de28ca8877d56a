package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/poolspec"
	"github.com/tidepool-run/tidepool/plugin/store"
)

const template = `job "t" {
  group "g" {
    network {
      port "http" {}
    }
    service {
      name = "t"
      port = "http"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}`

// apiEnv is an API server over real Consul and Nomad, with an admin token
// and a use-pools token for alice and for bob.
type apiEnv struct {
	t                 *testing.T
	url               string
	store             *store.Store
	handler           http.Handler
	admin, alice, bob string
	// readOnly is carol's token without permissions.
	readOnly string
}

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	c := devcluster.New(t, devcluster.Config{Name: "api"})
	st := store.New(c.Consul, "api-test")
	d := poolspec.DefaultDefaults()
	d.Limits.MaxDesiredCount = 50
	d.Limits.MaxScaleLimit = 20
	s := &Server{Store: st, Nomad: nomadjob.NewDriver(c.Nomad.Jobs(), c.Nomad.Allocations(), c.Consul.Health(), nomadjob.Policy{AllowedDrivers: []string{"raw_exec"}}, st.Prefix()), Defaults: d, Log: hclog.NewNullLogger()}
	s.Metrics = prometheus.NewRegistry()
	h := s.Handler()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e := &apiEnv{t: t, url: srv.URL, store: st, handler: h}

	var boot TokenInfo
	e.do("POST", "/api/tokens/bootstrap", "", nil, http.StatusCreated, &boot)
	e.admin = boot.Token
	e.do("POST", "/api/tokens/bootstrap", "", nil, http.StatusConflict, nil)
	e.alice = e.token("alice", PermUsePools)
	e.bob = e.token("bob", PermUsePools)
	e.readOnly = e.token("carol")
	return e
}

func (e *apiEnv) token(user string, perms ...string) string {
	e.t.Helper()
	var info TokenInfo
	e.do("POST", "/api/tokens", e.admin, map[string]any{"user": user, "permissions": append([]string{}, perms...)}, http.StatusCreated, &info)
	return info.Token
}

// do sends a request and checks the status; out receives the JSON body.
func (e *apiEnv) do(method, path, token string, body any, want int, out any) []byte {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.url+path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.send(req, want, out)
}

func (e *apiEnv) send(req *http.Request, want int, out any) []byte {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", req.Method, req.URL.Path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("decode %s: %v", b, err)
		}
	}
	return b
}

func spec(name string) map[string]any {
	return map[string]any{
		"name": name, "template": template, "desired_count": 2,
		"ports": []map[string]any{{"label": "http", "number": 8080, "protocol": "http", "public": true}},
	}
}

func with(s map[string]any, key string, v any) map[string]any {
	out := map[string]any{}
	for k, x := range s {
		out[k] = x
	}
	if v == nil {
		delete(out, key)
	} else {
		out[key] = v
	}
	return out
}

func fieldsOf(t *testing.T, body []byte) []string {
	t.Helper()
	var e Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode error body %s: %v", body, err)
	}
	if e.Error == "" {
		t.Fatalf("error body without a message: %s", body)
	}
	var out []string
	for _, f := range e.Fields {
		out = append(out, f.Field)
	}
	return out
}

func TestAPI(t *testing.T) {
	e := newAPIEnv(t)

	var created PoolInfo
	e.do("POST", "/api/pools", e.alice, spec("web"), http.StatusCreated, &created)
	if created.Owner != "alice" || created.Generation != 1 || created.State != pool.StateActive ||
		created.NomadJobID != "alice--web--"+created.PoolID || created.Spec.Drain.Timeout.D() == 0 {
		t.Fatalf("created %+v", created)
	}

	t.Run("auth", func(t *testing.T) {
		e.do("GET", "/api/pools", "", nil, http.StatusUnauthorized, nil)
		e.do("GET", "/api/pools", "tp_not-a-token", nil, http.StatusUnauthorized, nil)
		req, _ := http.NewRequest(http.MethodGet, e.url+"/api/pools", nil)
		req.Header.Set("Authorization", "Basic "+e.alice)
		e.send(req, http.StatusUnauthorized, nil)
		e.do("POST", "/api/tokens", e.alice, map[string]any{"user": "x", "permissions": []string{"admin"}}, http.StatusForbidden, nil)
		var self TokenInfo
		e.do("GET", "/api/tokens/self", e.alice, nil, http.StatusOK, &self)
		if self.User != "alice" || self.Token != "" {
			t.Fatalf("self %+v", self)
		}
		b := e.do("POST", "/api/tokens", e.admin, map[string]any{"user": "Bad--Name", "permissions": []string{"root"}}, http.StatusBadRequest, nil)
		if f := fieldsOf(t, b); strings.Join(f, ",") != "user,permissions[0]" {
			t.Fatalf("fields %v", f)
		}
	})

	t.Run("visibility", func(t *testing.T) {
		e.do("GET", "/api/pools/web", e.alice, nil, http.StatusOK, nil)
		e.do("GET", "/api/pools/"+created.PoolID, e.alice, nil, http.StatusOK, nil)
		e.do("GET", "/api/pools/"+created.PoolID, e.bob, nil, http.StatusNotFound, nil)
		e.do("GET", "/api/pools/web", e.bob, nil, http.StatusNotFound, nil)
		e.do("POST", "/api/pools/"+created.PoolID+"/stop", e.bob, nil, http.StatusNotFound, nil)
		e.do("GET", "/api/pools/nope", e.alice, nil, http.StatusNotFound, nil)
		e.do("GET", "/api/pools/"+created.PoolID, e.admin, nil, http.StatusOK, nil)
		var bobs, admins PoolList
		e.do("GET", "/api/pools", e.bob, nil, http.StatusOK, &bobs)
		e.do("GET", "/api/pools", e.admin, nil, http.StatusOK, &admins)
		if bobs.Count != 0 || admins.Count != 1 {
			t.Fatalf("bob sees %d, admin sees %d", bobs.Count, admins.Count)
		}
		// Bob may use the same name: names are per owner.
		e.do("POST", "/api/pools", e.bob, spec("web"), http.StatusCreated, nil)
	})

	t.Run("validation", func(t *testing.T) {
		tests := []struct {
			name   string
			body   any
			fields string
		}{
			{"bad name", with(spec("x"), "name", "Web--1"), "name"},
			{"negative count", with(spec("x"), "desired_count", -1), "desired_count"},
			{"count over the server limit", with(spec("x"), "desired_count", 51), "desired_count"},
			{"no ports", with(spec("x"), "ports", nil), "ports"},
			{"bad port", with(spec("x"), "ports", []map[string]any{{"label": "http", "number": 70000, "protocol": "udp"}}), "ports[0].number,ports[0].protocol"},
			{"methods on an unknown port", with(spec("x"), "methods", map[string]any{"names": []string{"a"}, "port": "grpc", "path": "/rpc"}), "methods.port"},
			{"bad duration", with(spec("x"), "drain", map[string]any{"timeout": "2 hours"}), ""},
			{"autoscaling bounds", with(spec("x"), "autoscaling", map[string]any{"min_scale": 5, "max_scale": 3, "stable_window": "3s", "panic_threshold_percentage": 50}), "autoscaling.min_scale,autoscaling.activation_scale,autoscaling.stable_window,autoscaling.panic_threshold_percentage"},
			{"max_scale over the server limit", with(spec("x"), "autoscaling", map[string]any{"max_scale": 30}), "autoscaling.max_scale"},
			{"zero initial scale", with(spec("x"), "autoscaling", map[string]any{"max_scale": 3, "initial_scale": 0}), "autoscaling.initial_scale"},
			{"template with two groups", with(spec("x"), "template", strings.Replace(template, `group "g"`, `group "a" {}
  group "g"`, 1)), "template"},
			{"template that does not parse", with(spec("x"), "template", "job {"), "template"},
			{"template without the port", with(spec("x"), "ports", []map[string]any{{"label": "admin", "number": 9000, "protocol": "tcp"}}), "template"},
			{"unknown field", with(spec("x"), "desired_cont", 3), "desired_cont"},
			{"wrong type", with(spec("x"), "desired_count", "three"), "desired_count"},
			{"scaler script that does not parse", with(spec("x"), "scaler", map[string]any{"script": "s.star", "source": "if True\n", "interval": "15s"}), "scaler.source"},
			{"scaler without a script", with(spec("x"), "scaler", map[string]any{"script": "s.star", "interval": "15s"}), "scaler.source"},
			{"scaler with autoscaling", with(with(spec("x"), "autoscaling", map[string]any{"max_scale": 3}), "scaler", map[string]any{"script": "s.star", "source": "pass\n", "interval": "15s"}), "scaler"},
			{"not JSON", "{", ""},
			{"empty body", "", ""},
			{"trailing data", `{"name":"x"} {}`, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := e.do("POST", "/api/pools", e.alice, tt.body, http.StatusBadRequest, nil)
				if got := strings.Join(fieldsOf(t, b), ","); got != tt.fields {
					t.Fatalf("fields %q, want %q (%s)", got, tt.fields, b)
				}
			})
		}
		var list PoolList
		e.do("GET", "/api/pools", e.alice, nil, http.StatusOK, &list)
		if list.Count != 1 {
			t.Fatalf("a rejected body was stored: alice has %d pools", list.Count)
		}
	})

	t.Run("conflicts", func(t *testing.T) {
		e.do("POST", "/api/pools", e.alice, spec("web"), http.StatusConflict, nil)

		var updated PoolInfo
		req, _ := http.NewRequest(http.MethodPut, e.url+"/api/pools/web", strings.NewReader(mustJSON(with(spec("web"), "desired_count", 4))))
		req.Header.Set("Authorization", "Bearer "+e.alice)
		req.Header.Set("If-Match", fmt.Sprintf("%q", fmt.Sprint(created.Generation)))
		e.send(req, http.StatusOK, &updated)
		if updated.DesiredCount != 4 || updated.Generation != created.Generation+1 || updated.TemplateGeneration != 1 {
			t.Fatalf("updated %+v", updated)
		}
		stale, _ := http.NewRequest(http.MethodPut, e.url+"/api/pools/web", strings.NewReader(mustJSON(spec("web"))))
		stale.Header.Set("Authorization", "Bearer "+e.alice)
		stale.Header.Set("If-Match", fmt.Sprint(created.Generation))
		e.send(stale, http.StatusConflict, nil)
		e.do("PUT", "/api/pools/web", e.alice, with(spec("web"), "name", "other"), http.StatusBadRequest, nil)

		var rolled PoolInfo
		e.do("PUT", "/api/pools/web", e.alice, with(spec("web"), "template", template+"\n# v2\n"), http.StatusOK, &rolled)
		if rolled.TemplateGeneration != 2 {
			t.Fatalf("template change: template generation %d, want 2", rolled.TemplateGeneration)
		}

		e.do("DELETE", "/api/pools/web", e.alice, nil, http.StatusConflict, nil)

		e.do("POST", "/api/pools", e.alice, with(spec("auto"), "autoscaling", map[string]any{"max_scale": 5}), http.StatusCreated, nil)
		b := e.do("POST", "/api/pools/auto/size", e.alice, map[string]any{"desired_count": 3}, http.StatusConflict, nil)
		if !strings.Contains(string(b), "autoscaling") {
			t.Fatalf("409 without the reason: %s", b)
		}
	})

	t.Run("size start stop delete", func(t *testing.T) {
		var info PoolInfo
		e.do("POST", "/api/pools/web/size", e.alice, map[string]any{"desired_count": 1}, http.StatusOK, &info)
		if info.DesiredCount != 1 {
			t.Fatalf("size %d", info.DesiredCount)
		}
		e.do("POST", "/api/pools/web/size", e.alice, map[string]any{"desired_count": -1}, http.StatusBadRequest, nil)
		e.do("POST", "/api/pools/web/size", e.alice, map[string]any{"desired_count": 51}, http.StatusBadRequest, nil)
		e.do("POST", "/api/pools/web/size", e.alice, map[string]any{}, http.StatusBadRequest, nil)
		e.do("POST", "/api/pools/web/size", e.alice, map[string]any{"count": 2}, http.StatusBadRequest, nil)
		e.do("POST", "/api/pools/"+created.PoolID+"/size", e.bob, map[string]any{"desired_count": 2}, http.StatusNotFound, nil)

		e.do("POST", "/api/pools/web/stop", e.alice, nil, http.StatusOK, &info)
		if info.State != pool.StateStopped {
			t.Fatalf("state %s after stop", info.State)
		}
		e.do("POST", "/api/pools/web/start", e.alice, nil, http.StatusOK, &info)
		if info.State != pool.StateActive {
			t.Fatalf("state %s after start", info.State)
		}
		e.do("POST", "/api/pools/web/stop", e.alice, nil, http.StatusOK, nil)
		// A member still draining holds the delete back (409).
		draining := &pool.Member{ID: "m-draining", PoolID: created.PoolID, Phase: pool.PhaseDraining, Generation: 1, Since: time.Now()}
		if err := e.store.PutMembers(context.Background(), []*pool.Member{draining}); err != nil {
			t.Fatal(err)
		}
		if b := e.do("DELETE", "/api/pools/web", e.alice, nil, http.StatusConflict, nil); !strings.Contains(string(b), "draining") {
			t.Fatalf("409 without the reason: %s", b)
		}
		draining.Phase = pool.PhaseStopped
		if err := e.store.PutMembers(context.Background(), []*pool.Member{draining}); err != nil {
			t.Fatal(err)
		}
		e.do("DELETE", "/api/pools/web", e.alice, nil, http.StatusAccepted, &info)
		if info.State != pool.StateDeleting {
			t.Fatalf("state %s after delete", info.State)
		}
		e.do("POST", "/api/pools/web/start", e.alice, nil, http.StatusConflict, nil)
	})

	t.Run("body too large", func(t *testing.T) {
		big := with(spec("big"), "template", strings.Repeat("#", MaxBodyBytes+1))
		e.do("POST", "/api/pools", e.alice, big, http.StatusRequestEntityTooLarge, nil)
	})

	t.Run("tokens list revoke expire", func(t *testing.T) {
		var list TokenList
		e.do("GET", "/api/tokens", e.admin, nil, http.StatusOK, &list)
		if list.Count < 4 {
			t.Fatalf("%d tokens listed, want the admin's, alice's, bob's and carol's", list.Count)
		}
		for _, tok := range list.Tokens {
			if tok.Token != "" {
				t.Fatalf("a listing shows a secret: %+v", tok)
			}
		}
		e.do("GET", "/api/tokens", e.alice, nil, http.StatusForbidden, nil)

		var dave TokenInfo
		e.do("POST", "/api/tokens", e.admin, map[string]any{"user": "dave", "permissions": []string{"use-pools"}}, http.StatusCreated, &dave)
		e.do("GET", "/api/tokens/self", dave.Token, nil, http.StatusOK, nil)
		e.do("DELETE", "/api/tokens/"+dave.AccessorID, e.admin, nil, http.StatusOK, nil)
		e.do("GET", "/api/tokens/self", dave.Token, nil, http.StatusUnauthorized, nil)
		e.do("DELETE", "/api/tokens/"+dave.AccessorID, e.admin, nil, http.StatusNotFound, nil)

		var brief TokenInfo
		e.do("POST", "/api/tokens", e.admin, map[string]any{"user": "erin", "ttl": "1s"}, http.StatusCreated, &brief)
		if brief.ExpiresAt.IsZero() {
			t.Fatal("a token with a ttl has no expiry")
		}
		e.do("GET", "/api/tokens/self", brief.Token, nil, http.StatusOK, nil)
		time.Sleep(time.Until(brief.ExpiresAt) + 50*time.Millisecond)
		if b := e.do("GET", "/api/tokens/self", brief.Token, nil, http.StatusUnauthorized, nil); !strings.Contains(string(b), "expired") {
			t.Fatalf("an expired token: %s", b)
		}
		if b := e.do("POST", "/api/tokens", e.admin, map[string]any{"user": "erin", "ttl": "soon"}, http.StatusBadRequest, nil); !strings.Contains(string(b), "ttl") {
			t.Fatalf("a bad ttl: %s", b)
		}
	})

	t.Run("scaler script error names its line", func(t *testing.T) {
		b := e.do("POST", "/api/pools", e.alice, with(spec("x"), "scaler", map[string]any{"script": "s.star", "source": "x = 1\nif x >\n  pass\n", "interval": "15s"}), http.StatusBadRequest, nil)
		if !strings.Contains(string(b), "s.star:2:7: got newline, want primary expression") {
			t.Fatalf("body %s", b)
		}
	})

	t.Run("scaler shown before its first run", func(t *testing.T) {
		var info PoolInfo
		e.do("POST", "/api/pools", e.alice, with(spec("scaled"), "scaler", map[string]any{"script": "s.star", "source": "print(1)\n", "interval": "20s"}), http.StatusCreated, &info)
		if sc := info.Scaler; sc == nil || sc.Script != "s.star" || sc.Interval.D() != 20*time.Second || sc.LastRun != nil || sc.Outcome != "" {
			t.Fatalf("scaler %+v", info.Scaler)
		}
	})

	t.Run("in process as the owner", func(t *testing.T) {
		serve := func(user, method, path string, body any) *httptest.ResponseRecorder {
			var r io.Reader
			if body != nil {
				r = strings.NewReader(mustJSON(body))
			}
			rec := httptest.NewRecorder()
			AsOwner(e.handler, user).ServeHTTP(rec, httptest.NewRequest(method, path, r))
			return rec
		}
		if rec := serve("alice", http.MethodGet, "/api/pools/scaled", nil); rec.Code != http.StatusOK {
			t.Fatalf("alice's own pool: %d %s", rec.Code, rec.Body)
		}
		if rec := serve("alice", http.MethodPost, "/api/pools/scaled/size", map[string]any{"desired_count": 3}); rec.Code != http.StatusOK {
			t.Fatalf("set size: %d %s", rec.Code, rec.Body)
		}
		if rec := serve("alice", http.MethodPost, "/api/pools/scaled/size", map[string]any{"desired_count": -1}); rec.Code != http.StatusBadRequest {
			t.Fatalf("negative size: %d %s", rec.Code, rec.Body)
		}
		// Bob's pool is not alice's to see, and an admin's pool's scaler
		// acts with use-pools only.
		if rec := serve("bob", http.MethodGet, "/api/pools/scaled", nil); rec.Code != http.StatusNotFound {
			t.Fatalf("another owner's pool: %d", rec.Code)
		}
		if rec := serve("admin", http.MethodPost, "/api/tokens", map[string]any{"user": "x"}); rec.Code != http.StatusForbidden {
			t.Fatalf("a scaler created a token: %d", rec.Code)
		}
		// Over the network the identity cannot be claimed.
		e.do("GET", "/api/pools/scaled", "", nil, http.StatusUnauthorized, nil)
	})

	t.Run("metrics", func(t *testing.T) {
		e.do("GET", "/metrics", "", nil, http.StatusOK, nil)
	})

	t.Run("permission required to write", func(t *testing.T) {
		e.do("GET", "/api/pools", e.readOnly, nil, http.StatusOK, nil)
		e.do("POST", "/api/pools", e.readOnly, spec("ro"), http.StatusForbidden, nil)
		e.do("POST", "/api/pools/"+created.PoolID+"/stop", e.readOnly, nil, http.StatusForbidden, nil)
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
