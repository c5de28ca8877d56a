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
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/netutil"

	"github.com/tidepool-run/tidepool/gateway/routing"
	"github.com/tidepool-run/tidepool/internal/blocking"
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
	// QueueLimit bounds how many requests one pool's queue holds (an
	// autoscaled pool at zero, or at max scale with every member full);
	// past it the answer is an immediate 429.
	QueueLimit int
	// TokenTTL is how long a gateway trusts its last answer about a token
	// before asking Consul again; while Consul is unreachable the last
	// answer stands longer (docs/security.md).
	TokenTTL time.Duration
	// TokenLookupRate bounds the Consul reads a second for tokens this
	// gateway does not know to be valid; past it such a token gets 503,
	// so a flood of made-up tokens cannot flood Consul.
	TokenLookupRate int
	// TCPListeners forward plain TCP to pools.
	TCPListeners []TCPListener
	// Register: announce this gateway in Consul as tidepool-gateway, so
	// the leader reads its stats.
	Register bool
	// TLSCert and TLSKey, when set, serve HTTPAddr over TLS (PEM files).
	TLSCert, TLSKey string
	// MaxConns bounds the open client connections of HTTPAddr.
	MaxConns int
	// DeregisterDelay is how long a stopping gateway fails its check
	// before it stops accepting, so the leader and load balancers see it
	// go first (default 2s: twice the check interval).
	DeregisterDelay time.Duration
	// OperatorAddr, when set, serves the operator endpoints (/v1/routes,
	// /v1/stats, /metrics, /v1/health) there without a token: bind it to
	// loopback or a private network. On HTTPAddr they always need an
	// admin token (the leader reads /v1/stats with the gateway key).
	OperatorAddr string
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
	keys    *gatewayKeys
	proxy   *httpProxy
	metrics *metrics
	engine  *gin.Engine
	rates   *rates
	agent   registrar
	// registered: the gateway is in Consul; stopping: it is shutting down.
	// /v1/health answers 503 unless registered and not stopping.
	registered, stopping atomic.Bool
	// demandAt rate-limits demand marks: pool id → last mark (unix nanos).
	demandAt sync.Map
}

// registrar is the part of Consul's agent API the gateway registers with;
// *consulapi.Agent satisfies it.
type registrar interface {
	ServiceRegister(*consulapi.AgentServiceRegistration) error
	ServiceDeregister(serviceID string) error
}

var _ registrar = (*consulapi.Agent)(nil)

// markDemand writes the pool's demand mark in Consul KV, at most once a
// second per pool, without holding up the request: the leader watches the
// marks and scales a pool at zero at once.
func (g *Gateway) markDemand(poolID string) {
	now := time.Now().UnixNano()
	if last, ok := g.demandAt.Load(poolID); ok && now-last.(int64) < int64(time.Second) {
		return
	}
	g.demandAt.Store(poolID, now)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		pair := &consulapi.KVPair{Key: g.layout.DemandKey(poolID), Value: []byte(g.cfg.Name)}
		if _, err := g.consul.KV().Put(pair, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
			g.log.Warn("could not mark demand; the leader sees it at its next look", "pool_id", poolID, "error", err)
		}
	}()
}

// DefaultConfig is every default of a gateway, in one place.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	tokens := defaultTokenCacheConfig()
	return Config{
		HTTPAddr: "127.0.0.1:4681", Domain: "localhost", KVPrefix: "tidepool",
		Name:            fmt.Sprintf("%s-%d", host, os.Getpid()),
		UpstreamTimeout: 5 * time.Minute, ShutdownTimeout: 30 * time.Second,
		MaxBatch: 100, QueueLimit: 10000, MaxConns: 50000, Register: true, DeregisterDelay: 2 * time.Second,
		TokenTTL: tokens.TTL, TokenLookupRate: tokens.LookupRate,
	}
}

// Validate reports every problem of a config at once.
func (c *Config) Validate() error {
	var problems []string
	if c.HTTPAddr == "" {
		problems = append(problems, "http_addr must be set")
	}
	if c.Domain == "" || strings.Trim(c.Domain, ".") != c.Domain {
		problems = append(problems, "domain must be a DNS name without leading or trailing dots")
	}
	if c.UpstreamTimeout <= 0 || c.ShutdownTimeout <= 0 {
		problems = append(problems, "upstream_timeout and shutdown_timeout must be positive")
	}
	if c.MaxBatch <= 0 {
		problems = append(problems, "max_batch must be positive")
	}
	if c.QueueLimit <= 0 {
		problems = append(problems, "queue_limit must be positive")
	}
	if c.TokenTTL <= 0 || c.TokenLookupRate <= 0 {
		problems = append(problems, "token_ttl and token_lookup_rate must be positive")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		problems = append(problems, "tls: set both the certificate and the key, or neither")
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid gateway config: %s", strings.Join(problems, "; "))
	}
	return nil
}

// New wires a gateway over a Consul client. Zero fields of cfg take their
// defaults.
func New(cfg Config, consul *consulapi.Client, log hclog.Logger) *Gateway {
	def := DefaultConfig()
	if cfg.Domain == "" {
		cfg.Domain = def.Domain
	}
	// Host names are matched case-insensitively, as DNS does.
	cfg.Domain = strings.ToLower(cfg.Domain)
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = def.UpstreamTimeout
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = def.ShutdownTimeout
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = def.MaxBatch
	}
	if cfg.QueueLimit == 0 {
		cfg.QueueLimit = def.QueueLimit
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = def.MaxConns
	}
	log = log.Named("gateway")
	g := &Gateway{
		cfg: cfg, consul: consul, layout: pool.NewKV(cfg.KVPrefix), log: log,
		stats: routing.NewRegistry(),
	}
	g.watcher = routing.NewWatcher(consul, g.layout, g.stats, log)
	g.tokens = newTokenCache(consul.KV(), g.layout, tokenCacheConfig{TTL: cfg.TokenTTL, LookupRate: cfg.TokenLookupRate}, time.Now)
	g.keys = &gatewayKeys{kv: consul.KV(), layout: g.layout}
	g.agent = consul.Agent()
	g.metrics = newMetrics(g.watcher, g.stats)
	g.watcher.OnBuild = g.metrics.retain
	g.proxy = newHTTPProxy(cfg.UpstreamTimeout, cfg.QueueLimit, g.watcher.Table, g.markDemand, g.metrics, log)
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
	metrics := g.metrics.handler()
	r.GET("/metrics", func(c *gin.Context) {
		if g.operator(c) {
			metrics.ServeHTTP(c.Writer, c.Request)
		}
	})
	r.GET("/proxy/spaces/:pool/port/:port", g.tunnel)
	r.POST("/api/methods/call", g.callMethods)
	r.NoRoute(func(c *gin.Context) {
		writeError(c.Writer, http.StatusNotFound, "no route: use <owner>--<pool>--<port>."+g.cfg.Domain+" as the host")
	})
	return r
}

// operatorListener marks requests that came in on the operator listener.
type operatorListener struct{}

// operatorPaths are what the operator listener serves.
var operatorPaths = map[string]bool{"/v1/health": true, "/v1/stats": true, "/v1/routes": true, "/metrics": true}

// operatorHandler serves the operator endpoints without a token.
func (g *Gateway) operatorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !operatorPaths[r.URL.Path] {
			writeError(w, http.StatusNotFound, "the operator listener serves /v1/health, /v1/stats, /v1/routes and /metrics")
			return
		}
		g.engine.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), operatorListener{}, true)))
	})
}

// operator reports whether the request may see operator data (every
// owner's pools, members and traffic): it came in on the operator listener
// or carries an admin token. Otherwise it answers 401 or 403.
func (g *Gateway) operator(c *gin.Context) bool {
	if c.Request.Context().Value(operatorListener{}) != nil {
		return true
	}
	cl, err := g.tokens.caller(c.Request)
	switch {
	case err != nil:
		writeAuthError(c.Writer, err, " (operator endpoints need an admin token, or the gateway's operator listener)")
		return false
	case !cl.admin():
		writeError(c.Writer, http.StatusForbidden, "operator endpoints need an admin token")
		return false
	}
	return true
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
	code := http.StatusOK
	switch {
	case g.stopping.Load():
		body.Status, code = "shutting down: finishing in-flight work", http.StatusServiceUnavailable
	case g.cfg.Register && !g.registered.Load():
		body.Status, code = "not ready: not registered in Consul yet", http.StatusServiceUnavailable
	case !body.Consul:
		body.Status = "degraded: consul unreachable, serving the last routing table"
	}
	c.JSON(code, body)
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

	// No ReadTimeout or WriteTimeout: WebSocket tunnels, streams and long
	// requests are the gateway's business; headers and idle keep-alive
	// connections are bounded, and so is the number of connections.
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 5 * time.Minute, MaxHeaderBytes: 64 << 10}
	ln = netutil.LimitListener(ln, g.cfg.MaxConns)
	errc := make(chan error, 2)
	go func() {
		serve := func() error { return srv.Serve(ln) }
		if g.cfg.TLSCert != "" {
			serve = func() error { return srv.ServeTLS(ln, g.cfg.TLSCert, g.cfg.TLSKey) }
		}
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	var opSrv *http.Server
	if g.cfg.OperatorAddr != "" {
		opLn, err := net.Listen("tcp", g.cfg.OperatorAddr)
		if err != nil {
			_ = srv.Close()
			tcp.close()
			stopWatch()
			wg.Wait()
			return fmt.Errorf("operator listener: %w", err)
		}
		opSrv = &http.Server{Handler: g.operatorHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
		go func() {
			if err := opSrv.Serve(opLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		g.log.Info("serving operator endpoints", "addr", opLn.Addr().String())
	}
	g.log.Info("serving", "addr", ln.Addr().String(), "domain", g.cfg.Domain, "kv_prefix", g.layout.Prefix)

	regCtx, stopRegistering := context.WithCancel(context.Background())
	registering := make(chan string, 1)
	if g.cfg.Register {
		go func() { registering <- g.registerUntilDone(regCtx, ln.Addr().String()) }()
	} else {
		registering <- ""
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	g.log.Info("shutting down", "timeout", g.cfg.ShutdownTimeout.String())
	// Fail the check first, so the leader stops vouching for this gateway
	// (drains wait) while in-flight work finishes; deregister last.
	g.stopping.Store(true)
	stopRegistering()
	serviceID := <-registering
	if serviceID != "" {
		time.Sleep(min(g.cfg.DeregisterDelay, g.cfg.ShutdownTimeout))
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	defer func() {
		if serviceID != "" {
			if err := g.agent.ServiceDeregister(serviceID); err != nil {
				g.log.Warn("could not deregister from Consul; its check fails and Consul removes it after a minute", "error", err)
			}
		}
	}()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		g.log.Warn("in-flight requests cut off at shutdown", "error", err)
		_ = srv.Close()
	}
	tcp.shutdown(shutdownCtx)
	if opSrv != nil {
		_ = opSrv.Shutdown(shutdownCtx)
	}
	stopWatch()
	wg.Wait()
	return runErr
}

// registerUntilDone registers the gateway, retrying with backoff until it
// succeeds or ctx ends, and returns the service id ("" when it never got
// registered). Until then /v1/health reports the gateway not ready: the
// leader cannot see a gateway that is not registered, so it must not take
// traffic that drains would not wait for.
func (g *Gateway) registerUntilDone(ctx context.Context, addr string) string {
	for failures := 0; ; failures++ {
		id, err := g.register(addr)
		if err == nil {
			g.registered.Store(true)
			if failures > 0 {
				g.log.Info("registered in Consul", "after_failures", failures)
			}
			return id
		}
		if failures == 0 {
			g.log.Warn("could not register in Consul; retrying, and reporting not ready until it works", "error", err)
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(blocking.Backoff(failures+1, 200*time.Millisecond, 10*time.Second)):
		}
	}
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
	scheme := "http"
	if g.cfg.TLSCert != "" {
		scheme = "https"
	}
	err = g.agent.ServiceRegister(&consulapi.AgentServiceRegistration{
		ID: id, Name: pool.GatewayService, Address: host, Port: port,
		Meta: map[string]string{"gateway": g.cfg.Name, pool.GatewaySchemeMeta: scheme},
		Check: &consulapi.AgentServiceCheck{
			HTTP: scheme + "://" + addr + "/v1/health", Interval: "1s", Timeout: "1s",
			// The certificate names the gateway's public name, not the
			// address the local agent checks.
			TLSSkipVerify:                  scheme == "https",
			DeregisterCriticalServiceAfter: "1m",
		},
	})
	return id, err
}
