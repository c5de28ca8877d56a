package main

import (
	"flag"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tidepool-run/tidepool/gateway"
)

// daemon loads one daemon's config from a file, an environment and flags,
// returning the config (without its own table) for comparison.
type daemon struct {
	name  string
	table func() settings
	load  func(t *testing.T, file string, env map[string]string, args ...string) (any, error)
}

func gatewayLoad(t *testing.T, file string, env map[string]string, args ...string) (gateway.Config, string, error) {
	t.Helper()
	cfg := gateway.DefaultConfig()
	level := "info"
	ss := gatewaySettings(&cfg, &level)
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	values := ss.flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	err := loadGatewayConfig(&cfg, &level, writeConfig(t, file), ss, fs, values, func(k string) string { return env[k] })
	return cfg, level, err
}

var daemons = []daemon{
	{"server", func() settings { c := defaultServerConfig(); return c.settings() },
		func(t *testing.T, file string, env map[string]string, args ...string) (any, error) {
			cfg, err := loadWith(t, file, env, args...)
			return cfg, err
		}},
	{"gateway", func() settings { c := gateway.DefaultConfig(); var l string; return gatewaySettings(&c, &l) },
		func(t *testing.T, file string, env map[string]string, args ...string) (any, error) {
			cfg, level, err := gatewayLoad(t, file, env, args...)
			return struct {
				gateway.Config
				Level string
			}{cfg, level}, err
		}},
}

// hclLines renders settings' examples as a config file, keys of one block
// together.
func hclLines(ss ...setting) string {
	var top []string
	blocks := map[string][]string{}
	var order []string
	for _, s := range ss {
		value := fmt.Sprintf("%q", s.example)
		switch s.kind {
		case kindBool, kindInt:
			value = s.example
		case kindList:
			var items []string
			for _, v := range strings.Split(s.example, ",") {
				items = append(items, fmt.Sprintf("%q", v))
			}
			value = "[" + strings.Join(items, ", ") + "]"
		}
		if block, key, ok := strings.Cut(s.file, "."); ok {
			if _, seen := blocks[block]; !seen {
				order = append(order, block)
			}
			blocks[block] = append(blocks[block], fmt.Sprintf("  %s = %s", key, value))
			continue
		}
		top = append(top, fmt.Sprintf("%s = %s", s.file, value))
	}
	out := strings.Join(top, "\n") + "\n"
	for _, b := range order {
		out += b + " {\n" + strings.Join(blocks[b], "\n") + "\n}\n"
	}
	return out
}

// TestSettings_EveryKeyWorksInEveryForm proves the table: each documented
// flag, variable and file key exists and sets the same thing.
func TestSettings_EveryKeyWorksInEveryForm(t *testing.T) {
	for _, d := range daemons {
		for _, s := range d.table() {
			t.Run(d.name+"/"+s.flag, func(t *testing.T) {
				if s.env == "" || s.file == "" || s.example == "" || s.help == "" || s.def == "" {
					t.Fatalf("setting %+v: every key needs a variable, a file key, help, a default and an example", s)
				}
				set := []setting{s}
				if s.pair != "" { // set with its pair, in the same form
					for _, p := range d.table() {
						if p.flag == s.pair {
							set = append(set, p)
						}
					}
				}
				var args []string
				env := map[string]string{}
				for _, x := range set {
					args = append(args, "-"+x.flag+"="+x.example)
					env[x.env] = x.example
				}
				def, err := d.load(t, "", nil)
				if err != nil {
					t.Fatal(err)
				}
				fromFlag, err := d.load(t, "", nil, args...)
				if err != nil {
					t.Fatal(err)
				}
				fromEnv, err := d.load(t, "", env)
				if err != nil {
					t.Fatal(err)
				}
				fromFile, err := d.load(t, hclLines(set...), nil)
				if err != nil {
					t.Fatalf("%s: %v", hclLines(set...), err)
				}
				if reflect.DeepEqual(fromFlag, def) {
					t.Fatalf("-%s=%s changed nothing", s.flag, s.example)
				}
				if !reflect.DeepEqual(fromEnv, fromFlag) || !reflect.DeepEqual(fromFile, fromFlag) {
					t.Fatalf("flag, %s and file key %s disagree:\nflag %+v\nenv  %+v\nfile %+v", s.env, s.file, fromFlag, fromEnv, fromFile)
				}
				if !strings.Contains(d.table().help(), "-"+s.flag+"=") || !strings.Contains(d.table().help(), "$"+s.env) {
					t.Fatalf("help does not list -%s and $%s", s.flag, s.env)
				}
			})
		}
	}
}

func TestLoadGatewayConfig_Precedence(t *testing.T) {
	file := `
http_addr        = "127.0.0.1:1111"
domain           = "file.example"
upstream_timeout = "10s"
tcp_listener {
  address = "127.0.0.1:9000"
  pool    = "alice/web"
  port    = 9000
}
`
	cfg, _, err := gatewayLoad(t, file, map[string]string{"TIDEPOOL_GATEWAY_HTTP_ADDR": "127.0.0.1:2222", "TIDEPOOL_GATEWAY_DOMAIN": "env.example"}, "-domain", "flag.example")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:2222" {
		t.Errorf("http addr %s: the environment beats the file", cfg.HTTPAddr)
	}
	if cfg.Domain != "flag.example" {
		t.Errorf("domain %s: flags beat the environment", cfg.Domain)
	}
	if cfg.UpstreamTimeout.String() != "10s" || cfg.ShutdownTimeout.String() != "30s" {
		t.Errorf("timeouts %s %s: the file sets one, the default the other", cfg.UpstreamTimeout, cfg.ShutdownTimeout)
	}
	if len(cfg.TCPListeners) != 1 || cfg.TCPListeners[0].Pool != "alice/web" {
		t.Errorf("tcp listeners %+v", cfg.TCPListeners)
	}
}

func TestLoadGatewayConfig_Errors(t *testing.T) {
	tests := []struct {
		file string
		env  map[string]string
		args []string
		want string
	}{
		{file: `upstream_timeout = "soon"`, want: "upstream_timeout"},
		{file: `unknown_key = 1`, want: "unknown_key"},
		{env: map[string]string{"TIDEPOOL_GATEWAY_REGISTER": "maybe"}, want: "TIDEPOOL_GATEWAY_REGISTER"},
		{args: []string{"-shutdown-timeout", "0s"}, want: "must be positive"},
		{args: []string{"-upstream-timeout", "forever"}, want: "-upstream-timeout"},
		{args: []string{"-domain", ".localhost"}, want: "domain"},
	}
	for _, tt := range tests {
		if _, _, err := gatewayLoad(t, tt.file, tt.env, tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want it to mention %q", tt, err, tt.want)
		}
	}
}
