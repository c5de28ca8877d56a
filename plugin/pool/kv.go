package pool

import "strings"

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

// ScalerKey is a pool's ScalerStatus, written by the leader.
func (k KV) ScalerKey(poolID string) string { return k.Prefix + "/scaler-runs/" + poolID }

// TokenKey is a token's record, keyed by the hash of its secret.
func (k KV) TokenKey(hash string) string { return k.Prefix + "/tokens/" + hash }

// BootstrapKey marks that the first admin token was issued.
func (k KV) BootstrapKey() string { return k.Prefix + "/tokens-bootstrapped" }

// ScaleKey holds an autoscaled pool's Scale.
func (k KV) ScaleKey(poolID string) string { return k.Prefix + "/scale/" + poolID }

// DemandPrefix holds demand/<pool-id>: a gateway's word that it holds
// requests for a pool with no routable member, so the leader scales it up
// without waiting for its next look at the gateways.
func (k KV) DemandPrefix() string { return k.Prefix + "/demand/" }

// DemandKey is one pool's demand mark.
func (k KV) DemandKey(poolID string) string { return k.DemandPrefix() + poolID }

// GatewayKeyKey holds the gateway key (hex), the secret that controllers
// and gateways sign stats with (GatewayStats). Controllers create it.
func (k KV) GatewayKeyKey() string { return k.Prefix + "/gateway-key" }

// LeaderKey is the controllers' leader lock.
func (k KV) LeaderKey() string { return k.Prefix + "/leader" }
