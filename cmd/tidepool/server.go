package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/cli"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/controller"
	"github.com/tidepool-run/tidepool/plugin/gatewaystats"
	"github.com/tidepool-run/tidepool/plugin/leader"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/scaler"
	"github.com/tidepool-run/tidepool/plugin/script"
	"github.com/tidepool-run/tidepool/plugin/store"
)

type serverCommand struct {
	ui cli.Ui
}

func (c *serverCommand) Synopsis() string {
	return "Run a controller: API, leader election and reconciler"
}

func (c *serverCommand) Help() string {
	cfg := defaultServerConfig()
	return strings.TrimSpace(`
Usage: tidepool server [options]

  Runs a Tidepool controller. Every controller serves the API; the one
  holding the Consul leader lock also reconciles pools on Nomad. SIGINT or
  SIGTERM stops it and releases the lock, so a standby takes over at once.

  Consul and Nomad are reached through CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
  NOMAD_ADDR, NOMAD_TOKEN, NOMAD_NAMESPACE and NOMAD_REGION. The config file
  also takes limits { max_desired_count } and an autoscaler {} block with
  server-wide autoscaling defaults (see README).

` + cfg.settings().help())
}

func (c *serverCommand) Run(args []string) int {
	cfg := defaultServerConfig()
	ss := cfg.settings()
	fs := newFlagSet("server", c.ui, c.Help)
	path := fs.String("config", "", "HCL config file")
	values := ss.flags(fs)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		c.ui.Error("server takes no arguments\n\n" + c.Help())
		return exitUsage
	}
	if err := cfg.load(*path, ss, fs, values, os.Getenv); err != nil {
		c.ui.Error(err.Error())
		return exitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runServer(ctx, cfg); err != nil {
		c.ui.Error("server: " + err.Error())
		return exitError
	}
	return exitOK
}

// maxAPIConns bounds the API's open connections.
const maxAPIConns = 1024

func runServer(ctx context.Context, cfg serverConfig) error {
	log := hclog.New(&hclog.LoggerOptions{Name: "tidepool", Level: hclog.LevelFromString(cfg.LogLevel), JSONFormat: false})

	consul, err := consulapi.NewClient(consulapi.DefaultConfig())
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	nomad, err := nomadapi.NewClient(nomadapi.DefaultConfig())
	if err != nil {
		return fmt.Errorf("nomad client: %w", err)
	}
	st := store.New(consul, cfg.KVPrefix)
	st.Log = log.Named("store")
	driver := nomadjob.NewDriver(nomad.Jobs(), nomad.Allocations(), consul.Health(), cfg.Templates, st.Prefix())
	elector := leader.New(consul, leader.Config{
		Key: st.Layout().LeaderKey(), Name: cfg.Name,
		SessionTTL: cfg.SessionTTL, LockDelay: cfg.LockDelay,
	}, log)
	traffic := gatewaystats.New(consul.Health(), st, time.Second, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tidepool_store_skipped_records_total", Help: "KV records left out of listings because they do not decode.",
		}, func() float64 { return float64(st.Skipped()) }))
	ctrl := controller.New(st, driver, traffic, controller.Config{
		SweepInterval: cfg.SweepInterval, Demand: traffic, Scales: st, Autoscale: cfg.Autoscale,
		Metrics:      controller.NewAutoscaleMetrics(reg),
		Installation: st.Prefix(), GCInterval: cfg.GCInterval, GCMetrics: controller.NewGCMetrics(reg),
	}, log)

	if err := loadTLS(cfg.TLSCert, cfg.TLSKey); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	apiServer := &api.Server{
		Store: st, Nomad: driver, Lead: elector, Defaults: cfg.Defaults, Traffic: traffic,
		Metrics: reg, Version: versionString(), Log: log.Named("api"),
	}
	handler := apiServer.Handler()
	// Scheduled scalers call the API in process as their pool's owner:
	// the same handlers, checks and limits as a request with the owner's
	// token, and no token to mint or leak.
	scalers := scaler.New(st, func(owner string) script.API {
		return client.NewHandler(api.AsOwner(handler, owner))
	}, scaler.Config{Limits: cfg.ScalerLimits}, scaler.NewMetrics(reg), log)
	// API requests are small (bodies at most 1 MiB): bound every phase.
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	ln = netutil.LimitListener(ln, maxAPIConns)
	log.Info("serving API", "addr", ln.Addr().String(), "name", cfg.Name, "kv_prefix", st.Prefix())

	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		serve := func() error { return srv.Serve(ln) }
		if cfg.TLSCert != "" {
			serve = func() error { return srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey) }
		}
		if err := serve(); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	})
	runCtx, cancel := context.WithCancel(ctx)
	wg.Go(func() { traffic.Run(runCtx) })
	wg.Go(func() {
		_ = elector.Run(runCtx, func(lead context.Context) error {
			var leading sync.WaitGroup
			defer leading.Wait()
			leading.Go(func() { _ = scalers.Run(lead) })
			return ctrl.Run(lead,
				controller.NomadEvents(nomad.EventStream(), time.Second, log),
				controller.ConsulHealth(consul.Health(), time.Second, log))
		})
	})

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-errc:
	}
	cancel() // stops leading and releases the lock
	shutdownCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	_ = srv.Shutdown(shutdownCtx)
	wg.Wait()
	return serveErr
}
