package api

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// hungConsul is a loopback address that accepts connections and never
// answers, as a stopped Consul agent does. It stops in t.Cleanup.
func hungConsul(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

// refusedConsul is a loopback address nothing listens on.
func refusedConsul(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestAuthenticate_ConsulUnreachableIsRetryNotInvalid(t *testing.T) {
	tests := []struct {
		name   string
		consul func(*testing.T) string
	}{
		{"Consul refuses connections", refusedConsul},
		{"Consul accepts and never answers", hungConsul},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := consulapi.DefaultNonPooledConfig()
			cfg.Address = tt.consul(t)
			cfg.Token = ""
			consul, err := consulapi.NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			s := &Server{Store: store.New(consul, ""), Log: hclog.NewNullLogger()}
			srv := httptest.NewServer(s.Handler())
			t.Cleanup(srv.Close)

			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/tokens/self", nil)
			req.Header.Set("Authorization", "Bearer tp_anything")
			hc := &http.Client{Timeout: 3 * pool.TokenLookupTimeout}
			start := time.Now()
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("no answer within %s: %v", hc.Timeout, err)
			}
			defer func() { _ = resp.Body.Close() }()
			took := time.Since(start)
			var body Error
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("status %d (Retry-After %q): %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body.Error)
			}
			if !strings.Contains(body.Error, "Consul") || !strings.Contains(body.Error, "retry") {
				t.Fatalf("error %q: want it to say Consul is the trouble and to retry", body.Error)
			}
			if limit := pool.TokenLookupTimeout + time.Second; took > limit {
				t.Fatalf("the answer took %s, want at most %s", took, limit)
			}
		})
	}
}
