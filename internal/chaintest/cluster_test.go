package chaintest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// A NATS node lost: three nats-servers clustered, order's queue replicated on all three
// (JETSTREAM_REPLICAS=3), every service given the three URLs. Under a bounded load the server
// leading the queue's stream is shut down: every order answered 201 or 202 completes, exactly
// once, and new orders are accepted again once the cluster has elected another leader.
func TestNATSNodeLost(t *testing.T) {
	nodes := testkit.NATSCluster(t, 3)
	urls := make([]string, len(nodes))
	for i, ns := range nodes {
		urls[i] = ns.URL()
	}
	w := newWorld(t)
	w.natsURL = strings.Join(urls, ",")
	env := testkit.Env{"JETSTREAM_REPLICAS": "3", "REDRIVE_RATE": "200", "REDRIVE_BACKOFF": "100ms", "REDRIVE_AFTER": "3s",
		"BREAKER_DELAY": "500ms", "LOG_LEVEL": "warn"}
	o, _, _ := w.chain(env)

	leader := func() *embedded.NATS {
		for _, ns := range nodes {
			if ns.JetStreamIsStreamLeader("$G", order.StreamName) {
				return ns
			}
		}
		return nil
	}
	var lost *embedded.NATS
	testkit.Eventually(t, 10*time.Second, "the queue's stream to have a leader", func() bool { lost = leader(); return lost != nil })

	var (
		accepted sync.Map // id → code, answered 201 or 202
		refused  atomic.Int64
		after    atomic.Int64 // accepted after the leader was lost
		killed   atomic.Bool
		wg       sync.WaitGroup
	)
	stop := time.Now().Add(6 * time.Second)
	for worker := range 4 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				id := fmt.Sprintf("c%d-%d", worker, i)
				// Not post: a worker goroutine must not call t.Fatal.
				res, err := client.Post(o.URL()+"/create", "application/json", strings.NewReader(seedOrder(id)))
				if err != nil {
					t.Errorf("POST %s: %v", id, err)
					return
				}
				res.Body.Close()
				switch res.StatusCode {
				case http.StatusCreated, http.StatusAccepted:
					accepted.Store(id, res.StatusCode)
					if killed.Load() {
						after.Add(1)
					}
				case http.StatusServiceUnavailable:
					// While no leader answers: nothing saved, safe to retry, and said so.
					if res.Header.Get("Retry-After") == "" {
						t.Errorf("POST %s: 503 without Retry-After", id)
					}
					refused.Add(1)
				default:
					t.Errorf("POST %s: %d, want 201, 202 or 503", id, res.StatusCode)
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	lost.Stop()
	killed.Store(true)
	lostAt := time.Now()
	wg.Wait()

	var ids []string
	accepted.Range(func(id, _ any) bool { ids = append(ids, id.(string)); return true })
	if after.Load() == 0 {
		t.Fatalf("no order accepted in the %s after the leader was lost", time.Until(stop)+time.Since(lostAt))
	}
	// Every order saved completes: the accepted ones, and any whose answer was lost in between.
	testkit.Eventually(t, 90*time.Second, "every saved order to complete", func() bool {
		return w.count(order.ResultsCollection, bson.D{{Key: "status", Value: order.StatusCompleted}}) == w.count(order.Collection, nil)
	})
	states := w.orderStates() // one read, not a count per order: hundreds may be accepted
	for _, id := range ids {
		if states[id].Status != order.StatusCompleted {
			t.Errorf("order %s was accepted but is %q, want completed", id, states[id].Status)
		}
	}
	saved := w.count(order.Collection, nil)
	if p, s := w.count(payment.Collection, nil), w.count(shipment.Collection, nil); p != saved || s != saved {
		t.Errorf("%d orders saved, %d payments, %d shipments: want one each, exactly once", saved, p, s)
	}
	t.Logf("%d orders accepted (%d after the stream leader %s was lost), %d refused with 503 while none led; all completed once",
		len(ids), after.Load(), lost.Name(), refused.Load())
}
