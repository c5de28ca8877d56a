package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsimple"
)

// setting is one key of a daemon's configuration in each form it takes: a
// flag, an environment variable and a config-file key. A daemon's table of
// settings is the one place its keys are named: it binds the flags, writes
// the help text, and layers the sources — defaults, then the -config file,
// then the environment, then flags — before the config is validated, as
// nomad-autoscaler's agent does.
type setting struct {
	flag string // without the dash
	env  string // "" when the key has no variable
	file string // HCL key, dotted inside blocks ("leader.session_ttl")
	kind kind
	// def is the default as help shows it; the default itself is the
	// daemon's Default config.
	def  string
	help string
	// set parses v into the config.
	set func(v string) error
	// example is a valid non-default value, for tests.
	example string
	// pair is the flag of a setting that must be set with this one.
	pair string
}

type kind int

const (
	kindString kind = iota
	kindDuration
	kindBool
	kindList
	kindInt
)

// settings is a daemon's table.
type settings []setting

// flags binds every setting as a flag of fs; values are parsed by set once
// the layers are known, so a bad value names its flag.
func (ss settings) flags(fs *flag.FlagSet) map[string]*flagValue {
	out := map[string]*flagValue{}
	for _, s := range ss {
		v := &flagValue{bool: s.kind == kindBool}
		fs.Var(v, s.flag, s.help)
		out[s.flag] = v
	}
	return out
}

// flagValue holds a flag's text until it is applied.
type flagValue struct {
	text string
	bool bool
}

func (v *flagValue) String() string     { return v.text }
func (v *flagValue) Set(s string) error { v.text = s; return nil }
func (v *flagValue) IsBoolFlag() bool   { return v.bool }

// load layers the environment (read through getenv) and the flags set on
// fs over cfg, which already holds the defaults and the file.
func (ss settings) load(fs *flag.FlagSet, values map[string]*flagValue, getenv func(string) string) error {
	var errs []string
	for _, s := range ss {
		if s.env == "" {
			continue
		}
		if v := getenv(s.env); v != "" {
			if err := s.set(v); err != nil {
				errs = append(errs, s.env+": "+err.Error())
			}
		}
	}
	byFlag := map[string]setting{}
	for _, s := range ss {
		byFlag[s.flag] = s
	}
	fs.Visit(func(f *flag.Flag) {
		s, ok := byFlag[f.Name]
		if !ok {
			return
		}
		if err := s.set(values[f.Name].text); err != nil {
			errs = append(errs, "-"+f.Name+": "+err.Error())
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// help renders the options section of a daemon's help from its table.
func (ss settings) help() string {
	var b strings.Builder
	b.WriteString("Options (flag, environment variable, config file key; flags beat the\nenvironment, which beats the file):\n\n  -config=<file>\n      HCL config file.\n")
	for _, s := range ss {
		fmt.Fprintf(&b, "\n  -%s=<%s>", s.flag, s.kind)
		if s.env != "" {
			fmt.Fprintf(&b, "  $%s", s.env)
		}
		if s.file != "" {
			fmt.Fprintf(&b, "  %s", s.file)
		}
		fmt.Fprintf(&b, "\n      %s (default %s)\n", s.help, s.def)
	}
	return b.String()
}

func (k kind) String() string {
	switch k {
	case kindDuration:
		return "duration"
	case kindBool:
		return "bool"
	case kindList:
		return "a,b,..."
	case kindInt:
		return "n"
	}
	return "string"
}

// Setters for the common kinds.

func stringSetter(dst *string) func(string) error {
	return func(v string) error { *dst = v; return nil }
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

func boolSetter(dst *bool) func(string) error {
	return func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*dst = b
		return nil
	}
}

func intSetter(dst *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*dst = n
		return nil
	}
}

func listSetter(dst *[]string) func(string) error {
	return func(v string) error {
		var out []string
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		*dst = out
		return nil
	}
}

// layer is every daemon's config pipeline over the defaults already in
// its config: the -config file at path (decoded into file, then applied),
// then the environment, then the flags, then validate.
func layer(path string, file any, apply func() error, ss settings, fs *flag.FlagSet, values map[string]*flagValue, getenv func(string) string, validate func() error) error {
	if path != "" {
		if err := decodeFile(path, file); err != nil {
			return err
		}
		if err := apply(); err != nil {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := ss.load(fs, values, getenv); err != nil {
		return err
	}
	return validate()
}

// decodeFile decodes an HCL config file into file, reporting errors with
// file:line:column.
func decodeFile(path string, file any) error {
	if err := hclsimple.DecodeFile(path, nil, file); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

func assign[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
