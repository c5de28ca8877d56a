// Package client is the Go client of Tidepool's REST API, used by the CLI
// and by scaler scripts.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// DefaultAddress is where the CLI finds the API without TIDEPOOL_ADDR.
const DefaultAddress = "http://127.0.0.1:4680"

// Client talks to one controller.
type Client struct {
	addr  string
	token string
	http  *http.Client
}

// New returns a client for the API at addr (a URL or host:port) that
// authenticates with token.
func New(addr, token string) (*Client, error) {
	if addr == "" {
		addr = DefaultAddress
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid API address %q: want a URL such as %s", addr, DefaultAddress)
	}
	return &Client{addr: strings.TrimRight(addr, "/"), token: token, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// UseCA makes the client trust the CA certificates in the PEM file at
// path (for an API served with its own TLS certificate).
func (c *Client) UseCA(path string) error {
	pem, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("read CA certificate %s: no PEM certificate in it", path)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.http.Transport = t
	return nil
}

// Transport is the client's round tripper (with its CA, if UseCA set one),
// for other connections to the same installation such as a gateway's
// tunnels.
func (c *Client) Transport() http.RoundTripper {
	if c.http.Transport == nil {
		return http.DefaultTransport
	}
	return c.http.Transport
}

// NewHandler returns a client that calls h in this process instead of
// over the network; with api.AsOwner it is how the leader runs a scaler
// as a pool's owner.
func NewHandler(h http.Handler) *Client {
	return &Client{addr: "http://in-process", http: &http.Client{Transport: handlerTransport{h}, Timeout: 60 * time.Second}}
}

// handlerTransport serves requests with a handler.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Message string
	Fields  []pool.FieldError
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return strings.Join(parts, "\n")
}

// IsNotFound reports whether err is the API's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

func (c *Client) do(ctx context.Context, method, path string, body any, header http.Header, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.addr+path, r)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the Tidepool API at %s: %w", c.addr, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e api.Error
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return &Error{Status: resp.StatusCode, Message: e.Error, Fields: e.Fields}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
	}
	return nil
}

func poolPath(ref string, rest ...string) string {
	return "/api/pools/" + url.PathEscape(ref) + strings.Join(rest, "")
}

// ListPools lists the pools the token may see.
func (c *Client) ListPools(ctx context.Context) (*api.PoolList, error) {
	var out api.PoolList
	return &out, c.do(ctx, http.MethodGet, "/api/pools", nil, nil, &out)
}

// GetPool reads a pool by id or name.
func (c *Client) GetPool(ctx context.Context, ref string) (*api.PoolInfo, error) {
	var out api.PoolInfo
	return &out, c.do(ctx, http.MethodGet, poolPath(ref), nil, nil, &out)
}

// CreatePool creates a pool.
func (c *Client) CreatePool(ctx context.Context, spec *pool.Spec) (*api.PoolInfo, error) {
	var out api.PoolInfo
	return &out, c.do(ctx, http.MethodPost, "/api/pools", spec, nil, &out)
}

// UpdatePool replaces a pool's spec; with generation > 0 the write fails
// with 409 if the pool changed since that generation.
func (c *Client) UpdatePool(ctx context.Context, ref string, spec *pool.Spec, generation int64) (*api.PoolInfo, error) {
	h := http.Header{}
	if generation > 0 {
		h.Set("If-Match", strconv.Quote(strconv.FormatInt(generation, 10)))
	}
	var out api.PoolInfo
	return &out, c.do(ctx, http.MethodPut, poolPath(ref), spec, h, &out)
}

// DeletePool deletes a stopped pool.
func (c *Client) DeletePool(ctx context.Context, ref string) (*api.PoolInfo, error) {
	var out api.PoolInfo
	return &out, c.do(ctx, http.MethodDelete, poolPath(ref), nil, nil, &out)
}

// SetSize sets a pool's desired count.
func (c *Client) SetSize(ctx context.Context, ref string, n int) (*api.PoolInfo, error) {
	var out api.PoolInfo
	return &out, c.do(ctx, http.MethodPost, poolPath(ref, "/size"), api.SizeRequest{DesiredCount: &n}, nil, &out)
}

// Start starts a pool.
func (c *Client) Start(ctx context.Context, ref string) (*api.PoolInfo, error) {
	var out api.PoolInfo
	return &out, c.do(ctx, http.MethodPost, poolPath(ref, "/start"), nil, nil, &out)
}

// Stop stops a pool.
func (c *Client) Stop(ctx context.Context, ref string) (*api.PoolInfo, error) {
	var out api.PoolInfo
	return &out, c.do(ctx, http.MethodPost, poolPath(ref, "/stop"), nil, nil, &out)
}

// Bootstrap issues the cluster's first admin token.
func (c *Client) Bootstrap(ctx context.Context) (*api.TokenInfo, error) {
	var out api.TokenInfo
	return &out, c.do(ctx, http.MethodPost, "/api/tokens/bootstrap", nil, nil, &out)
}

// CreateToken issues a token for user (admin only).
func (c *Client) CreateToken(ctx context.Context, user string, perms []string) (*api.TokenInfo, error) {
	return c.CreateTokenTTL(ctx, user, perms, "")
}

// Self describes the client's own token.
func (c *Client) Self(ctx context.Context) (*api.TokenInfo, error) {
	var out api.TokenInfo
	return &out, c.do(ctx, http.MethodGet, "/api/tokens/self", nil, nil, &out)
}

// CreateTokenTTL issues a token for user that expires after ttl (admin
// only; "" for none).
func (c *Client) CreateTokenTTL(ctx context.Context, user string, perms []string, ttl string) (*api.TokenInfo, error) {
	var out api.TokenInfo
	return &out, c.do(ctx, http.MethodPost, "/api/tokens", api.TokenRequest{User: user, Permissions: perms, TTL: ttl}, nil, &out)
}

// ListTokens lists every token, without secrets (admin only).
func (c *Client) ListTokens(ctx context.Context) (*api.TokenList, error) {
	var out api.TokenList
	return &out, c.do(ctx, http.MethodGet, "/api/tokens", nil, nil, &out)
}

// RevokeToken deletes a token by accessor id (admin only).
func (c *Client) RevokeToken(ctx context.Context, accessorID string) (*api.TokenInfo, error) {
	var out api.TokenInfo
	return &out, c.do(ctx, http.MethodDelete, "/api/tokens/"+url.PathEscape(accessorID), nil, nil, &out)
}
