package service

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/breakerchain/breakerchain/internal/metrics"
)

// opsPaths are the ops routes every service serves (router): probes, scrapes and the operators'
// views, every few seconds. They are not traced: a trace each would bury the requests'.
var opsPaths = map[string]bool{"/": true, "/healthz": true, "/readyz": true, "/metrics": true, "/breakers": true, "/chaos": true}

// traceHTTP opens a server span for every request to the service's own routes (order's
// POST /create and GET /orders/{id}), continuing the client's trace when its request carries a
// W3C traceparent, else starting one. The span is named after the route pattern, never the
// raw path, as OpenTelemetry's HTTP conventions say.
func traceHTTP(tp trace.TracerProvider) func(http.Handler) http.Handler {
	tracer := tp.Tracer("github.com/breakerchain/breakerchain/internal/service")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if opsPaths[req.URL.Path] || strings.HasPrefix(req.URL.Path, "/debug/") {
				next.ServeHTTP(w, req)
				return
			}
			ctx := propagation.TraceContext{}.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
			ctx, span := tracer.Start(ctx, req.Method, trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			if !span.IsRecording() {
				next.ServeHTTP(w, req.WithContext(ctx)) // the client's trace id still reaches the logs
				return
			}
			ww := middleware.NewWrapResponseWriter(w, req.ProtoMajor)
			next.ServeHTTP(ww, req.WithContext(ctx))
			route := "unmatched"
			if rc := chi.RouteContext(ctx); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			span.SetName(req.Method + " " + route)
			span.SetAttributes(semconv.HTTPRequestMethodKey.String(httpMethod(req.Method)), semconv.HTTPRoute(route),
				semconv.URLPath(req.URL.Path), semconv.HTTPResponseStatusCode(ww.Status()))
			if ww.Status() >= http.StatusInternalServerError {
				span.SetStatus(codes.Error, http.StatusText(ww.Status()))
			}
		})
	}
}

// httpMethod bounds the method attribute as the HTTP conventions ask: "_OTHER" for one a client
// invents (the metrics bound it the same way).
func httpMethod(m string) string {
	if m = metrics.Method(m); m == metrics.OtherMethod {
		return "_OTHER"
	}
	return m
}
