package pool

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// State is a pool's lifecycle state as users see it.
type State string

// Pool states (SPEC.md §3).
const (
	StateActive   State = "active"
	StateStopped  State = "stopped"
	StateDeleting State = "deleting"
)

// Pool is the stored record of a pool: the user's spec plus what Tidepool
// keeps about it.
type Pool struct {
	ID    string `json:"pool_id"`
	Owner string `json:"owner"`
	Spec  Spec   `json:"spec"`
	// Generation counts every accepted write of the record (If-Match).
	Generation int64 `json:"generation"`
	// TemplateGeneration counts changes to what members run (template,
	// ports, methods); members record the one they were created from, and
	// a new one rolls out.
	TemplateGeneration int64 `json:"template_generation"`
	// Deleting is set by delete; the pool is gone once its job is.
	Deleting  bool      `json:"deleting,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	// ModifyIndex is the Consul KV index the record was read at; writes
	// are check-and-set against it. Not stored.
	ModifyIndex uint64 `json:"-"`
}

// State derives the pool's user-facing state.
func (p *Pool) State() State {
	switch {
	case p.Deleting:
		return StateDeleting
	case p.Spec.Active:
		return StateActive
	default:
		return StateStopped
	}
}

// Target is how many members the pool should run. Autoscaled pools start
// at their initial scale until the autoscaler decides.
func (p *Pool) Target() int {
	if a := p.Spec.Autoscaling; a != nil {
		return a.InitialScale
	}
	return p.Spec.DesiredCount
}

// JobID is the Nomad job that runs the pool's members. Owner and name keep
// it readable in the Nomad UI; the pool id keeps it unique when a deleted
// pool's name is reused before its job is gone.
func (p *Pool) JobID() string {
	return fmt.Sprintf("%s--%s--%s", p.Owner, p.Spec.Name, p.ID)
}

// IDFromJobID returns the pool id a Tidepool job id ends with.
func IDFromJobID(jobID string) (string, bool) {
	i := strings.LastIndex(jobID, "--")
	if i < 0 || !strings.HasPrefix(jobID[i+2:], "p-") {
		return "", false
	}
	return jobID[i+2:], true
}

// MembersChanged reports whether going from old to new changes what members
// run, so the template generation must advance.
func MembersChanged(old, new *Spec) bool {
	if old.Template != new.Template || len(old.Ports) != len(new.Ports) {
		return true
	}
	for i := range old.Ports {
		if old.Ports[i] != new.Ports[i] {
			return true
		}
	}
	return false
}

// NewMemberID returns a random member id such as "m-7f3a9c0d12e4b856":
// 64 random bits, so ids do not collide across the cluster's pools in
// practice. Nothing relies on that alone: members are always matched by
// pool and id together.
func NewMemberID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "m-" + hex.EncodeToString(b)
}

// NewID returns a random pool id such as "p-0a1b2c3d".
func NewID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "p-" + hex.EncodeToString(b)
}
