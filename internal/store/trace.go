package store

import (
	"context"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Traces of the store
//
// TraceCommands is the driver's own command monitor turned into spans, rather than
// OpenTelemetry's contrib instrumentation: none exists for driver v2 on the module proxy (only
// for v1, a driver this project does not use), and the inserts here leave in batches, which
// only this package knows how to attribute. A command is a client span named after the
// database conventions ("insert orders"), a child of the span of the request that asked for it;
// a batch carrying several requests' documents is a child of the first one's span and links to
// the others', so each of their traces leads to it. A command sent outside any trace (the
// re-driver's polls, the reconciler's sweeps, the driver's own handshakes) makes no span: on
// its own it would be a trace of one span every few seconds.

// Housekeeping reports whether a command is the driver's own (handshakes, pings, session ends),
// not a store operation of ours.
func Housekeeping(command string) bool {
	return strings.HasPrefix(command, "isMaster") || command == "hello" || command == "ping" || command == "endSessions"
}

// TraceCommands returns a command monitor that opens a span per command sent by a traced
// request, with tp's tracer; give it to Connect (with Monitors, beside the metrics').
func TraceCommands(tp trace.TracerProvider) *event.CommandMonitor {
	tracer := tp.Tracer("github.com/breakerchain/breakerchain/internal/store")
	var spans sync.Map // driver request id → its span, between a command's start and end
	end := func(id int64, failure error) {
		s, ok := spans.LoadAndDelete(id)
		if !ok {
			return
		}
		span := s.(trace.Span)
		if failure != nil {
			span.SetStatus(codes.Error, failure.Error())
		}
		span.End()
	}
	return &event.CommandMonitor{
		Started: func(ctx context.Context, e *event.CommandStartedEvent) {
			if !trace.SpanContextFromContext(ctx).IsValid() || Housekeeping(e.CommandName) {
				return
			}
			opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(batchLinks(ctx)...)}
			name, coll := e.CommandName, ""
			if el, err := e.Command.IndexErr(0); err == nil {
				// The collection is the value of the command's first element: {insert: "orders", …}.
				if c, ok := el.Value().StringValueOK(); ok {
					coll = c
					name += " " + c
				}
			}
			_, span := tracer.Start(ctx, name, opts...)
			if span.IsRecording() {
				span.SetAttributes(semconv.DBSystemNameMongoDB, semconv.DBOperationName(e.CommandName),
					semconv.DBNamespace(e.DatabaseName), semconv.DBCollectionName(coll))
			}
			spans.Store(e.RequestID, span)
		},
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) { end(e.RequestID, nil) },
		Failed:    func(_ context.Context, e *event.CommandFailedEvent) { end(e.RequestID, e.Failure) },
	}
}

// Monitors is one command monitor that calls each of ms (the driver takes one); nil ones are
// left out.
func Monitors(ms ...*event.CommandMonitor) *event.CommandMonitor {
	var live []*event.CommandMonitor
	for _, m := range ms {
		if m != nil {
			live = append(live, m)
		}
	}
	return &event.CommandMonitor{
		Started: func(ctx context.Context, e *event.CommandStartedEvent) {
			for _, m := range live {
				if m.Started != nil {
					m.Started(ctx, e)
				}
			}
		},
		Succeeded: func(ctx context.Context, e *event.CommandSucceededEvent) {
			for _, m := range live {
				if m.Succeeded != nil {
					m.Succeeded(ctx, e)
				}
			}
		},
		Failed: func(ctx context.Context, e *event.CommandFailedEvent) {
			for _, m := range live {
				if m.Failed != nil {
					m.Failed(ctx, e)
				}
			}
		},
	}
}

type batchKey struct{}

// withCallers makes ctx, a batch's own, carry its callers' traces: the first one's span as its
// parent, the others' as links (see TraceCommands).
func withCallers(ctx context.Context, callers []*queued) context.Context {
	var links []trace.Link
	for _, q := range callers {
		sc := trace.SpanContextFromContext(q.ctx)
		switch {
		case !sc.IsValid():
		case !trace.SpanContextFromContext(ctx).IsValid():
			ctx = trace.ContextWithSpanContext(ctx, sc)
		default:
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	if len(links) > 0 {
		ctx = context.WithValue(ctx, batchKey{}, links)
	}
	return ctx
}

// batchLinks are the links withCallers put in ctx.
func batchLinks(ctx context.Context) []trace.Link {
	links, _ := ctx.Value(batchKey{}).([]trace.Link)
	return links
}
