package pool

import "time"

// Spec is what a user declares about a pool: the JSON body of the pools API
// and the decoded form of an HCL spec file (SPEC.md §2).
type Spec struct {
	Name string `json:"name"`
	// Template is a Nomad jobspec (HCL) with exactly one task group.
	Template     string `json:"template"`
	DesiredCount int    `json:"desired_count"`
	Active       bool   `json:"active"`
	Ports        []Port `json:"ports"`
	// Methods, when set, are the JSON-RPC methods the pool serves.
	Methods *Methods `json:"methods,omitempty"`
	Drain   Drain    `json:"drain"`
	// Autoscaling, when set, makes the autoscaler own the member count.
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`
	// Scaler, when set, is a Starlark script the leader runs on schedule.
	Scaler *Scaler `json:"scaler,omitempty"`
}

// Protocols a port may speak.
const (
	ProtocolHTTP = "http"
	ProtocolTCP  = "tcp"
)

// Port maps a port label of the template's network block to the number that
// appears in gateway host names.
type Port struct {
	Label    string `json:"label"`
	Number   int    `json:"number"`
	Protocol string `json:"protocol"`
	// Public ports are reachable through the gateway without a token.
	Public bool `json:"public"`
}

// Methods declares the JSON-RPC 2.0 methods a pool serves, and where.
type Methods struct {
	Names []string `json:"names"`
	Port  string   `json:"port"`
	Path  string   `json:"path"`
}

// Drain bounds how long scale-down waits: for in-flight work on a draining
// member, then before a stopped member is deleted.
type Drain struct {
	Timeout     Duration `json:"timeout"`
	GracePeriod Duration `json:"grace_period"`
}

// Metrics the autoscaler can target.
const (
	MetricConcurrency = "concurrency"
	MetricRPS         = "rps"
)

// Autoscaling holds Knative-style autoscaling settings (KPA semantics).
type Autoscaling struct {
	Metric                   string   `json:"metric"`
	Target                   float64  `json:"target"`
	TargetUtilization        float64  `json:"target_utilization"`
	ContainerConcurrency     int      `json:"container_concurrency"`
	MinScale                 int      `json:"min_scale"`
	MaxScale                 int      `json:"max_scale"`
	InitialScale             int      `json:"initial_scale"`
	ActivationScale          int      `json:"activation_scale"`
	ScaleDownDelay           Duration `json:"scale_down_delay"`
	StableWindow             Duration `json:"stable_window"`
	PanicWindowPercentage    float64  `json:"panic_window_percentage"`
	PanicThresholdPercentage float64  `json:"panic_threshold_percentage"`
	QueueTimeout             Duration `json:"queue_timeout"`
}

// Scaler runs a Starlark scaling script on a schedule (SPEC.md §7).
type Scaler struct {
	// Script names the script, as the spec file does ("scale.star"); it
	// is the file name in the script's error positions.
	Script string `json:"script"`
	// Source is the script's text: `pool apply` reads the file relative
	// to the spec and sends it.
	Source   string   `json:"source"`
	Interval Duration `json:"interval"`
}

// DefaultScalerInterval is how often a scaler runs when its spec omits
// interval.
const DefaultScalerInterval = 15 * time.Second

// Default drain settings (SPEC.md §2).
const (
	DefaultDrainTimeout     = 15 * time.Second
	DefaultDrainGracePeriod = 15 * time.Second
)

// DefaultAutoscaling returns Knative's config-autoscaler defaults, which the
// server's autoscaler {} block may override.
func DefaultAutoscaling() Autoscaling {
	return Autoscaling{
		Metric:                   MetricConcurrency,
		Target:                   100,
		TargetUtilization:        70,
		ContainerConcurrency:     0,
		MinScale:                 0,
		MaxScale:                 0,
		InitialScale:             1,
		ActivationScale:          1,
		ScaleDownDelay:           0,
		StableWindow:             Duration(60 * time.Second),
		PanicWindowPercentage:    10,
		PanicThresholdPercentage: 200,
		QueueTimeout:             Duration(60 * time.Second),
	}
}
