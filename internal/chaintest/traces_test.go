package chaintest

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/breakerchain/breakerchain/internal/logging"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// The traces tests start the chain exporting to testkit.OTLP, an OTLP/HTTP receiver that decodes
// what it is sent, and stop the services before reading it: a stop flushes the batch, so what
// the receiver holds then is everything the services exported.

// clientTrace is a W3C traceparent a client would send, sampled: its trace id and its span id.
func clientTrace(t *testing.T) (traceparent, traceID, spanID string) {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	traceID, spanID = hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// postTraced posts the seed's order id with a client's traceparent, wants the status code want,
// and wants GET /orders/{id} to name the client's trace. It returns the trace id and the
// client's span id.
func postTraced(t *testing.T, o *testkit.Instance, id string, want int) (traceID, clientSpan string) {
	t.Helper()
	traceparent, traceID, clientSpan := clientTrace(t)
	if res := post(t, o, seedOrder(id), "traceparent", traceparent); res.code != want {
		t.Fatalf("order %s: %d %s, want %d", id, res.code, res.body, want)
	}
	var d order.Detail
	if err := jsonUnmarshal(do(t, http.MethodGet, o.URL()+"/orders/"+id, "").body, &d); err != nil || d.TraceID != traceID {
		t.Errorf("GET /orders/%s: trace_id %q (%v), want the client's %s", id, d.TraceID, err, traceID)
	}
	return traceID, clientSpan
}

// stopAll stops the services, in order: each flushes the spans it still batches.
func stopAll(services ...*testkit.Instance) {
	for _, s := range services {
		s.Stop()
	}
}

// tracedEnv exports every service's spans to r, every trace sampled.
func tracedEnv(r *testkit.Receiver) testkit.Env {
	return testkit.Env{"OTEL_EXPORTER_OTLP_ENDPOINT": r.URL, "OTEL_TRACES_SAMPLER": "always_on"}
}

// span finds the one span named name from service in spans.
func span(t *testing.T, spans []testkit.Span, service, name string) testkit.Span {
	t.Helper()
	var found []testkit.Span
	for _, s := range spans {
		if s.Service == service && s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one span %q from %s, got %d among:\n%s", name, service, len(found), listSpans(spans))
	}
	return found[0]
}

func listSpans(spans []testkit.Span) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString("  " + s.Service + " " + s.Name + " " + s.SpanID() + " ← " + s.ParentID() + "\n")
	}
	return b.String()
}

// childOf fails unless child's parent is parent.
func childOf(t *testing.T, child, parent testkit.Span) {
	t.Helper()
	if child.ParentID() != parent.SpanID() {
		t.Errorf("%s %q has parent %s, want %s %q (%s)", child.Service, child.Name, child.ParentID(), parent.Service, parent.Name, parent.SpanID())
	}
}

// Given the chain exporting traces, when a client sends the seed's order with its own
// traceparent, then the order is one trace with the client's trace id: order's POST /create is
// a child of the client's span, its call to payment a child of that, payment's handling a child
// of the call, and so on to shipment; each service names itself; the store's inserts are in it;
// GET /orders/{id} and payment's log lines name the trace.
func TestSeedOrderIsOneTrace(t *testing.T) {
	w := newWorld(t)
	r := testkit.OTLP(t)
	env := tracedEnv(r)
	s := w.start(shipment.Service, env)
	var paymentLog testkit.SyncBuffer
	p := testkit.StartLogged(t, from(payment.Service), w.natsURL, w.uri, w.db,
		testkit.Env{"BREAKER_TIMEOUT": "5s", "RETRY_MAX": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": r.URL},
		slog.New(logging.WithRequestIDs(slog.NewTextHandler(&paymentLog, nil))))
	o := w.start(order.Service, env)
	traceID, clientSpan := postTraced(t, o, "t1", http.StatusCreated)
	exemplar := ""
	for _, line := range strings.Split(string(do(t, http.MethodGet, o.URL()+"/metrics", "", "Accept", "application/openmetrics-text").body), "\n") {
		if strings.Contains(line, `route="/create"`) && strings.Contains(line, `trace_id="`+traceID+`"`) {
			exemplar = line
		}
	}
	if exemplar == "" {
		t.Errorf("no exemplar naming trace %s on order's POST /create latency (OpenMetrics /metrics)", traceID)
	}
	t.Logf("exemplar: %s", exemplar)
	stopAll(o, p, s)

	spans := r.Trace(t, traceID, func(spans []testkit.Span) bool { return len(spans) > 0 })
	t.Logf("trace %s:\n%s", traceID, testkit.Waterfall(spans))
	create := span(t, spans, "order", "POST /create")
	if create.ParentID() != clientSpan {
		t.Errorf("POST /create has parent %s, want the client's span %s", create.ParentID(), clientSpan)
	}
	toPayment := span(t, spans, "order", "send payment.create")
	childOf(t, toPayment, create)
	atPayment := span(t, spans, "payment", "process payment.create")
	childOf(t, atPayment, toPayment)
	toShipment := span(t, spans, "payment", "send shipment.create")
	childOf(t, toShipment, atPayment)
	atShipment := span(t, spans, "shipment", "process shipment.create")
	childOf(t, atShipment, toShipment)
	for _, call := range []testkit.Span{toPayment, toShipment} {
		if call.Attr("breakerchain.breaker.state") != "closed" || call.Attr("breakerchain.outcome") != "ok" ||
			call.Attr("messaging.system") != "nats" || call.Attr("breakerchain.attempts") != "1" {
			t.Errorf("%s %q: state %q outcome %q system %q attempts %q, want closed, ok, nats, 1", call.Service, call.Name,
				call.Attr("breakerchain.breaker.state"), call.Attr("breakerchain.outcome"), call.Attr("messaging.system"), call.Attr("breakerchain.attempts"))
		}
	}
	if got := create.Attr(string(order.AttrOrderStatus)); got != order.StatusCompleted {
		t.Errorf("POST /create: order status %q, want completed", got)
	}
	childOf(t, span(t, spans, "order", "insert orders"), create)
	childOf(t, span(t, spans, "payment", "insert payments"), atPayment)
	childOf(t, span(t, spans, "shipment", "insert shipments"), atShipment)
	if ins := span(t, spans, "payment", "insert payments"); ins.Attr("db.system.name") != "mongodb" || ins.Attr("db.collection.name") != payment.Collection {
		t.Errorf("payment's insert: db.system.name %q, db.collection.name %q", ins.Attr("db.system.name"), ins.Attr("db.collection.name"))
	}

	saving := ""
	for _, line := range strings.Split(paymentLog.String(), "\n") {
		if strings.Contains(line, "saving payment") {
			saving = line
		}
	}
	if !strings.Contains(saving, "trace_id="+traceID) || !strings.Contains(saving, "request_id=") {
		t.Errorf("payment's log line %q: want trace_id=%s beside its request_id", saving, traceID)
	}
}

// Given payment's circuit open in order, when an order comes with a traceparent, then order's
// call to payment carries the rejection as an event, outcome rejected, state open, and the
// trace has no span from payment: the request never left order.
func TestOpenCircuitRejectionIsOnOrdersSpan(t *testing.T) {
	w := newWorld(t)
	r := testkit.OTLP(t)
	o, p, s := w.chain(tracedEnv(r))
	o.Requester.Breaker().Open()
	traceID, _ := postTraced(t, o, "t2", http.StatusAccepted)
	stopAll(o, p, s)

	spans := r.Trace(t, traceID, func(spans []testkit.Span) bool { return len(spans) > 0 })
	t.Logf("trace %s:\n%s", traceID, testkit.Waterfall(spans))
	call := span(t, spans, "order", "send payment.create")
	if !call.HasEvent(string(messaging.EventReject)) || call.Attr("breakerchain.outcome") != string(messaging.OutcomeRejected) ||
		call.Attr("breakerchain.breaker.state") != "open" {
		t.Errorf("order's call to payment: events %v, outcome %q, state %q; want a reject event, rejected, open",
			call.Events, call.Attr("breakerchain.outcome"), call.Attr("breakerchain.breaker.state"))
	}
	if got := span(t, spans, "order", "POST /create").Attr(string(order.AttrOrderStatus)); got != order.StatusPending {
		t.Errorf("POST /create: order status %q, want pending (the fallback)", got)
	}
	for _, sp := range spans {
		if sp.Service != "order" {
			t.Errorf("span %q from %s in the trace of a call the open circuit refused", sp.Name, sp.Service)
		}
	}
}

// Given an order left pending by payment's open circuit, when the circuit closes and the
// re-driver completes it, then the re-drive is a trace of its own whose root links to the
// order's first run (the client's trace, its POST /create span), and payment's work is in it.
func TestRedriveLinksToFirstTrace(t *testing.T) {
	w := newWorld(t)
	r := testkit.OTLP(t)
	env := tracedEnv(r)
	s := w.start(shipment.Service, env)
	p := w.start(payment.Service, env)
	env["REDRIVE_RATE"], env["REDRIVE_BACKOFF"] = "100", "100ms"
	o := w.start(order.Service, env)
	o.Requester.Breaker().Open()
	traceID, _ := postTraced(t, o, "t3", http.StatusAccepted)
	o.Requester.Breaker().Close()
	completed(t, o, "t3")
	stopAll(o, p, s)

	first := span(t, r.Trace(t, traceID, func(s []testkit.Span) bool { return len(s) > 0 }), "order", "POST /create")
	var redrive testkit.Span
	for _, sp := range r.Spans() {
		if sp.Name == "redrive order" && sp.Attr(string(order.AttrOrderStatus)) == order.StatusCompleted {
			redrive = sp
		}
	}
	if redrive.Span == nil {
		t.Fatalf("no span of a completing re-drive among:\n%s", listSpans(r.Spans()))
	}
	if redrive.TraceID() == traceID || redrive.ParentID() != "" {
		t.Errorf("the re-drive's span is in trace %s under %q: want a root of a new trace", redrive.TraceID(), redrive.ParentID())
	}
	if len(redrive.Links) != 1 || hex.EncodeToString(redrive.Links[0].TraceId) != traceID ||
		hex.EncodeToString(redrive.Links[0].SpanId) != first.SpanID() {
		t.Errorf("the re-drive's links %v: want one, to the first run's POST /create (%s in %s)", redrive.Links, first.SpanID(), traceID)
	}
	// The re-drive's own writes are in its trace: the outcome it records.
	again := r.Trace(t, redrive.TraceID(), func(s []testkit.Span) bool {
		return slices.ContainsFunc(s, func(x testkit.Span) bool { return x.Name == "insert order_outcomes" })
	})
	t.Logf("the re-drive's trace %s:\n%s", redrive.TraceID(), testkit.Waterfall(again))
	childOf(t, span(t, again, "payment", "process payment.create"), span(t, again, "order", "send payment.create"))
	childOf(t, span(t, again, "order", "insert order_outcomes"), redrive)
}

// Given the chain with an endpoint but OTEL_SDK_DISABLED, or with no endpoint at all, when an
// order comes with a traceparent, then nothing reaches the receiver (and with no endpoint the
// provider is a no-op: tracing costs nothing), while the client's trace id still names the
// order in GET /orders/{id}: it is the client's own, passed on.
func TestNothingExportedWithoutEndpoint(t *testing.T) {
	w := newWorld(t)
	r := testkit.OTLP(t)
	o, p, s := w.chain(testkit.Env{"OTEL_EXPORTER_OTLP_ENDPOINT": r.URL, "OTEL_SDK_DISABLED": "true", "OTEL_TRACES_SAMPLER": "always_on"})
	postTraced(t, o, "t4", http.StatusCreated) // the client's trace id, passed on, names the order
	stopAll(o, p, s)
	if n := r.Exports(); n != 0 {
		t.Errorf("%d exports received with tracing disabled: %s", n, listSpans(r.Spans()))
	}
}
