package service

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/cors"
	"github.com/nats-io/nuid"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
)

// Limits of every service's HTTP server. A client that sends its headers slowly, never finishes
// its body or holds an idle connection is cut off; headers and bodies are bounded.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	// WriteTimeout is well above the longest a create can take with the default settings
	// (the chain's timeout plus the store's bounds).
	WriteTimeout = 30 * time.Second
	IdleTimeout  = 60 * time.Second
	// MaxHeaderBytes bounds a request's headers: past it, 431 with a JSON error
	// (wire.HeaderLimit). The server itself reads up to four times as much before it answers
	// 431 on its own, in text: no handler runs.
	MaxHeaderBytes = wire.MaxHeaderBytes
	// MaxBody bounds every request body; order's /create answers 413 beyond it.
	MaxBody = wire.MaxBody
)

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    4 * MaxHeaderBytes,
	}
}

// router serves the ops routes every service has, plus the service's own. Middleware, outermost
// first: request id, the trace (its span holds the metrics' exemplar and the logs' trace id),
// metrics (they see the 500 of a panic), the JSON recoverer, the headers' limit, HEAD served as
// GET, CORS when configured, the body limit.
func (r *Running) router(cfg config.Settings, routes func(chi.Router)) http.Handler {
	m := chi.NewRouter()
	m.Use(requestID, traceHTTP(r.traces), r.Metrics.HTTP, recoverer(r.log), wire.HeaderLimit, middleware.GetHead)
	if len(cfg.CORSOrigins) > 0 {
		// Unset, no CORS headers are sent and browsers keep other origins out.
		m.Use(cors.Handler(cors.Options{
			AllowedOrigins: cfg.CORSOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost},
			AllowedHeaders: []string{"Accept", "Content-Type", middleware.RequestIDHeader, "Traceparent", "Tracestate"},
			ExposedHeaders: []string{middleware.RequestIDHeader, "Retry-After"},
			MaxAge:         600,
		}))
	}
	m.Use(middleware.RequestSize(MaxBody))
	m.Get("/", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hello from " + cfg.ID + "\n"))
	})
	m.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		wire.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.Get("/readyz", r.ready)
	m.Method(http.MethodGet, "/metrics", r.Metrics.Handler())
	m.Get("/breakers", func(w http.ResponseWriter, _ *http.Request) {
		wire.WriteJSON(w, http.StatusOK, r.breakers(cfg))
	})
	if cfg.PProf {
		// Off unless asked for: profiles show internals and cost CPU while taken.
		m.Mount("/debug", middleware.Profiler())
	}
	m.Get("/chaos", r.chaos.Get)
	m.Put("/chaos", r.chaos.Put)
	if routes != nil {
		routes(m)
	}
	wire.JSONErrors(m)
	return m
}

// requestID takes the client's X-Request-Id when it is a sane one (it travels in NATS headers,
// logs and documents: an unbounded one could make every call fail) or makes one, keeps it where
// chi's middleware.GetReqID finds it, and returns it to the client.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get(middleware.RequestIDHeader)
		if !messaging.ValidRequestID(id) {
			id = nuid.Next()
		}
		w.Header().Set(middleware.RequestIDHeader, id)
		next.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), middleware.RequestIDKey, id)))
	})
}

// recoverer turns a panic in a handler into a JSON 500 that says nothing of it; the panic and
// its stack go to the log. http.ErrAbortHandler is the server's own way to abort a response and
// is let through.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			defer func() {
				rec := recover()
				if rec == nil {
					return
				}
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				log.ErrorContext(req.Context(), "panic serving request", "method", req.Method, "path", req.URL.Path,
					"panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
				wire.WriteError(w, http.StatusInternalServerError, "internal error", "")
			}()
			next.ServeHTTP(w, req)
		})
	}
}

// ready answers 200 when the store answers within a second and NATS is connected (both
// connections, with a queue's own), else 503.
func (r *Running) ready(w http.ResponseWriter, req *http.Request) {
	checks := map[string]string{"store": "ok", "nats": "ok"}
	status := http.StatusOK
	if err := store.Ping(req.Context(), r.mongo, time.Second); err != nil {
		checks["store"], status = "unavailable", http.StatusServiceUnavailable
	}
	if !r.nc.IsConnected() {
		checks["nats"], status = r.nc.Status().String(), http.StatusServiceUnavailable
	}
	if r.queue != r.nc {
		checks["nats_queue"] = "ok"
		if !r.queue.IsConnected() {
			checks["nats_queue"], status = r.queue.Status().String(), http.StatusServiceUnavailable
		}
	}
	for name, check := range r.checks {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		checks[name] = "ok"
		if err := check(ctx); err != nil {
			checks[name], status = "unavailable", http.StatusServiceUnavailable
		}
		cancel()
	}
	wire.WriteJSON(w, status, checks)
}

// breakers is what GET /breakers and circuits.<service> show (observe.Breakers).
func (r *Running) breakers(cfg config.Settings) observe.Breakers {
	b := observe.Breakers{Service: cfg.Name, ID: cfg.ID, Circuits: r.circuits(), Chaos: r.chaos.State()}
	if r.limiters != nil {
		b.Limiters = r.limiters()
	}
	return b
}

func (r *Running) circuits() []observe.Circuit {
	out := []observe.Circuit{}
	if q := r.Requester; q != nil {
		b := q.Breaker()
		executions, failures, rate := q.Window()
		set := q.Settings()
		c := observe.Circuit{Target: q.Route().To, State: q.State(), Executions: executions,
			Failures: failures, FailureRate: rate,
			Threshold: set.FailureRate, MinCalls: set.MinCalls, Window: set.Window.String(), Delay: set.Delay.String(),
			Calls: q.Stats()}
		if d := b.RemainingDelay(); d > 0 {
			c.RemainingDelay = d.Round(time.Millisecond).String()
		}
		out = append(out, c)
	}
	return out
}
