package blocking

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNextIndex(t *testing.T) {
	for _, tt := range []struct{ index, next, want uint64 }{
		{0, 10, 10}, {10, 10, 10}, {10, 12, 12}, {10, 3, 0},
	} {
		if got := NextIndex(tt.index, tt.next); got != tt.want {
			t.Errorf("NextIndex(%d, %d) = %d, want %d", tt.index, tt.next, got, tt.want)
		}
	}
}

func TestBackoff_DoublesWithJitterUpToTheCap(t *testing.T) {
	lo, hi := time.Second, 8*time.Second
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 9: 8 * time.Second} {
		for range 50 {
			got := Backoff(n, lo, hi)
			if got > want || got < want-want/5 {
				t.Fatalf("Backoff(%d) = %s, want within 20%% under %s", n, got, want)
			}
		}
	}
}

// TestLoop_Run drives the loop with a scripted query: it must wait on the
// returned index, start over when the index goes backwards, back off
// through failures and report a failing run once.
func TestLoop_Run(t *testing.T) {
	type step struct {
		next uint64
		err  error
	}
	script := []step{{5, nil}, {7, nil}, {0, errors.New("down")}, {0, errors.New("down")}, {3, nil}, {4, nil}}
	var waited []uint64
	var pauses []time.Duration
	failing, recovered := 0, 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := Loop{
		MinBackoff: time.Second, MaxBackoff: 4 * time.Second,
		Failing:   func(error) { failing++ },
		Recovered: func() { recovered++ },
		sleep:     func(_ context.Context, d time.Duration) { pauses = append(pauses, d) },
	}
	l.Run(ctx, func(_ context.Context, index uint64, wait time.Duration) (uint64, error) {
		if wait != 5*time.Minute {
			t.Fatalf("wait %s, want the default 5m", wait)
		}
		waited = append(waited, index)
		if len(waited) > len(script) {
			cancel()
			return index, nil
		}
		s := script[len(waited)-1]
		return s.next, s.err
	})
	want := []uint64{0, 5, 7, 7, 7, 0, 4}
	if len(waited) != len(want) {
		t.Fatalf("queried at %v, want %v", waited, want)
	}
	for i := range want {
		if waited[i] != want[i] {
			t.Fatalf("queried at %v, want %v", waited, want)
		}
	}
	if failing != 1 || recovered != 1 {
		t.Fatalf("failing reported %d times, recovered %d; want 1 and 1", failing, recovered)
	}
	if len(pauses) != 2 || pauses[0] > time.Second || pauses[1] <= time.Second {
		t.Fatalf("pauses %v: want a backoff that grows", pauses)
	}
}
