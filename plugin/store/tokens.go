package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// ErrBootstrapped means the cluster's first admin token was already issued.
var ErrBootstrapped = errors.New("tokens already bootstrapped")

// Token is a stored API token. Only the SHA-256 of its secret is kept: the
// record is found by that hash, and the secret itself is never stored.
type Token struct {
	// AccessorID names the token in logs and listings without revealing it.
	AccessorID  string    `json:"accessor_id"`
	User        string    `json:"user"`
	Permissions []string  `json:"permissions"`
	CreatedAt   time.Time `json:"created_at"`
	// Hash is the hex SHA-256 of the secret (also the key).
	Hash string `json:"hash"`
}

func (s *Store) tokenKey(hash string) string { return s.prefix + "/tokens/" + hash }
func (s *Store) bootstrapKey() string        { return s.prefix + "/tokens-bootstrapped" }

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
		return nil, fmt.Errorf("read token: %w", err)
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
