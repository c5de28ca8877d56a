package autoscale

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Config holds the server-wide autoscaler settings, the counterparts of
// Knative's config-autoscaler keys that are not per pool.
type Config struct {
	// MaxScaleUpRate bounds one decision to ceil(rate × ready members):
	// Knative's max-scale-up-rate. It keeps a noisy tick from asking Nomad
	// for hundreds of members at once while still letting a pool at one
	// member grow fast.
	MaxScaleUpRate float64
	// MaxScaleDownRate bounds one decision to floor(ready members / rate):
	// Knative's max-scale-down-rate. Halving at most per tick keeps a
	// brief lull from draining most of a pool.
	MaxScaleDownRate float64
	// ScaleToZeroGrace is how long after a whole stable window without
	// traffic a pool still keeps a member before going to zero: Knative's
	// scale-to-zero-grace-period. It leaves gateways time to switch the
	// pool to holding requests before its last member drains.
	ScaleToZeroGrace time.Duration
	// TickInterval is how often the leader records an observation and
	// decides. Gaps in the data are measured against it: an observation
	// more than 1.5 ticks after the previous one means a tick was lost.
	TickInterval time.Duration
	// MaxScaleLimit is the server's max_scale_limit (pool.Limits), applied
	// after every other rule; 0 means no cap.
	MaxScaleLimit int
}

// Knative's defaults, except the tick: Tidepool's leader reads the
// gateways every second, Knative's autoscaler every two.
const (
	DefaultMaxScaleUpRate   = 1000
	DefaultMaxScaleDownRate = 2
	DefaultScaleToZeroGrace = 30 * time.Second
	DefaultTickInterval     = time.Second
)

// DefaultConfig returns Knative's defaults with a one-second tick.
func DefaultConfig() Config {
	return Config{
		MaxScaleUpRate:   DefaultMaxScaleUpRate,
		MaxScaleDownRate: DefaultMaxScaleDownRate,
		ScaleToZeroGrace: DefaultScaleToZeroGrace,
		TickInterval:     DefaultTickInterval,
	}
}

// ErrInvalidConfig is what Validate's errors wrap, so the server can tell a
// bad autoscaler {} block from other start-up failures.
var ErrInvalidConfig = errors.New("invalid autoscaler config")

// Validate applies Knative's rules (rates above 1, a positive grace) and
// bounds the tick: below 100 ms the gateways' one-second averages would be
// read many times over; above 10 s the panic window of a short stable window
// would hold a single observation.
func (c Config) Validate() error {
	var errs []error
	if !(c.MaxScaleUpRate > 1) || math.IsInf(c.MaxScaleUpRate, 0) {
		errs = append(errs, fmt.Errorf("max_scale_up_rate must be greater than 1, got %v", c.MaxScaleUpRate))
	}
	if !(c.MaxScaleDownRate > 1) || math.IsInf(c.MaxScaleDownRate, 0) {
		errs = append(errs, fmt.Errorf("max_scale_down_rate must be greater than 1, got %v", c.MaxScaleDownRate))
	}
	if c.ScaleToZeroGrace <= 0 || c.ScaleToZeroGrace > time.Hour {
		errs = append(errs, fmt.Errorf("scale_to_zero_grace_period must be from 1ns to 1h, got %s", c.ScaleToZeroGrace))
	}
	if c.TickInterval < 100*time.Millisecond || c.TickInterval > 10*time.Second {
		errs = append(errs, fmt.Errorf("tick_interval must be from 100ms to 10s, got %s", c.TickInterval))
	}
	if c.MaxScaleLimit < 0 {
		errs = append(errs, fmt.Errorf("max_scale_limit must not be negative, got %d", c.MaxScaleLimit))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
