package api

import (
	"time"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// PoolInfo is a pool as the API shows it (SPEC.md §3).
type PoolInfo struct {
	PoolID       string     `json:"pool_id"`
	Name         string     `json:"name"`
	Owner        string     `json:"owner"`
	DesiredCount int        `json:"desired_count"`
	Active       bool       `json:"active"`
	State        pool.State `json:"state"`
	AliveMembers int        `json:"alive_members"`
	Generation   int64      `json:"generation"`
	// TemplateGeneration is the generation new members are stamped from.
	TemplateGeneration int64            `json:"template_generation"`
	NomadJobID         string           `json:"nomad_job_id"`
	Utilization        Utilization      `json:"utilization"`
	Autoscaling        *AutoscalingInfo `json:"autoscaling,omitempty"`
	Scaler             *ScalerInfo      `json:"scaler,omitempty"`
	Members            []MemberInfo     `json:"members"`
	Spec               pool.Spec        `json:"spec"`
	CreatedAt          time.Time        `json:"created_at"`
	UpdatedAt          time.Time        `json:"updated_at"`
}

// Utilization is load across the pool's members, from the gateways'
// reports and Nomad's allocation stats.
type Utilization struct {
	CombinedRPS      float64 `json:"combined_rps"`
	HTTPRPS          float64 `json:"http_rps"`
	TCPRPS           float64 `json:"tcp_rps"`
	MethodRPS        float64 `json:"method_rps"`
	HTTPInflight     float64 `json:"http_inflight"`
	MethodInflight   float64 `json:"method_inflight"`
	AvgCPUPercent    float64 `json:"avg_cpu_percent"`
	AvgMemoryPercent float64 `json:"avg_memory_percent"`
}

// AutoscalingInfo is the autoscaling spec plus the autoscaler's view: its
// last decision and the demand it was made from.
type AutoscalingInfo struct {
	pool.Autoscaling
	Desired  int                `json:"desired"`
	Panic    bool               `json:"panic"`
	Observed pool.ScaleObserved `json:"observed"`
	// ColdStart is how long the last scale from zero took, from the first
	// held request to a routable member.
	ColdStart pool.Duration `json:"cold_start"`
	// DecidedAt is when the decision was last written; zero before the
	// autoscaler's first.
	DecidedAt time.Time `json:"decided_at,omitzero"`
}

// ScalerInfo is a pool's scheduled scaler: its script and interval, and
// how its last run went (from the leader's status record).
type ScalerInfo struct {
	Script   string        `json:"script"`
	Interval pool.Duration `json:"interval"`
	// LastRun is when the last run started; nil before the first.
	LastRun  *time.Time    `json:"last_run"`
	Duration pool.Duration `json:"duration"`
	// Outcome is "running", "ok", "error", "step_limit" or "timeout";
	// empty before the first run.
	Outcome string `json:"outcome"`
	// Error is the last run's error as file:line:col: message, and
	// ErrorLine its line (0 when it has none).
	Error     string `json:"error,omitempty"`
	ErrorLine int    `json:"error_line,omitempty"`
	// Output is the last lines the last run printed.
	Output []string `json:"output"`
	// Runs counts runs since the pool was created.
	Runs int64 `json:"runs"`
}

// MemberInfo is one member as the API shows it.
type MemberInfo struct {
	ID             string           `json:"id"`
	State          pool.MemberState `json:"state"`
	Healthy        bool             `json:"healthy"`
	Address        string           `json:"address"`
	AllocID        string           `json:"alloc_id"`
	Generation     int64            `json:"generation"`
	Since          time.Time        `json:"since"`
	CombinedRPS    float64          `json:"combined_rps"`
	HTTPRPS        float64          `json:"http_rps"`
	TCPRPS         float64          `json:"tcp_rps"`
	MethodRPS      float64          `json:"method_rps"`
	MethodInflight float64          `json:"method_inflight"`
	CPUPercent     float64          `json:"cpu_percent"`
	MemoryPercent  float64          `json:"memory_percent"`
}

// PoolList is the body of GET /api/pools.
type PoolList struct {
	Count int        `json:"count"`
	Pools []PoolInfo `json:"pools"`
}

// SizeRequest is the body of POST /api/pools/{id}/size.
type SizeRequest struct {
	DesiredCount *int `json:"desired_count"`
}

// TokenRequest is the body of POST /api/tokens.
type TokenRequest struct {
	User        string   `json:"user"`
	Permissions []string `json:"permissions"`
	// TTL, when set ("720h"), makes the token expire that long after it
	// is created.
	TTL string `json:"ttl,omitempty"`
}

// TokenList is the body of GET /api/tokens.
type TokenList struct {
	Count  int         `json:"count"`
	Tokens []TokenInfo `json:"tokens"`
}

// TokenInfo describes a token; Token (the secret) is set only when the
// token is created.
type TokenInfo struct {
	Token       string    `json:"token,omitempty"`
	AccessorID  string    `json:"accessor_id"`
	User        string    `json:"user"`
	Permissions []string  `json:"permissions"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
}

// Error is the body of every error response.
type Error struct {
	Error  string            `json:"error"`
	Fields []pool.FieldError `json:"fields,omitempty"`
}

// Permissions a token may carry.
const (
	PermUsePools = pool.PermUsePools
	PermAdmin    = pool.PermAdmin
)
