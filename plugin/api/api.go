// Package api serves the controller's REST API (SPEC.md §3) with Gin, on
// every controller node. Writes go through the store's check-and-set, so any
// node can take them and the leader reacts within a second.
package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/poolspec"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// Leadership tells whether this node leads; *leader.Elector satisfies it.
type Leadership interface {
	IsLeader() bool
}

// Store is the state the API reads and writes; *store.Store satisfies it.
type Store interface {
	CreatePool(ctx context.Context, p *pool.Pool) error
	GetPool(ctx context.Context, id string) (*pool.Pool, error)
	LookupPool(ctx context.Context, owner, name string) (*pool.Pool, error)
	ListPools(ctx context.Context, waitIndex uint64, wait time.Duration) ([]*pool.Pool, uint64, error)
	ModifyPool(ctx context.Context, id string, fn func(*pool.Pool) error) (*pool.Pool, error)
	MarkDeleting(ctx context.Context, p *pool.Pool, now time.Time) error
	ListMembers(ctx context.Context, poolID string) ([]*pool.Member, error)
	GetScale(ctx context.Context, poolID string) (*pool.Scale, error)
	GetScalerStatus(ctx context.Context, poolID string) (*pool.ScalerStatus, error)
	CreateToken(ctx context.Context, t *store.Token) error
	Bootstrap(ctx context.Context, t *store.Token) error
	GetToken(ctx context.Context, hash string) (*store.Token, error)
	ListTokens(ctx context.Context) ([]*store.Token, error)
	RevokeToken(ctx context.Context, accessorID string) (*store.Token, error)
}

// Nomad parses templates, observes pools and reads allocation usage;
// *nomadjob.Driver satisfies it.
type Nomad interface {
	Template(p *pool.Pool) (*nomadapi.Job, error)
	Observe(ctx context.Context, p *pool.Pool) (*nomadjob.Snapshot, error)
	Usage(ctx context.Context, allocID string) (cpuPercent, memPercent float64, err error)
}

var (
	_ Store = (*store.Store)(nil)
	_ Nomad = (*nomadjob.Driver)(nil)
)

// Traffic reports members' traffic through the gateways;
// *gatewaystats.Scraper satisfies it.
type Traffic interface {
	Member(poolID, memberID string) pool.MemberStats
}

// Health is the body of GET /v1/health.
type Health struct {
	Status  string `json:"status"`
	Leader  bool   `json:"leader"`
	Version string `json:"version"`
}

// MaxBodyBytes bounds request bodies; a larger one is refused with 413.
const MaxBodyBytes = 1 << 20

// Server holds the API's dependencies.
type Server struct {
	Store    Store
	Nomad    Nomad
	Lead     Leadership
	Defaults poolspec.Defaults
	// Traffic, when set, fills utilization.
	Traffic Traffic
	// Metrics, when set, is served at GET /metrics.
	Metrics prometheus.Gatherer
	Version string
	Log     hclog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	tokens *tokenGuard
}

// Handler returns the HTTP handler of every route.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = hclog.NewNullLogger()
	}
	s.tokens = newTokenGuard(s.Now)
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.HandleMethodNotAllowed = true
	r.NoRoute(func(c *gin.Context) {
		abort(c, http.StatusNotFound, "no such route: "+c.Request.Method+" "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		abort(c, http.StatusMethodNotAllowed, "method "+c.Request.Method+" not allowed on "+c.Request.URL.Path)
	})

	r.GET("/v1/health", func(c *gin.Context) {
		leader := s.Lead != nil && s.Lead.IsLeader()
		c.JSON(http.StatusOK, Health{Status: "ok", Leader: leader, Version: s.Version})
	})
	if s.Metrics != nil {
		r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.Metrics, promhttp.HandlerOpts{})))
	}
	r.POST("/api/tokens/bootstrap", s.bootstrap)

	a := r.Group("/api", s.authenticate)
	a.GET("/tokens/self", s.tokenSelf)
	a.POST("/tokens", require(PermAdmin), s.createToken)
	a.GET("/tokens", require(PermAdmin), s.listTokens)
	a.DELETE("/tokens/:accessor", require(PermAdmin), s.revokeToken)
	a.GET("/pools", s.listPools)
	a.GET("/pools/:id", s.getPool)
	w := a.Group("", require(PermUsePools))
	w.POST("/pools", s.createPool)
	w.PUT("/pools/:id", s.updatePool)
	w.DELETE("/pools/:id", s.deletePool)
	w.POST("/pools/:id/size", s.setSize)
	w.POST("/pools/:id/start", s.setActive(true))
	w.POST("/pools/:id/stop", s.setActive(false))
	return r
}
