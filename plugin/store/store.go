// Package store keeps Tidepool's state in Consul KV, the source of truth
// (DESIGN.md decision 3): pools, the per-owner name index, members and
// tombstones. Every write is a check-and-set, and writes that belong together
// go in one Consul transaction, so concurrent writers never lose an update
// and a crash never leaves half a change.
//
// Layout under the prefix:
//
//	pools/<pool-id>                 pool.Pool (JSON)
//	names/<owner>/<name>            pool id
//	members/<pool-id>/<member-id>   pool.Member (JSON)
//	tombstones/<pool-id>            Tombstone (JSON)
//	scaler-runs/<pool-id>           pool.ScalerStatus (JSON)
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/plugin/leader"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// Errors callers branch on.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("modified concurrently")
	ErrNameTaken = errors.New("name already taken")
	// ErrPoolActive means the pool must be stopped before it is deleted (SPEC.md §4).
	ErrPoolActive = errors.New("stop the pool before deleting it")
	// ErrUnavailable means Consul could not be asked (unreachable, slow,
	// or without a leader): the caller should retry, and an API answers 503.
	ErrUnavailable = errors.New("consul is unavailable")
)

// unavailable marks an error of a Consul call as ErrUnavailable, unless
// Consul answered with a client error (ACL denied, say), which retrying
// does not cure.
func unavailable(err error) error {
	var status api.StatusError
	if errors.As(err, &status) && status.Code < 500 {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// maxTxnOps keeps each transaction under Consul's limit on operations.
const maxTxnOps = 64

// DefaultPrefix is the KV prefix used when none is configured.
const DefaultPrefix = "tidepool"

// Store reads and writes Tidepool records in Consul KV.
type Store struct {
	kv     *api.KV
	txn    *api.Txn
	layout pool.KV
	// Log, when set, hears of records that do not decode.
	Log hclog.Logger
	// skipped counts records that did not decode and were left out.
	skipped atomic.Uint64
}

// Skipped counts the records left out of listings because they do not
// decode: one bad record must not hide every other pool.
func (s *Store) Skipped() uint64 { return s.skipped.Load() }

func (s *Store) skip(key string, err error) {
	s.skipped.Add(1)
	if s.Log != nil {
		s.Log.Warn("skipping a record that does not decode", "key", key, "error", err)
	}
}

// New returns a store under prefix (DefaultPrefix when empty).
func New(client *api.Client, prefix string) *Store {
	return &Store{kv: client.KV(), txn: client.Txn(), layout: pool.NewKV(prefix)}
}

// Prefix is the KV prefix the store writes under.
func (s *Store) Prefix() string { return s.layout.Prefix }

// Layout is the key layout the store writes.
func (s *Store) Layout() pool.KV { return s.layout }

func (s *Store) poolKey(id string) string          { return s.layout.PoolKey(id) }
func (s *Store) nameKey(owner, name string) string { return s.layout.NameKey(owner, name) }
func (s *Store) membersPrefix(poolID string) string {
	return s.layout.PoolMembersPrefix(poolID)
}
func (s *Store) memberKey(m *pool.Member) string { return s.layout.MemberKey(m.PoolID, m.ID) }
func (s *Store) tombstoneKey(id string) string   { return s.layout.TombstoneKey(id) }

// PoolsPrefix is the key prefix of pool records, for watchers.
func (s *Store) PoolsPrefix() string { return s.layout.PoolsPrefix() }

// MembersPrefix is the key prefix of all member records, for watchers.
func (s *Store) MembersPrefix() string { return s.layout.MembersPrefix() }

// Tombstone records a deleted pool, so its name and Nomad job can be
// accounted for after the pool record is gone.
type Tombstone struct {
	PoolID    string    `json:"pool_id"`
	Owner     string    `json:"owner"`
	Name      string    `json:"name"`
	JobID     string    `json:"nomad_job_id"`
	DeletedAt time.Time `json:"deleted_at"`
}

// CreatePool stores a new pool and claims its name for the owner, both or
// neither. It sets p.Generation to 1 and p.ModifyIndex.
func (s *Store) CreatePool(ctx context.Context, p *pool.Pool) error {
	p.Generation = 1
	val, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode pool: %w", err)
	}
	ops := api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.nameKey(p.Owner, p.Spec.Name), Value: []byte(p.ID), Index: 0}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.poolKey(p.ID), Value: val, Index: 0}},
	}
	res, err := s.run(ctx, ops)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return fmt.Errorf("pool %q of %s: %w", p.Spec.Name, p.Owner, ErrNameTaken)
		}
		return err
	}
	p.ModifyIndex = res.Results[1].KV.ModifyIndex
	return nil
}

// GetPool reads one pool by id.
func (s *Store) GetPool(ctx context.Context, id string) (*pool.Pool, error) {
	pair, _, err := s.kv.Get(s.poolKey(id), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read pool %s: %w", id, err)
	}
	if pair == nil {
		return nil, fmt.Errorf("pool %s: %w", id, ErrNotFound)
	}
	return decodePool(pair)
}

// LookupPool reads an owner's pool by name.
func (s *Store) LookupPool(ctx context.Context, owner, name string) (*pool.Pool, error) {
	pair, _, err := s.kv.Get(s.nameKey(owner, name), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read name %s/%s: %w", owner, name, err)
	}
	if pair == nil {
		return nil, fmt.Errorf("pool %q of %s: %w", name, owner, ErrNotFound)
	}
	return s.GetPool(ctx, string(pair.Value))
}

// ListPools returns every pool and the KV index of the listing. With
// waitIndex > 0 it blocks until something under pools/ changes past that
// index (or Consul's wait time passes), as a watch.
func (s *Store) ListPools(ctx context.Context, waitIndex uint64, wait time.Duration) ([]*pool.Pool, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: wait}).WithContext(ctx)
	pairs, meta, err := s.kv.List(s.PoolsPrefix(), q)
	if err != nil {
		return nil, 0, fmt.Errorf("list pools: %w", err)
	}
	pools := make([]*pool.Pool, 0, len(pairs))
	for _, pair := range pairs {
		p, err := decodePool(pair)
		if err != nil {
			s.skip(pair.Key, err)
			continue
		}
		pools = append(pools, p)
	}
	return pools, meta.LastIndex, nil
}

// PoolIDs returns the id of every pool record, read consistently: also
// records ListPools skips because they do not decode. The garbage
// collector purges only jobs whose pool is missing here.
func (s *Store) PoolIDs(ctx context.Context) ([]string, error) {
	keys, _, err := s.kv.Keys(s.PoolsPrefix(), "", (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list pool ids: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, strings.TrimPrefix(k, s.PoolsPrefix()))
	}
	return ids, nil
}

// UpdatePool writes p if nobody wrote it since p was read (p.ModifyIndex),
// advancing its generation. On success p carries the new generation and
// index; on a lost race it returns ErrConflict and p is unchanged.
func (s *Store) UpdatePool(ctx context.Context, p *pool.Pool) error {
	next := *p
	next.Generation++
	val, err := json.Marshal(&next)
	if err != nil {
		return fmt.Errorf("encode pool: %w", err)
	}
	res, err := s.run(ctx, api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.poolKey(p.ID), Value: val, Index: p.ModifyIndex}}})
	if err != nil {
		return fmt.Errorf("update pool %s: %w", p.ID, err)
	}
	p.Generation = next.Generation
	p.ModifyIndex = res.Results[0].KV.ModifyIndex
	return nil
}

// maxRetries bounds ModifyPool's read-modify-write loop.
const maxRetries = 50

// ModifyPool applies fn to the current pool and writes the result,
// re-reading and retrying, after a short random pause, when another writer
// got there first. An error from fn aborts without writing.
func (s *Store) ModifyPool(ctx context.Context, id string, fn func(*pool.Pool) error) (*pool.Pool, error) {
	for attempt := range maxRetries {
		if attempt > 0 {
			// Jittered backoff spreads contending writers apart.
			pause := time.Duration(rand.Int64N(int64(min(attempt, 10)) * int64(5*time.Millisecond)))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(pause):
			}
		}
		p, err := s.GetPool(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(p); err != nil {
			return nil, err
		}
		err = s.UpdatePool(ctx, p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, ErrConflict) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("update pool %s: gave up after %d concurrent modifications: %w", id, maxRetries, ErrConflict)
}

// MarkDeleting flags the pool deleting and writes its tombstone, in one
// transaction checked against p.ModifyIndex.
func (s *Store) MarkDeleting(ctx context.Context, p *pool.Pool, now time.Time) error {
	if p.Spec.Active {
		return fmt.Errorf("pool %q: %w", p.Spec.Name, ErrPoolActive)
	}
	next := *p
	next.Generation++
	next.Deleting = true
	val, err := json.Marshal(&next)
	if err != nil {
		return fmt.Errorf("encode pool: %w", err)
	}
	tomb, err := json.Marshal(Tombstone{PoolID: p.ID, Owner: p.Owner, Name: p.Spec.Name, JobID: p.JobID(), DeletedAt: now})
	if err != nil {
		return fmt.Errorf("encode tombstone: %w", err)
	}
	res, err := s.run(ctx, api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.poolKey(p.ID), Value: val, Index: p.ModifyIndex}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: s.tombstoneKey(p.ID), Value: tomb}},
	})
	if err != nil {
		return fmt.Errorf("delete pool %s: %w", p.ID, err)
	}
	*p = next
	p.ModifyIndex = res.Results[0].KV.ModifyIndex
	return nil
}

// RemovePool deletes a deleting pool's record and frees its name; the
// tombstone stays.
func (s *Store) RemovePool(ctx context.Context, p *pool.Pool) error {
	if !p.Deleting {
		return fmt.Errorf("remove pool %s: not marked deleting", p.ID)
	}
	_, err := s.run(ctx, api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: s.poolKey(p.ID), Index: p.ModifyIndex}},
		{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.nameKey(p.Owner, p.Spec.Name)}},
		{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.layout.ScaleKey(p.ID)}},
		{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.layout.DemandKey(p.ID)}},
		{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: s.layout.ScalerKey(p.ID)}},
	})
	if err != nil {
		return fmt.Errorf("remove pool %s: %w", p.ID, err)
	}
	return nil
}

// GetScalerStatus reads a pool's scaler status; ErrNotFound before its
// first run.
func (s *Store) GetScalerStatus(ctx context.Context, poolID string) (*pool.ScalerStatus, error) {
	pair, _, err := s.kv.Get(s.layout.ScalerKey(poolID), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read scaler status %s: %w", poolID, err)
	}
	if pair == nil {
		return nil, fmt.Errorf("scaler status %s: %w", poolID, ErrNotFound)
	}
	var st pool.ScalerStatus
	if err := json.Unmarshal(pair.Value, &st); err != nil {
		return nil, fmt.Errorf("decode scaler status %s: %w", poolID, err)
	}
	st.ModifyIndex = pair.ModifyIndex
	return &st, nil
}

// PutScalerStatus creates (ModifyIndex 0) or updates (check-and-set on
// ModifyIndex) a scaler status and sets its new index; ErrConflict means
// another controller wrote it first.
func (s *Store) PutScalerStatus(ctx context.Context, st *pool.ScalerStatus) error {
	val, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode scaler status: %w", err)
	}
	res, err := s.run(ctx, api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.layout.ScalerKey(st.PoolID), Value: val, Index: st.ModifyIndex}}})
	if err != nil {
		return fmt.Errorf("write scaler status %s: %w", st.PoolID, err)
	}
	st.ModifyIndex = res.Results[0].KV.ModifyIndex
	return nil
}

// GetTombstone reads a deleted pool's tombstone.
func (s *Store) GetTombstone(ctx context.Context, id string) (*Tombstone, error) {
	pair, _, err := s.kv.Get(s.tombstoneKey(id), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read tombstone %s: %w", id, err)
	}
	if pair == nil {
		return nil, fmt.Errorf("tombstone %s: %w", id, ErrNotFound)
	}
	var t Tombstone
	if err := json.Unmarshal(pair.Value, &t); err != nil {
		return nil, fmt.Errorf("decode tombstone %s: %w", id, err)
	}
	return &t, nil
}

// ListMembers returns a pool's member records.
func (s *Store) ListMembers(ctx context.Context, poolID string) ([]*pool.Member, error) {
	pairs, _, err := s.kv.List(s.membersPrefix(poolID), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list members of %s: %w", poolID, err)
	}
	out := make([]*pool.Member, 0, len(pairs))
	for _, pair := range pairs {
		var m pool.Member
		if err := json.Unmarshal(pair.Value, &m); err != nil {
			return nil, fmt.Errorf("decode member %s: %w", pair.Key, err)
		}
		m.ModifyIndex = pair.ModifyIndex
		out = append(out, &m)
	}
	return out, nil
}

// PutMembers creates (ModifyIndex 0) or updates (check-and-set on
// ModifyIndex) member records, setting their new indexes. Each batch of up
// to 64 records is one transaction; ErrConflict means another writer — a
// deposed or new leader — changed a record, and the caller should
// re-observe.
func (s *Store) PutMembers(ctx context.Context, ms []*pool.Member) error {
	for start := 0; start < len(ms); start += maxTxnOps {
		batch := ms[start:min(start+maxTxnOps, len(ms))]
		ops := make(api.TxnOps, 0, len(batch))
		for _, m := range batch {
			val, err := json.Marshal(m)
			if err != nil {
				return fmt.Errorf("encode member %s: %w", m.ID, err)
			}
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.memberKey(m), Value: val, Index: m.ModifyIndex}})
		}
		res, err := s.run(ctx, ops)
		if err != nil {
			return fmt.Errorf("write members: %w", err)
		}
		for i, m := range batch {
			m.ModifyIndex = res.Results[i].KV.ModifyIndex
		}
	}
	return nil
}

// DeleteMembers removes member records, each checked against its
// ModifyIndex.
func (s *Store) DeleteMembers(ctx context.Context, ms []*pool.Member) error {
	for start := 0; start < len(ms); start += maxTxnOps {
		batch := ms[start:min(start+maxTxnOps, len(ms))]
		ops := make(api.TxnOps, 0, len(batch))
		for _, m := range batch {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: s.memberKey(m), Index: m.ModifyIndex}})
		}
		if _, err := s.run(ctx, ops); err != nil {
			return fmt.Errorf("delete members: %w", err)
		}
	}
	return nil
}

// run executes a transaction; a failed check-and-set is ErrConflict.
func (s *Store) run(ctx context.Context, ops api.TxnOps) (*api.TxnResponse, error) {
	fenced := false
	if f, ok := leader.FenceOf(ctx); ok {
		// A leader's write lands only while its session holds the lock.
		ops = append(api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: f.Key, Session: f.Session}}}, ops...)
		fenced = true
	}
	ok, res, _, err := s.txn.Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul transaction: %w", err)
	}
	if !ok {
		msgs := make([]string, 0, len(res.Errors))
		for _, e := range res.Errors {
			msgs = append(msgs, e.What)
		}
		return nil, fmt.Errorf("%w (%s)", ErrConflict, strings.Join(msgs, "; "))
	}
	if fenced {
		res.Results = res.Results[1:] // callers index their own operations
	}
	return res, nil
}

func decodePool(pair *api.KVPair) (*pool.Pool, error) {
	var p pool.Pool
	if err := json.Unmarshal(pair.Value, &p); err != nil {
		return nil, fmt.Errorf("decode pool %s: %w", pair.Key, err)
	}
	p.ModifyIndex = pair.ModifyIndex
	return &p, nil
}
