package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"

	"github.com/tidepool-run/tidepool/plugin/autoscale"
	"github.com/tidepool-run/tidepool/plugin/controller"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/poolspec"
	"github.com/tidepool-run/tidepool/plugin/sandbox"
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
	// GCInterval is how often the leader purges orphaned jobs.
	GCInterval time.Duration
	SessionTTL time.Duration
	LockDelay  time.Duration
	LogLevel   string
	Defaults   poolspec.Defaults
	// Autoscale tunes the autoscaler (rates, scale-to-zero grace).
	Autoscale autoscale.Config
	// Templates is what tenants' templates may do.
	Templates nomadjob.Policy
	// TLSCert and TLSKey, when set, serve the API over TLS.
	TLSCert, TLSKey string
	// ScalerLimits bound every run of a pool's scheduled scaler script.
	ScalerLimits sandbox.Limits
}

func defaultServerConfig() serverConfig {
	host, _ := os.Hostname()
	return serverConfig{
		HTTPAddr:      "127.0.0.1:4680",
		Name:          fmt.Sprintf("%s-%d", host, os.Getpid()),
		KVPrefix:      store.DefaultPrefix,
		SweepInterval: 15 * time.Second,
		GCInterval:    controller.DefaultGCInterval,
		SessionTTL:    15 * time.Second,
		LockDelay:     15 * time.Second,
		LogLevel:      "info",
		Defaults:      poolspec.DefaultDefaults(),
		Autoscale:     autoscale.DefaultConfig(),
		Templates:     nomadjob.Policy{AllowedDrivers: slices.Clone(nomadjob.DefaultAllowedDrivers)},
		ScalerLimits:  sandbox.Limits{MaxSteps: sandbox.DefaultMaxSteps, Timeout: sandbox.DefaultTimeout},
	}
}

// serverFile is the HCL shape of the -config file.
type serverFile struct {
	HTTPAddr      *string         `hcl:"http_addr,optional"`
	Name          *string         `hcl:"name,optional"`
	KVPrefix      *string         `hcl:"kv_prefix,optional"`
	SweepInterval *string         `hcl:"sweep_interval,optional"`
	GCInterval    *string         `hcl:"gc_interval,optional"`
	LogLevel      *string         `hcl:"log_level,optional"`
	Leader        *leaderBlock    `hcl:"leader,block"`
	Autoscaler    *autoscalerFile `hcl:"autoscaler,block"`
	Limits        *limitsBlock    `hcl:"limits,block"`
	TLS           *tlsBlock       `hcl:"tls,block"`
	Scaler        *scalerBlock    `hcl:"scaler,block"`
}

// scalerBlock bounds scheduled scaler scripts.
type scalerBlock struct {
	MaxSteps *int    `hcl:"max_steps,optional"`
	Timeout  *string `hcl:"timeout,optional"`
}

type leaderBlock struct {
	SessionTTL *string `hcl:"session_ttl,optional"`
	LockDelay  *string `hcl:"lock_delay,optional"`
}

// tlsBlock is a daemon's TLS certificate and key (PEM files).
type tlsBlock struct {
	CertFile *string `hcl:"cert_file,optional"`
	KeyFile  *string `hcl:"key_file,optional"`
}

func (b *tlsBlock) apply(cert, key *string) {
	if b != nil {
		assign(cert, b.CertFile)
		assign(key, b.KeyFile)
	}
}

// checkTLS reports a half-set certificate and key; whether they load is
// checked when the daemon starts serving.
func checkTLS(cert, key string) error {
	if (cert == "") != (key == "") {
		return errors.New("tls: set both the certificate and the key, or neither")
	}
	return nil
}

// loadTLS reads the certificate and key, when set, before anything is
// served, so a bad file is reported at once.
func loadTLS(cert, key string) error {
	if cert == "" {
		return nil
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}

type limitsBlock struct {
	MaxDesiredCount *int     `hcl:"max_desired_count,optional"`
	AllowedDrivers  []string `hcl:"allowed_drivers,optional"`
}

// autoscalerFile holds server-wide autoscaling defaults (every key of a
// pool's autoscaling block) and bounds, like Knative's config-autoscaler.
type autoscalerFile struct {
	MaxScaleLimit          *int     `hcl:"max_scale_limit,optional"`
	AllowZeroInitialScale  *bool    `hcl:"allow_zero_initial_scale,optional"`
	MaxScaleUpRate         *float64 `hcl:"max_scale_up_rate,optional"`
	MaxScaleDownRate       *float64 `hcl:"max_scale_down_rate,optional"`
	ScaleToZeroGracePeriod *string  `hcl:"scale_to_zero_grace_period,optional"`
	Defaults               hcl.Body `hcl:",remain"`
}

// settings is the table of the server's keys, bound to c.
func (c *serverConfig) settings() settings {
	return settings{
		{flag: "http-addr", env: "TIDEPOOL_HTTP_ADDR", file: "http_addr", def: "127.0.0.1:4680",
			help: "API listen address.", set: stringSetter(&c.HTTPAddr), example: "127.0.0.1:9999"},
		{flag: "name", env: "TIDEPOOL_NAME", file: "name", def: "host-pid",
			help: "Node name in the leader lock.", set: stringSetter(&c.Name), example: "ctl-7"},
		{flag: "kv-prefix", env: "TIDEPOOL_KV_PREFIX", file: "kv_prefix", def: store.DefaultPrefix,
			help: "Consul KV prefix.", set: stringSetter(&c.KVPrefix), example: "tp-test"},
		{flag: "sweep-interval", env: "TIDEPOOL_SWEEP_INTERVAL", file: "sweep_interval", kind: kindDuration, def: "15s",
			help: "Reconcile every pool at least this often.", set: durationSetter(&c.SweepInterval), example: "7s"},
		{flag: "gc-interval", env: "TIDEPOOL_GC_INTERVAL", file: "gc_interval", kind: kindDuration, def: "5m",
			help: "Purge this installation's Nomad jobs whose pool record is gone this often.", set: durationSetter(&c.GCInterval), example: "90s"},
		{flag: "session-ttl", env: "TIDEPOOL_SESSION_TTL", file: "leader.session_ttl", kind: kindDuration, def: "15s",
			help: "Leader session TTL, 10s..24h.", set: durationSetter(&c.SessionTTL), example: "11s"},
		{flag: "lock-delay", env: "TIDEPOOL_LOCK_DELAY", file: "leader.lock_delay", kind: kindDuration, def: "15s",
			help: "Lock-delay after a leader dies, 0s..1m.", set: durationSetter(&c.LockDelay), example: "3s"},
		{flag: "allowed-drivers", env: "TIDEPOOL_ALLOWED_DRIVERS", file: "limits.allowed_drivers", kind: kindList, def: strings.Join(nomadjob.DefaultAllowedDrivers, ","),
			help: "Task drivers pool templates may use; raw_exec only where every tenant is trusted.", set: listSetter(&c.Templates.AllowedDrivers), example: "raw_exec,exec"},
		{flag: "tls-cert", env: "TIDEPOOL_TLS_CERT", file: "tls.cert_file", def: "none (plain HTTP)", pair: "tls-key",
			help: "PEM certificate to serve the API over TLS (with -tls-key).", set: stringSetter(&c.TLSCert), example: "/etc/tidepool/api.pem"},
		{flag: "tls-key", env: "TIDEPOOL_TLS_KEY", file: "tls.key_file", def: "none", pair: "tls-cert",
			help: "PEM private key of -tls-cert.", set: stringSetter(&c.TLSKey), example: "/etc/tidepool/api-key.pem"},
		{flag: "scaler-max-steps", env: "TIDEPOOL_SCALER_MAX_STEPS", file: "scaler.max_steps", kind: kindInt, def: strconv.Itoa(sandbox.DefaultMaxSteps),
			help: "Starlark step limit of each scheduled scaler run.", set: stepsSetter(&c.ScalerLimits.MaxSteps), example: "5000"},
		{flag: "scaler-timeout", env: "TIDEPOOL_SCALER_TIMEOUT", file: "scaler.timeout", kind: kindDuration, def: sandbox.DefaultTimeout.String(),
			help: "Wall-clock limit of each scheduled scaler run, API calls included.", set: durationSetter(&c.ScalerLimits.Timeout), example: "3s"},
		{flag: "log-level", env: "TIDEPOOL_LOG_LEVEL", file: "log_level", def: "info",
			help: "trace, debug, info, warn or error.", set: stringSetter(&c.LogLevel), example: "debug"},
	}
}

// load layers the -config file at path (when set), then the environment,
// then the flags over c, and validates the result.
func (c *serverConfig) load(path string, ss settings, fs *flag.FlagSet, values map[string]*flagValue, getenv func(string) string) error {
	var file serverFile
	return layer(path, &file, func() error { return file.apply(c) }, ss, fs, values, getenv, c.validate)
}

func (c *serverConfig) validate() error {
	var problems []string
	if c.SweepInterval < time.Second {
		problems = append(problems, "sweep_interval must be at least 1s")
	}
	if c.GCInterval < time.Second {
		problems = append(problems, "gc_interval must be at least 1s")
	}
	if c.SessionTTL < 10*time.Second || c.SessionTTL > 24*time.Hour {
		problems = append(problems, "session_ttl must be from 10s to 24h (Consul's bounds)")
	}
	if c.LockDelay < 0 || c.LockDelay > time.Minute {
		problems = append(problems, "lock_delay must be from 0s to 1m")
	}
	c.Autoscale.MaxScaleLimit = c.Defaults.Limits.MaxScaleLimit
	if err := c.Autoscale.Validate(); err != nil {
		problems = append(problems, "autoscaler: "+err.Error())
	}
	if err := checkTLS(c.TLSCert, c.TLSKey); err != nil {
		problems = append(problems, err.Error())
	}
	if len(c.Templates.AllowedDrivers) == 0 {
		problems = append(problems, "allowed_drivers must name at least one driver")
	}
	if strings.Trim(c.KVPrefix, "/") == "" {
		problems = append(problems, "kv_prefix must not be empty")
	}
	if c.ScalerLimits.MaxSteps < 1000 {
		problems = append(problems, "scaler.max_steps must be at least 1000")
	}
	if c.ScalerLimits.Timeout < 100*time.Millisecond || c.ScalerLimits.Timeout > 10*time.Minute {
		problems = append(problems, "scaler.timeout must be from 100ms to 10m")
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid server config: %s", strings.Join(problems, "; "))
	}
	return nil
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
	dur("gc_interval", &cfg.GCInterval, file.GCInterval)
	if l := file.Leader; l != nil {
		dur("leader.session_ttl", &cfg.SessionTTL, l.SessionTTL)
		dur("leader.lock_delay", &cfg.LockDelay, l.LockDelay)
	}
	file.TLS.apply(&cfg.TLSCert, &cfg.TLSKey)
	if sc := file.Scaler; sc != nil {
		if sc.MaxSteps != nil {
			if *sc.MaxSteps < 0 {
				errs = append(errs, "scaler.max_steps: must not be negative")
			} else {
				cfg.ScalerLimits.MaxSteps = uint64(*sc.MaxSteps)
			}
		}
		dur("scaler.timeout", &cfg.ScalerLimits.Timeout, sc.Timeout)
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
		assign(&cfg.Autoscale.MaxScaleUpRate, a.MaxScaleUpRate)
		assign(&cfg.Autoscale.MaxScaleDownRate, a.MaxScaleDownRate)
		dur("autoscaler.scale_to_zero_grace_period", &cfg.Autoscale.ScaleToZeroGrace, a.ScaleToZeroGracePeriod)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// stepsSetter reads a step limit, a whole number that is not negative.
func stepsSetter(dst *uint64) func(string) error {
	return func(v string) error {
		var n int
		if err := intSetter(&n)(v); err != nil {
			return err
		}
		if n < 0 {
			return fmt.Errorf("%q must not be negative", v)
		}
		*dst = uint64(n)
		return nil
	}
}
