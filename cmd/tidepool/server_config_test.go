package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadWith(t *testing.T, file string, env map[string]string, args ...string) (serverConfig, error) {
	t.Helper()
	cfg := defaultServerConfig()
	ss := cfg.settings()
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	values := ss.flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	err := cfg.load(writeConfig(t, file), ss, fs, values, func(k string) string { return env[k] })
	return cfg, err
}

// writeConfig writes a config file and returns its path ("" for none).
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	if text == "" {
		return ""
	}
	path := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadServerConfig_Precedence(t *testing.T) {
	file := `
http_addr      = "127.0.0.1:1111"
sweep_interval = "10s"
leader {
  session_ttl = "20s"
}
autoscaler {
  target                   = 50
  stable_window            = "2m"
  min_scale                = 2
  max_scale_limit          = 30
  allow_zero_initial_scale = true
}
limits {
  max_desired_count = 40
}
scaler {
  max_steps = 5000
  timeout   = "2s"
}
`
	cfg, err := loadWith(t, file, map[string]string{"TIDEPOOL_HTTP_ADDR": "127.0.0.1:2222", "TIDEPOOL_SWEEP_INTERVAL": "5s"}, "-sweep-interval", "3s")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:2222" {
		t.Errorf("http addr %s: the environment beats the file", cfg.HTTPAddr)
	}
	if cfg.SweepInterval != 3*time.Second {
		t.Errorf("sweep %s: flags beat the environment", cfg.SweepInterval)
	}
	if cfg.SessionTTL != 20*time.Second || cfg.LockDelay != 15*time.Second {
		t.Errorf("ttl %s lock delay %s", cfg.SessionTTL, cfg.LockDelay)
	}
	a := cfg.Defaults.Autoscaling
	if a.Target != 50 || a.StableWindow.D() != 2*time.Minute || a.MinScale != 2 || a.ActivationScale != 2 || a.Metric != "concurrency" {
		t.Errorf("autoscaler defaults %+v", a)
	}
	if s := cfg.ScalerLimits; s.MaxSteps != 5000 || s.Timeout != 2*time.Second {
		t.Errorf("scaler limits %+v", s)
	}
	l := cfg.Defaults.Limits
	if l.MaxScaleLimit != 30 || !l.AllowZeroInitialScale || l.MaxDesiredCount != 40 {
		t.Errorf("limits %+v", l)
	}
}

func TestLoadServerConfig_Errors(t *testing.T) {
	tests := map[string]string{
		`sweep_interval = "soon"`:                  "sweep_interval",
		`gc_interval = "100ms"`:                    "gc_interval must be at least 1s",
		`leader { session_ttl = "2s" }`:            "session_ttl must be from 10s",
		`autoscaler { stable_window = "a while" }`: "autoscaler.stable_window",
		`autoscaler { stable_windw = "60s" }`:      "stable_windw",
		`unknown_key = 1`:                          "unknown_key",
		`scaler { max_steps = 10 }`:                "scaler.max_steps must be at least 1000",
		`scaler { timeout = "1h" }`:                "scaler.timeout must be from 100ms to 10m",
	}
	for file, want := range tests {
		if _, err := loadWith(t, file, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to mention %q", file, err, want)
		}
	}
}
