package order

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// What one reconciler sweep costs when there is nothing to do — the store holds many completed
// orders and 64 in flight, none due — side by side with no completed orders at all, and with
// 1,000 in flight. The sweep reads only the open copies, so the first two should cost the same:
// a sweep that grew with the completed orders would show here. On the embedded store it scans
// the open copies (no index is used there), which the third shows. BENCH_COMPLETED sets how many (docs/BENCHMARKS.md ran
// 1,000,000; the default keeps the test command quick):
//
//	BENCH_COMPLETED=1000000 go test -run '^$' -bench ReconcileSweep -benchtime 200x ./order
func BenchmarkReconcileSweep(b *testing.B) {
	completed := 2000
	if v, err := strconv.Atoi(os.Getenv("BENCH_COMPLETED")); err == nil && v >= 0 {
		completed = v
	}
	for _, size := range []struct{ completed, open int }{{0, 64}, {completed, 64}, {0, 1000}} {
		b.Run(fmt.Sprintf("completed=%d/open=%d", size.completed, size.open), func(b *testing.B) {
			r := benchReconciler(b, size.completed, size.open)
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				if err := r.sweep(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/sweep")
		})
	}
}

// benchReconciler is a reconciler over a fresh database holding completed orders (each an order
// and its outcome) and inFlight open copies not due yet.
func benchReconciler(b *testing.B, completed, inFlight int) *reconciler {
	uri, db := testkit.Database(b)
	testkit.IndexIDs(b, db, Collection, ResultsCollection, OpenCollection)
	client := testkit.Client(b, uri)
	now := time.Now().UTC()
	for i := 0; i < completed; i += 1000 {
		var orders, outcomes []any
		for j := i; j < min(i+1000, completed); j++ {
			id := fmt.Sprintf("done-%07d", j)
			orders = append(orders, record{Meta: store.Meta{ID: id, CreatedAt: now}, Items: []any{}, State: state{Status: StatusPending, Reason: ReasonInProgress}})
			outcomes = append(outcomes, result{ID: id, State: state{Status: StatusCompleted, UpdatedAt: now, Attempts: 1}})
		}
		for coll, docs := range map[string][]any{Collection: orders, ResultsCollection: outcomes} {
			if _, err := client.Database(db).Collection(coll).InsertMany(context.Background(), docs); err != nil {
				b.Fatal(err)
			}
		}
	}
	l := &ledger{
		orders:  store.NewCollection[record](client.Database(db), Collection),
		results: store.NewCollection[result](client.Database(db), ResultsCollection),
		open:    store.NewCollection[openOrder](client.Database(db), OpenCollection),
		queue:   openTestQueue(b, 1),
		db:      db,
		log:     slog.New(slog.DiscardHandler),
	}
	if err := l.open.Index(context.Background(), "check_at"); err != nil {
		b.Fatal(err)
	}
	for i := range inFlight {
		id := fmt.Sprintf("flying-%d", i)
		if err := l.open.Insert(context.Background(), &openOrder{Order: record{Meta: store.Meta{ID: id, CreatedAt: now}}, CheckAt: now.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	if n, err := client.Database(db).Collection(Collection).CountDocuments(context.Background(), bson.D{}); err != nil || n != int64(completed) {
		b.Fatalf("%d orders stored (%v), want %d", n, err, completed)
	}
	return &reconciler{ledger: l, every: time.Hour, horizon: time.Minute, m: newRedriveMetrics(prometheus.NewRegistry(), l.queue, 0),
		log: slog.New(slog.DiscardHandler)}
}

// An order is final once its outcome is recorded, and not before: a 409 deletes its own open copy
// only then (an order still running may rely on it).
func TestIsFinalNeedsAnOutcome(t *testing.T) {
	uri, db := testkit.Database(t)
	client := testkit.Client(t, uri)
	l := &ledger{results: store.NewCollection[result](client.Database(db), ResultsCollection)}
	if l.isFinal(t.Context(), "running") {
		t.Error("an order with no outcome recorded is final")
	}
	if err := l.results.Insert(t.Context(), &result{ID: "done", State: state{Status: StatusRejected, UpdatedAt: time.Now().UTC()}}); err != nil {
		t.Fatal(err)
	}
	if !l.isFinal(t.Context(), "done") {
		t.Error("an order whose outcome is recorded is not final")
	}
}
