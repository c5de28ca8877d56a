package pool

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// KV is the layout of Tidepool's records in Consul KV under a prefix. The
// controller writes them (plugin/store); the gateway reads them. Both take
// the layout from here.
type KV struct{ Prefix string }

// NewKV returns the layout under prefix ("tidepool" when empty).
func NewKV(prefix string) KV {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		prefix = "tidepool"
	}
	return KV{Prefix: prefix}
}

// PoolsPrefix holds pools/<pool-id>: Pool.
func (k KV) PoolsPrefix() string { return k.Prefix + "/pools/" }

// PoolKey is a pool's record.
func (k KV) PoolKey(id string) string { return k.PoolsPrefix() + id }

// NameKey claims a pool name for an owner; its value is the pool id.
func (k KV) NameKey(owner, name string) string { return k.Prefix + "/names/" + owner + "/" + name }

// MembersPrefix holds members/<pool-id>/<member-id>: Member.
func (k KV) MembersPrefix() string { return k.Prefix + "/members/" }

// PoolMembersPrefix holds one pool's members.
func (k KV) PoolMembersPrefix(poolID string) string { return k.MembersPrefix() + poolID + "/" }

// MemberKey is a member's record.
func (k KV) MemberKey(poolID, memberID string) string { return k.PoolMembersPrefix(poolID) + memberID }

// TombstoneKey records a deleted pool.
func (k KV) TombstoneKey(id string) string { return k.Prefix + "/tombstones/" + id }

// TokenKey is a token's record, keyed by the hash of its secret.
func (k KV) TokenKey(hash string) string { return k.Prefix + "/tokens/" + hash }

// BootstrapKey marks that the first admin token was issued.
func (k KV) BootstrapKey() string { return k.Prefix + "/tokens-bootstrapped" }

// LeaderKey is the controllers' leader lock.
func (k KV) LeaderKey() string { return k.Prefix + "/leader" }

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
}

// Permissions a token may carry.
const (
	PermUsePools = "use-pools"
	PermAdmin    = "admin"
)

// HashToken is the stored form of a secret: hex SHA-256.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Service tag and meta keys Tidepool puts on every member service in Consul,
// so gateways and controllers can find members without parsing templates.
const (
	ServiceTag        = "tidepool"
	ServiceMetaPoolID = "tidepool_pool_id"
	ServiceMetaMember = "tidepool_member"
	ServiceMetaPort   = "tidepool_port"
)

// GatewayService is the Consul service every gateway registers as.
const GatewayService = "tidepool-gateway"

// GatewayStats is what a gateway reports at GET /v1/stats: work in flight
// and counters per member, and the KV index of the member records (drain
// marks) its routing table has applied. The leader reads it to end drains
// and fill utilization.
type GatewayStats struct {
	Gateway string `json:"gateway"`
	// MembersIndex: every drain mark written at or below this KV index
	// is applied: the gateway sends no new work to those members.
	MembersIndex uint64                 `json:"members_index"`
	Members      map[string]MemberStats `json:"members"`
}

// MemberStats is one member's traffic through one gateway; rates are over
// the gateway's last few seconds.
type MemberStats struct {
	PoolID         string  `json:"pool_id"`
	HTTPInFlight   int64   `json:"http_inflight"`
	TCPInFlight    int64   `json:"tcp_inflight"`
	MethodInFlight int64   `json:"method_inflight"`
	HTTPRequests   uint64  `json:"http_requests"`
	TCPConns       uint64  `json:"tcp_conns"`
	MethodCalls    uint64  `json:"method_calls"`
	HTTPRPS        float64 `json:"http_rps"`
	TCPRPS         float64 `json:"tcp_rps"`
	MethodRPS      float64 `json:"method_rps"`
}

// InFlight is all work in progress on the member through this gateway.
func (m MemberStats) InFlight() int64 { return m.HTTPInFlight + m.TCPInFlight + m.MethodInFlight }
