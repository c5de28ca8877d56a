package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// GetScale reads an autoscaled pool's decision; nil when the autoscaler
// has not decided yet.
func (s *Store) GetScale(ctx context.Context, poolID string) (*pool.Scale, error) {
	pair, _, err := s.kv.Get(s.layout.ScaleKey(poolID), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read scale of %s: %w", poolID, err)
	}
	if pair == nil {
		return nil, nil
	}
	var sc pool.Scale
	if err := json.Unmarshal(pair.Value, &sc); err != nil {
		return nil, fmt.Errorf("decode scale of %s: %w", poolID, err)
	}
	sc.ModifyIndex = pair.ModifyIndex
	return &sc, nil
}

// PutScale writes a decision if nobody wrote one since sc was read
// (sc.ModifyIndex; 0 creates it), and only while the pool record exists
// unchanged at poolIndex, so a decision never outlives its pool.
func (s *Store) PutScale(ctx context.Context, poolID string, poolIndex uint64, sc *pool.Scale) error {
	val, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("encode scale: %w", err)
	}
	res, err := s.run(ctx, api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckIndex, Key: s.poolKey(poolID), Index: poolIndex}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.layout.ScaleKey(poolID), Value: val, Index: sc.ModifyIndex}},
	})
	if err != nil {
		return fmt.Errorf("write scale of %s: %w", poolID, err)
	}
	sc.ModifyIndex = res.Results[1].KV.ModifyIndex
	return nil
}

// TakeDemand lists the pools gateways marked as holding requests, and
// removes the marks it read (check-and-set, so a newer mark survives).
func (s *Store) TakeDemand(ctx context.Context, waitIndex uint64, wait time.Duration) ([]string, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: wait}).WithContext(ctx)
	pairs, meta, err := s.kv.List(s.layout.DemandPrefix(), q)
	if err != nil {
		return nil, 0, fmt.Errorf("list demand: %w", err)
	}
	ids := make([]string, 0, len(pairs))
	for _, p := range pairs {
		ids = append(ids, strings.TrimPrefix(p.Key, s.layout.DemandPrefix()))
		_, _, _ = s.kv.DeleteCAS(&api.KVPair{Key: p.Key, ModifyIndex: p.ModifyIndex}, (&api.WriteOptions{}).WithContext(ctx))
	}
	return ids, meta.LastIndex, nil
}
