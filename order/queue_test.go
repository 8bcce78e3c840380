package order

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/testkit"
)

func openTestQueue(tb testing.TB) *queue {
	tb.Helper()
	nc, err := nats.Connect(testkit.NATS(tb).URL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	q, err := openQueue(context.Background(), nc, 1)
	if err != nil {
		tb.Fatal(err)
	}
	return q
}

// A timer is one per order: the first is set only when the order has none, a pending outcome
// replaces it (what GET /orders/{id} reads), and cancelling it leaves nothing. An order id with
// dots gets subjects of its own.
func TestQueueTimers(t *testing.T) {
	q := openTestQueue(t)
	ctx := context.Background()
	later := dueIn(time.Hour)
	for _, id := range []string{"o1", "o.1", "o..1"} {
		set, err := q.schedule(ctx, entry{ID: id, Due: later}, true)
		if err != nil || !set {
			t.Fatalf("%s: first timer: %v %v", id, set, err)
		}
		if set, err := q.schedule(ctx, entry{ID: id, Due: later}, true); err != nil || set {
			t.Fatalf("%s: a second first timer: set %v %v, want left alone", id, set, err)
		}
		if _, err := q.schedule(ctx, entry{ID: id, Attempts: 1, Reason: "payment timeout", Due: later}, false); err != nil {
			t.Fatal(err)
		}
		e, ok, err := q.pending(ctx, id)
		if err != nil || !ok || e.Attempts != 1 || e.Reason != "payment timeout" {
			t.Fatalf("%s: entry %+v %v %v, want the pending outcome", id, e, ok, err)
		}
	}
	if n, _, err := q.state(ctx); err != nil || n != 3 {
		t.Fatalf("%d entries (%v), want one per order", n, err)
	}
	for _, id := range []string{"o1", "o.1", "o..1"} {
		if err := q.cancelTimer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := q.pending(ctx, id); ok || err != nil {
			t.Fatalf("%s: an entry after the timer was cancelled (%v)", id, err)
		}
	}
}

// BenchmarkQueue is JetStream's own cost per order on the healthy path: the timer set before the
// order is saved and purged once its outcome is recorded, at 1 and 16 concurrent orders.
func BenchmarkQueue(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			q := openTestQueue(b)
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			b.ResetTimer()
			start := time.Now()
			for range clients {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						id := fmt.Sprintf("bench-%d", i)
						if _, err := q.schedule(ctx, entry{ID: id, Since: time.Now(), Due: dueIn(time.Minute)}, true); err != nil {
							errs <- err
							return
						}
						if err := q.cancelTimer(ctx, id); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			took := time.Since(start)
			b.StopTimer()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/took.Seconds(), "orders/s")
			b.ReportMetric(float64(took.Microseconds())*float64(clients)/float64(b.N), "latency-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}
