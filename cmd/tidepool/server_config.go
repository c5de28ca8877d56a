package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsimple"

	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/poolspec"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// serverConfig is every setting of `tidepool server`. Precedence: flags,
// then TIDEPOOL_* environment variables, then the -config file, then
// defaults. Consul and Nomad are reached through their standard variables
// (CONSUL_HTTP_ADDR, NOMAD_ADDR, ...).
type serverConfig struct {
	HTTPAddr      string
	Name          string
	KVPrefix      string
	SweepInterval time.Duration
	SessionTTL    time.Duration
	LockDelay     time.Duration
	LogLevel      string
	Defaults      poolspec.Defaults
	// Templates is what tenants' templates may do.
	Templates nomadjob.Policy
}

func defaultServerConfig() serverConfig {
	host, _ := os.Hostname()
	return serverConfig{
		HTTPAddr:      "127.0.0.1:4680",
		Name:          fmt.Sprintf("%s-%d", host, os.Getpid()),
		KVPrefix:      store.DefaultPrefix,
		SweepInterval: 15 * time.Second,
		SessionTTL:    15 * time.Second,
		LockDelay:     15 * time.Second,
		LogLevel:      "info",
		Defaults:      poolspec.DefaultDefaults(),
		Templates:     nomadjob.Policy{AllowedDrivers: slices.Clone(nomadjob.DefaultAllowedDrivers)},
	}
}

// serverFile is the HCL shape of the -config file.
type serverFile struct {
	HTTPAddr      *string         `hcl:"http_addr,optional"`
	Name          *string         `hcl:"name,optional"`
	KVPrefix      *string         `hcl:"kv_prefix,optional"`
	SweepInterval *string         `hcl:"sweep_interval,optional"`
	LogLevel      *string         `hcl:"log_level,optional"`
	Leader        *leaderBlock    `hcl:"leader,block"`
	Autoscaler    *autoscalerFile `hcl:"autoscaler,block"`
	Limits        *limitsBlock    `hcl:"limits,block"`
}

type leaderBlock struct {
	SessionTTL *string `hcl:"session_ttl,optional"`
	LockDelay  *string `hcl:"lock_delay,optional"`
}

type limitsBlock struct {
	MaxDesiredCount *int     `hcl:"max_desired_count,optional"`
	AllowedDrivers  []string `hcl:"allowed_drivers,optional"`
}

// autoscalerFile holds server-wide autoscaling defaults (every key of a
// pool's autoscaling block) and bounds, like Knative's config-autoscaler.
type autoscalerFile struct {
	MaxScaleLimit         *int     `hcl:"max_scale_limit,optional"`
	AllowZeroInitialScale *bool    `hcl:"allow_zero_initial_scale,optional"`
	Defaults              hcl.Body `hcl:",remain"`
}

// serverFlags binds the flags of `tidepool server`.
type serverFlags struct {
	config, httpAddr, name, kvPrefix, logLevel, drivers string
	sweep, ttl, lockDelay                               time.Duration
}

func (f *serverFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "HCL config file")
	fs.StringVar(&f.httpAddr, "http-addr", "", "API listen address (default 127.0.0.1:4680)")
	fs.StringVar(&f.name, "name", "", "node name in the leader lock (default host-pid)")
	fs.StringVar(&f.kvPrefix, "kv-prefix", "", "Consul KV prefix (default tidepool)")
	fs.StringVar(&f.logLevel, "log-level", "", "trace, debug, info, warn or error")
	fs.DurationVar(&f.sweep, "sweep-interval", 0, "reconcile every pool at least this often (default 15s)")
	fs.DurationVar(&f.ttl, "session-ttl", 0, "leader session TTL, 10s..24h (default 15s)")
	fs.DurationVar(&f.lockDelay, "lock-delay", 0, "leader lock-delay after a leader dies (default 15s)")
	fs.StringVar(&f.drivers, "allowed-drivers", "", "comma-separated task drivers templates may use (default docker,podman,exec,java)")
}

func driverList(v string) []string {
	var out []string
	for d := range strings.SplitSeq(v, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// loadServerConfig layers file, environment and flags over the defaults.
func loadServerConfig(fs *flag.FlagSet, f *serverFlags, getenv func(string) string) (serverConfig, error) {
	cfg := defaultServerConfig()
	if f.config != "" {
		var file serverFile
		if err := hclsimple.DecodeFile(f.config, nil, &file); err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := file.apply(&cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", f.config, err)
		}
	}
	env := map[string]func(string) error{
		"TIDEPOOL_HTTP_ADDR":      func(v string) error { cfg.HTTPAddr = v; return nil },
		"TIDEPOOL_NAME":           func(v string) error { cfg.Name = v; return nil },
		"TIDEPOOL_KV_PREFIX":      func(v string) error { cfg.KVPrefix = v; return nil },
		"TIDEPOOL_LOG_LEVEL":      func(v string) error { cfg.LogLevel = v; return nil },
		"TIDEPOOL_SWEEP_INTERVAL": durationSetter(&cfg.SweepInterval),
		"TIDEPOOL_SESSION_TTL":    durationSetter(&cfg.SessionTTL),
		"TIDEPOOL_LOCK_DELAY":     durationSetter(&cfg.LockDelay),
		"TIDEPOOL_ALLOWED_DRIVERS": func(v string) error {
			cfg.Templates.AllowedDrivers = driverList(v)
			return nil
		},
	}
	for key, set := range env {
		if v := getenv(key); v != "" {
			if err := set(v); err != nil {
				return cfg, fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "http-addr":
			cfg.HTTPAddr = f.httpAddr
		case "name":
			cfg.Name = f.name
		case "kv-prefix":
			cfg.KVPrefix = f.kvPrefix
		case "log-level":
			cfg.LogLevel = f.logLevel
		case "sweep-interval":
			cfg.SweepInterval = f.sweep
		case "session-ttl":
			cfg.SessionTTL = f.ttl
		case "lock-delay":
			cfg.LockDelay = f.lockDelay
		case "allowed-drivers":
			cfg.Templates.AllowedDrivers = driverList(f.drivers)
		}
	})
	return cfg, cfg.validate()
}

func (c *serverConfig) validate() error {
	var problems []string
	if c.SweepInterval < time.Second {
		problems = append(problems, "sweep_interval must be at least 1s")
	}
	if c.SessionTTL < 10*time.Second || c.SessionTTL > 24*time.Hour {
		problems = append(problems, "session_ttl must be from 10s to 24h (Consul's bounds)")
	}
	if c.LockDelay < 0 || c.LockDelay > time.Minute {
		problems = append(problems, "lock_delay must be from 0s to 1m")
	}
	if len(c.Templates.AllowedDrivers) == 0 {
		problems = append(problems, "allowed_drivers must name at least one driver")
	}
	if strings.Trim(c.KVPrefix, "/") == "" {
		problems = append(problems, "kv_prefix must not be empty")
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid server config: %s", strings.Join(problems, "; "))
	}
	return nil
}

func durationSetter(dst *time.Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration", v)
		}
		*dst = d
		return nil
	}
}

func (file *serverFile) apply(cfg *serverConfig) error {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&cfg.HTTPAddr, file.HTTPAddr)
	set(&cfg.Name, file.Name)
	set(&cfg.KVPrefix, file.KVPrefix)
	set(&cfg.LogLevel, file.LogLevel)
	var errs []string
	dur := func(name string, dst *time.Duration, v *string) {
		if v == nil {
			return
		}
		if err := durationSetter(dst)(*v); err != nil {
			errs = append(errs, name+": "+err.Error())
		}
	}
	dur("sweep_interval", &cfg.SweepInterval, file.SweepInterval)
	if l := file.Leader; l != nil {
		dur("leader.session_ttl", &cfg.SessionTTL, l.SessionTTL)
		dur("leader.lock_delay", &cfg.LockDelay, l.LockDelay)
	}
	if l := file.Limits; l != nil {
		assign(&cfg.Defaults.Limits.MaxDesiredCount, l.MaxDesiredCount)
		if l.AllowedDrivers != nil {
			cfg.Templates.AllowedDrivers = l.AllowedDrivers
		}
	}
	if a := file.Autoscaler; a != nil {
		var block poolspec.AutoscalingBlock
		if diags := gohcl.DecodeBody(a.Defaults, nil, &block); diags.HasErrors() {
			errs = append(errs, diags.Error())
		} else {
			block.ApplyTo(&cfg.Defaults.Autoscaling, func(dst *pool.Duration, v *string, key string) {
				if v == nil {
					return
				}
				var d time.Duration
				if err := durationSetter(&d)(*v); err != nil {
					errs = append(errs, "autoscaler."+key+": "+err.Error())
					return
				}
				*dst = pool.Duration(d)
			})
		}
		assign(&cfg.Defaults.Limits.MaxScaleLimit, a.MaxScaleLimit)
		assign(&cfg.Defaults.Limits.AllowZeroInitialScale, a.AllowZeroInitialScale)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func assign[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
