package app

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/nats-io/nuid"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/store"
)

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// router serves the ops routes every service has, plus the service's own.
func (r *Running) router(cfg config.Service, routes func(chi.Router)) http.Handler {
	m := chi.NewRouter()
	m.Use(requestID, r.Metrics.HTTP, middleware.Recoverer)
	m.Get("/", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hello from " + cfg.ID + "\n"))
	})
	m.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.Get("/readyz", r.ready)
	m.Method(http.MethodGet, "/metrics", r.Metrics.Handler())
	m.Get("/breakers", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, Breakers{Service: cfg.Name, ID: cfg.ID, Circuits: r.circuits(), Chaos: r.chaos.state()})
	})
	m.Get("/chaos", r.chaos.get)
	m.Put("/chaos", r.chaos.put)
	if routes != nil {
		routes(m)
	}
	m.NotFound(func(w http.ResponseWriter, _ *http.Request) { WriteError(w, http.StatusNotFound, "not found", "") })
	m.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, http.StatusMethodNotAllowed, "method not allowed", "")
	})
	return m
}

// requestID takes the client's X-Request-Id when it is a sane one (it travels in NATS headers,
// logs and documents: an unbounded one could make every call fail) or makes one, keeps it where
// chi's middleware.GetReqID finds it, and returns it to the client.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get(middleware.RequestIDHeader)
		if !saneRequestID.MatchString(id) {
			id = nuid.Next()
		}
		w.Header().Set(middleware.RequestIDHeader, id)
		next.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), middleware.RequestIDKey, id)))
	})
}

var saneRequestID = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)

// ready answers 200 when the store answers within a second and NATS is connected, else 503.
func (r *Running) ready(w http.ResponseWriter, req *http.Request) {
	checks := map[string]string{"store": "ok", "nats": "ok"}
	status := http.StatusOK
	if err := store.Ping(req.Context(), r.mongo, time.Second); err != nil {
		checks["store"], status = "unavailable", http.StatusServiceUnavailable
	}
	if !r.nc.IsConnected() {
		checks["nats"], status = r.nc.Status().String(), http.StatusServiceUnavailable
	}
	WriteJSON(w, status, checks)
}

// Breakers is what GET /breakers shows: the process's outgoing circuits and its faults.
type Breakers struct {
	Service  string    `json:"service"`
	ID       string    `json:"id"`
	Circuits []Circuit `json:"circuits"`
	Chaos    Chaos     `json:"chaos"`
}

// Circuit is one outgoing circuit as /breakers and `nats micro stats` show it.
type Circuit struct {
	Target         string  `json:"target"`
	State          string  `json:"state"`
	Executions     uint    `json:"executions"`
	Failures       uint    `json:"failures"`
	FailureRate    float64 `json:"failure_rate"`
	RemainingDelay string  `json:"remaining_delay,omitempty"`
}

func (r *Running) circuits() []Circuit {
	out := []Circuit{}
	if q := r.Requester; q != nil {
		b := q.Breaker()
		m := b.Metrics()
		c := Circuit{Target: q.Route().To, State: q.State(), Executions: m.Executions(),
			Failures: m.Failures(), FailureRate: m.FailureRate()}
		if d := b.RemainingDelay(); d > 0 {
			c.RemainingDelay = d.Round(time.Millisecond).String()
		}
		out = append(out, c)
	}
	return out
}

// WriteJSON writes v as the JSON body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // the seed's "->" stays readable
	_ = enc.Encode(v)
}

// ErrorBody is every error answer: what is wrong and, for invalid input, which field.
type ErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// WriteError writes an ErrorBody. msg must be safe to show: never internal error text.
func WriteError(w http.ResponseWriter, status int, msg, field string) {
	WriteJSON(w, status, ErrorBody{Error: msg, Field: field})
}
