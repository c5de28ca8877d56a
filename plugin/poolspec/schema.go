package poolspec

// The HCL shape of a spec file. Optional values are pointers, so defaults
// apply only to what the file leaves out; these structs never leave the
// package.

type fileBlock struct {
	Pool poolBlock `hcl:"pool,block"`
}

type poolBlock struct {
	Name         string            `hcl:"name,label"`
	Template     string            `hcl:"template"`
	DesiredCount *int              `hcl:"desired_count,optional"`
	Active       *bool             `hcl:"active,optional"`
	Ports        []portBlock       `hcl:"port,block"`
	Methods      *methodsBlock     `hcl:"methods,block"`
	Drain        *drainBlock       `hcl:"drain,block"`
	Autoscaling  *AutoscalingBlock `hcl:"autoscaling,block"`
	Scaler       *scalerBlock      `hcl:"scaler,block"`
}

type portBlock struct {
	Label    string  `hcl:"label,label"`
	Number   int     `hcl:"number"`
	Protocol *string `hcl:"protocol,optional"`
	Public   *bool   `hcl:"public,optional"`
}

type methodsBlock struct {
	Names []string `hcl:"names"`
	Port  string   `hcl:"port"`
	Path  *string  `hcl:"path,optional"`
}

type drainBlock struct {
	Timeout     *string `hcl:"timeout,optional"`
	GracePeriod *string `hcl:"grace_period,optional"`
}

// AutoscalingBlock is the HCL shape of an autoscaling block, in pool specs
// and in the server's autoscaler {} defaults.
type AutoscalingBlock struct {
	Metric                   *string  `hcl:"metric,optional"`
	Target                   *float64 `hcl:"target,optional"`
	TargetUtilization        *float64 `hcl:"target_utilization,optional"`
	ContainerConcurrency     *int     `hcl:"container_concurrency,optional"`
	MinScale                 *int     `hcl:"min_scale,optional"`
	MaxScale                 *int     `hcl:"max_scale,optional"`
	InitialScale             *int     `hcl:"initial_scale,optional"`
	ActivationScale          *int     `hcl:"activation_scale,optional"`
	ScaleDownDelay           *string  `hcl:"scale_down_delay,optional"`
	StableWindow             *string  `hcl:"stable_window,optional"`
	PanicWindowPercentage    *float64 `hcl:"panic_window_percentage,optional"`
	PanicThresholdPercentage *float64 `hcl:"panic_threshold_percentage,optional"`
	QueueTimeout             *string  `hcl:"queue_timeout,optional"`
}

type scalerBlock struct {
	Script   string  `hcl:"script"`
	Interval *string `hcl:"interval,optional"`
}
