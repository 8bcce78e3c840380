package order

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/testkit"
)

func openTestQueue(tb testing.TB, replicas int) *queue {
	tb.Helper()
	url := testkit.NATS(tb).URL()
	if replicas > 1 {
		var urls []string
		for _, ns := range testkit.NATSCluster(tb, replicas) {
			urls = append(urls, ns.URL())
		}
		url = strings.Join(urls, ",")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	q, err := openQueue(context.Background(), nc, replicas, "db")
	if err != nil {
		tb.Fatal(err)
	}
	return q
}

// A timer is one per order: the first is set only when the order has no entry (no timer, and no
// due message: a timer that fired), a pending outcome replaces it (what GET /orders/{id} reads),
// and deleting it by its sequence leaves nothing — while a timer that replaced it since stays.
// Order ids with dots get subjects of their own, and so does each database's. On one server and
// on a three-node cluster (R3), whose servers check the expected sequence on another path.
func TestQueueTimers(t *testing.T) {
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			q := openTestQueue(t, replicas)
			ctx := context.Background()
			later := dueIn(time.Hour)
			ids := []string{"o1", "o.1", "o..1"}
			for _, id := range ids {
				first, set, err := q.schedule(ctx, entry{ID: id, Due: later}, true)
				if err != nil || !set {
					t.Fatalf("%s: first timer: %v %v", id, set, err)
				}
				if _, set, err := q.schedule(ctx, entry{ID: id, Due: later}, true); err != nil || set {
					t.Fatalf("%s: a second first timer: set %v %v, want left alone", id, set, err)
				}
				if err := q.deleteTimer(ctx, first); err != nil {
					t.Fatal(err)
				}
				if _, ok, err := q.pending(ctx, id); ok || err != nil {
					t.Fatalf("%s: an entry after its timer was deleted (%v)", id, err)
				}
				first, _, _ = q.schedule(ctx, entry{ID: id, Due: later}, true)
				if _, _, err := q.schedule(ctx, entry{ID: id, Attempts: 1, Reason: "payment timeout", Due: later}, false); err != nil {
					t.Fatal(err)
				}
				if err := q.deleteTimer(ctx, first); err != nil {
					t.Fatalf("%s: deleting a timer replaced since: %v, want no error", id, err)
				}
				e, ok, err := q.pending(ctx, id)
				if err != nil || !ok || e.Attempts != 1 || e.Reason != "payment timeout" {
					t.Fatalf("%s: entry %+v %v %v, want the pending outcome that replaced the first timer", id, e, ok, err)
				}
			}
			if n, _, err := q.state(ctx); err != nil || n != uint64(len(ids)) {
				t.Fatalf("%d entries (%v), want one per order", n, err)
			}
			// A due message (its timer fired) is the order's entry: no first timer beside it.
			if _, err := q.js.Publish(ctx, DueSubject(q.db, "fired"), []byte(`{"id":"fired","attempts":1}`)); err != nil {
				t.Fatal(err)
			}
			if _, set, err := q.schedule(ctx, entry{ID: "fired", Due: later}, true); err != nil || set {
				t.Fatalf("a first timer beside a due message: set %v %v, want left alone", set, err)
			}
			// Ids are per database: another database's order with the same id has an entry of
			// its own, and neither replaces the other's.
			if _, set, err := q.schedule(ctx, entry{ID: "o1", DB: "other", Attempts: 5, Due: later}, true); err != nil || !set {
				t.Fatalf("another database's first timer for o1: set %v %v, want set", set, err)
			}
			if e, ok, err := q.pending(ctx, "o1"); err != nil || !ok || e.Attempts != 1 {
				t.Fatalf("o1 after another database's o1 was queued: %+v %v %v, want its own entry", e, ok, err)
			}
			// An entry queued before subjects named the database (orders.due.<id>) is still read.
			if _, err := q.js.Publish(ctx, "orders.due.legacy", []byte(`{"id":"legacy","attempts":2}`)); err != nil {
				t.Fatal(err)
			}
			if e, ok, err := q.pending(ctx, "legacy"); err != nil || !ok || e.Attempts != 2 {
				t.Fatalf("an entry on the subject of before: %+v %v %v, want it read", e, ok, err)
			}
		})
	}
}

// BenchmarkQueue is JetStream's own cost per order on the healthy path: the timer set before the
// order is saved and deleted once its outcome is recorded, at 1 and 16 concurrent orders.
func BenchmarkQueue(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			q := openTestQueue(b, 1)
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
						seq, _, err := q.schedule(ctx, entry{ID: id, Since: time.Now(), Due: dueIn(time.Minute)}, true)
						if err != nil {
							errs <- err
							return
						}
						if err := q.deleteTimer(ctx, seq); err != nil {
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

// A JetStream request left unanswered while a cluster forms (a server not yet knowing the
// leader, a new stream's group still electing) is sent again, not waited on until start-up
// gives up: CI saw an R3 stream's first create go unanswered for all of the wait.
func TestWhileStartingAsksAgain(t *testing.T) {
	var attempts atomic.Int32
	err := whileStarting(context.Background(), func(ctx context.Context) error {
		if attempts.Add(1) == 1 {
			<-ctx.Done() // the first request is never answered
			return ctx.Err()
		}
		return nil
	})
	if err != nil || attempts.Load() != 2 {
		t.Fatalf("after %d attempts: %v; want the second attempt to succeed", attempts.Load(), err)
	}
}

// A pending mark goes when its order is final, and so does one from before subjects named the
// database: left, it would be the oldest pending order for good.
func TestPendingMarkGoes(t *testing.T) {
	q := openTestQueue(t, 1)
	ctx := context.Background()
	if err := q.markPending(ctx, "new", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := q.js.Publish(ctx, "orders.since.old", []byte(time.Now().Format(time.RFC3339Nano))); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"new", "old"} {
		if err := q.unmarkPending(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	info, err := q.since.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("%d pending marks left after their orders were final, want none", info.State.Msgs)
	}
}
