// Package api serves the controller's HTTP API with Gin: the health
// endpoint now, the REST API of SPEC.md §3 as it lands.
package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// Leadership tells whether this node leads; *leader.Elector satisfies it.
type Leadership interface {
	IsLeader() bool
}

// Health is the body of GET /v1/health.
type Health struct {
	Status  string `json:"status"`
	Leader  bool   `json:"leader"`
	Version string `json:"version"`
}

// New returns the controller's HTTP handler.
func New(lead Leadership, version string) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/v1/health", func(c *gin.Context) {
		c.JSON(http.StatusOK, Health{Status: "ok", Leader: lead.IsLeader(), Version: version})
	})
	return r
}
