package autoscale

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		mut     func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"up rate 1", func(c *Config) { c.MaxScaleUpRate = 1 }, "max_scale_up_rate must be greater than 1"},
		{"down rate 0.5", func(c *Config) { c.MaxScaleDownRate = 0.5 }, "max_scale_down_rate must be greater than 1"},
		{"zero grace", func(c *Config) { c.ScaleToZeroGrace = 0 }, "scale_to_zero_grace_period"},
		{"tick too short", func(c *Config) { c.TickInterval = time.Millisecond }, "tick_interval"},
		{"tick too long", func(c *Config) { c.TickInterval = time.Minute }, "tick_interval"},
		{"negative limit", func(c *Config) { c.MaxScaleLimit = -1 }, "max_scale_limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mut(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, want it to wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestConfig_DefaultsAreKnatives(t *testing.T) {
	c := DefaultConfig()
	if c.MaxScaleUpRate != 1000 || c.MaxScaleDownRate != 2 || c.ScaleToZeroGrace != 30*time.Second || c.TickInterval != time.Second {
		t.Errorf("DefaultConfig() = %+v, want Knative's rates 1000 and 2, grace 30s, tick 1s", c)
	}
}
