package chaintest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/service"
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
	w, nodes := clusterWorld(t)
	env := testkit.Env{"JETSTREAM_REPLICAS": "3", "REDRIVE_RATE": "200", "REDRIVE_BACKOFF": "100ms", "REDRIVE_AFTER": "3s",
		"BREAKER_DELAY": "500ms", "LOG_LEVEL": "warn"}
	o, _, _ := w.chain(env)

	leader := func() *embedded.NATS {
		for _, ns := range nodes {
			if ns.JetStreamIsStreamLeader("$G", observe.OrdersStream) {
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

// The shared queue keeps its settings: on a three-node cluster, the first order instance creates
// the queue replicated three times with an ack wait of 30 s; a second instance started with
// neither (JETSTREAM_REPLICAS unset, REDRIVE_ACK_WAIT=1s) leaves both as they are and shows the
// difference on /metrics. Thirty orders then wait pending and the node leading the queue's
// stream is lost: nothing is stranded, all complete once payment is back. Changing the settings
// is an operator's step: order.ApplyQueue (breakerchain apply-queue) does it for all.
func TestSharedQueueKeepsItsSettings(t *testing.T) {
	w, nodes := clusterWorld(t)
	env := testkit.Env{"REDRIVE_BACKOFF": "100ms", "BREAKER_DELAY": "500ms"}
	w.start(shipment.Service, env)
	p := w.start(payment.Service, env)
	w.start(order.Service, testkit.Env{"JETSTREAM_REPLICAS": "3", "REDRIVE_ACK_WAIT": "30s", "REDRIVE_RATE": "50", "REDRIVE_BACKOFF": "100ms", "BREAKER_DELAY": "500ms"})
	second := w.start(order.Service, testkit.Env{"REDRIVE_ACK_WAIT": "1s", "REDRIVE_RATE": "50", "REDRIVE_BACKOFF": "100ms", "BREAKER_DELAY": "500ms"})

	js, err := jetstream.New(w.conn())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{observe.OrdersStream, observe.OrdersSinceStream} {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas after an instance with JETSTREAM_REPLICAS unset started, want 3 kept", name, r)
		}
	}
	ackWait := func() time.Duration {
		t.Helper()
		c, err := js.Consumer(t.Context(), observe.OrdersStream, order.ConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo().Config.AckWait
	}
	if got := ackWait(); got != 30*time.Second {
		t.Errorf("the re-driver's ack wait is %s after an instance with REDRIVE_ACK_WAIT=1s started, want 30s kept", got)
	}
	metrics := string(do(t, http.MethodGet, second.URL()+"/metrics", "").body)
	for _, want := range []string{
		`breakerchain_queue_setting_differs{have="3",object="ORDERS",service="order",setting="replicas",want="1"} 1`,
		`breakerchain_queue_setting_differs{have="30s",object="ORDERS/redriver",service="order",setting="ack_wait",want="1s"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the second instance's /metrics lacks %s", want)
		}
	}

	p.Stop()
	ids := postPending(t, second, "q", 30)
	for _, ns := range nodes {
		if ns.JetStreamIsStreamLeader("$G", observe.OrdersStream) {
			ns.Stop()
			t.Logf("stopped %s, the leader of %s", ns.Name(), observe.OrdersStream)
			break
		}
	}
	w.start(payment.Service, env)
	w.allCompleted(t, 90*time.Second, ids...)

	cfg, err := config.Load(order.Service.Name, "", 0, testkit.Env{"JETSTREAM_REPLICAS": "3", "REDRIVE_ACK_WAIT": "40s"}.Lookup)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := order.ApplyQueue(t.Context(), w.conn(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0].Setting != "ack_wait" || changed[0].Want != "40s" {
		t.Errorf("apply-queue changed %+v, want only the ack wait, to 40s", changed)
	}
	if got := ackWait(); got != 40*time.Second {
		t.Errorf("the re-driver's ack wait is %s after apply-queue, want 40s", got)
	}
	// The running instance's gauge reads the queue as it is now.
	want := `breakerchain_queue_setting_differs{have="40s",object="ORDERS/redriver",service="order",setting="ack_wait",want="1s"} 1`
	if metrics := string(do(t, http.MethodGet, second.URL()+"/metrics", "").body); !strings.Contains(metrics, want) {
		t.Errorf("after apply-queue the second instance's /metrics lacks %s", want)
	}
}

// clusterWorld is a world whose NATS is three nats-servers clustered, every service given the
// three URLs.
func clusterWorld(t *testing.T) (*world, []*embedded.NATS) {
	nodes := testkit.NATSCluster(t, 3)
	urls := make([]string, len(nodes))
	for i, ns := range nodes {
		urls[i] = ns.URL()
	}
	w := newWorld(t)
	w.natsURL = strings.Join(urls, ",")
	return w, nodes
}

// More than one copy of order's queue on a server that is not clustered: order stops at start
// and says which setting to change, rather than waiting for a stream JetStream will never make.
func TestReplicasOnASingleServerStopOrderAtStart(t *testing.T) {
	uri, db := testkit.Database(t)
	env := testkit.Env{"NATS_URL": testkit.NATS(t).URL(), "MONGO_URL": uri, "MONGO_DB": db, "JETSTREAM_REPLICAS": "3"}
	cfg, err := config.Load(order.Service.Name, "127.0.0.1", 0, env.Lookup)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // order's own wait is longer
	defer cancel()
	r, err := service.Start(ctx, from(order.Service), cfg, testkit.Logger(t))
	if err == nil {
		_ = r.Stop(context.Background())
		t.Fatal("order started with JETSTREAM_REPLICAS=3 on one server")
	}
	if want := "JETSTREAM_REPLICAS (or ORDER_JETSTREAM_REPLICAS)=3: want 1 on a single NATS server"; !strings.Contains(err.Error(), want) {
		t.Errorf("order at start: %v; want it to say %q", err, want)
	}
}
