package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// GatewayKey returns the secret controllers and gateways sign gateway stats
// with (pool.GatewayStats), creating it on first use. Concurrent creators
// agree: the key is written with check-and-set, and a loser reads the
// winner's.
func (s *Store) GatewayKey(ctx context.Context) ([]byte, error) {
	key := s.layout.GatewayKeyKey()
	for range 3 {
		pair, _, err := s.kv.Get(key, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read gateway key: %w", err)
		}
		if pair != nil {
			return pool.ParseGatewayKey(pair.Value)
		}
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		ok, _, err := s.kv.CAS(&api.KVPair{Key: key, Value: []byte(hex.EncodeToString(secret)), ModifyIndex: 0}, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("create gateway key: %w", err)
		}
		if ok {
			return secret, nil
		}
	}
	return nil, fmt.Errorf("create gateway key: %w", ErrConflict)
}
