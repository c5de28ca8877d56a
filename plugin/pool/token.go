package pool

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Token is a stored API token. Only the SHA-256 of its secret is kept: the
// record is found by that hash, and the secret itself is never stored.
type Token struct {
	// AccessorID names the token in logs without revealing it.
	AccessorID  string    `json:"accessor_id"`
	User        string    `json:"user"`
	Permissions []string  `json:"permissions"`
	CreatedAt   time.Time `json:"created_at"`
	// Hash is the hex SHA-256 of the secret (also the key).
	Hash string `json:"hash"`
	// ExpiresAt, when set, is when the token stops working.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Expired reports whether the token no longer works at now.
func (t *Token) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// TokenLookupTimeout bounds one read of a token record in Consul, by a
// gateway or a controller: past it the request gets 503 and should be
// retried, rather than hang on an unreachable Consul or be refused as if
// the token were invalid.
const TokenLookupTimeout = 2 * time.Second

// Permissions a token may carry.
const (
	PermUsePools = "use-pools"
	PermAdmin    = "admin"
)

// BearerToken takes the token out of an Authorization header value. The
// scheme is case-insensitive (RFC 7235): "bearer x" is as good as
// "Bearer x".
func BearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// HashToken is the stored form of a secret: hex SHA-256.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
