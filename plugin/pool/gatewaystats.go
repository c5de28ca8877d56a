package pool

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// GatewayService is the Consul service every gateway registers as.
const GatewayService = "tidepool-gateway"

// GatewaySchemeMeta is the service meta key saying whether a gateway
// serves "http" or "https".
const GatewaySchemeMeta = "scheme"

// GatewayStats is what a gateway reports at GET /v1/stats: work in flight
// and counters per member, and the KV index of the member records (drain
// marks) its routing table has applied. The leader reads it to end drains
// and fill utilization.
type GatewayStats struct {
	Gateway string `json:"gateway"`
	// MembersIndex: every drain mark written at or below this KV index
	// is applied: the gateway sends no new work to those members.
	MembersIndex uint64 `json:"members_index"`
	// Members lists every member the gateway counts. A member is named by
	// its pool and its id together, never by its id alone.
	Members []MemberStats `json:"members"`
	// Pools is the demand the gateway sees per pool beyond its members'
	// work: requests it holds, and how many members it can route to.
	Pools []Demand `json:"pools"`
}

// Demand is one pool's demand at one gateway.
type Demand struct {
	PoolID string `json:"pool_id"`
	// Held requests wait in the gateway's queue for a member or a slot.
	Held int64 `json:"held"`
	// Routable is how many members the gateway routes the pool to.
	Routable int `json:"routable"`
}

// MemberStats is one member's traffic through one gateway; rates are over
// the gateway's last few seconds.
type MemberStats struct {
	PoolID         string  `json:"pool_id"`
	MemberID       string  `json:"member_id"`
	HTTPInFlight   int64   `json:"http_inflight"`
	TCPInFlight    int64   `json:"tcp_inflight"`
	MethodInFlight int64   `json:"method_inflight"`
	HTTPRequests   uint64  `json:"http_requests"`
	TCPConns       uint64  `json:"tcp_conns"`
	MethodCalls    uint64  `json:"method_calls"`
	HTTPRPS        float64 `json:"http_rps"`
	TCPRPS         float64 `json:"tcp_rps"`
	MethodRPS      float64 `json:"method_rps"`
	// Concurrency is the time-weighted average of the member's work in
	// flight over the gateway's last whole second.
	Concurrency float64 `json:"concurrency"`
}

// InFlight is all work in progress on the member through this gateway.
func (m MemberStats) InFlight() int64 { return m.HTTPInFlight + m.TCPInFlight + m.MethodInFlight }

// MemberRef names a member across pools: member ids are random, but a
// pool's records, routes and counters are only ever matched by both.
type MemberRef struct{ PoolID, MemberID string }

// Ref is the member the stats are about.
func (m MemberStats) Ref() MemberRef { return MemberRef{m.PoolID, m.MemberID} }

// Ref is the member's cross-pool name.
func (m *Member) Ref() MemberRef { return MemberRef{m.PoolID, m.ID} }

// Gateway stats are exchanged only between parties that hold the gateway
// key, a secret the controllers keep in Consul KV (KV.GatewayKeyKey): the
// controller proves it may read a gateway's stats, and the gateway proves
// the stats are its own, so a service that merely registers as
// tidepool-gateway can neither read tenants' traffic nor feed the leader
// made-up numbers.
const (
	// StatsNonceHeader carries the controller's "<unix seconds>.<random hex>".
	StatsNonceHeader = "X-Tidepool-Stats-Nonce"
	// StatsAuthHeader carries the MAC of the nonce: the request's proof.
	StatsAuthHeader = "X-Tidepool-Stats-Auth"
	// StatsSignatureHeader carries the MAC of nonce and body: the answer's
	// proof.
	StatsSignatureHeader = "X-Tidepool-Stats-Signature"
	// StatsNonceMaxAge bounds how old a request's nonce may be.
	StatsNonceMaxAge = 30 * time.Second
)

// ErrStatsAuth means a stats request or answer does not carry a valid MAC.
var ErrStatsAuth = errors.New("gateway stats: bad or missing signature")

func statsMAC(key []byte, parts ...string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(h.Sum(nil))
}

// StatsRequestAuth is the value of StatsAuthHeader for nonce.
func StatsRequestAuth(key []byte, nonce string) string {
	return statsMAC(key, "tidepool-stats-request", nonce)
}

// StatsSignature is the value of StatsSignatureHeader for an answer body.
func StatsSignature(key []byte, nonce string, body []byte) string {
	return statsMAC(key, "tidepool-stats-response", nonce, string(body))
}

// NewStatsNonce returns a fresh nonce for a stats request at now.
func NewStatsNonce(now time.Time, random []byte) string {
	return strconv.FormatInt(now.Unix(), 10) + "." + hex.EncodeToString(random)
}

// CheckStatsRequest verifies a stats request's nonce and MAC at now.
func CheckStatsRequest(key []byte, nonce, auth string, now time.Time) error {
	if len(key) == 0 || nonce == "" {
		return ErrStatsAuth
	}
	secs, _, ok := strings.Cut(nonce, ".")
	ts, err := strconv.ParseInt(secs, 10, 64)
	if !ok || err != nil {
		return ErrStatsAuth
	}
	if age := now.Sub(time.Unix(ts, 0)); age > StatsNonceMaxAge || age < -StatsNonceMaxAge {
		return ErrStatsAuth
	}
	if !hmac.Equal([]byte(auth), []byte(StatsRequestAuth(key, nonce))) {
		return ErrStatsAuth
	}
	return nil
}

// CheckStatsSignature verifies that body was signed for nonce with key.
func CheckStatsSignature(key []byte, nonce string, body []byte, sig string) error {
	if len(key) == 0 || !hmac.Equal([]byte(sig), []byte(StatsSignature(key, nonce, body))) {
		return ErrStatsAuth
	}
	return nil
}

// ParseGatewayKey decodes the gateway key as stored in KV.
func ParseGatewayKey(v []byte) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(string(v)))
	if err != nil || len(b) < 16 {
		return nil, errors.New("gateway key: not a hex secret of at least 16 bytes")
	}
	return b, nil
}
