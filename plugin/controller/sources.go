package controller

import (
	"context"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/internal/blocking"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// EventStream is Nomad's event API; *api.EventStream satisfies it.
type EventStream interface {
	Stream(ctx context.Context, topics map[api.Topic][]string, index uint64, q *api.QueryOptions) (<-chan *api.Events, error)
}

// HealthState is Consul's check listing; *consulapi.Health satisfies it.
type HealthState interface {
	State(state string, q *consulapi.QueryOptions) (consulapi.HealthChecks, *consulapi.QueryMeta, error)
}

var (
	_ EventStream = (*api.EventStream)(nil)
	_ HealthState = (*consulapi.Health)(nil)
)

// NomadEvents queues the pool of every job and allocation event, so
// allocation failures and placements are acted on at once.
func NomadEvents(stream EventStream, retry time.Duration, log hclog.Logger) Source {
	log = log.Named("nomad_events")
	return func(ctx context.Context, enqueue func(string)) {
		topics := map[api.Topic][]string{api.TopicJob: {"*"}, api.TopicAllocation: {"*"}}
		for ctx.Err() == nil {
			ch, err := stream.Stream(ctx, topics, 0, (&api.QueryOptions{}).WithContext(ctx))
			if err != nil {
				log.Warn("subscribe", "error", err)
				blocking.Sleep(ctx, retry)
				continue
			}
			for events := range ch {
				if events.Err != nil {
					if ctx.Err() == nil {
						log.Warn("stream", "error", events.Err)
					}
					break
				}
				for _, e := range events.Events {
					for _, key := range append([]string{e.Key}, e.FilterKeys...) {
						if id, ok := pool.IDFromJobID(key); ok {
							enqueue(id)
						}
					}
				}
			}
			blocking.Sleep(ctx, retry)
		}
	}
}

// ConsulHealth queues the pool of every member check whose status changes,
// with a blocking query over the checks of Tidepool services.
func ConsulHealth(h HealthState, retry time.Duration, log hclog.Logger) Source {
	log = log.Named("consul_health")
	return func(ctx context.Context, enqueue func(string)) {
		type seen struct{ status, pool string }
		last := map[string]seen{} // node/check id → what it was
		blocking.Loop{
			MinBackoff: retry,
			Failing:    func(err error) { log.Warn("watch", "error", err) },
			Recovered:  func() { log.Info("watching again") },
		}.Run(ctx, func(ctx context.Context, index uint64, wait time.Duration) (uint64, error) {
			q := (&consulapi.QueryOptions{
				WaitIndex: index, WaitTime: wait,
				Filter: `"` + pool.ServiceTag + `" in ServiceTags`,
			}).WithContext(ctx)
			checks, meta, err := h.State(consulapi.HealthAny, q)
			if err != nil {
				return 0, err
			}
			now := make(map[string]seen, len(checks))
			for _, c := range checks {
				key := c.Node + "/" + c.CheckID
				now[key] = seen{status: c.Status, pool: poolOf(c.ServiceTags)}
				if last[key].status != c.Status && now[key].pool != "" {
					enqueue(now[key].pool)
				}
			}
			for key, s := range last {
				if _, ok := now[key]; !ok && s.pool != "" {
					enqueue(s.pool) // deregistered
				}
			}
			last = now
			return meta.LastIndex, nil
		})
	}
}

func poolOf(tags []string) string {
	for _, t := range tags {
		if id, ok := pool.ParseSelectorTag(t); ok {
			return id
		}
	}
	return ""
}
