package messaging

import (
	"context"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/breakerchain/breakerchain/internal/problem"
)

// Traces
//
// Every request carries the W3C trace context (traceparent, tracestate) of the span that sent it,
// so one order is one trace across the chain. The requester opens a client span per call (a
// create or a void), named "send <subject>" after OpenTelemetry's messaging conventions, with
// the target, the circuit's state before the call and the outcome; every breaker event of the
// call but a success (a failure, a timeout, a retry, an open circuit's rejection, a full bulkhead,
// the fallback) is an event on it.
// A call the open circuit rejects is never sent, so no span appears at the target. The responder
// opens a server span per request it handles, a child of the caller's. Nothing here picks an
// exporter: a TracerProvider is passed in (WithTracing, Endpoint.Tracing), and without one the
// spans are no-ops that still carry a trace context they were given.

// Span attributes of this package beside OpenTelemetry's semantic conventions.
const (
	AttrBreakerState = attribute.Key("breakerchain.breaker.state") // the circuit's state before the call
	AttrOutcome      = attribute.Key("breakerchain.outcome")       // the Reply's outcome
	AttrAttempts     = attribute.Key("breakerchain.attempts")      // the calls made, retries included
	AttrReason       = attribute.Key("breakerchain.reason")        // why a call did not succeed
	AttrRequestID    = attribute.Key("breakerchain.request_id")    // the Call's request id
)

// instrumentation names the tracer of this package.
const instrumentation = "github.com/breakerchain/breakerchain/messaging"

// traceContext is the W3C Trace Context propagator: traceparent and tracestate, nothing else.
var traceContext = propagation.TraceContext{}

// HeaderCarrier adapts nats.Header to a propagation.TextMapCarrier. nats.Header is
// case-sensitive, but a header may arrive with its name in another case than it was written in
// (a client or a proxy that lower-cases names, or "Traceparent" from an HTTP-minded one): Get
// finds a name in any case.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value of key, whatever the case of its name.
func (c HeaderCarrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	for k, vs := range c {
		if len(vs) > 0 && strings.EqualFold(k, key) {
			return vs[0]
		}
	}
	return ""
}

// Set sets key to value.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the names of the headers.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectTrace writes the trace context of ctx into h; nothing when ctx has none.
func InjectTrace(ctx context.Context, h nats.Header) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		traceContext.Inject(ctx, HeaderCarrier(h))
	}
}

// ExtractTrace returns ctx with the remote trace context h carries, if any.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	return traceContext.Extract(ctx, HeaderCarrier(h))
}

// TraceParent is the traceparent of the span in ctx ("" when there is none): what a record keeps
// to be linked to later.
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c.Get("traceparent")
}

// SpanContextOf parses a traceparent (TraceParent's) back into the span context it names; an
// invalid one when s is not one.
func SpanContextOf(s string) trace.SpanContext {
	if s == "" {
		return trace.SpanContext{}
	}
	ctx := traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": s})
	return trace.SpanContextFromContext(ctx)
}

// tracerOf is tp's tracer for this package; a no-op one when tp is nil.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(instrumentation)
}

// messagingAttrs are the semantic-convention attributes of a span about subject.
func messagingAttrs(op attribute.KeyValue, subject string) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.MessagingSystemKey.String("nats"), op,
		semconv.MessagingDestinationName(subject), semconv.MessagingOperationName(operationName(op)),
	}
}

func operationName(op attribute.KeyValue) string {
	if op == semconv.MessagingOperationTypeSend {
		return "request"
	}
	return "process"
}

// startCall opens the client span of a call on subject; the breaker's state is read before the
// call is made.
func (r *Requester) startCall(ctx context.Context, subject string) (context.Context, trace.Span) {
	ctx, span := r.tracer.Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(messagingAttrs(semconv.MessagingOperationTypeSend, subject)...)
		span.SetAttributes(semconv.ServicePeerName(r.route.To), AttrBreakerState.String(r.State().String()))
		if id := CallFrom(ctx).RequestID; id != "" {
			span.SetAttributes(AttrRequestID.String(id))
		}
	}
	return ctx, span
}

// endCall records what the call came to, after attempts sends, on its span and ends it.
func endCall(span trace.Span, reply Reply, attempts int) {
	if span.IsRecording() {
		span.SetAttributes(AttrOutcome.String(string(reply.Outcome)), AttrAttempts.Int(attempts))
		if !reply.Outcome.Succeeded() {
			span.SetAttributes(AttrReason.String(reply.Reason))
			span.SetStatus(codes.Error, string(reply.Outcome)+": "+reply.Reason)
		}
	}
	span.End()
}

// spanEvent adds be to the span in ctx as an event named after it (the seed's names). A success
// is left out: the call's outcome says it, and it is most of the events.
func spanEvent(ctx context.Context, be BreakerEvent) {
	span := trace.SpanFromContext(ctx)
	if be.Event == EventSuccess || !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{AttrBreakerState.String(be.State.String())}
	if be.Reason != "" {
		attrs = append(attrs, AttrReason.String(be.Reason))
	}
	span.AddEvent(string(be.Event), trace.WithAttributes(attrs...))
}

// startHandling opens the server span of a request on subject, a child of the caller's span when
// the request carries one.
func (r *Responder) startHandling(ctx context.Context, subject string, h nats.Header) (context.Context, trace.Span) {
	ctx, span := r.tracer.Start(ExtractTrace(ctx, h), "process "+subject, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(messagingAttrs(semconv.MessagingOperationTypeProcess, subject)...)
		span.SetAttributes(semconv.MessagingConsumerGroupName(r.ep.Service))
	}
	return ctx, span
}

// endHandling records the service error the request was answered with, if any, on the span in
// ctx and ends it.
func endHandling(ctx context.Context, err error) {
	span := trace.SpanFromContext(ctx)
	if err != nil && span.IsRecording() {
		se := problem.From(err)
		span.SetAttributes(semconv.RPCResponseStatusCode(strconv.Itoa(se.Code)))
		if se.Code >= 500 {
			span.SetStatus(codes.Error, se.Description)
		}
	}
	span.End()
}

// TraceIDOf is the trace id a traceparent names, "" when s is not one.
func TraceIDOf(s string) string {
	if sc := SpanContextOf(s); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}
