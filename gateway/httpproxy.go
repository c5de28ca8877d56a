package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/gateway/routing"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// httpProxy forwards requests to members. Member selection happens in the
// transport, once per attempt, so a dial failure — before any byte of the
// request is sent — moves on to the next member.
type httpProxy struct {
	rp        *httputil.ReverseProxy
	pick      *pickTransport
	transport *http.Transport
	metrics   *metrics
	log       hclog.Logger
}

func newHTTPProxy(upstreamTimeout time.Duration, queueLimit int, table func() *routing.Table, demand func(string), m *metrics, log hclog.Logger) *httpProxy {
	t := &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: upstreamTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
	p := &httpProxy{transport: t, metrics: m, log: log,
		pick: &pickTransport{base: t, table: table, queueLimit: queueLimit, demand: demand, metrics: m}}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "member" // replaced per attempt by the transport
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:    p.pick,
		BufferPool:   bufferPool{},
		ErrorHandler: p.errorHandler,
		ErrorLog:     log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	return p
}

// attempt tracks which member serves a request; it lives in the request
// context from the handler to the transport and back. Its lease is the
// member's slot: taken per attempt, held until the response is copied.
type attempt struct {
	label string
	table *routing.Table // the table route[0] was found in
	route [1]*routing.Route
	tried []*routing.Backend
	lease routing.Lease
}

// resolve finds the attempt's route in t, looking it up again only when t
// is not the table it was last found in. A host that has left the table
// keeps its last route.
func (a *attempt) resolve(t *routing.Table) []*routing.Route {
	if t != a.table {
		if r, ok := t.Lookup(a.label); ok {
			a.route[0] = r
		}
		a.table = t
	}
	return a.route[:]
}

type attemptKey struct{}

// errNoMember: no routable member is left to try.
var errNoMember = errors.New("no healthy member")

// pickTransport picks a member per attempt and retries dial failures on
// the next one, replaying the body (nothing of it was sent). A request for
// an autoscaled pool that finds no free member waits in the pool's queue.
type pickTransport struct {
	base http.RoundTripper
	// table is the current routing table.
	table func() *routing.Table
	// queueLimit bounds each pool's queue.
	queueLimit int
	metrics    *metrics
	// demand tells the controllers that a pool with no routable member
	// holds a request, so it scales up without waiting for a scrape.
	demand func(poolID string)
}

// Errors of the queue, mapped to statuses by classify.
var (
	errAtCapacity = errors.New("every member is at capacity (container_concurrency) and none freed up within queue_timeout")
	errNotStarted = errors.New("no member became ready within queue_timeout")
	errQueueFull  = errors.New("too many requests are already waiting for this pool")
)

// wait holds the request in its pool's queue until a member has a slot,
// re-reading the route from the current table each time it tries: the
// member it gets may have started after the request arrived.
func (t *pickTransport) wait(ctx context.Context, a *attempt) (routing.Lease, error) {
	r := a.route[0]
	if len(r.Backends) == 0 && t.demand != nil {
		t.demand(r.PoolID)
	}
	qctx, cancel := context.WithTimeout(ctx, r.QueueTimeout)
	defer cancel()
	lease, err := r.Queue.Wait(qctx, t.queueLimit, func() (routing.Lease, bool) {
		return routing.AcquireCurrent(t.table, a.resolve, routing.RoundRobin, routing.HTTP, a.tried)
	})
	outcome, out := "served", error(nil)
	switch {
	case err == nil:
	case errors.Is(err, routing.ErrQueueFull):
		outcome, out = "full", errQueueFull
	case ctx.Err() != nil:
		outcome, out = "gone", ctx.Err() // the client gave up
	case len(a.route[0].Backends) > 0:
		outcome, out = "capacity_timeout", errAtCapacity
	default:
		outcome, out = "start_timeout", errNotStarted
	}
	if t.metrics != nil {
		t.metrics.queueOutcome(a.route[0], outcome)
	}
	return lease, out
}

func (t *pickTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	if a == nil {
		return nil, errors.New("gateway: request without a route")
	}
	var body *replayBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &replayBody{rc: req.Body}
	}
	var lastErr error
	replays := 0
	for {
		// The first attempt may hold a slot already (taken in the queue);
		// every other one takes a new slot.
		if !a.lease.Held() || len(a.tried) > 0 {
			a.lease.Release()
			// Every attempt picks from the table as it is now.
			lease, ok := routing.AcquireCurrent(t.table, a.resolve, routing.RoundRobin, routing.HTTP, a.tried)
			if !ok {
				if lastErr != nil {
					return nil, lastErr
				}
				return nil, errNoMember
			}
			a.lease = lease
		}
		b := a.lease.Backend
		a.tried = append(a.tried, b)
		// The request is the proxy's own outbound copy: aim it at b.
		req.URL.Host = b.Addr
		if body != nil {
			req.Body = body
		}
		resp, err := t.base.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		switch {
		case isDialError(err) && retryable(req, err, body):
		case replays < maxReplays && retryable(req, err, body):
			replays++
		default:
			return nil, err
		}
		lastErr = err
	}
}

// maxReplays bounds how often one request is replayed after a reset: a
// request that crashes its member must not walk the whole pool. Dial
// failures (nothing sent) are not counted.
const maxReplays = 1

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// replayBody lets a request body survive a failed dial: the transport
// closes the body it was given, so Close is deferred to the server, and
// Read records that sending began.
type replayBody struct {
	rc      io.ReadCloser
	started atomic.Bool
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.started.Store(true)
	return b.rc.Read(p)
}

func (b *replayBody) Close() error { return nil }

// retryable reports whether a failed attempt may go to another member: a
// dial failure (nothing was sent), or a connection reset or closed under an
// idempotent request without a body — the member went away with the
// request open, and it can be repeated safely. Whether the connection was
// a kept-alive one does not decide it (a member killed under load resets
// fresh connections too); the caller's replay budget (maxReplays) keeps a
// request that crashes members from walking the pool.
func retryable(req *http.Request, err error, body *replayBody) bool {
	switch {
	case req.Context().Err() != nil:
		return false
	case isDialError(err):
		return body == nil || !body.started.Load()
	case body != nil || !idempotent(req.Method):
		return false
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// serve proxies one request for host label on route, found in table. A request for an
// autoscaled pool takes its member's slot first, waiting in the pool's
// queue when there is none, before the proxy copies anything: a held
// request costs little more than its goroutine.
func (p *httpProxy) serve(w http.ResponseWriter, r *http.Request, label string, table *routing.Table, route *routing.Route) {
	a := &attempt{label: label, table: table, route: [1]*routing.Route{route}}
	defer a.lease.Release()
	if route.Autoscaled {
		// Requests already queued go first: a newcomer queues behind them.
		lease, ok := routing.Lease{}, false
		if route.Queue.Held() == 0 {
			lease, ok = routing.AcquireCurrent(p.pick.table, a.resolve, routing.RoundRobin, routing.HTTP, nil)
		}
		if !ok {
			var err error
			if lease, err = p.pick.wait(r.Context(), a); err != nil {
				p.errorHandler(w, r.WithContext(context.WithValue(r.Context(), attemptKey{}, a)), err)
				if status := statusOf(r.Context(), err); status != 0 {
					p.metrics.observe(a.route[0], status, 0)
				}
				return
			}
		}
		a.lease = lease
	}
	r = r.WithContext(context.WithValue(r.Context(), attemptKey{}, a))
	rec := &statusRecorder{ResponseWriter: w}
	start := time.Now()
	p.rp.ServeHTTP(rec, r)
	p.metrics.observe(a.route[0], rec.code(), time.Since(start))
}

// errorHandler maps a failed proxy attempt to its status: the one place
// that does (SPEC.md §5).
func (p *httpProxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := classify(r.Context(), err)
	if status == 0 {
		return // the client went away
	}
	if a, _ := r.Context().Value(attemptKey{}).(*attempt); a != nil {
		p.metrics.upstreamError(a.route[0], http.StatusText(status))
	}
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	p.log.Debug("upstream error", "host", r.Host, "status", status, "error", err)
	writeError(w, status, msg)
}

// statusOf is the status classify gives err, for metrics.
func statusOf(ctx context.Context, err error) int {
	status, _ := classify(ctx, err)
	return status
}

// classify maps an upstream error to a status and message; 0 means the
// client is gone and nothing should be written.
func classify(ctx context.Context, err error) (int, string) {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return 0, ""
	case errors.Is(err, errNoMember):
		return http.StatusServiceUnavailable, "no healthy member is available"
	case errors.Is(err, errAtCapacity), errors.Is(err, errQueueFull):
		return http.StatusTooManyRequests, err.Error()
	case errors.Is(err, errNotStarted):
		return http.StatusServiceUnavailable, err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, "the member did not answer in time"
	default:
		return http.StatusBadGateway, "the member failed: " + err.Error()
	}
}

// writeError answers with SPEC.md's JSON error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// UserHeader tells a member on a private port which Tidepool user called.
// The gateway sets it after checking the caller's token and removes any
// value a client sent, on every port.
const UserHeader = "X-Tidepool-User"

// serveHost routes a request for owner--pool--port.<domain>.
func (g *Gateway) serveHost(w http.ResponseWriter, r *http.Request, label string) {
	table := g.watcher.Table()
	route, ok := table.Lookup(label)
	if !ok {
		writeError(w, http.StatusNotFound, "no pool answers at "+r.Host)
		return
	}
	// The caller's identity reaches members only as the gateway states it,
	// and the client's address only as X-Forwarded-For.
	r.Header.Del(UserHeader)
	r.Header.Del("X-Real-Ip")
	if !route.Port.Public {
		caller, err := g.tokens.caller(r)
		switch {
		case err != nil:
			writeAuthError(w, err, "")
			return
		case !caller.mayUse(route.Owner):
			writeError(w, http.StatusNotFound, "no pool answers at "+r.Host)
			return
		}
		// The token was for the gateway: a member never sees it, or an
		// admin opening a tenant's port would hand the tenant its token.
		r.Header.Del("Authorization")
		r.Header.Set(UserHeader, caller.User)
		// Checking the token may have waited on Consul: look at the
		// table as it is now.
		table = g.watcher.Table()
		if route, ok = table.Lookup(label); !ok {
			writeError(w, http.StatusNotFound, "no pool answers at "+r.Host)
			return
		}
	}
	if route.Port.Protocol != pool.ProtocolHTTP {
		writeError(w, http.StatusBadRequest, "this port speaks tcp: use `tidepool pool forward` or a tcp_listener")
		return
	}
	if len(route.Backends) == 0 && !route.Waiting && !route.Autoscaled {
		writeError(w, http.StatusNotFound, "pool "+route.Pool+" has no running members (stopped)")
		return
	}
	g.proxy.serve(w, r, label, table, route)
}

// statusRecorder remembers the status written, for metrics; it passes
// Flush and Hijack through so streaming and WebSocket upgrades work.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
