package gateway

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tidepool-run/tidepool/gateway/routing"
)

// metrics are the gateway's Prometheus metrics, in their own registry.
type metrics struct {
	// pools caches each pool's metric handles, keeping label lookups off
	// the request path.
	pools    sync.Map // pool label → *poolMetrics
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	upstream *prometheus.CounterVec
	tcpConns *prometheus.CounterVec
	rpcCalls *prometheus.CounterVec
	queued   *prometheus.CounterVec
}

// heldCollector reports each pool's held requests.
type heldCollector struct {
	stats *routing.Registry
	desc  *prometheus.Desc
}

func (c heldCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c heldCollector) Collect(ch chan<- prometheus.Metric) {
	c.stats.EachQueue(func(poolID string, q *routing.Queue) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(q.Held()), poolID)
	})
}

func newMetrics(w *routing.Watcher, stats *routing.Registry) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidepool_gateway_requests_total", Help: "HTTP requests proxied, by pool and status code.",
		}, []string{"pool", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tidepool_gateway_request_duration_seconds", Help: "Time to serve a proxied HTTP request.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"pool"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidepool_gateway_upstream_errors_total", Help: "Failed upstream attempts, by pool and the status answered.",
		}, []string{"pool", "kind"}),
		tcpConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidepool_gateway_tcp_connections_total", Help: "TCP connections forwarded (WebSocket tunnels and raw listeners).",
		}, []string{"pool"}),
		rpcCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidepool_gateway_method_calls_total", Help: "JSON-RPC calls routed, by method and outcome.",
		}, []string{"method", "outcome"}),
		queued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidepool_gateway_queued_requests_total",
			Help: "Requests of autoscaled pools that waited for a member or a slot, by outcome: served, capacity_timeout (429), start_timeout (503), full (429), gone (client left).",
		}, []string{"pool", "outcome"}),
	}
	m.reg.MustRegister(m.queued, heldCollector{stats: stats, desc: prometheus.NewDesc(
		"tidepool_gateway_held_requests", "Requests waiting in a pool's queue now: demand the autoscaler counts.", []string{"pool_id"}, nil)})
	m.reg.MustRegister(m.requests, m.latency, m.upstream, m.tcpConns, m.rpcCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tidepool_gateway_table_age_seconds", Help: "Seconds since the routing table was last rebuilt.",
	}, func() float64 { return w.Age().Seconds() }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tidepool_gateway_routes", Help: "Routes in the routing table.",
	}, func() float64 { return float64(w.Table().Len()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tidepool_gateway_consul_reachable", Help: "1 while every Consul watch succeeds.",
	}, func() float64 {
		if w.ConsulOK() {
			return 1
		}
		return 0
	}))
	return m
}

func poolLabel(r *routing.Route) string { return r.Owner + "/" + r.Pool }

// poolMetrics are one pool's resolved metric handles.
type poolMetrics struct {
	latency prometheus.Observer
	ok      prometheus.Counter // code 200, the common case
	label   string
}

func (m *metrics) forPool(r *routing.Route) *poolMetrics {
	key := poolLabel(r)
	if pm, ok := m.pools.Load(key); ok {
		return pm.(*poolMetrics)
	}
	pm := &poolMetrics{
		latency: m.latency.WithLabelValues(key),
		ok:      m.requests.WithLabelValues(key, "200"),
		label:   key,
	}
	actual, _ := m.pools.LoadOrStore(key, pm)
	return actual.(*poolMetrics)
}

func (m *metrics) observe(r *routing.Route, code int, d time.Duration) {
	pm := m.forPool(r)
	if code == 200 {
		pm.ok.Inc()
	} else {
		m.requests.WithLabelValues(pm.label, strconv.Itoa(code)).Inc()
	}
	pm.latency.Observe(d.Seconds())
}

// retain removes the series of pools that are gone from t, so a gateway
// that has seen many pools come and go does not export them forever.
func (m *metrics) retain(t *routing.Table) {
	live := map[string]bool{}
	t.Each(func(_ string, r *routing.Route) { live[poolLabel(r)] = true })
	m.pools.Range(func(k, _ any) bool {
		label := k.(string)
		if live[label] {
			return true
		}
		m.pools.Delete(label)
		match := prometheus.Labels{"pool": label}
		m.requests.DeletePartialMatch(match)
		m.latency.DeletePartialMatch(match)
		m.upstream.DeletePartialMatch(match)
		m.tcpConns.DeletePartialMatch(match)
		m.queued.DeletePartialMatch(match)
		return true
	})
}

func (m *metrics) tcpConn(r *routing.Route) {
	m.forPool(r)
	m.tcpConns.WithLabelValues(poolLabel(r)).Inc()
}

func (m *metrics) queueOutcome(r *routing.Route, outcome string) {
	m.forPool(r)
	m.queued.WithLabelValues(poolLabel(r), outcome).Inc()
}

func (m *metrics) upstreamError(r *routing.Route, kind string) {
	m.forPool(r) // known, so retain removes it with its pool
	m.upstream.WithLabelValues(poolLabel(r), kind).Inc()
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
