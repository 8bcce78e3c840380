// Package logging builds the process's slog logger from LOG_FORMAT (text|json) and LOG_LEVEL
// (debug|info|warn|error). Every line logged with a request's context carries its request_id,
// on every hop, and its trace_id when the request is part of a trace: the handler reads both from
// the context, so no call site has to remember them.
// It must not know the services: it reads the request id any layer put in the context.
package logging

import (
	"context"
	"io"
	"log/slog"

	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/otel/trace"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/messaging"
)

// New returns the logger the environment asks for, writing to w.
func New(w io.Writer, lookup config.Lookup) (*slog.Logger, slog.Level, error) {
	s := config.NewSource("", lookup)
	format := s.OneOf("LOG_FORMAT", "text", "text", "json")
	var level slog.Level
	switch s.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error") {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	if err := s.Err(); err != nil {
		return nil, level, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(WithRequestIDs(slog.NewJSONHandler(w, opts))), level, nil
	}
	return slog.New(WithRequestIDs(slog.NewTextHandler(w, opts))), level, nil
}

// WithRequestIDs adds request_id to every record logged with a context that has one: the
// messaging.Call of a hop, or the HTTP request id chi's middleware keeps; and trace_id, the W3C
// trace id of the span in the context, when there is one (a client's traceparent counts even
// with tracing off: it is the id the client will look for).
func WithRequestIDs(h slog.Handler) slog.Handler { return requestIDs{h} }

type requestIDs struct{ slog.Handler }

func (h requestIDs) Handle(ctx context.Context, r slog.Record) error {
	id := messaging.CallFrom(ctx).RequestID
	if id == "" {
		id = middleware.GetReqID(ctx)
	}
	if id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDs) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDs{h.Handler.WithAttrs(as)}
}
func (h requestIDs) WithGroup(name string) slog.Handler { return requestIDs{h.Handler.WithGroup(name)} }
