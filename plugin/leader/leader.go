// Package leader elects one controller with a Consul session lock
// (DESIGN.md decision 4). Leadership is a context: the function run while
// leading gets a context that is cancelled the moment the lock is lost, so
// no work continues on a deposed leader.
package leader

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// Config says which lock to contend for and how.
type Config struct {
	// Key is the KV key of the lock.
	Key string
	// Name identifies this node in the lock's value and session name.
	Name string
	// SessionTTL bounds how long a dead leader holds the lock (Consul's
	// minimum is 10s; it may take up to twice the TTL to expire).
	SessionTTL time.Duration
	// LockDelay is how long Consul keeps the lock from others after a
	// leader's session expires, so a leader that merely stalled can notice
	// before another starts. A clean release skips it.
	LockDelay time.Duration
	// RetryInterval is the pause after an error talking to Consul.
	RetryInterval time.Duration
}

// Elector contends for leadership and runs work while it leads.
type Elector struct {
	client *api.Client
	cfg    Config
	log    hclog.Logger
	leader atomic.Bool
}

// New returns an elector; zero durations in cfg get defaults (TTL 15s,
// lock-delay 15s, retry 2s).
func New(client *api.Client, cfg Config, log hclog.Logger) *Elector {
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 15 * time.Second
	}
	if cfg.LockDelay == 0 {
		cfg.LockDelay = 15 * time.Second
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 2 * time.Second
	}
	return &Elector{client: client, cfg: cfg, log: log.Named("leader")}
}

// IsLeader reports whether this node holds the lock right now.
func (e *Elector) IsLeader() bool { return e.leader.Load() }

// Run contends for the lock until ctx is done. Each time it is acquired, fn
// runs with a context cancelled when the lock is lost or ctx is done; Run
// waits for fn to return, then releases the lock so a standby takes over at
// once. An error from fn gives up leadership and contends again.
func (e *Elector) Run(ctx context.Context, fn func(ctx context.Context) error) error {
	for ctx.Err() == nil {
		if err := e.term(ctx, fn); err != nil && ctx.Err() == nil {
			e.log.Error("leadership term ended", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(e.cfg.RetryInterval):
			}
		}
	}
	return nil
}

// term acquires the lock once, leads, and releases.
func (e *Elector) term(ctx context.Context, fn func(ctx context.Context) error) error {
	lock, err := e.client.LockOpts(&api.LockOptions{
		Key:   e.cfg.Key,
		Value: []byte(e.cfg.Name),
		SessionOpts: &api.SessionEntry{
			Name:      "tidepool-leader-" + e.cfg.Name,
			TTL:       e.cfg.SessionTTL.String(),
			LockDelay: e.cfg.LockDelay,
			Behavior:  api.SessionBehaviorRelease,
		},
		MonitorRetries:   3,
		MonitorRetryTime: time.Second,
	})
	if err != nil {
		return fmt.Errorf("prepare lock: %w", err)
	}
	lost, err := lock.Lock(ctx.Done())
	if err != nil {
		return fmt.Errorf("acquire lock: %w", err)
	}
	if lost == nil {
		return nil // ctx done while waiting
	}

	// The session that holds the lock fences every write of this term.
	pair, _, err := e.client.KV().Get(e.cfg.Key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil || pair == nil || pair.Session == "" {
		_ = lock.Unlock()
		return fmt.Errorf("read the lock's session: %w", errors.Join(err, errors.New("lock not held")))
	}
	e.leader.Store(true)
	e.log.Info("acquired leadership", "key", e.cfg.Key, "session", pair.Session)
	leadCtx, cancel := context.WithCancel(WithFence(ctx, Fence{Key: e.cfg.Key, Session: pair.Session}))
	go func() {
		select {
		case <-lost:
			e.leader.Store(false)
			e.log.Warn("lost leadership")
		case <-leadCtx.Done():
		}
		cancel()
	}()
	runErr := fn(leadCtx)
	cancel()
	e.leader.Store(false)

	if err := lock.Unlock(); err != nil && !errors.Is(err, api.ErrLockNotHeld) {
		e.log.Warn("release lock", "error", err)
	} else {
		e.log.Info("released leadership")
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}

// Fence names the leader lock and the session holding it. Writes made
// while leading carry it — Consul KV transactions check that the session
// still holds the lock (check-session) — so a leader that was paused past
// its session (SIGSTOP, a long GC, a partition) cannot write anything once
// a standby has taken over, even before it notices.
type Fence struct{ Key, Session string }

type fenceKey struct{}

// WithFence returns ctx carrying f: leadership travels with the context.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceOf returns the fence ctx carries, if it was made while leading.
func FenceOf(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}
