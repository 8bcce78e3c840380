package observe

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The streams of order's queue of orders not final yet (order/queue.go and order's package doc
// say how order keeps them); named here so that reading them needs no import of order.
const (
	// OrdersStream is the stream holding, for every order that may be saved and is not final
	// yet, one entry: its timer or, once the timer fired, its due message.
	OrdersStream = "ORDERS"
	// OrdersSinceStream is the stream holding, for every order a re-drive left pending, one
	// message written the first time one did: its first message is the oldest pending order.
	// (An order's entry in ORDERS is written anew on every run, so its age is not.)
	OrdersSinceStream = "ORDERS_SINCE"
)

// Pending reads, through js, how many orders are not final yet and how long the oldest has been:
// what order's /metrics and the dashboard show.
func Pending(ctx context.Context, js jetstream.JetStream) (entries uint64, oldest time.Duration, err error) {
	orders, err := js.Stream(ctx, OrdersStream)
	if err != nil {
		return 0, 0, err
	}
	since, err := js.Stream(ctx, OrdersSinceStream)
	if err != nil {
		return 0, 0, err
	}
	entries, oldest = pendingIn(orders.CachedInfo(), since.CachedInfo())
	return entries, oldest, nil
}

// pendingIn counts the orders not final yet — ORDERS' entries: those answered pending, those
// whose chain is running or whose request died, and, until they fire and are dropped, the
// timers of orders whose insert never landed — and ages the oldest: the earlier of
// ORDERS_SINCE's first message (the oldest order a re-drive left pending) and ORDERS' (an order
// not re-driven yet: its due message, or its timer, is at most a backoff younger than it).
func pendingIn(orders, since *jetstream.StreamInfo) (entries uint64, oldest time.Duration) {
	for _, info := range []*jetstream.StreamInfo{orders, since} {
		if info.State.Msgs > 0 && !info.State.FirstTime.IsZero() {
			oldest = max(oldest, time.Since(info.State.FirstTime))
		}
	}
	return orders.State.Msgs, oldest
}
