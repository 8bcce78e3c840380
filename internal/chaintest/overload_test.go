package chaintest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// limiter reads order's admission limit from its /breakers.
func limiter(t testing.TB, o *testkit.Instance) observe.Limiter {
	t.Helper()
	var b observe.Breakers
	if r := do(t, http.MethodGet, o.URL()+"/breakers", ""); r.code != http.StatusOK || jsonUnmarshal(r.body, &b) != nil || len(b.Limiters) != 1 {
		t.Fatalf("/breakers: %d %s, want one limiter", r.code, r.body)
	}
	return b.Limiters[0]
}

// A healthy chain over its capacity refuses its overflow rather than deferring it. With room for
// four orders at once (ADMIT_MAX=4, the hop's bulkhead also 4) and payment slow (1 s), 24 orders
// posted together are each completed (201) or refused — 503 with Retry-After, saying the order
// was not taken — and none is answered 202: the bulkhead never fills. Nothing of a refused order
// is saved (no order, no open copy, no timer), the circuit sees no failure and rejects nothing,
// and every refusal is counted in /metrics and /breakers.
func TestOverloadIsRefusedNotDeferred(t *testing.T) {
	w := newWorld(t)
	w.start(shipment.Service, nil)
	w.start(payment.Service, testkit.Env{"INJECT_LATENCY": "1s"})
	o := w.start(order.Service, testkit.Env{"BULKHEAD_MAX": "4", "ADMIT_MAX": "4", "ADMIT_MAX_WAIT": "10ms"})

	const n = 24
	codes := make([]response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { codes[i] = post(t, o, seedOrder(fmt.Sprintf("o%d", i))) })
	}
	wg.Wait()

	var taken, refused int
	for i, res := range codes {
		id := fmt.Sprintf("o%d", i)
		switch res.code {
		case http.StatusCreated:
			taken++
		case http.StatusServiceUnavailable:
			refused++
			if e := res.errorBody(t); res.header.Get("Retry-After") != "1" || !strings.Contains(e.Error, "not taken") || !strings.Contains(e.Error, "nothing was saved") {
				t.Errorf("%s refused with %q (Retry-After %q), want the order not taken, nothing saved, Retry-After 1", id, e.Error, res.header.Get("Retry-After"))
			}
			if c := w.count(order.Collection, bson.D{{Key: "_id", Value: id}}) + w.count(openOrders, bson.D{{Key: "_id", Value: id}}); c != 0 {
				t.Errorf("refused order %s was saved: %d documents", id, c)
			}
		default:
			t.Errorf("%s: %d %s, want 201 or 503", id, res.code, res.body)
		}
	}
	t.Logf("%d completed, %d refused", taken, refused)
	if refused == 0 || taken == 0 {
		t.Fatalf("%d completed, %d refused: want both, with room for 4 of %d", taken, refused, n)
	}
	if q := w.queued(); q != 0 {
		t.Errorf("%d entries in the queue, want none: the completed orders' timers gone, the refused never set", q)
	}
	calls := o.Requester.Stats()
	if b := o.Requester.Breaker().Metrics(); b.Failures() != 0 || calls.Rejected != 0 || o.Requester.State() != messaging.StateClosed {
		t.Errorf("circuit %s with %d failures, %d calls rejected: want it closed and untouched", o.Requester.State(), b.Failures(), calls.Rejected)
	}
	if got := scrape(t, o.URL())[`breakerchain_orders_refused_total{reason="limit",service="order"}`]; got != float64(refused) {
		t.Errorf("breakerchain_orders_refused_total{reason=limit} = %v, want %d", got, refused)
	}
	if l := limiter(t, o); l.Refused["limit"] != uint64(refused) || l.Max != 4 || l.Inflight != 0 {
		t.Errorf("/breakers shows %+v, want %d refused for the limit, max 4, none in flight", l, refused)
	}
}

// While the chain is full — every admission permit held, no room to wait — an order is refused
// before its body is read, so a bad body gets the chain's 503, not its 4xx; once there is room
// again the same body gets its 4xx. Either way nothing is saved.
func TestFullChainRefusesBeforeReading(t *testing.T) {
	w := newWorld(t)
	w.start(shipment.Service, nil)
	w.start(payment.Service, testkit.Env{"INJECT_LATENCY": "2s"})
	o := w.start(order.Service, testkit.Env{"BULKHEAD_MAX": "4", "ADMIT_MAX": "4", "ADMIT_MAX_WAIT": "0"})

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { post(t, o, seedOrder(fmt.Sprintf("held%d", i))) })
	}
	testkit.Eventually(t, 10*time.Second, "the four orders to hold every permit", func() bool { return limiter(t, o).Inflight == 4 })
	const bad = `{"id": "bad1", "item": ` // not even JSON
	res := post(t, o, bad)
	if e := res.errorBody(t); res.code != http.StatusServiceUnavailable || res.header.Get("Retry-After") != "1" || !strings.Contains(e.Error, "not taken") {
		t.Errorf("a bad body while the chain is full: %d %q (Retry-After %q), want 503, not taken, Retry-After 1", res.code, e.Error, res.header.Get("Retry-After"))
	}
	wg.Wait()
	res = post(t, o, bad)
	if res.code != http.StatusBadRequest {
		t.Errorf("the same bad body with room: %d %s, want 400", res.code, res.body)
	}
	if c := w.count(order.Collection, bson.D{{Key: "_id", Value: "bad1"}}) + w.count(openOrders, bson.D{{Key: "_id", Value: "bad1"}}); c != 0 {
		t.Errorf("the bad body was saved: %d documents", c)
	}
	if l := limiter(t, o); l.Refused["limit"] != 1 {
		t.Errorf("/breakers shows %d refused for the limit, want 1", l.Refused["limit"])
	}
}

// A backlog drains as fast as the admission limit leaves room, not one order at a time, and the
// clients' orders come first. Forty orders left pending while payment was away are re-driven
// several at once once it is back (slow: 200 ms an order), never more than half the limit
// (ADMIT_MAX=8), and an order posted during the drain is taken and completed at once (201).
func TestBacklogDrainsWithinTheLimit(t *testing.T) {
	w := newWorld(t)
	w.start(shipment.Service, nil)
	p := w.start(payment.Service, nil)
	o := w.start(order.Service, testkit.Env{"ADMIT_MAX": "8", "REDRIVE_RATE": "1000", "REDRIVE_BACKOFF": "100ms", "BREAKER_DELAY": "500ms"})
	p.Stop()
	ids := postPending(t, o, "d", 40)
	w.start(payment.Service, testkit.Env{"INJECT_LATENCY": "200ms"})

	most := 0
	var live []string
	testkit.Eventually(t, 60*time.Second, "the backlog to drain", func() bool {
		l := limiter(t, o)
		most = max(most, l.Redriving)
		if l.Redriving > 1 && len(live) < 2 {
			// A client's order during the drain is not held behind it. (Several re-drives at
			// once: the circuit is closed, not letting through its one trial call.)
			id := fmt.Sprintf("live%d", len(live))
			if res := post(t, o, seedOrder(id)); res.code != http.StatusCreated {
				t.Errorf("an order posted during the drain: %d %s, want 201", res.code, res.body)
			}
			live = append(live, id)
		}
		return w.count(order.ResultsCollection, bson.D{{Key: "status", Value: order.StatusCompleted}}) >= int64(len(ids)+len(live))
	})
	w.allCompleted(t, 30*time.Second, append(ids, live...)...)
	t.Logf("at most %d re-drives at once; %d orders posted during the drain", most, len(live))
	if most < 2 || most > 4 {
		t.Errorf("at most %d re-drives at once, want several and no more than half the limit (4)", most)
	}
	if len(live) == 0 {
		t.Errorf("no re-drive was seen in flight")
	}
}

// A full backlog whose queue is lost (NATS restarted without its files) is empty: orders are taken
// again. Its size is read from the stream, and a failed reading keeps the last one; a stream that
// is gone read so for good, at BACKLOG_MAX, and every order was refused before its own timer
// write, the request path that puts the streams back — on an instance without a re-driver
// (REDRIVE_RATE=0, as the README's tour runs it), nothing else does.
func TestBacklogOfALostQueueTakesOrdersAgain(t *testing.T) {
	ns := testkit.NATS(t)
	uri, db := testkit.Database(t)
	w := &world{t: t, natsURL: ns.URL(), uri: uri, db: db, client: testkit.Client(t, uri)}
	w.start(shipment.Service, nil)
	p := w.start(payment.Service, nil)
	// REDRIVE_RATE=0, as the README's tour runs it; the circuit kept closed through the orders
	// that fill the backlog (this is not its test).
	o := w.start(order.Service, testkit.Env{"BACKLOG_MAX": "2", "BREAKER_MIN_CALLS": "1000"})
	p.Stop()
	postPending(t, o, "q", 2)
	// The size is read at most once a second: orders are taken (pending) until it is read full.
	over := 0
	testkit.Eventually(t, 10*time.Second, "the backlog read full", func() bool {
		over++
		return post(t, o, seedOrder(fmt.Sprintf("over%d", over))).code == http.StatusServiceUnavailable
	})

	ns.Stop()
	testkit.RestartNATSWithoutFiles(t, ns) // the queue is lost: nothing waits in it any more
	w.start(payment.Service, nil)

	i := 0
	testkit.Eventually(t, 25*time.Second, "an order taken again once the queue is lost", func() bool {
		i++
		return post(t, o, seedOrder(fmt.Sprintf("fresh%d", i))).code == http.StatusCreated
	})
}
