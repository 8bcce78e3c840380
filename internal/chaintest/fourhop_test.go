package chaintest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// A four-hop chain made by adding a service to the list: an order runs through all four; bad
// input for the fourth is refused by order before anything is saved anywhere; and with the fourth
// away, a pending order completes by itself once it is back, its re-drive resending the payment
// body as first sent (payment and shipment see replays, not conflicts).
func TestFourHopChain(t *testing.T) {
	w := newWorld(t)
	four := service.Chain{order.Service, payment.Service, shipment.Service, testkit.Inventory}
	env := testkit.Env{"BREAKER_TIMEOUT": "5s", "RETRY_MAX": "0", "REDRIVE_RATE": "0"}
	start := func(i int, env testkit.Env) *testkit.Instance {
		return testkit.Start(t, four[i:], w.natsURL, w.uri, w.db, env)
	}
	inv := start(3, env)
	start(2, env)
	start(1, env)
	o := start(0, env)
	body := func(id, sku string) string {
		return strings.NewReplacer("ID", id, "SKU", sku).Replace(
			`{"id":"ID","items":[],"payment":{"id":"ID","amount":5,"shipment":{"id":"ID","directions":"home","inventory":{"id":"ID","sku":"SKU"}}}}`)
	}

	r := post(t, o, body("4a", "tea"))
	if r.code != http.StatusCreated || hops(r.view(t)) != "order:ok payment:ok shipment:ok inventory:ok" {
		t.Fatalf("four hops: %d %s", r.code, r.body)
	}
	if n := w.count("reservations", nil); n != 1 {
		t.Errorf("%d reservations, want 1", n)
	}

	bad := post(t, o, body("4b", strings.Repeat("x", 65)))
	if bad.code != http.StatusUnprocessableEntity || bad.errorBody(t).Field != "payment.shipment.inventory.sku" {
		t.Errorf("a bad field of the fourth service: %d %s, want 422 naming payment.shipment.inventory.sku", bad.code, bad.body)
	}
	if got := w.counts(); got != [3]int64{1, 1, 1} {
		t.Errorf("orders, payments, shipments = %v after a refused order, want 1 each: nothing saved", got)
	}

	// The fourth hop away: the order is pending; back, a re-drive completes it.
	inv.Stop()
	p := post(t, o, body("4c", "tea"))
	if p.code != http.StatusAccepted {
		t.Fatalf("fourth hop away: %d %s, want 202", p.code, p.body)
	}
	start(3, env)
	start(0, testkit.Env{"BREAKER_TIMEOUT": "5s", "RETRY_MAX": "0", "REDRIVE_RATE": "100", "REDRIVE_BACKOFF": "10ms", "REDRIVE_AFTER": "1s"})
	d := completed(t, o, "4c")
	if d.Attempts < 2 {
		t.Errorf("completed after %d runs of the chain, want a re-drive", d.Attempts)
	}
	if n := w.count("reservations", nil); n != 2 {
		t.Errorf("%d reservations, want 2", n)
	}
}

// A fourth service gets the saga's undo by declaring one (Service.Undo) in the chain's list,
// nothing else: with inventory between payment and shipment, an order that shipment refuses has
// its payment and its reservation voided; the void is asked of the services that declared an
// undo and those before them, never of shipment, after which nobody declared one.
func TestFourthServiceUndoes(t *testing.T) {
	w := newWorld(t)
	undoing := testkit.Inventory
	undoing.Undo = true
	four := service.Chain{order.Service, payment.Service, undoing, shipment.Service}
	env := testkit.Env{"BREAKER_TIMEOUT": "5s", "RETRY_MAX": "0", "REDRIVE_RATE": "0"}
	for i := len(four) - 1; i > 0; i-- {
		testkit.Start(t, four[i:], w.natsURL, w.uri, w.db, env)
	}
	o := testkit.Start(t, four, w.natsURL, w.uri, w.db, env)
	body := func(id, ship string) string {
		return strings.NewReplacer("ID", id, "SHIP", ship).Replace(
			`{"id":"ID","items":[],"payment":{"id":"ID","amount":5,"inventory":{"id":"ID","sku":"tea","shipment":{"id":"SHIP","directions":"home"}}}}`)
	}
	voids := w.watch("*.void")

	if r := post(t, o, body("f1", "s")); r.code != http.StatusCreated {
		t.Fatalf("f1: %d %s, want 201", r.code, r.body)
	}
	if r := post(t, o, body("f2", "s")); r.code != http.StatusConflict {
		t.Fatalf("f2 reusing f1's shipment: %d %s, want 409", r.code, r.body)
	}
	d := getOrder(t, o.URL(), "f2")
	if d.Status != order.StatusRejected || d.Compensation["payment"] != "voided" || d.Compensation["inventory"] != "voided" {
		t.Errorf("GET /orders/f2: %+v, want rejected, payment and inventory voided", d)
	}
	for _, c := range []string{payment.Collection, "reservations"} {
		if w.voidOf(c, "f2") == nil || w.voidOf(c, "f1") != nil {
			t.Errorf("%s: f2 voided %v, f1 voided %v; want f2's only", c, w.voidOf(c, "f2"), w.voidOf(c, "f1"))
		}
	}
	var asked []string
	for {
		m, err := voids.NextMsg(300 * time.Millisecond)
		if err != nil {
			break
		}
		asked = append(asked, m.Subject)
	}
	if strings.Join(asked, " ") != "payment.void inventory.void" {
		t.Errorf("voids on the bus: %v, want payment.void then inventory.void, none to shipment", asked)
	}
}
