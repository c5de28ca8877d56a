package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gin-gonic/gin"

	"github.com/tidepool-run/tidepool/gateway/jsonrpc"
	"github.com/tidepool-run/tidepool/gateway/routing"
)

// maxRPCBody bounds a JSON-RPC request body and one member's answer.
const maxRPCBody = 4 << 20

// maxRPCReply bounds the answers of one batch together, so a batch of
// large answers cannot hold 100 × maxRPCBody in memory.
const maxRPCReply = 16 << 20

// errReplyTooLarge: a member's answer did not fit what was left of the
// batch's reply budget.
var errReplyTooLarge = errors.New("the member's answer is too large for this batch (at most 4 MiB per call, 16 MiB per batch)")

// callMethods serves POST /api/methods/call: each call of a single
// request, batch or notification goes to the least busy member of a pool
// of the caller's that declares the method.
func (g *Gateway) callMethods(c *gin.Context) {
	cl, err := g.tokens.caller(c.Request)
	if err != nil {
		writeAuthError(c.Writer, err, "")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxRPCBody))
	if err != nil {
		c.JSON(http.StatusRequestEntityTooLarge, jsonrpc.NewError(nil, jsonrpc.CodeInvalidRequest, "request body too large"))
		return
	}
	reqs, batch, err := jsonrpc.Decode(body)
	switch {
	case errors.Is(err, jsonrpc.ErrEmptyBatch):
		c.JSON(http.StatusBadRequest, jsonrpc.NewError(nil, jsonrpc.CodeInvalidRequest, "empty batch"))
		return
	case err != nil:
		c.JSON(http.StatusBadRequest, jsonrpc.NewError(nil, jsonrpc.CodeParseError, "parse error: "+err.Error()))
		return
	case len(reqs) > g.cfg.MaxBatch:
		c.JSON(http.StatusRequestEntityTooLarge, jsonrpc.NewError(nil, jsonrpc.CodeInvalidRequest, fmt.Sprintf("batch of %d calls exceeds the limit of %d", len(reqs), g.cfg.MaxBatch)))
		return
	}

	var budget atomic.Int64
	budget.Store(maxRPCReply)
	results := make([]*jsonrpc.Response, len(reqs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range reqs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			// Each call picks from the table as it is when its turn
			// comes: a batch can wait behind its first 16 calls.
			results[i] = g.call(c.Request.Context(), cl, &reqs[i], &budget)
		})
	}
	wg.Wait()

	var out []*jsonrpc.Response
	for _, r := range results {
		if r != nil {
			out = append(out, r)
		}
	}
	switch {
	case len(out) == 0:
		c.Status(http.StatusNoContent)
	case batch:
		c.JSON(http.StatusOK, out)
	default:
		c.JSON(rpcStatus(out[0]), out[0])
	}
}

// rpcStatus is the HTTP status of a single call's answer (SPEC.md §5).
func rpcStatus(r *jsonrpc.Response) int {
	if r.Error == nil {
		return http.StatusOK
	}
	switch r.Error.Code {
	case jsonrpc.CodeMethodNotFound:
		return http.StatusNotFound
	case jsonrpc.CodeUnavailable:
		return http.StatusServiceUnavailable
	case jsonrpc.CodeInvalidRequest, jsonrpc.CodeParseError:
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// call routes one request; nil means no answer (a notification).
func (g *Gateway) call(ctx context.Context, cl *caller, req *jsonrpc.Request, budget *atomic.Int64) *jsonrpc.Response {
	reply := func(r jsonrpc.Response) *jsonrpc.Response {
		if req.IsNotification() {
			return nil
		}
		return &r
	}
	if err := req.Validate(); err != nil {
		r := jsonrpc.NewError(req.ID, jsonrpc.CodeInvalidRequest, err.Error())
		return &r
	}
	// The routes that serve the method: the caller's pools', or any
	// owner's for an admin who has none.
	resolve := func(t *routing.Table) []*routing.Route {
		routes := t.Method(cl.User, req.Method)
		if len(routes) == 0 && cl.admin() {
			routes = t.MethodAnyOwner(req.Method)
		}
		return routes
	}
	var body []byte
	var tried []*routing.Backend
	for {
		lease, ok := routing.AcquireCurrent(g.watcher.Table, resolve, routing.LeastInFlight, routing.Method, tried)
		if !ok {
			// Told apart only on failure, so a call that finds a member
			// looks its method up once.
			if len(tried) == 0 && len(resolve(g.watcher.Table())) == 0 {
				g.metrics.rpcCalls.WithLabelValues("(unknown)", "not_found").Inc()
				return reply(jsonrpc.NewError(req.ID, jsonrpc.CodeMethodNotFound, "method not found: "+req.Method))
			}
			g.metrics.rpcCalls.WithLabelValues(req.Method, "unavailable").Inc()
			return reply(jsonrpc.NewError(req.ID, jsonrpc.CodeUnavailable, "no member serving "+req.Method+" is available (all draining, starting or at capacity)"))
		}
		tried = append(tried, lease.Backend)
		if body == nil {
			body, _ = json.Marshal(req)
		}
		resp, err := func() (*jsonrpc.Response, error) {
			defer lease.Release()
			return g.forward(ctx, lease.Route, lease.Backend, cl, body, budget)
		}()
		if err != nil && isDialError(err) {
			continue
		}
		if err != nil {
			g.metrics.rpcCalls.WithLabelValues(req.Method, "error").Inc()
			return reply(jsonrpc.NewError(req.ID, jsonrpc.CodeInternalError, "the member failed: "+err.Error()))
		}
		g.metrics.rpcCalls.WithLabelValues(req.Method, "ok").Inc()
		if req.IsNotification() || resp == nil {
			return nil
		}
		return resp
	}
}

// forward posts one call to a member's method path; the caller holds the
// member's lease.
func (g *Gateway) forward(ctx context.Context, route *routing.Route, b *routing.Backend, cl *caller, body []byte, budget *atomic.Int64) (*jsonrpc.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+b.Addr+route.MethodPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(UserHeader, cl.User)
	resp, err := g.proxy.transport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil
	}
	limit := min(int64(maxRPCBody), budget.Load())
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > limit || budget.Add(-int64(len(raw))) < 0 {
		return nil, errReplyTooLarge
	}
	var out jsonrpc.Response
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("answer is not JSON-RPC (HTTP %d)", resp.StatusCode)
	}
	return &out, nil
}
