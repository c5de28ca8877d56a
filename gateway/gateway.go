// Package gateway is Tidepool's data plane (SPEC.md §5): it routes
// owner--pool--port.<domain> HTTP, TCP over WebSocket, raw TCP and JSON-RPC
// calls round-robin to healthy, non-draining members. It shares only domain
// types (plugin/pool) and data in Consul with the controller.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/gateway/routing"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// Config is every setting of a gateway.
type Config struct {
	// HTTPAddr is where HTTP, WebSocket and JSON-RPC are served.
	HTTPAddr string
	// Domain: hosts are <owner>--<pool>--<port>.<Domain>.
	Domain string
	// KVPrefix is the controllers' Consul KV prefix.
	KVPrefix string
	// Name identifies this gateway in Consul and in stats.
	Name string
	// UpstreamTimeout bounds the wait for a member's response headers.
	UpstreamTimeout time.Duration
	// ShutdownTimeout bounds how long in-flight work may finish on stop.
	ShutdownTimeout time.Duration
	// MaxBatch bounds the calls in one JSON-RPC batch.
	MaxBatch int
	// TCPListeners forward plain TCP to pools.
	TCPListeners []TCPListener
	// Register: announce this gateway in Consul as tidepool-gateway, so
	// the leader reads its stats.
	Register bool
}

// TCPListener forwards connections on Address to a pool's TCP port.
type TCPListener struct {
	Address string
	// Pool is "owner/name".
	Pool string
	Port int
}

// Gateway serves traffic to pools.
type Gateway struct {
	cfg     Config
	consul  *consulapi.Client
	layout  pool.KV
	log     hclog.Logger
	stats   *routing.Registry
	watcher *routing.Watcher
	tokens  *tokenCache
	proxy   *httpProxy
	metrics *metrics
	engine  *gin.Engine
	rates   *rates
}

// New wires a gateway over a Consul client.
func New(cfg Config, consul *consulapi.Client, log hclog.Logger) *Gateway {
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 5 * time.Minute
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 100
	}
	log = log.Named("gateway")
	g := &Gateway{
		cfg: cfg, consul: consul, layout: pool.NewKV(cfg.KVPrefix), log: log,
		stats: routing.NewRegistry(),
	}
	g.watcher = routing.NewWatcher(consul, g.layout, g.stats, log)
	g.tokens = newTokenCache(consul.KV(), g.layout, 10*time.Second)
	g.metrics = newMetrics(g.watcher)
	g.proxy = newHTTPProxy(cfg.UpstreamTimeout, g.metrics, log)
	g.rates = newRates(g.stats)
	g.engine = g.routes()
	return g
}

// Watcher exposes the routing watcher, for tests and health.
func (g *Gateway) Watcher() *routing.Watcher { return g.watcher }

// ServeHTTP sends pool hosts to the proxy, everything else to the
// gateway's own routes. Pool traffic skips Gin: it is the hot path.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if label, ok := routing.ParseHost(r.Host, g.cfg.Domain); ok {
		g.serveHost(w, r, label)
		return
	}
	g.engine.ServeHTTP(w, r)
}

func (g *Gateway) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/v1/health", g.health)
	r.GET("/v1/stats", g.serveStats)
	r.GET("/v1/routes", g.serveRoutes)
	r.GET("/metrics", gin.WrapH(g.metrics.handler()))
	r.GET("/proxy/spaces/:pool/port/:port", g.tunnel)
	r.POST("/api/methods/call", g.callMethods)
	r.NoRoute(func(c *gin.Context) {
		writeError(c.Writer, http.StatusNotFound, "no route: use <owner>--<pool>--<port>."+g.cfg.Domain+" as the host")
	})
	return r
}

// healthBody is GET /v1/health.
type healthBody struct {
	Status string `json:"status"`
	// Consul is false while Consul cannot be reached; the last table
	// keeps serving.
	Consul       bool    `json:"consul"`
	Synced       bool    `json:"synced"`
	Routes       int     `json:"routes"`
	TableAgeSecs float64 `json:"table_age_seconds"`
}

func (g *Gateway) health(c *gin.Context) {
	body := healthBody{Status: "ok", Consul: g.watcher.ConsulOK(), Synced: g.watcher.Synced(),
		Routes: g.watcher.Table().Len(), TableAgeSecs: g.watcher.Age().Seconds()}
	if !body.Consul {
		body.Status = "degraded: consul unreachable, serving the last routing table"
	}
	c.JSON(http.StatusOK, body)
}

// Run serves until ctx is done, then stops accepting and lets in-flight
// work finish within the shutdown timeout.
func (g *Gateway) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", g.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return g.Serve(ctx, ln)
}

// Serve is Run on an existing listener.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	var wg sync.WaitGroup
	wg.Go(func() { g.watcher.Run(watchCtx) })
	wg.Go(func() { g.rates.run(watchCtx) })

	tcp, err := g.startTCPListeners(watchCtx)
	if err != nil {
		_ = ln.Close()
		stopWatch()
		wg.Wait()
		return err
	}

	srv := &http.Server{Handler: g, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	g.log.Info("serving", "addr", ln.Addr().String(), "domain", g.cfg.Domain, "kv_prefix", g.layout.Prefix)

	var serviceID string
	if g.cfg.Register {
		if serviceID, err = g.register(ln.Addr().String()); err != nil {
			g.log.Warn("could not register in Consul; the leader will not see this gateway's stats", "error", err)
		}
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	g.log.Info("shutting down", "timeout", g.cfg.ShutdownTimeout.String())
	if serviceID != "" {
		_ = g.consul.Agent().ServiceDeregister(serviceID)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		g.log.Warn("in-flight requests cut off at shutdown", "error", err)
		_ = srv.Close()
	}
	tcp.shutdown(shutdownCtx)
	stopWatch()
	wg.Wait()
	return runErr
}

// register announces the gateway as tidepool-gateway with a health check
// on its own health endpoint.
func (g *Gateway) register(addr string) (string, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	port, _ := strconv.Atoi(portStr)
	id := pool.GatewayService + "-" + g.cfg.Name
	err = g.consul.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{
		ID: id, Name: pool.GatewayService, Address: host, Port: port,
		Meta: map[string]string{"gateway": g.cfg.Name},
		Check: &consulapi.AgentServiceCheck{
			HTTP: "http://" + addr + "/v1/health", Interval: "1s", Timeout: "1s",
			DeregisterCriticalServiceAfter: "1m",
		},
	})
	return id, err
}
