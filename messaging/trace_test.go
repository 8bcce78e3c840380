package messaging_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
)

// A request's trace context reaches the handler whatever the case its header name arrives in
// (nats.Header is case-sensitive; a client or a proxy may lower-case names, or write them as HTTP
// does), and a Requester sends the trace context of its caller on: the handler sees the caller's
// trace id, even with no TracerProvider at either end.
func TestTraceContextCrossesNATS(t *testing.T) {
	nc := connect(t)
	traces := make(chan trace.SpanContext, 1)
	r, err := messaging.Serve(nc, messaging.Endpoint{Service: "tr", Version: "1.0.0", Subject: "tr.create"},
		func(ctx context.Context, _ []byte) (messaging.Reply, error) {
			traces <- trace.SpanContextFromContext(ctx)
			return messaging.ReplyDone("tr", time.Now(), false, nil), nil
		}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, name := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		t.Run(name, func(t *testing.T) {
			msg := nats.NewMsg("tr.create")
			msg.Header[name] = []string{"00-" + traceID + "-" + parent + "-01"}
			if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if sc := <-traces; sc.TraceID().String() != traceID || sc.SpanID().String() != parent {
				t.Errorf("handler's trace %s span %s, want %s %s", sc.TraceID(), sc.SpanID(), traceID, parent)
			}
		})
	}

	q := messaging.NewRequester(nc, messaging.Route{From: "caller", To: "tr", Subject: "tr.create"}, messaging.DefaultBreakerSettings, testkit.Logger(t))
	tid, _ := trace.TraceIDFromHex(traceID)
	sid, _ := trace.SpanIDFromHex(parent)
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	if reply := q.Request(ctx, []byte(`{}`)); reply.Outcome != messaging.OutcomeOK {
		t.Fatalf("request: %+v", reply)
	}
	if sc := <-traces; sc.TraceID().String() != traceID {
		t.Errorf("handler of a Requester's call: trace %s, want the caller's %s", sc.TraceID(), traceID)
	}
}
