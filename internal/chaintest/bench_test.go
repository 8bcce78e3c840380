package chaintest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// The benchmarks here run the real thing in one process: an embedded nats-server and store, the
// three services, and HTTP over a loopback listener. Run them side by side, so that the chain's
// throughput can be read as a share of what the store allows:
//
//	go test -run '^$' -bench . -benchtime 2000x ./internal/chaintest
//
// docs/BENCHMARKS.md has the results and what limits them.

// drive runs op b.N times from clients goroutines and reports throughput as unit/s with the
// p50 and p99 latency of one op. op returns an error to fail the benchmark.
func drive(b *testing.B, clients int, unit string, op func(i int) error) {
	b.Helper()
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	errs := make(chan error, clients)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					errs <- err
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
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
	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(p int) float64 { return float64(all[min(len(all)-1, len(all)*p/100)].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/took.Seconds(), unit+"/s")
	b.ReportMetric(q(50), "p50-ms")
	b.ReportMetric(q(99), "p99-ms")
	b.ReportMetric(0, "ns/op") // wall time over clients is not a per-op cost: orders/s says it
}

// benchRun tells apart the ids of one benchmark function's runs (b.N grows between them).
var benchRun atomic.Int64

func runPrefix(name string) string {
	return name + strconv.FormatInt(benchRun.Add(1), 10) + "-"
}

// BenchmarkStoreInsert is the store's ceiling: single-document inserts of an order-sized
// document by _id, with the services' client settings (store.Connect).
func BenchmarkStoreInsert(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			uri, db := testkit.Database(b)
			c, err := store.Connect(uri, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Disconnect(context.Background()) })
			coll := c.Database(db).Collection("inserts")
			prefix := runPrefix("insert")
			now := time.Now().UTC()
			drive(b, clients, "inserts", func(i int) error {
				ctx, cancel := context.WithTimeout(context.Background(), store.OpTimeout)
				defer cancel()
				_, err := coll.InsertOne(ctx, bson.D{
					{Key: "_id", Value: prefix + strconv.Itoa(i)}, {Key: "fingerprint", Value: "0123456789abcdef0123456789abcdef"},
					{Key: "request_id", Value: "bench"}, {Key: "created_at", Value: now}, {Key: "items", Value: bson.A{}},
					{Key: "payment_body", Value: `{"id":"p","amount":0,"shipment":{"id":"s","directions":"home"}}`},
					{Key: "status", Value: "pending"}, {Key: "updated_at", Value: now},
				})
				return err
			})
		})
	}
}

// benchChain starts the three services logging as in production (info level, formatted, then
// discarded) with env, and returns order and the services whose store writes are counted.
func benchChain(b *testing.B, env testkit.Env) (*world, *testkit.Instance, []*testkit.Instance) {
	w := newWorld(b)
	var started []*testkit.Instance
	for _, svc := range []service.Service{shipment.Service, payment.Service, order.Service} {
		started = append(started, testkit.StartLogged(b, from(svc), w.natsURL, w.uri, w.db, env, testkit.DiscardLogger()))
	}
	return w, started[2], started
}

// reportWrites reports the store writes (inserts, updates, deletes) the services made per order
// and the time per order they spent waiting for the store, read from their own /metrics.
func reportWrites(b *testing.B, services []*testkit.Instance) {
	b.Helper()
	const prefix = "breakerchain_store_operation_duration_seconds_"
	var writes, seconds float64
	for _, s := range services {
		for series, v := range scrape(b, s.URL()) {
			switch {
			case strings.HasPrefix(series, prefix+"sum{"):
				seconds += v
			case strings.HasPrefix(series, prefix+"count{") && (strings.Contains(series, `operation="insert"`) ||
				strings.Contains(series, `operation="update"`) || strings.Contains(series, `operation="delete"`)):
				writes += v
			}
		}
	}
	b.ReportMetric(writes/float64(b.N), "writes/order")
	b.ReportMetric(1000*seconds/float64(b.N), "store-ms/order")
}

// createOrder posts a seed order with id and checks the answer's status code.
func createOrder(o *testkit.Instance, id string, want int) error {
	res, err := client.Post(o.URL()+"/create", "application/json", strings.NewReader(seedOrder(id)))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		return fmt.Errorf("order %s: %d %s, want %d", id, res.StatusCode, body, want)
	}
	return nil
}

// BenchmarkChain is the whole chain, healthy, at 1, 4, 16 and 64 concurrent HTTP clients: every
// order must complete (201): none may time out or come back 202 because the store queued it.
func BenchmarkChain(b *testing.B) {
	for _, clients := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			_, o, services := benchChain(b, nil)
			prefix := runPrefix("chain")
			drive(b, clients, "orders", func(i int) error {
				return createOrder(o, prefix+strconv.Itoa(i), http.StatusCreated)
			})
			reportWrites(b, services)
		})
	}
}

// BenchmarkCreatePaymentOpen is POST /create while order's circuit to payment is open: the order
// is saved and answered 202 at once, payment never asked.
func BenchmarkCreatePaymentOpen(b *testing.B) {
	_, o, services := benchChain(b, testkit.Env{"BREAKER_DELAY": "1h"})
	o.Requester.Breaker().Open()
	prefix := runPrefix("open")
	drive(b, 1, "orders", func(i int) error {
		return createOrder(o, prefix+strconv.Itoa(i), http.StatusAccepted)
	})
	reportWrites(b, services)
}

// BenchmarkDrain is the recovery after an outage: b.N orders answered 202 while payment was down,
// then payment back and two order instances draining the queue. It reports how fast the queue
// drained, from payment's start to the last order completed (timers are to the second, so a
// small b.N mostly measures the wait for the first one to fire).
func BenchmarkDrain(b *testing.B) {
	w := newWorld(b)
	w.start(shipment.Service, testkit.Env{"LOG_LEVEL": "warn"})
	env := testkit.Env{"REDRIVE_RATE": "10000", "REDRIVE_BACKOFF": "1ms", "BREAKER_MIN_CALLS": "1",
		"BREAKER_DELAY": "100ms", "LOG_LEVEL": "warn"}
	instances := []*testkit.Instance{w.start(order.Service, env), w.start(order.Service, env)}
	prefix := runPrefix("drain")
	for i := range b.N {
		if err := createOrder(instances[i%2], prefix+strconv.Itoa(i), http.StatusAccepted); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	w.start(payment.Service, testkit.Env{"LOG_LEVEL": "warn"})
	completed := bson.D{{Key: "status", Value: order.StatusCompleted}}
	for w.count(order.ResultsCollection, completed) < int64(b.N) {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%d of %d orders completed in 5 minutes", w.count(order.ResultsCollection, completed), b.N)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	b.StopTimer()
	b.ReportMetric(took.Seconds(), "drain-s")
	b.ReportMetric(float64(b.N)/took.Seconds(), "orders/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkLookup is GET /orders/{id} on a store holding 1,000, 10,000 and 50,000 completed
// orders, each lookup a random one of them (a lookup that happens to hit the first rows of a
// table would look fast even if every lookup scanned): with the _id index it stays flat.
func BenchmarkLookup(b *testing.B) {
	for _, stored := range []int{1000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("orders=%d", stored), func(b *testing.B) {
			w, o, _ := benchChain(b, nil)
			db := w.client.Database(w.db)
			now := time.Now().UTC()
			for from := 0; from < stored; from += 1000 {
				var orders, outcomes []any
				for i := from; i < min(from+1000, stored); i++ {
					id := "stored-" + strconv.Itoa(i)
					orders = append(orders, bson.D{{Key: "_id", Value: id}, {Key: "fingerprint", Value: "f"}, {Key: "origin", Value: id},
						{Key: "items", Value: bson.A{}}, {Key: "status", Value: order.StatusPending}, {Key: "reason", Value: order.ReasonInProgress},
						{Key: "created_at", Value: now}, {Key: "updated_at", Value: now}})
					outcomes = append(outcomes, bson.D{{Key: "_id", Value: id}, {Key: "status", Value: order.StatusCompleted},
						{Key: "updated_at", Value: now}, {Key: "attempts", Value: 1}})
				}
				if _, err := db.Collection(order.Collection).InsertMany(context.Background(), orders); err != nil {
					b.Fatal(err)
				}
				if _, err := db.Collection(order.ResultsCollection).InsertMany(context.Background(), outcomes); err != nil {
					b.Fatal(err)
				}
			}
			ids := rand.Perm(stored)
			drive(b, 1, "lookups", func(i int) error {
				res, err := client.Get(o.URL() + "/orders/stored-" + strconv.Itoa(ids[i%stored]))
				if err != nil {
					return err
				}
				defer res.Body.Close()
				if _, err := io.Copy(io.Discard, res.Body); err != nil || res.StatusCode != http.StatusOK {
					return fmt.Errorf("GET: %d %v", res.StatusCode, err)
				}
				return nil
			})
		})
	}
}
