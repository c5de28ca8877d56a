package routing

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/internal/blocking"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// Watcher keeps a table current with blocking queries on Consul: pool and
// member records in KV, the names of Tidepool services, and the health of
// each. Every change rebuilds the table and swaps it in. When Consul cannot
// be reached the last table keeps serving.
type Watcher struct {
	client *api.Client
	layout pool.KV
	stats  *Registry
	log    hclog.Logger
	retry  time.Duration

	table   atomic.Pointer[Table]
	builtAt atomic.Int64 // unix nanos of the last build
	errors  atomic.Int64 // watches currently failing

	mu           sync.Mutex
	pools        []*pool.Pool
	members      []*pool.Member
	membersIndex uint64
	gateways     int
	instances    map[string][]Instance // by service name
	watching     map[string]context.CancelFunc
	synced       map[string]bool
	// OnBuild, when set, is called after each table swap.
	OnBuild func(*Table)
}

// NewWatcher returns a watcher of the records under layout.
func NewWatcher(client *api.Client, layout pool.KV, stats *Registry, log hclog.Logger) *Watcher {
	w := &Watcher{
		client: client, layout: layout, stats: stats, log: log.Named("routing"), retry: time.Second,
		instances: map[string][]Instance{}, watching: map[string]context.CancelFunc{}, synced: map[string]bool{},
	}
	w.table.Store(Build(Snapshot{}, stats))
	return w
}

// Table is the current table; never nil.
func (w *Watcher) Table() *Table { return w.table.Load() }

// Synced reports whether pools, members and services have each been read.
func (w *Watcher) Synced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.synced["pools"] && w.synced["members"] && w.synced["services"]
}

// ConsulOK reports whether every watch reached Consul on its last try.
func (w *Watcher) ConsulOK() bool { return w.errors.Load() == 0 }

// Age is how long ago the table was last rebuilt.
func (w *Watcher) Age() time.Duration {
	return time.Since(time.Unix(0, w.builtAt.Load()))
}

// Run watches until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { w.watchKV(ctx, "pools", w.layout.PoolsPrefix(), w.setPools) })
	wg.Go(func() { w.watchKV(ctx, "members", w.layout.MembersPrefix(), w.setMembers) })
	wg.Go(func() { w.watchServices(ctx) })
	wg.Go(func() { w.watchGateways(ctx) })
	wg.Wait()
	w.mu.Lock()
	for _, cancel := range w.watching {
		cancel()
	}
	w.mu.Unlock()
}

// loop runs one blocking query after another, tracking Consul's health:
// while any watch fails, ConsulOK is false and the last table serves.
func (w *Watcher) loop(ctx context.Context, what string, query blocking.Query) {
	failing := false
	blocking.Loop{
		MinBackoff: w.retry,
		Failing: func(err error) {
			failing = true
			w.errors.Add(1)
			w.log.Warn("consul unreachable; serving the last routing table", "watch", what, "error", err)
		},
		Recovered: func() {
			failing = false
			w.errors.Add(-1)
			w.log.Info("consul reachable again", "watch", what)
		},
	}.Run(ctx, query)
	if failing {
		w.errors.Add(-1)
	}
}

func (w *Watcher) watchKV(ctx context.Context, what, prefix string, set func([]*api.KVPair, uint64)) {
	w.loop(ctx, what, func(ctx context.Context, index uint64, wait time.Duration) (uint64, error) {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait, AllowStale: true}).WithContext(ctx)
		pairs, meta, err := w.client.KV().List(prefix, q)
		if err != nil {
			return 0, err
		}
		if meta.LastIndex != index {
			set(pairs, meta.LastIndex)
			w.markSynced(what)
		}
		return meta.LastIndex, nil
	})
}

func (w *Watcher) setPools(pairs []*api.KVPair, _ uint64) {
	pools := make([]*pool.Pool, 0, len(pairs))
	for _, p := range pairs {
		var v pool.Pool
		if err := json.Unmarshal(p.Value, &v); err != nil {
			w.log.Warn("skipping unreadable pool record", "key", p.Key, "error", err)
			continue
		}
		pools = append(pools, &v)
	}
	w.mu.Lock()
	w.pools = pools
	w.mu.Unlock()
	w.rebuild()
}

func (w *Watcher) setMembers(pairs []*api.KVPair, index uint64) {
	members := make([]*pool.Member, 0, len(pairs))
	for _, p := range pairs {
		var v pool.Member
		if err := json.Unmarshal(p.Value, &v); err != nil {
			w.log.Warn("skipping unreadable member record", "key", p.Key, "error", err)
			continue
		}
		v.ModifyIndex = p.ModifyIndex
		members = append(members, &v)
	}
	w.mu.Lock()
	w.members, w.membersIndex = members, index
	w.mu.Unlock()
	w.rebuild()
}

// watchServices follows the names of services tagged tidepool and keeps a
// health watch per name.
func (w *Watcher) watchServices(ctx context.Context) {
	w.loop(ctx, "services", func(ctx context.Context, index uint64, wait time.Duration) (uint64, error) {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait, AllowStale: true,
			Filter: strconv.Quote(pool.ServiceTag) + " in ServiceTags"}).WithContext(ctx)
		names, meta, err := w.client.Catalog().Services(q)
		if err != nil {
			return 0, err
		}
		w.mu.Lock()
		for name := range names {
			if _, ok := w.watching[name]; !ok {
				sctx, cancel := context.WithCancel(ctx)
				w.watching[name] = cancel
				go w.watchHealth(sctx, name)
			}
		}
		removed := false
		for name, cancel := range w.watching {
			if _, ok := names[name]; !ok {
				cancel()
				delete(w.watching, name)
				delete(w.instances, name)
				removed = true
			}
		}
		w.mu.Unlock()
		w.markSynced("services")
		if removed {
			w.rebuild()
		}
		return meta.LastIndex, nil
	})
}

func (w *Watcher) watchHealth(ctx context.Context, name string) {
	w.loop(ctx, "health "+name, func(ctx context.Context, index uint64, wait time.Duration) (uint64, error) {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait, AllowStale: true}).WithContext(ctx)
		entries, meta, err := w.client.Health().Service(name, pool.ServiceTag, false, q)
		if err != nil {
			return 0, err
		}
		if meta.LastIndex == index {
			return index, nil
		}
		list := make([]Instance, 0, len(entries))
		for _, e := range entries {
			member := e.Service.Meta[pool.ServiceMetaMember]
			if member == "" {
				continue
			}
			addr := e.Service.Address
			if addr == "" && e.Node != nil {
				addr = e.Node.Address
			}
			list = append(list, Instance{
				PoolID: e.Service.Meta[pool.ServiceMetaPoolID],
				Member: member, Port: e.Service.Meta[pool.ServiceMetaPort],
				Address: net.JoinHostPort(addr, strconv.Itoa(e.Service.Port)),
				Passing: e.Checks.AggregatedStatus() == api.HealthPassing,
			})
		}
		w.mu.Lock()
		if ctx.Err() == nil {
			w.instances[name] = list
		}
		w.mu.Unlock()
		w.rebuild()
		return meta.LastIndex, nil
	})
}

// watchGateways counts the passing gateways, which share each member's
// container concurrency.
func (w *Watcher) watchGateways(ctx context.Context) {
	w.loop(ctx, "gateways", func(ctx context.Context, index uint64, wait time.Duration) (uint64, error) {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait, AllowStale: true}).WithContext(ctx)
		entries, meta, err := w.client.Health().Service(pool.GatewayService, "", true, q)
		if err != nil {
			return 0, err
		}
		w.mu.Lock()
		changed := w.gateways != len(entries)
		w.gateways = len(entries)
		w.mu.Unlock()
		if changed {
			w.rebuild()
		}
		return meta.LastIndex, nil
	})
}

func (w *Watcher) markSynced(what string) {
	w.mu.Lock()
	w.synced[what] = true
	w.mu.Unlock()
}

// Load replaces every part with s and rebuilds, as if the watches had read
// it; running watches overwrite their parts on their next change. It lets a
// gateway serve a fixed table without Consul (benchmarks, tests).
func (w *Watcher) Load(s Snapshot) {
	w.mu.Lock()
	w.pools, w.members, w.membersIndex, w.gateways = s.Pools, s.Members, s.MembersIndex, s.Gateways
	w.instances = map[string][]Instance{"": s.Instances}
	w.mu.Unlock()
	w.rebuild()
}

// rebuild makes a new table from the latest parts and swaps it in.
func (w *Watcher) rebuild() {
	w.mu.Lock()
	s := Snapshot{Pools: w.pools, Members: w.members, MembersIndex: w.membersIndex, Gateways: w.gateways}
	for _, list := range w.instances {
		s.Instances = append(s.Instances, list...)
	}
	t := Build(s, w.stats)
	w.table.Store(t)
	w.builtAt.Store(time.Now().UnixNano())
	onBuild := w.OnBuild
	w.mu.Unlock()
	t.Wake()
	if onBuild != nil {
		onBuild(t)
	}
}
