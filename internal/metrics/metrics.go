// Package metrics is what each service shows on GET /metrics, with prometheus/client_golang:
// its circuits' state, calls by outcome and transitions (from the breaker events), HTTP request
// durations (a chi middleware) and store operation durations (the Mongo driver's command
// monitor), each with the trace it belongs to as an exemplar when the request is traced (shown in
// the OpenMetrics format). Every service has a registry of its own, so each service of the
// all-in-one shows its own on its own port; every series carries a "service" label.
// It must not know what a service does: it observes breakers, HTTP and store commands, and the
// gauges a service registers on its own.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.opentelemetry.io/otel/trace"

	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/messaging"
)

// Recorder holds one service's metrics.
type Recorder struct {
	service     string
	registry    *prometheus.Registry
	calls       *prometheus.CounterVec
	transitions *prometheus.CounterVec
	retries     *prometheus.CounterVec
	full        *prometheus.CounterVec
	outOfTime   *prometheus.CounterVec
	budget      *prometheus.CounterVec
	http        *prometheus.HistogramVec
	store       *prometheus.HistogramVec
	commands    sync.Map // driver request id → collection, between a command's start and end
}

// New makes the metrics of service (its role: order, payment, shipment).
func New(service string) *Recorder {
	labels := prometheus.Labels{"service": service}
	m := &Recorder{
		service:  service,
		registry: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerchain_circuit_calls_total", ConstLabels: labels,
			Help: "Calls through each outgoing circuit by outcome: success, failure, timeout, rejected.",
		}, []string{"target", "outcome"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerchain_circuit_transitions_total", ConstLabels: labels,
			Help: "State changes of each outgoing circuit, by the state entered.",
		}, []string{"target", "to"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerchain_retries_total", ConstLabels: labels,
			Help: "Retries of failed calls on each outgoing hop (each one is also a call through its circuit).",
		}, []string{"target"}),
		full: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerchain_bulkhead_rejected_total", ConstLabels: labels,
			Help: "Calls rejected at once because the hop's bulkhead was full (they never reach the circuit).",
		}, []string{"target"}),
		budget: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerchain_retries_refused_total", ConstLabels: labels,
			Help: "Retries not made because retries were already as large a share of the hop's calls in flight as RETRY_BUDGET allows (the failed call is answered as it failed).",
		}, []string{"target"}),
		outOfTime: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerchain_calls_out_of_time_total", ConstLabels: labels,
			Help: "Calls not sent because the caller's deadline left less than the hop's minimum budget (they never reach the circuit: the target is not to blame).",
		}, []string{"target"}),
		http: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "breakerchain_http_request_duration_seconds", ConstLabels: labels,
			Help:    "HTTP requests by method, route pattern and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5ms … 16s
		}, []string{"method", "route", "code"}),
		store: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "breakerchain_store_operation_duration_seconds", ConstLabels: labels,
			Help:    "Store commands by collection, command and result (ok or error).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16), // 0.2ms … 6.6s, past the 5s bound
		}, []string{"collection", "operation", "result"}),
	}
	m.registry.MustRegister(m.calls, m.transitions, m.retries, m.full, m.outOfTime, m.budget, m.http, m.store,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry for GET /metrics.
func (m *Recorder) Handler() http.Handler {
	// OpenMetrics, when a scraper asks for it, is the format that carries exemplars.
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry, EnableOpenMetrics: true})
}

// Registry is the service's registry.
func (m *Recorder) Registry() *prometheus.Registry { return m.registry }

// TrackState shows the state of the circuit towards target, read from state at every scrape:
// right from the start (failsafe-go fires no event for the initial state), and never left
// stale by two transitions' listeners interleaving.
func (m *Recorder) TrackState(target string, state func() messaging.State) {
	for _, s := range messaging.States {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "breakerchain_circuit_state",
			Help:        "1 for the state each outgoing circuit is in, 0 for the others.",
			ConstLabels: prometheus.Labels{"service": m.service, "target": target, "state": s.String()},
		}, func() float64 {
			if state() == s {
				return 1
			}
			return 0
		}))
	}
}

// Observe counts a breaker event; pass it to messaging.WithObserver.
func (m *Recorder) Observe(e messaging.BreakerEvent) {
	switch e.Event {
	case messaging.EventSuccess:
		m.calls.WithLabelValues(e.Target, messaging.CallSuccess.String()).Inc()
	case messaging.EventFailure:
		m.calls.WithLabelValues(e.Target, messaging.CallFailure.String()).Inc()
	case messaging.EventTimeout:
		m.calls.WithLabelValues(e.Target, messaging.CallTimeout.String()).Inc()
	case messaging.EventReject:
		m.calls.WithLabelValues(e.Target, messaging.CallRejected.String()).Inc()
	case messaging.EventOpen, messaging.EventHalfOpen, messaging.EventClose:
		m.transitions.WithLabelValues(e.Target, e.State.String()).Inc()
	case messaging.EventRetry:
		m.retries.WithLabelValues(e.Target).Inc()
	case messaging.EventFull:
		m.full.WithLabelValues(e.Target).Inc()
	case messaging.EventOutOfTime:
		m.outOfTime.WithLabelValues(e.Target).Inc()
	case messaging.EventBudget:
		m.budget.WithLabelValues(e.Target).Inc()
	}
}

// TrackFaults shows the injected faults in force (they may change at runtime, with CHAOS=1),
// read from faults at every scrape.
func (m *Recorder) TrackFaults(faults func() (errorRate float64, latency time.Duration)) {
	labels := prometheus.Labels{"service": m.service}
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "breakerchain_chaos_error_rate", ConstLabels: labels,
			Help: "The share of requests this service fails on purpose (INJECT_ERR_RATE, or chaos at runtime).",
		}, func() float64 { r, _ := faults(); return r }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "breakerchain_chaos_latency_seconds", ConstLabels: labels,
			Help: "The latency this service adds to every request on purpose (INJECT_LATENCY, or chaos at runtime).",
		}, func() float64 { _, l := faults(); return l.Seconds() }),
	)
}

// HTTP is a chi middleware timing every request by its route pattern (never the raw path, so
// ids do not explode the series).
func (m *Recorder) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		code := ww.Status()
		if code == 0 {
			code = 499 // nothing written: the client left first
		}
		observe(r.Context(), m.http.WithLabelValues(Method(r.Method), route, strconv.Itoa(code)), time.Since(start))
	})
}

// OtherMethod is the method label of any method but the standard ones.
const OtherMethod = "other"

// Method bounds the method label: any method a client invents would otherwise be a new series.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return OtherMethod
}

// CommandMonitor times every store command; give it to the Mongo client.
func (m *Recorder) CommandMonitor() *event.CommandMonitor {
	return &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			// The collection is the value of the command's first element: {insert: "orders", …}.
			if el, err := e.Command.IndexErr(0); err == nil {
				v := el.Value()
				if coll, ok := v.StringValueOK(); ok {
					m.commands.Store(e.RequestID, coll)
				}
			}
		},
		Succeeded: func(ctx context.Context, e *event.CommandSucceededEvent) {
			m.observeCommand(ctx, e.RequestID, e.CommandName, "ok", e.Duration)
		},
		Failed: func(ctx context.Context, e *event.CommandFailedEvent) {
			m.observeCommand(ctx, e.RequestID, e.CommandName, "error", e.Duration)
		},
	}
}

func (m *Recorder) observeCommand(ctx context.Context, id int64, name, result string, d time.Duration) {
	coll, ok := m.commands.LoadAndDelete(id)
	if !ok || store.Housekeeping(name) {
		return // handshakes and pings are not store operations
	}
	observe(ctx, m.store.WithLabelValues(coll.(string), name, result), d)
}

// observe records d, with the trace of ctx as the exemplar when it is sampled: a slow bucket on
// a dashboard then leads to a trace that fell in it. (A trace that is not sampled was not
// exported: it would lead nowhere.)
func observe(ctx context.Context, o prometheus.Observer, d time.Duration) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(d.Seconds(), prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	o.Observe(d.Seconds())
}
