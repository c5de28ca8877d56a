package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/store"
)

// tokenPrefix marks Tidepool secrets, so scanners and people recognise them.
const tokenPrefix = "tp_"

// caller is the authenticated identity of a request.
type caller struct {
	User        string
	Permissions []string
	AccessorID  string
}

func (c *caller) has(perm string) bool {
	return slices.Contains(c.Permissions, PermAdmin) || slices.Contains(c.Permissions, perm)
}

func (c *caller) canSee(p *pool.Pool) bool {
	return p.Owner == c.User || slices.Contains(c.Permissions, PermAdmin)
}

const callerKey = "tidepool.caller"

func callerOf(c *gin.Context) *caller { return c.MustGet(callerKey).(*caller) }

// newSecret returns a random token secret and its accessor id.
func newSecret() (secret, accessor string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	a := make([]byte, 8)
	_, _ = rand.Read(a)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b), hex.EncodeToString(a)
}

// authenticate resolves the bearer token; 401 when it is missing or
// unknown, 503 when Consul cannot say within pool.TokenLookupTimeout or
// too many unknown tokens are being tried (tokenGuard). The record is read
// on every request, uncached: a revoked token stops working at once, and
// while Consul is unreachable no route could serve the request anyway.
// The secret is never logged.
func (s *Server) authenticate(c *gin.Context) {
	if cl, ok := c.Request.Context().Value(identityKey{}).(*caller); ok {
		c.Set(callerKey, cl)
		c.Next()
		return
	}
	h := c.GetHeader("Authorization")
	secret, ok := pool.BearerToken(h)
	if !ok {
		abort(c, http.StatusUnauthorized, "missing token: send Authorization: Bearer <token>")
		return
	}
	hash := pool.HashToken(secret)
	switch refused, busy := s.tokens.check(hash); {
	case refused:
		abort(c, http.StatusUnauthorized, "invalid token")
		return
	case busy:
		c.Header("Retry-After", "1")
		abort(c, http.StatusServiceUnavailable, "too many unknown tokens to check right now; retry in a second")
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), pool.TokenLookupTimeout)
	t, err := s.Store.GetToken(ctx, hash)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.tokens.refuse(hash)
		abort(c, http.StatusUnauthorized, "invalid token")
		return
	case err != nil:
		s.fail(c, err)
		return
	}
	// The record was found by its hash; comparing in constant time as
	// well keeps a timing side channel shut should lookups ever change.
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hash)) != 1 {
		abort(c, http.StatusUnauthorized, "invalid token")
		return
	}
	if t.Expired(s.Now()) {
		abort(c, http.StatusUnauthorized, "token expired at "+t.ExpiresAt.UTC().Format(time.RFC3339))
		return
	}
	s.tokens.accept(hash)
	c.Set(callerKey, &caller{User: t.User, Permissions: t.Permissions, AccessorID: t.AccessorID})
	c.Next()
}

// identityKey carries an in-process caller in a request's context. Only
// code in this process can set it: a request from the network carries
// headers, never context values.
type identityKey struct{}

// AsOwner serves h as user with the use-pools permission, without a
// token: the leader runs a pool's scheduled scaler through it, so the
// script goes through the same handlers — ownership, validation, limits —
// as a request with the owner's token would, and no secret is minted or
// stored. It grants use-pools only, also to an admin's pool: a scaler acts
// on its owner's pools, never on everyone's.
func AsOwner(h http.Handler, user string) http.Handler {
	cl := &caller{User: user, Permissions: []string{PermUsePools}, AccessorID: "scaler"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, cl)))
	})
}

// require answers 403 unless the caller has perm (admin has every one).
func require(perm string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !callerOf(c).has(perm) {
			abort(c, http.StatusForbidden, "this token lacks the "+perm+" permission")
			return
		}
		c.Next()
	}
}

func (s *Server) bootstrap(c *gin.Context) {
	secret, accessor := newSecret()
	t := &store.Token{AccessorID: accessor, User: "admin", Permissions: []string{PermAdmin, PermUsePools}, CreatedAt: s.Now().UTC(), Hash: pool.HashToken(secret)}
	switch err := s.Store.Bootstrap(c.Request.Context(), t); {
	case errors.Is(err, store.ErrBootstrapped):
		abort(c, http.StatusConflict, "this cluster is already bootstrapped: ask an admin for a token")
		return
	case err != nil:
		s.fail(c, err)
		return
	}
	s.Log.Info("bootstrapped admin token", "accessor_id", accessor)
	c.JSON(http.StatusCreated, tokenInfo(t, secret))
}

func (s *Server) createToken(c *gin.Context) {
	var req TokenRequest
	if !s.decode(c, &req) {
		return
	}
	var fields []pool.FieldError
	if err := pool.ValidName(req.User); err != nil {
		fields = append(fields, pool.FieldError{Field: "user", Message: err.Error()})
	}
	for i, p := range req.Permissions {
		if p != PermUsePools && p != PermAdmin {
			fields = append(fields, pool.FieldError{Field: "permissions[" + itoa(i) + "]", Message: "\"" + p + "\" is not a permission (want \"use-pools\" or \"admin\")"})
		}
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			fields = append(fields, pool.FieldError{Field: "ttl", Message: fmt.Sprintf("%q is not a positive duration such as \"720h\"", req.TTL)})
		}
		ttl = d
	}
	if len(fields) > 0 {
		invalid(c, "invalid token request", fields)
		return
	}
	if req.Permissions == nil {
		req.Permissions = []string{} // a read-only token
	}
	secret, accessor := newSecret()
	t := &store.Token{AccessorID: accessor, User: req.User, Permissions: req.Permissions, CreatedAt: s.Now().UTC(), Hash: pool.HashToken(secret)}
	if ttl > 0 {
		t.ExpiresAt = t.CreatedAt.Add(ttl)
	}
	if err := s.Store.CreateToken(c.Request.Context(), t); err != nil {
		s.fail(c, err)
		return
	}
	s.Log.Info("created token", "accessor_id", accessor, "user", req.User, "by", callerOf(c).AccessorID)
	c.JSON(http.StatusCreated, tokenInfo(t, secret))
}

func (s *Server) tokenSelf(c *gin.Context) {
	cl := callerOf(c)
	c.JSON(http.StatusOK, TokenInfo{AccessorID: cl.AccessorID, User: cl.User, Permissions: cl.Permissions})
}

func tokenInfo(t *store.Token, secret string) TokenInfo {
	return TokenInfo{Token: secret, AccessorID: t.AccessorID, User: t.User, Permissions: t.Permissions, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}
}

func (s *Server) listTokens(c *gin.Context) {
	tokens, err := s.Store.ListTokens(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	out := TokenList{Tokens: make([]TokenInfo, 0, len(tokens))}
	for _, t := range tokens {
		out.Tokens = append(out.Tokens, tokenInfo(t, ""))
	}
	sort.Slice(out.Tokens, func(i, j int) bool { return out.Tokens[i].CreatedAt.Before(out.Tokens[j].CreatedAt) })
	out.Count = len(out.Tokens)
	c.JSON(http.StatusOK, out)
}

func (s *Server) revokeToken(c *gin.Context) {
	t, err := s.Store.RevokeToken(c.Request.Context(), c.Param("accessor"))
	if errors.Is(err, store.ErrNotFound) {
		abort(c, http.StatusNotFound, "no token with accessor id "+c.Param("accessor"))
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	s.Log.Info("revoked token", "accessor_id", t.AccessorID, "user", t.User, "by", callerOf(c).AccessorID)
	c.JSON(http.StatusOK, tokenInfo(t, ""))
}
