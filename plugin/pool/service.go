package pool

import "strings"

// Service tag and meta keys Tidepool puts on every member service in Consul,
// so gateways and controllers can find members without parsing templates.
const (
	ServiceTag        = "tidepool"
	ServiceMetaPoolID = "tidepool_pool_id"
	ServiceMetaMember = "tidepool_member"
	ServiceMetaPort   = "tidepool_port"
)

// PoolTag is the service tag that selects one pool's members in Consul.
func PoolTag(poolID string) string { return poolTagPrefix + poolID }

// ParsePoolTag returns the pool id a PoolTag names.
func ParsePoolTag(tag string) (string, bool) {
	id, ok := strings.CutPrefix(tag, poolTagPrefix)
	return id, ok && id != ""
}

const poolTagPrefix = "pool="
