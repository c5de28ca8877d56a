package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/cli"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/gateway"
)

type gatewayCommand struct {
	ui cli.Ui
}

func (c *gatewayCommand) Synopsis() string {
	return "Run a gateway: HTTP, WebSocket-TCP, raw TCP and JSON-RPC to pools"
}

func (c *gatewayCommand) Help() string {
	cfg := gateway.DefaultConfig()
	var level string
	return strings.TrimSpace(`
Usage: tidepool gateway [options]

  Routes <owner>--<pool>--<port>.<domain> to healthy, non-draining members,
  from the pools and members the controllers keep in Consul. Gateways are
  stateless: run as many as you like. SIGINT or SIGTERM stops accepting and
  lets in-flight work finish.

  Consul is reached through CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN. The
  config file also takes tcp_listener { address pool port } blocks.

` + gatewaySettings(&cfg, &level).help())
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
	QueueLimit      *int              `hcl:"queue_limit,optional"`
	TokenTTL        *string           `hcl:"token_ttl,optional"`
	TokenLookupRate *int              `hcl:"token_lookup_rate,optional"`
	LogLevel        *string           `hcl:"log_level,optional"`
	TCPListeners    []tcpListenerFile `hcl:"tcp_listener,block"`
	TLS             *tlsBlock         `hcl:"tls,block"`
}

type tcpListenerFile struct {
	Address string `hcl:"address"`
	Pool    string `hcl:"pool"`
	Port    int    `hcl:"port"`
}

// gatewaySettings is the table of the gateway's keys, bound to cfg and
// the log level.
func gatewaySettings(cfg *gateway.Config, logLevel *string) settings {
	return settings{
		{flag: "http-addr", env: "TIDEPOOL_GATEWAY_HTTP_ADDR", file: "http_addr", def: "127.0.0.1:4681",
			help: "Listen address for pool traffic.", set: stringSetter(&cfg.HTTPAddr), example: "127.0.0.1:9998"},
		{flag: "domain", env: "TIDEPOOL_GATEWAY_DOMAIN", file: "domain", def: "localhost",
			help: "Hosts are <owner>--<pool>--<port>.<domain>.", set: stringSetter(&cfg.Domain), example: "pools.example.com"},
		{flag: "kv-prefix", env: "TIDEPOOL_KV_PREFIX", file: "kv_prefix", def: "tidepool",
			help: "The controllers' Consul KV prefix.", set: stringSetter(&cfg.KVPrefix), example: "tp-test"},
		{flag: "name", env: "TIDEPOOL_GATEWAY_NAME", file: "name", def: "host-pid",
			help: "This gateway's name in Consul and stats.", set: stringSetter(&cfg.Name), example: "gw-7"},
		{flag: "upstream-timeout", env: "TIDEPOOL_GATEWAY_UPSTREAM_TIMEOUT", file: "upstream_timeout", kind: kindDuration, def: "5m",
			help: "Longest wait for a member's response headers.", set: durationSetter(&cfg.UpstreamTimeout), example: "42s"},
		{flag: "shutdown-timeout", env: "TIDEPOOL_GATEWAY_SHUTDOWN_TIMEOUT", file: "shutdown_timeout", kind: kindDuration, def: "30s",
			help: "How long in-flight work may finish on stop.", set: durationSetter(&cfg.ShutdownTimeout), example: "7s"},
		{flag: "register", env: "TIDEPOOL_GATEWAY_REGISTER", file: "register", kind: kindBool, def: "true",
			help: "Register in Consul as tidepool-gateway, so the leader reads this gateway's stats.", set: boolSetter(&cfg.Register), example: "false"},
		{flag: "operator-addr", env: "TIDEPOOL_GATEWAY_OPERATOR_ADDR", file: "operator_addr", def: "off",
			help: "Serve /v1/routes, /v1/stats, /metrics and /v1/health here without a token (on -http-addr they need an admin token).", set: stringSetter(&cfg.OperatorAddr), example: "127.0.0.1:9997"},
		{flag: "tls-cert", env: "TIDEPOOL_GATEWAY_TLS_CERT", file: "tls.cert_file", def: "none (plain HTTP)", pair: "tls-key",
			help: "PEM certificate to serve pool traffic over TLS (with -tls-key).", set: stringSetter(&cfg.TLSCert), example: "/etc/tidepool/gw.pem"},
		{flag: "tls-key", env: "TIDEPOOL_GATEWAY_TLS_KEY", file: "tls.key_file", def: "none", pair: "tls-cert",
			help: "PEM private key of -tls-cert.", set: stringSetter(&cfg.TLSKey), example: "/etc/tidepool/gw-key.pem"},
		{flag: "queue-limit", env: "TIDEPOOL_GATEWAY_QUEUE_LIMIT", file: "queue_limit", kind: kindInt, def: "10000",
			help: "Most requests one autoscaled pool's queue holds; past it, 429 at once.", set: intSetter(&cfg.QueueLimit), example: "50"},
		{flag: "token-ttl", env: "TIDEPOOL_GATEWAY_TOKEN_TTL", file: "token_ttl", kind: kindDuration, def: "10s",
			help: "How long an answer about a token stands before Consul is asked again (longer while Consul is unreachable).", set: durationSetter(&cfg.TokenTTL), example: "3s"},
		{flag: "token-lookup-rate", env: "TIDEPOOL_GATEWAY_TOKEN_LOOKUP_RATE", file: "token_lookup_rate", kind: kindInt, def: "100",
			help: "Most Consul reads a second for tokens not known valid; past it, such a token gets 503 (retry).", set: intSetter(&cfg.TokenLookupRate), example: "20"},
		{flag: "log-level", env: "TIDEPOOL_LOG_LEVEL", file: "log_level", def: "info",
			help: "trace, debug, info, warn or error.", set: stringSetter(logLevel), example: "debug"},
	}
}

// loadGatewayConfig layers the -config file at path (when set), then the
// environment, then the flags over cfg, and validates the result.
func loadGatewayConfig(cfg *gateway.Config, logLevel *string, path string, ss settings, fs *flag.FlagSet, values map[string]*flagValue, getenv func(string) string) error {
	var f gatewayFile
	return layer(path, &f, func() error { return f.apply(cfg, logLevel) }, ss, fs, values, getenv, cfg.Validate)
}

func (c *gatewayCommand) Run(args []string) int {
	cfg := gateway.DefaultConfig()
	logLevel := "info"
	ss := gatewaySettings(&cfg, &logLevel)
	fs := newFlagSet("gateway", c.ui, c.Help)
	path := fs.String("config", "", "HCL config file")
	values := ss.flags(fs)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		c.ui.Error("gateway takes no arguments\n\n" + c.Help())
		return exitUsage
	}
	if err := loadGatewayConfig(&cfg, &logLevel, *path, ss, fs, values, os.Getenv); err != nil {
		c.ui.Error(err.Error())
		return exitError
	}

	if err := loadTLS(cfg.TLSCert, cfg.TLSKey); err != nil {
		c.ui.Error(err.Error())
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
	assign(&cfg.QueueLimit, f.QueueLimit)
	assign(&cfg.TokenLookupRate, f.TokenLookupRate)
	f.TLS.apply(&cfg.TLSCert, &cfg.TLSKey)
	assign(logLevel, f.LogLevel)
	var errs []string
	for name, pair := range map[string]struct {
		dst *time.Duration
		v   *string
	}{"upstream_timeout": {&cfg.UpstreamTimeout, f.UpstreamTimeout}, "shutdown_timeout": {&cfg.ShutdownTimeout, f.ShutdownTimeout}, "token_ttl": {&cfg.TokenTTL, f.TokenTTL}} {
		if pair.v != nil {
			if err := durationSetter(pair.dst)(*pair.v); err != nil {
				errs = append(errs, name+": "+err.Error())
			}
		}
	}
	for _, l := range f.TCPListeners {
		cfg.TCPListeners = append(cfg.TCPListeners, gateway.TCPListener{Address: l.Address, Pool: l.Pool, Port: l.Port})
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
