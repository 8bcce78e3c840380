package chaintest

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// orderBody is an order whose payment and shipment have ids of their own.
func orderBody(id, pay string, amount int, ship string) string {
	return strings.NewReplacer("OID", id, "PID", pay, "AMOUNT", strconv.Itoa(amount), "SID", ship).Replace(
		`{"id":"OID","items":[],"payment":{"id":"PID","amount":AMOUNT,"shipment":{"id":"SID","directions":"home"}}}`)
}

// voidOf is the void a record in coll carries, if any: the store's own word, not the API's.
func (w *world) voidOf(coll, id string) bson.M {
	w.t.Helper()
	var doc struct {
		Voided bson.M `bson:"voided"`
	}
	if err := w.client.Database(w.db).Collection(coll).FindOne(context.Background(), bson.D{{Key: "_id", Value: id}}).Decode(&doc); err != nil {
		w.t.Fatalf("%s %s: %v", coll, id, err)
	}
	return doc.Voided
}

// detail is GET /orders/{id} as JSON, read loosely (the fields a client sees).
type detail struct {
	Status       string            `json:"status"`
	Reason       string            `json:"reason"`
	Attempts     int               `json:"attempts"`
	Compensation map[string]string `json:"compensation"`
}

func getOrder(t *testing.T, base, id string) detail {
	t.Helper()
	r := do(t, http.MethodGet, base+"/orders/"+id, "")
	var d detail
	if r.code != http.StatusOK || json.Unmarshal(r.body, &d) != nil {
		t.Fatalf("GET /orders/%s: %d %s", id, r.code, r.body)
	}
	return d
}

// Issue 20, item 5. Given order a with shipment s (201), when order b pays 99 and asks for the
// same shipment s, then shipment refuses b for good (409) and b's payment, already saved, is
// voided: the payments collection shows it voided with the reason, b is rejected showing its
// payment voided, a's payment and shipment are untouched, and nothing is left queued.
func TestRejectionVoidsThePayment(t *testing.T) {
	w := newWorld(t)
	o, p, _ := w.chain(nil)
	if r := post(t, o, orderBody("a", "pay-a", 10, "s")); r.code != http.StatusCreated {
		t.Fatalf("order a: %d %s, want 201", r.code, r.body)
	}
	r := post(t, o, orderBody("b", "pay-b", 99, "s"))
	if e := r.errorBody(t); r.code != http.StatusConflict || !strings.Contains(e.Error, "shipment refused it") {
		t.Fatalf("order b: %d %q, want 409 saying shipment refused it", r.code, e.Error)
	}

	v := w.voidOf(payment.Collection, "pay-b")
	if reason, _ := v["reason"].(string); !strings.Contains(reason, "shipment refused it") {
		t.Errorf("payment pay-b in the store: voided = %v, want voided with shipment's refusal as the reason", v)
	}
	if v := w.voidOf(payment.Collection, "pay-a"); v != nil {
		t.Errorf("payment pay-a voided (%v): it is order a's, completed", v)
	}
	if v := w.voidOf(shipment.Collection, "s"); v != nil {
		t.Errorf("shipment s voided (%v): it is order a's", v)
	}
	d := getOrder(t, o.URL(), "b")
	if d.Status != order.StatusRejected || d.Compensation["payment"] != "voided" || !strings.Contains(d.Reason, "shipment refused it") {
		t.Errorf("GET /orders/b: %+v, want rejected by shipment, compensation payment voided", d)
	}
	if d := getOrder(t, o.URL(), "a"); d.Status != order.StatusCompleted || d.Compensation != nil {
		t.Errorf("GET /orders/a: %+v, want completed with nothing compensated", d)
	}
	if r := post(t, o, orderBody("b", "pay-b", 99, "s")); r.code != http.StatusOK || r.view(t).Status != order.StatusRejected ||
		r.view(t).Compensation["payment"] != messaging.OutcomeVoided {
		t.Errorf("order b replayed: %d %s, want 200 rejected with its payment voided", r.code, r.body)
	}
	if got := w.counts(); got != [3]int64{2, 2, 1} {
		t.Errorf("orders, payments, shipments = %v, want {2 2 1}: b's payment saved, then voided", got)
	}
	if n := w.queued(); n != 0 {
		t.Errorf("%d orders queued, want none: b is final", n)
	}
	if o.Requester.Breaker().Metrics().Failures() != 0 || p.Requester.Breaker().Metrics().Failures() != 0 {
		t.Error("a refusal or a void counted as a circuit failure")
	}
}

// Given order a holding shipment s, when order b's payment is taken and shipment refuses b while
// payment is away (stopped between answering b's create and b's void), then b stays pending
// saying it is voiding the payment, its payment live meanwhile; when payment is back, the
// re-driver finishes the void by itself (no client replays): b rejected, payment voided.
func TestVoidWhilePaymentAwayCompletesLater(t *testing.T) {
	w := newWorld(t)
	// Shipment slow enough for the test to stop payment while b's create is at shipment.
	w.start(shipment.Service, testkit.Env{"INJECT_LATENCY": "1s"})
	p := w.start(payment.Service, nil)
	o := w.start(order.Service, testkit.Env{"REDRIVE_RATE": "100", "REDRIVE_BACKOFF": "200ms", "BREAKER_DELAY": "500ms"})
	if r := post(t, o, orderBody("a", "pay-a", 10, "s")); r.code != http.StatusCreated {
		t.Fatalf("order a: %d %s, want 201", r.code, r.body)
	}
	atShipment := w.watch(messaging.Subject("shipment"))
	answer := make(chan response, 1)
	go func() { answer <- post(t, o, orderBody("b", "pay-b", 99, "s")) }()
	if _, err := atShipment.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("b's create never reached shipment: %v", err)
	}
	p.Stop() // payment answers the create in flight, then takes nothing more: b's void finds nobody

	r := <-answer
	if v := r.view(t); r.code != http.StatusAccepted || v.Status != order.StatusPending ||
		!strings.Contains(v.Reason, "rejected (shipment refused it") || !strings.Contains(v.Reason, "voiding: payment") {
		t.Fatalf("order b with payment away for its void: %d %s, want 202 pending, rejected by shipment, voiding payment", r.code, r.body)
	}
	if v := w.voidOf(payment.Collection, "pay-b"); v != nil {
		t.Fatalf("pay-b voided (%v) while payment was away", v)
	}

	w.start(payment.Service, nil)
	var d detail
	testkit.Eventually(t, 20*time.Second, "order b to end rejected with its payment voided, by itself", func() bool {
		d = getOrder(t, o.URL(), "b")
		return d.Status == order.StatusRejected
	})
	if d.Compensation["payment"] != "voided" || d.Attempts < 2 || !strings.HasPrefix(d.Reason, "shipment refused it") {
		t.Errorf("GET /orders/b: %+v, want rejected by shipment after a re-drive, compensation payment voided", d)
	}
	if reason, _ := w.voidOf(payment.Collection, "pay-b")["reason"].(string); !strings.Contains(reason, "shipment refused it") {
		t.Errorf("pay-b in the store: voided reason %q, want shipment's refusal", reason)
	}
	if got := w.counts(); got != [3]int64{2, 2, 1} {
		t.Errorf("orders, payments, shipments = %v, want {2 2 1}", got)
	}
	testkit.Eventually(t, 5*time.Second, "b's timer to go", func() bool { return w.queued() == 0 })
}

// Given a payment taken for order o3 whose shipment was never made (shipment away), when the
// void is sent twice, then both answer voided and the record holds the first void only; a void
// from another order voids nothing; and a replay of the create after the void, shipment back,
// is refused as voided: nothing reaches shipment, nothing is shipped.
func TestVoidIsIdempotentAndFinal(t *testing.T) {
	w := newWorld(t)
	_, _, s := w.chain(nil)
	s.Stop()
	nc := w.conn()
	r := messaging.NewRequester(nc, messaging.Route{From: "test", To: "payment", Subject: messaging.Subject("payment"), Void: messaging.VoidSubject("payment")},
		messaging.BreakerSettings{Timeout: 5 * time.Second, FailureRate: 50, MinCalls: 5, Window: time.Minute, Delay: time.Minute},
		testkit.Logger(t))
	body := []byte(`{"id":"pay-3","amount":7,"shipment":{"id":"ship-3","directions":"home"}}`)
	as := func(origin, reason string) context.Context {
		return messaging.WithCall(context.Background(), messaging.Call{Hop: 1, RequestID: "req-" + origin, Origin: origin, Reason: reason})
	}
	if got := hops(order.View{Reply: ptr(r.Request(as("o3", ""), body))}); got != "payment:ok shipment:unavailable" {
		t.Fatalf("create with shipment away: %s, want payment ok, shipment unavailable", got)
	}

	if reply := r.Void(as("intruder", "not mine"), body); reply.Outcome != messaging.OutcomeOK || w.voidOf(payment.Collection, "pay-3") != nil {
		t.Fatalf("a void from another order: %+v, want ok with nothing voided", reply)
	}
	var first bson.M
	for i := range 2 {
		reply := r.Void(as("o3", "refused downstream "+strconv.Itoa(i)), body)
		if reply.Outcome != messaging.OutcomeVoided || reply.Next != nil {
			t.Fatalf("void %d: %+v, want voided, asking nobody after payment (no later undo)", i+1, reply)
		}
		v := w.voidOf(payment.Collection, "pay-3")
		if i == 0 {
			first = v
		}
		if v["reason"] != "refused downstream 0" || v["at"] != first["at"] {
			t.Errorf("after void %d the record's void is %v, want the first one's, unchanged", i+1, v)
		}
	}

	s = w.start(shipment.Service, nil)
	atShipment := w.watch(messaging.Subject("shipment"))
	reply := r.Request(as("o3", ""), body)
	if reply.Outcome != messaging.OutcomeRefused || !strings.Contains(reply.Reason, "voided: refused downstream 0") {
		t.Errorf("create replayed after the void: %+v, want refused as voided, with the void's reason", reply)
	}
	if m, err := atShipment.NextMsg(300 * time.Millisecond); err == nil {
		t.Errorf("the replay reached shipment: %s", m.Data)
	}
	if got := w.counts(); got != [3]int64{0, 1, 0} || s.Responder.Handled() != 0 {
		t.Errorf("orders, payments, shipments = %v, shipment handled %d: want {0 1 0} and nothing asked of shipment", got, s.Responder.Handled())
	}
}

func ptr[T any](v T) *T { return &v }

// watch subscribes to subject, plainly (not in a queue group: it takes nothing from a service),
// and returns once the server knows it.
func (w *world) watch(subject string) *nats.Subscription {
	w.t.Helper()
	nc := w.conn()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		w.t.Fatal(err)
	}
	return sub
}
