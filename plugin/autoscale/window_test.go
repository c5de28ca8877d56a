package autoscale

import (
	"math"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

func TestWindow_AverageOverTrailingSpan(t *testing.T) {
	w := NewWindow(time.Second)
	for i := 1; i <= 10; i++ {
		w.Record(t0.Add(sec(float64(i))), float64(i), float64(10*i))
	}
	now := t0.Add(10 * time.Second)
	tests := []struct {
		name   string
		span   time.Duration
		metric string
		want   float64
		wantN  int
	}{
		{"last three, concurrency", 3 * time.Second, pool.MetricConcurrency, 9, 3},
		{"last three, rps", 3 * time.Second, pool.MetricRPS, 90, 3},
		{"more than recorded", time.Minute, pool.MetricConcurrency, 5.5, 10},
		{"shorter than a tick", time.Millisecond, pool.MetricConcurrency, 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := w.Average(now, tt.span, tt.metric)
			if math.Abs(got-tt.want) > 1e-9 || n != tt.wantN {
				t.Errorf("Average(%s) = %v over %d, want %v over %d", tt.span, got, n, tt.want, tt.wantN)
			}
		})
	}
}

func TestWindow_MissingTicksAreNotZero(t *testing.T) {
	w := NewWindow(time.Second)
	w.Record(t0.Add(1*time.Second), 10, 0)
	w.Miss(t0.Add(2 * time.Second))
	w.Record(t0.Add(3*time.Second), math.NaN(), 0) // counts as missing
	w.Record(t0.Add(4*time.Second), 20, 0)
	got, n := w.Average(t0.Add(4*time.Second), 10*time.Second, pool.MetricConcurrency)
	if got != 15 || n != 2 {
		t.Errorf("Average = %v over %d, want 15 over 2 (missing ticks left out, not counted as 0)", got, n)
	}
}

func TestWindow_Complete(t *testing.T) {
	const span = 10 * time.Second
	tests := []struct {
		name string
		// ticks[i] is the observation at t0+(i+1)s: 'r' recorded, 'm'
		// missing, '-' never reported, 'j' recorded 400 ms late.
		ticks string
		now   time.Duration
		want  bool
	}{
		{"whole span", "rrrrrrrrrrrr", 12 * time.Second, true},
		{"exactly one span of data", "rrrrrrrrrr", 10 * time.Second, true},
		{"one tick short (new leader)", "rrrrrrrrr", 9 * time.Second, false},
		{"missing tick inside", "rrrrrmrrrrrr", 12 * time.Second, false},
		{"missing tick expired", "rmrrrrrrrrrr", 12 * time.Second, true},
		{"unreported tick inside", "rrrrr-rrrrrr", 12 * time.Second, false},
		{"jittered ticks", "rjrjrjrjrjrj", 12 * time.Second, true},
		{"stale: nothing for two ticks", "rrrrrrrrrrrr", 14 * time.Second, false},
		{"between ticks", "rrrrrrrrrrrr", 12*time.Second + 500*time.Millisecond, true},
		{"empty", "", 12 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWindow(time.Second)
			for i, c := range tt.ticks {
				at := t0.Add(sec(float64(i + 1)))
				switch c {
				case 'r':
					w.Record(at, 1, 1)
				case 'j':
					w.Record(at.Add(400*time.Millisecond), 1, 1)
				case 'm':
					w.Miss(at)
				}
			}
			if got := w.Complete(t0.Add(tt.now), span); got != tt.want {
				t.Errorf("Complete = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWindow_OutOfOrderAndTraffic(t *testing.T) {
	w := NewWindow(time.Second)
	w.Record(t0.Add(5*time.Second), 0, 0)
	w.Record(t0.Add(3*time.Second), 50, 0) // back in time: dropped
	if got, n := w.Average(t0.Add(5*time.Second), time.Minute, pool.MetricConcurrency); got != 0 || n != 1 {
		t.Errorf("Average = %v over %d, want 0 over 1", got, n)
	}
	if !w.LastTraffic().IsZero() {
		t.Errorf("LastTraffic = %v, want zero (the dropped record does not count)", w.LastTraffic())
	}
	w.Record(t0.Add(6*time.Second), 0, 0.5)
	if got := w.LastTraffic(); !got.Equal(t0.Add(6 * time.Second)) {
		t.Errorf("LastTraffic = %v, want t0+6s (rps alone is traffic)", got)
	}
	w.Record(t0.Add(7*time.Second), -3, 0)
	if got, _ := w.Average(t0.Add(7*time.Second), time.Second, pool.MetricConcurrency); got != 0 {
		t.Errorf("negative concurrency averaged to %v, want 0", got)
	}
}

func TestWindow_PruneKeepsMemoryBounded(t *testing.T) {
	d := NewDecider(DefaultConfig())
	spec := knSpec(10)
	now := t0
	for range 10_000 {
		now = now.Add(time.Second)
		d.Record(now, 1, 1)
		d.Decide(now, Input{Spec: spec, Ready: 1, Current: 1})
	}
	// stable window 60 s + grace 30 s + two ticks of slack.
	if n := d.window.samples.len(); n > 92 {
		t.Errorf("window keeps %d observations, want at most 92", n)
	}
}

func TestMaxWindow_SlidingMaximum(t *testing.T) {
	var m maxWindow
	const span = 5 * time.Second
	steps := []struct {
		at   int
		v    int
		want int
	}{
		{0, 4, 4}, {1, 2, 4}, {2, 3, 4}, {4, 1, 4}, {5, 1, 3}, {6, 0, 3}, {7, 0, 1}, {9, 0, 1}, {10, 0, 0}, {11, 7, 7},
	}
	for _, s := range steps {
		if got := m.record(t0.Add(sec(float64(s.at))), s.v, span); got != s.want {
			t.Errorf("at %ds record(%d) = %d, want %d", s.at, s.v, got, s.want)
		}
	}
}

// Jitter in the leader's loop (a scrape that takes longer one second than
// the next) must not read as missing data, or no pool would ever scale
// down; a lost tick must.
func TestWindow_JitterIsNotAGap(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const span = 10 * time.Second
		w := NewWindow(time.Second)
		lose := rapid.IntRange(-1, 39).Draw(t, "lose") // -1: lose none
		for i := range 40 {
			at := t0.Add(sec(float64(i)) + time.Duration(rapid.IntRange(0, 240).Draw(t, "jitterMs"))*time.Millisecond)
			if i != lose {
				w.Record(at, 1, 1)
			}
			complete := w.Complete(at, span)
			lostInWindow := lose >= 0 && i-lose < 10 && i >= lose
			switch {
			case i >= 11 && !lostInWindow && !complete:
				t.Fatalf("tick %d: incomplete with every tick recorded", i)
			case lostInWindow && i > lose && complete:
				t.Fatalf("tick %d: complete although tick %d was lost", i, lose)
			}
		}
	})
}
