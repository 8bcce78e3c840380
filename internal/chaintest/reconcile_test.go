package chaintest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// openOrders is where order keeps a copy of every order that may be saved and is not final yet.
const openOrders = "orders_open"

// allCompleted waits until every order in ids is completed, with one payment and one shipment
// each and no copy left among the open orders.
func (w *world) allCompleted(t *testing.T, within time.Duration, ids ...string) {
	t.Helper()
	testkit.Eventually(t, within, fmt.Sprintf("%d orders to complete", len(ids)), func() bool {
		st := w.storedStates()
		for _, id := range ids {
			if st[id].Status != order.StatusCompleted {
				return false
			}
		}
		return true
	})
	n := int64(len(ids))
	if got := w.counts(); got != [3]int64{n, n, n} {
		t.Errorf("orders, payments, shipments = %v, want %d each, exactly once", got, n)
	}
	testkit.Eventually(t, 10*time.Second, "no open order left", func() bool { return w.count(openOrders, nil) == 0 })
}

// postPending posts n seed orders to o, ids prefix0…, each answered 202 (a hop away), and returns
// their ids.
func postPending(t *testing.T, o *testkit.Instance, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%d", prefix, i)
		if res := post(t, o, seedOrder(ids[i])); res.code != http.StatusAccepted {
			t.Fatalf("POST %s with a hop away: %d %s, want 202", ids[i], res.code, res.body)
		}
	}
	return ids
}

// A pending order's timer is lost — purged, or cancelled by a message without a schedule stored
// on its subject, as a NATS user could once do by naming that subject as the reply of a request
// (docs/security.md) — while another keeps its own. The store is the source of truth: the
// reconciler finds both orders not final with nothing queued, gives them a timer again, and all
// three complete once payment is back.
func TestLostTimerIsFoundAgain(t *testing.T) {
	w := newWorld(t)
	env := testkit.Env{"REDRIVE_AFTER": "1s", "REDRIVE_ACK_WAIT": "3s", "BREAKER_DELAY": "500ms"}
	w.start(shipment.Service, env)
	p := w.start(payment.Service, env)
	o := w.start(order.Service, env) // no re-driver: the timers stay as the test leaves them
	p.Stop()
	ids := []string{"kept", "purged", "cancelled"}
	for _, id := range ids {
		if res := post(t, o, seedOrder(id)); res.code != http.StatusAccepted {
			t.Fatalf("POST %s with payment away: %d %s, want 202", id, res.code, res.body)
		}
	}
	stream := w.stream()
	if err := stream.Purge(t.Context(), jetstream.WithPurgeSubject(order.TimerSubject(w.db, "purged"))); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(w.conn())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), order.TimerSubject(w.db, "cancelled"), []byte(`{"name":"order","type":"io.nats.micro.v1.ping_response"}`)); err != nil {
		t.Fatal(err)
	}

	w.start(payment.Service, env)
	w.start(order.Service, testkit.Env{"REDRIVE_RATE": "100", "REDRIVE_BACKOFF": "100ms", "RECONCILE_EVERY": "200ms"})
	w.allCompleted(t, 30*time.Second, ids...)
	testkit.Eventually(t, 10*time.Second, "the queue to be empty", func() bool { return w.queued() == 0 })
}

// Order's store connection is held, as a partition holds bytes: the insert (and its resend)
// lands 40 s later — after the client was told 503 "may or may not have been saved", after the
// order's timer fired and found nothing, after the old cut-off (22 s) by which a due order not
// found was taken as never saved and dropped, and after the 32 s a live request could still be
// writing it, once the order has been saved from its open copy. The order completes by itself,
// once; the late insert lands as a duplicate.
func TestLateInsertIsNotStranded(t *testing.T) {
	const late = 40 * time.Second
	w, o, px := chainBehindProxy(t, testkit.Env{"BREAKER_TIMEOUT": "5s", "REDRIVE_RATE": "100", "REDRIVE_AFTER": "1s",
		"REDRIVE_ACK_WAIT": "3s", "RECONCILE_EVERY": "200ms"})
	px.DelayNextInserts(order.Collection, 2, late)
	sent := time.Now()
	// The request waits out the insert and its resend: longer than the tests' client waits.
	res, err := (&http.Client{Timeout: time.Minute}).Post(o.URL()+"/create", "application/json", strings.NewReader(seedOrder("late")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "may or may not have been saved") {
		t.Fatalf("insert held: %d %s, want 503 saying it may or may not have been saved", res.StatusCode, body)
	}
	testkit.Eventually(t, late+10*time.Second, "the held inserts to land", func() bool { return px.Landed() == 2 })
	t.Logf("the held inserts landed %s after the request", time.Since(sent).Round(time.Second))
	w.allCompleted(t, 30*time.Second, "late")
}

// Two order instances share NATS (and so the queue) but not a database: an instance on another
// MONGO_DB takes due orders that are not its own. It must not drop them as never saved: they
// wait for an instance of their own database, and complete; it leaves no pending mark behind.
func TestOrdersOfAnotherDatabase(t *testing.T) {
	w := newWorld(t)
	env := testkit.Env{"REDRIVE_BACKOFF": "100ms"}
	w.start(shipment.Service, env)
	p := w.start(payment.Service, env)
	o := w.start(order.Service, env) // database A, no re-driver
	_, otherDB := testkit.Database(t)
	other := testkit.Start(t, from(order.Service), w.natsURL, w.uri, otherDB,
		testkit.Env{"BREAKER_TIMEOUT": "5s", "RETRY_MAX": "0", "REDRIVE_RATE": "100", "REDRIVE_BACKOFF": "100ms"})
	p.Stop()
	ids := postPending(t, o, "a", 30)
	// Every one due and taken by the other instance at least once (the old code held each
	// until 22 s after its timer was set, then dropped it as never saved).
	foreign := func() float64 { return scrape(t, other.URL())[`breakerchain_redrive_foreign_total{service="order"}`] }
	testkit.Eventually(t, 60*time.Second, "the other instance to take all 30 due orders", func() bool { return foreign() >= 30 })
	js, err := jetstream.New(w.conn())
	if err != nil {
		t.Fatal(err)
	}
	since, err := js.Stream(t.Context(), observe.OrdersSinceStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := since.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d pending marks left by the instance on another database, want 0", n)
	}
	if n := w.queued(); n != 30 {
		t.Fatalf("%d orders left in the queue after the instance on another database took them, want all 30", n)
	}
	// While both run, each due order goes to either, and the other one's takes only delay it:
	// stopped, so that the test waits on nothing but the orders' own instance.
	other.Stop()

	w.start(payment.Service, env)
	// No reconciler: the orders complete from the queue, where the other instance left them.
	w.start(order.Service, testkit.Env{"REDRIVE_RATE": "100", "REDRIVE_BACKOFF": "100ms", "RECONCILE_EVERY": "0"})
	w.allCompleted(t, 60*time.Second, ids...)
	if n := testkit.Count(t, w.client, otherDB, order.Collection, bson.D{}); n != 0 {
		t.Errorf("%d orders in the other database, want none", n)
	}
}

// The deferred work is bounded: with BACKLOG_MAX=3 and payment away, three orders are taken and
// answered 202; the fourth is refused at once — 503 with Retry-After, saying the order was not
// taken — nothing of it saved, no circuit touched, counted. Once the three have completed (payment
// back), orders are taken again.
func TestBacklogIsBounded(t *testing.T) {
	w := newWorld(t)
	w.start(shipment.Service, nil)
	p := w.start(payment.Service, nil)
	o := w.start(order.Service, testkit.Env{"BACKLOG_MAX": "3"}) // no re-driver: its circuit sees only requests
	p.Stop()
	ids := postPending(t, o, "b", 3)
	calls := o.Requester.Breaker().Metrics().Executions()
	time.Sleep(time.Second) // the backlog's size is read at most once a second
	res := post(t, o, seedOrder("over"))
	if e := res.errorBody(t); res.code != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" ||
		!strings.Contains(e.Error, "not taken") || !strings.Contains(e.Error, "BACKLOG_MAX") {
		t.Fatalf("a fourth order over BACKLOG_MAX=3: %d %q (Retry-After %q), want 503 saying it was not taken",
			res.code, e.Error, res.header.Get("Retry-After"))
	}
	if n := w.count(order.Collection, bson.D{{Key: "_id", Value: "over"}}); n != 0 {
		t.Errorf("the refused order was saved (%d)", n)
	}
	if n := o.Requester.Breaker().Metrics().Executions(); n != calls {
		t.Errorf("the refusal went through the circuit: %d calls, %d before", n, calls)
	}
	if n := scrape(t, o.URL())[`breakerchain_orders_refused_total{reason="backlog",service="order"}`]; n != 1 {
		t.Errorf("%v refusals counted, want 1", n)
	}

	w.start(payment.Service, nil)
	w.start(order.Service, testkit.Env{"REDRIVE_RATE": "100", "REDRIVE_BACKOFF": "100ms"})
	w.allCompleted(t, 30*time.Second, ids...)
	testkit.Eventually(t, 10*time.Second, "an order to be taken again", func() bool {
		return post(t, o, seedOrder("after")).code == http.StatusCreated
	})
}

// entryOf is the entry in the queue (its timer, or its due message) of order id of database
// inDB, the database it names, and whether it has one.
func (w *world) entryOf(t *testing.T, inDB, id string) (db string, attempts int, ok bool) {
	t.Helper()
	stream := w.stream()
	for _, subject := range []string{order.TimerSubject(inDB, id), order.DueSubject(inDB, id)} {
		m, err := stream.GetLastMsgForSubject(context.Background(), subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if subject == order.TimerSubject(inDB, id) && m.Header.Get(jetstream.ScheduleHeader) == "" {
			continue
		}
		var e struct {
			DB       string `json:"db"`
			Attempts int    `json:"attempts"`
		}
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		return e.DB, e.Attempts, true
	}
	return "", 0, false
}

// Two order instances on two databases share one NATS (supported, though not advised: an
// instance gives back a due order of another database). Ids are per database: given A's order
// pending, when B takes an order with the same id and completes it, then A's order keeps its own
// entry and GET /orders/{id} on A still shows its attempt and error. (With the queue keyed by the
// id alone, B's timer replaced A's and was deleted with B's completion: A's order had no entry
// left, and with RECONCILE_EVERY=0 nothing would ever re-drive it.)
func TestSameIDOnAnotherDatabaseKeepsItsOwnEntry(t *testing.T) {
	w := newWorld(t)
	env := testkit.Env{"REDRIVE_BACKOFF": "1m"} // A's next attempt far enough not to race the test
	w.start(shipment.Service, env)
	p := w.start(payment.Service, env)
	oA := w.start(order.Service, env) // database A
	_, otherDB := testkit.Database(t)
	oB := testkit.Start(t, from(order.Service), w.natsURL, w.uri, otherDB,
		testkit.Env{"BREAKER_TIMEOUT": "5s", "RETRY_MAX": "0", "REDRIVE_RATE": "0"}) // database B

	p.Stop()
	if res := post(t, oA, seedOrder("dup")); res.code != http.StatusAccepted {
		t.Fatalf("A's order with payment away: %d %s, want 202", res.code, res.body)
	}
	db, attempts, ok := w.entryOf(t, w.db, "dup")
	if !ok || db != w.db || attempts != 1 {
		t.Fatalf("A's pending order's entry: db %q attempts %d ok %v, want A's, 1 attempt", db, attempts, ok)
	}

	w.start(payment.Service, env)
	// Another database's order that happens to use the same id (ids are per database).
	if res := post(t, oB, seedOrder("dup")); res.code != http.StatusCreated {
		t.Fatalf("B's order: %d %s, want 201", res.code, res.body)
	}

	db, attempts, ok = w.entryOf(t, w.db, "dup")
	if _, _, ok := w.entryOf(t, otherDB, "dup"); ok {
		t.Errorf("B's completed order \"dup\" still has an entry")
	}
	if !ok || db != w.db {
		t.Errorf("after database B's order \"dup\" completed, A's pending order \"dup\" has entry db=%q attempts=%d present=%v; want A's own timer still there (1 attempt)",
			db, attempts, ok)
	}
	var d order.Detail
	r := do(t, http.MethodGet, oA.URL()+"/orders/dup", "")
	if err := json.Unmarshal(r.body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Attempts != 1 || d.LastError == "" {
		t.Errorf("GET /orders/dup on A: status %q attempts %d last_error %q next_attempt %v; want A's pending state (1 attempt, payment's error)",
			d.Status, d.Attempts, d.LastError, d.NextAttempt)
	}
}
