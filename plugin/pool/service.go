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

// SelectorTag is the service tag that selects one pool's members in Consul.
func SelectorTag(poolID string) string { return poolTagPrefix + poolID }

// ParseSelectorTag returns the pool id a SelectorTag names.
func ParseSelectorTag(tag string) (string, bool) {
	id, ok := strings.CutPrefix(tag, poolTagPrefix)
	return id, ok && id != ""
}

const poolTagPrefix = "pool="
