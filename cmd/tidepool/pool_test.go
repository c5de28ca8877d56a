package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

func TestFormatScaler_States(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	last := now.Add(-4 * time.Second)
	tests := []struct {
		name string
		sc   api.ScalerInfo
		want []string
	}{
		{name: "never run", sc: api.ScalerInfo{Script: "s.star", Interval: pool.Duration(15 * time.Second)}, want: []string{"Scaler: s.star every 15s, not run yet"}},
		{name: "ok with output", sc: api.ScalerInfo{Script: "s.star", Interval: pool.Duration(15 * time.Second), LastRun: &last, Duration: pool.Duration(12 * time.Millisecond), Outcome: "ok", Runs: 3, Output: []string{"grew to 2"}},
			want: []string{"Scaler: s.star every 15s, last run 4s ago (12ms): ok, 3 runs", "  output:\n    grew to 2"}},
		{name: "step limit", sc: api.ScalerInfo{Script: "s.star", Interval: pool.Duration(time.Minute), LastRun: &last, Duration: pool.Duration(time.Second), Outcome: "step_limit", Runs: 1, Error: "s.star:2:1: step limit of 1000000 exceeded", ErrorLine: 2},
			want: []string{": step_limit, 1 runs", "  error: s.star:2:1: step limit of 1000000 exceeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := formatScaler(&tt.sc, now)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q does not contain %q", got, w)
				}
			}
		})
	}
}

func TestSpecDiff_ScalerSource(t *testing.T) {
	old := pool.Spec{Name: "web", Scaler: &pool.Scaler{Script: "s.star", Source: "print(1)\n", Interval: pool.Duration(15 * time.Second)}}
	changed := old
	changed.Scaler = &pool.Scaler{Script: "s.star", Source: "print(2)\n", Interval: pool.Duration(15 * time.Second)}
	if d := specDiff(&old, &old, 1); len(d) != 0 {
		t.Fatalf("no change shows %q", d)
	}
	if d := specDiff(&old, &changed, 1); len(d) != 1 || d[0] != "~ scaler.source: changed" {
		t.Fatalf("diff %q", d)
	}
	added := specDiff(&pool.Spec{Name: "web"}, &old, 1)
	if strings.Join(added, "\n") != "+ scaler.interval: \"15s\"\n+ scaler.script: \"s.star\"" {
		t.Fatalf("adding a scaler shows %q", added)
	}
}
