package order

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/breakerchain/breakerchain/messaging"
)

// Traces of orders
//
// An order's first run is the trace of its POST /create (the client's, when it sent a
// traceparent): the record keeps that span's traceparent (store.Meta.Trace), written once with
// the order, so whatever reads the order — GET /orders/{id}, any instance's re-driver, after any
// restart — finds it. The timer's entry would not do: it is written anew on every run and by the
// reconciler, which has no trace. A re-drive is a trace of its own (it is not part of the
// client's request, and may come hours later) that links to the first one.

// AttrOrderStatus is the status a run left the order in: completed, rejected, or pending (the
// fallback: saved, to be re-driven).
const AttrOrderStatus = attribute.Key("breakerchain.order.status")

// traceOutcome puts what a run of the chain made of the order on the run's span.
func traceOutcome(ctx context.Context, out *state) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrOrderStatus.String(out.Status), attribute.Int("breakerchain.order.attempt", out.Attempts))
	if !out.final() {
		span.AddEvent("pending", trace.WithAttributes(messaging.AttrReason.String(out.Reason)))
	}
}

// startRedrive opens the span of a re-drive of rec: a new trace, linked to the order's first.
func (d *redriver) startRedrive(ctx context.Context, rec *record) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindInternal)}
	if first := messaging.SpanContextOf(rec.Trace); first.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: first,
			Attributes: []attribute.KeyValue{attribute.String("breakerchain.link", "first run of the order")}}))
	}
	ctx, span := d.hop.Tracer.Start(ctx, "redrive order", opts...)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("breakerchain.order.id", rec.ID))
	}
	return ctx, span
}
