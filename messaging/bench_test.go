package messaging_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
)

// benchTarget is a real responder (messaging.Serve on a real nats-server) answering every
// request with a one-hop envelope, and a connection to call it with.
func benchTarget(b *testing.B) *nats.Conn {
	b.Helper()
	ns := testkit.NATS(b)
	serve, err := nats.Connect(ns.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(serve.Close)
	r, err := messaging.Serve(serve, messaging.Endpoint{Service: "target", Version: "1.0.0", Subject: "target.create"},
		func(context.Context, []byte) (messaging.Reply, error) {
			return messaging.ReplyDone("target", time.Now(), false, nil), nil
		}, testkit.DiscardLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Stop(context.Background()) })
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

var benchRoute = messaging.Route{From: "bench", To: "target", Subject: "target.create"}

var benchBody = []byte(`{"id":"p1","amount":10,"shipment":{"id":"s1","directions":"left"}}`)

// bare is what a hop without a breaker would do: one request with the same timeout and headers.
func bare(b *testing.B, nc *nats.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), messaging.DefaultBreakerSettings.Timeout)
	defer cancel()
	msg := nats.NewMsg(benchRoute.Subject)
	msg.Data = benchBody
	msg.Header.Set(messaging.HeaderHop, "1")
	msg.Header.Set(messaging.HeaderTimeout, "300ms")
	if _, err := nc.RequestMsgWithContext(ctx, msg); err != nil {
		b.Fatal(err)
	}
}

func guarded(b *testing.B, r *messaging.Requester, ctx context.Context) {
	if reply := r.Request(ctx, benchBody); reply.Outcome != messaging.OutcomeOK {
		b.Fatalf("outcome %s (%s)", reply.Outcome, reply.Reason)
	}
}

// BenchmarkRequest is one request to a real responder, bare (nats.go's RequestMsgWithContext) and
// guarded (the Requester: fallback, breaker, timeout, events logged and published).
func BenchmarkRequest(b *testing.B) {
	ctx := messaging.WithCall(context.Background(), messaging.Call{Hop: 1, RequestID: "bench"})
	b.Run("bare", func(b *testing.B) {
		nc := benchTarget(b)
		b.ReportAllocs()
		for b.Loop() {
			bare(b, nc)
		}
	})
	b.Run("guarded", func(b *testing.B) {
		nc := benchTarget(b)
		r := messaging.NewRequester(nc, benchRoute, messaging.DefaultBreakerSettings, testkit.DiscardLogger())
		b.ReportAllocs()
		for b.Loop() {
			guarded(b, r, ctx)
		}
	})
}

// BenchmarkGuardOverhead measures the bare and the guarded request side by side, alternating in
// one loop against one responder so that both see the same machine, and reports what the guard
// adds: overhead-% is (guarded − bare) / bare.
func BenchmarkGuardOverhead(b *testing.B) {
	nc := benchTarget(b)
	r := messaging.NewRequester(nc, benchRoute, messaging.DefaultBreakerSettings, testkit.DiscardLogger())
	ctx := messaging.WithCall(context.Background(), messaging.Call{Hop: 1, RequestID: "bench"})
	var bareTime, guardedTime time.Duration
	for b.Loop() {
		start := time.Now()
		bare(b, nc)
		mid := time.Now()
		guarded(b, r, ctx)
		bareTime += mid.Sub(start)
		guardedTime += time.Since(mid)
	}
	n := float64(b.N)
	b.ReportMetric(float64(bareTime.Nanoseconds())/n, "bare-ns/op")
	b.ReportMetric(float64(guardedTime.Nanoseconds())/n, "guarded-ns/op")
	b.ReportMetric(100*float64(guardedTime-bareTime)/float64(bareTime), "overhead-%")
}

// BenchmarkRejected is a call while the circuit is open: rejected by the breaker, answered by
// the fallback. A subscriber on the target's subject proves nothing reaches the bus.
func BenchmarkRejected(b *testing.B) {
	nc := benchTarget(b)
	var reached atomic.Int64
	sub, err := nc.Subscribe(benchRoute.Subject, func(*nats.Msg) { reached.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	r := messaging.NewRequester(nc, benchRoute, messaging.DefaultBreakerSettings, testkit.DiscardLogger())
	r.Breaker().Open()
	ctx := messaging.WithCall(context.Background(), messaging.Call{Hop: 1, RequestID: "bench"})
	b.ReportAllocs()
	for b.Loop() {
		if reply := r.Request(ctx, benchBody); reply.Outcome != messaging.OutcomeRejected {
			b.Fatalf("outcome %s, want rejected", reply.Outcome)
		}
	}
	b.StopTimer()
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(reached.Load()), "requests-on-bus")
	if n := reached.Load(); n != 0 {
		b.Fatalf("%d requests reached the bus through an open circuit", n)
	}
}
