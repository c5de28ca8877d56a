package pool

// Service tag and meta keys Tidepool puts on every member service in Consul,
// so gateways and controllers can find members without parsing templates.
const (
	ServiceTag        = "tidepool"
	ServiceMetaPoolID = "tidepool_pool_id"
	ServiceMetaMember = "tidepool_member"
	ServiceMetaPort   = "tidepool_port"
)

// PoolTag is the service tag that selects one pool's members in Consul.
func PoolTag(poolID string) string { return "pool=" + poolID }
