package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/cli"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2/hclsimple"

	"github.com/tidepool-run/tidepool/gateway"
)

type gatewayCommand struct {
	ui cli.Ui
}

func (c *gatewayCommand) Synopsis() string {
	return "Run a gateway: HTTP, WebSocket-TCP, raw TCP and JSON-RPC to pools"
}

func (c *gatewayCommand) Help() string {
	return strings.TrimSpace(`
Usage: tidepool gateway [options]

  Routes <owner>--<pool>--<port>.<domain> to healthy, non-draining members,
  from the pools and members the controllers keep in Consul. Gateways are
  stateless: run as many as you like. SIGINT or SIGTERM stops accepting and
  lets in-flight work finish.

  Consul is reached through CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN. Each
  flag also has a TIDEPOOL_GATEWAY_* variable and a config file key.

Options:

  -config=<file>           HCL config file (also takes tcp_listener blocks).
  -http-addr=<host:port>   Listen address (default 127.0.0.1:4681).
  -domain=<domain>         Hosts are <owner>--<pool>--<port>.<domain> (localhost).
  -kv-prefix=<prefix>      The controllers' Consul KV prefix (tidepool).
  -name=<name>             This gateway's name in Consul (host-pid).
  -upstream-timeout=<d>    Longest wait for a member's response headers (5m).
  -shutdown-timeout=<d>    How long in-flight work may finish on stop (30s).
  -register=<bool>         Register in Consul as tidepool-gateway (true).
  -operator-addr=<addr>    Serve /v1/routes, /v1/stats, /metrics and
                           /v1/health here without a token (off: on
                           -http-addr they need an admin token).
  -log-level=<level>       trace, debug, info, warn or error (info).
`)
}

// gatewayFile is the HCL shape of the gateway's -config file.
type gatewayFile struct {
	HTTPAddr        *string           `hcl:"http_addr,optional"`
	Domain          *string           `hcl:"domain,optional"`
	KVPrefix        *string           `hcl:"kv_prefix,optional"`
	Name            *string           `hcl:"name,optional"`
	UpstreamTimeout *string           `hcl:"upstream_timeout,optional"`
	ShutdownTimeout *string           `hcl:"shutdown_timeout,optional"`
	Register        *bool             `hcl:"register,optional"`
	OperatorAddr    *string           `hcl:"operator_addr,optional"`
	LogLevel        *string           `hcl:"log_level,optional"`
	TCPListeners    []tcpListenerFile `hcl:"tcp_listener,block"`
}

type tcpListenerFile struct {
	Address string `hcl:"address"`
	Pool    string `hcl:"pool"`
	Port    int    `hcl:"port"`
}

func (c *gatewayCommand) Run(args []string) int {
	host, _ := os.Hostname()
	cfg := gateway.Config{
		HTTPAddr: "127.0.0.1:4681", Domain: "localhost", KVPrefix: "tidepool",
		Name: fmt.Sprintf("%s-%d", host, os.Getpid()), UpstreamTimeout: 5 * time.Minute,
		ShutdownTimeout: 30 * time.Second, Register: true,
	}
	logLevel := "info"

	fs := newFlagSet("gateway", c.ui, c.Help)
	config := fs.String("config", "", "")
	httpAddr := fs.String("http-addr", "", "")
	domain := fs.String("domain", "", "")
	kvPrefix := fs.String("kv-prefix", "", "")
	name := fs.String("name", "", "")
	upstream := fs.Duration("upstream-timeout", 0, "")
	shutdown := fs.Duration("shutdown-timeout", 0, "")
	register := fs.Bool("register", true, "")
	operatorAddr := fs.String("operator-addr", "", "")
	level := fs.String("log-level", "", "")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		c.ui.Error("gateway takes no arguments\n\n" + c.Help())
		return exitUsage
	}

	if *config != "" {
		var f gatewayFile
		if err := hclsimple.DecodeFile(*config, nil, &f); err != nil {
			c.ui.Error("config: " + err.Error())
			return exitError
		}
		if err := f.apply(&cfg, &logLevel); err != nil {
			c.ui.Error(fmt.Sprintf("config %s: %v", *config, err))
			return exitError
		}
	}
	for key, dst := range map[string]*string{
		"TIDEPOOL_GATEWAY_HTTP_ADDR": &cfg.HTTPAddr, "TIDEPOOL_GATEWAY_DOMAIN": &cfg.Domain,
		"TIDEPOOL_KV_PREFIX": &cfg.KVPrefix, "TIDEPOOL_GATEWAY_NAME": &cfg.Name, "TIDEPOOL_LOG_LEVEL": &logLevel,
		"TIDEPOOL_GATEWAY_OPERATOR_ADDR": &cfg.OperatorAddr,
	} {
		if v := os.Getenv(key); v != "" {
			*dst = v
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "http-addr":
			cfg.HTTPAddr = *httpAddr
		case "domain":
			cfg.Domain = *domain
		case "kv-prefix":
			cfg.KVPrefix = *kvPrefix
		case "name":
			cfg.Name = *name
		case "upstream-timeout":
			cfg.UpstreamTimeout = *upstream
		case "shutdown-timeout":
			cfg.ShutdownTimeout = *shutdown
		case "register":
			cfg.Register = *register
		case "operator-addr":
			cfg.OperatorAddr = *operatorAddr
		case "log-level":
			logLevel = *level
		}
	})
	if cfg.UpstreamTimeout <= 0 || cfg.ShutdownTimeout <= 0 {
		c.ui.Error("upstream_timeout and shutdown_timeout must be positive")
		return exitError
	}

	log := hclog.New(&hclog.LoggerOptions{Name: "tidepool", Level: hclog.LevelFromString(logLevel)})
	consul, err := consulapi.NewClient(consulapi.DefaultConfig())
	if err != nil {
		c.ui.Error("consul client: " + err.Error())
		return exitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := gateway.New(cfg, consul, log).Run(ctx); err != nil {
		c.ui.Error("gateway: " + err.Error())
		return exitError
	}
	return exitOK
}

func (f *gatewayFile) apply(cfg *gateway.Config, logLevel *string) error {
	assign(&cfg.HTTPAddr, f.HTTPAddr)
	assign(&cfg.Domain, f.Domain)
	assign(&cfg.KVPrefix, f.KVPrefix)
	assign(&cfg.Name, f.Name)
	assign(&cfg.Register, f.Register)
	assign(&cfg.OperatorAddr, f.OperatorAddr)
	assign(logLevel, f.LogLevel)
	for name, pair := range map[string]struct {
		dst *time.Duration
		v   *string
	}{"upstream_timeout": {&cfg.UpstreamTimeout, f.UpstreamTimeout}, "shutdown_timeout": {&cfg.ShutdownTimeout, f.ShutdownTimeout}} {
		if pair.v != nil {
			if err := durationSetter(pair.dst)(*pair.v); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	for _, l := range f.TCPListeners {
		cfg.TCPListeners = append(cfg.TCPListeners, gateway.TCPListener{Address: l.Address, Pool: l.Pool, Port: l.Port})
	}
	return nil
}
