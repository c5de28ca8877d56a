package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/tidepool-run/tidepool/plugin/pool"
)

// ErrBootstrapped means the cluster's first admin token was already issued.
var ErrBootstrapped = errors.New("tokens already bootstrapped")

// Token is the stored token record; see pool.Token.
type Token = pool.Token

func (s *Store) tokenKey(hash string) string { return s.layout.TokenKey(hash) }
func (s *Store) bootstrapKey() string        { return s.layout.BootstrapKey() }

// CreateToken stores a new token record.
func (s *Store) CreateToken(ctx context.Context, t *Token) error {
	val, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode token: %w", err)
	}
	if _, err := s.run(ctx, api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.tokenKey(t.Hash), Value: val, Index: 0}}}); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	return nil
}

// Bootstrap stores the first admin token; it succeeds once per cluster.
func (s *Store) Bootstrap(ctx context.Context, t *Token) error {
	val, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode token: %w", err)
	}
	_, err = s.run(ctx, api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.bootstrapKey(), Value: []byte(t.AccessorID), Index: 0}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.tokenKey(t.Hash), Value: val, Index: 0}},
	})
	if errors.Is(err, ErrConflict) {
		return ErrBootstrapped
	}
	return err
}

// GetToken finds a token by the hash of its secret.
func (s *Store) GetToken(ctx context.Context, hash string) (*Token, error) {
	pair, _, err := s.kv.Get(s.tokenKey(hash), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read token: %w", unavailable(err))
	}
	if pair == nil {
		return nil, ErrNotFound
	}
	var t Token
	if err := json.Unmarshal(pair.Value, &t); err != nil {
		return nil, fmt.Errorf("decode token: %w", err)
	}
	return &t, nil
}

// ListTokens lists every token record (hashes, never secrets).
func (s *Store) ListTokens(ctx context.Context) ([]*Token, error) {
	pairs, _, err := s.kv.List(s.layout.TokenKey(""), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out := make([]*Token, 0, len(pairs))
	for _, p := range pairs {
		var t Token
		if err := json.Unmarshal(p.Value, &t); err != nil {
			s.skip(p.Key, err)
			continue
		}
		out = append(out, &t)
	}
	return out, nil
}

// RevokeToken deletes the token with accessor id; ErrNotFound when there
// is none.
func (s *Store) RevokeToken(ctx context.Context, accessorID string) (*Token, error) {
	tokens, err := s.ListTokens(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tokens {
		if t.AccessorID == accessorID {
			if _, err := s.kv.Delete(s.tokenKey(t.Hash), (&api.WriteOptions{}).WithContext(ctx)); err != nil {
				return nil, fmt.Errorf("revoke token: %w", err)
			}
			return t, nil
		}
	}
	return nil, fmt.Errorf("token %s: %w", accessorID, ErrNotFound)
}
