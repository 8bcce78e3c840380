package messaging_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/messaging"
)

// A service answers on a subject as a NATS micro service; a caller reaches it through a
// Requester, whose circuit breaker and timeout turn every failure into a Reply of the same shape.
func Example() {
	ns, _ := embedded.StartNATS("127.0.0.1", -1, nil)
	defer ns.Stop()
	nc, _ := nats.Connect(ns.URL())
	defer nc.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The responder: shipment saves nothing here, it just answers.
	shipment, _ := messaging.Serve(nc, messaging.Endpoint{
		Service: "shipment", Version: "1.0.0", Subject: "shipment.create",
	}, func(ctx context.Context, body []byte) (messaging.Reply, error) {
		return messaging.ReplyDone("shipment", time.Now(), false, nil), nil
	}, log)
	defer shipment.Stop(context.Background())

	// The caller: one Requester per route, built once and shared.
	toShipment := messaging.NewRequester(nc,
		messaging.Route{From: "payment", To: "shipment", Subject: "shipment.create"},
		messaging.DefaultBreakerSettings, log)
	ctx := messaging.WithCall(context.Background(), messaging.Call{Hop: 2, RequestID: "r-1"})

	reply := toShipment.Request(ctx, []byte(`{"id":"1","directions":"home"}`))
	fmt.Println(reply.Service, reply.Outcome, toShipment.State())

	toShipment.Breaker().Open()
	reply = toShipment.Request(ctx, []byte(`{"id":"1","directions":"home"}`))
	fmt.Println(reply.Service, reply.Outcome, reply.Reason)
	// Output:
	// shipment ok closed
	// shipment rejected circuit open
}
