package order

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

var seed = testkit.SeedOrder("1")

// downstream is what follows order in the product's chain.
var downstream = service.Chain{payment.Service, shipment.Service}

// An order's body is checked whole, order's fields and everything it nests for the services
// after it; each bad body names its field by its full path.
func TestDecode(t *testing.T) {
	rows := []struct {
		name, body string
		code       int
		field      string
	}{
		{"seed", seed, 0, ""},
		{"with a date and items", strings.Replace(seed, `"items":[]`, `"date":"2023-01-18T20:23:47Z","items":[{"sku":"a","n":2}]`, 1), 0, ""},
		{"bad date", strings.Replace(seed, `"items"`, `"date":"2023-13-45","items"`, 1), 422, "date"},
		{"missing items", strings.Replace(seed, `"items":[],`, ``, 1), 422, "items"},
		{"too many items", strings.Replace(seed, `"items":[]`, `"items":[`+strings.Repeat(`1,`, MaxItems)+`1]`, 1), 422, "items"},
		{"missing amount", strings.Replace(seed, `"amount":0,`, ``, 1), 422, "payment.amount"},
		{"amount too big for a float", strings.Replace(seed, `"amount":0`, `"amount":1e999`, 1), 422, "payment.amount"},
		{"amount as string", strings.Replace(seed, `"amount":0`, `"amount":"0"`, 1), 422, "payment.amount"},
		{"missing shipment", `{"id":"1","items":[],"payment":{"amount":0,"id":"1"}}`, 422, "payment.shipment"},
		{"blank directions", strings.Replace(seed, `"home"`, `"  "`, 1), 422, "payment.shipment.directions"},
		{"id too long", strings.Replace(seed, `"id":"1","items"`, `"id":"`+strings.Repeat("a", 65)+`","items"`, 1), 422, "id"},
		{"id with a slash", strings.Replace(seed, `"id":"1","items"`, `"id":"a/b","items"`, 1), 422, "id"},
		{"null", `null`, 400, ""}, // not an object, as [1,2] is not
		{"payment given twice", strings.Replace(seed, `"items":[]`, `"items":[],"Payment":{}`, 1), 422, "payment"},
		{"payment not an object", `{"id":"1","items":[],"payment":[]}`, 422, "payment"},
		{"two values", seed + seed, 400, ""},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			b, err := service.Split(downstream, []byte(row.body), Decode)
			if row.code == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if b.Own.ID != "1" || !strings.Contains(string(b.Next), `"directions":"home"`) {
					t.Fatalf("decoded %+v", b)
				}
				return
			}
			var se *problem.Error
			if !errors.As(err, &se) || se.Code != row.code || se.Field != row.field {
				t.Fatalf("got %v (field %q), want %d on field %q", err, fieldOf(se), row.code, row.field)
			}
		})
	}
}

// The canonical form of a body is what the fingerprint of a record is of: for the seed's order,
// the JSON the earlier versions fingerprinted (payment nested in order, shipment in payment,
// struct fields in order), so orders saved before still replay rather than conflict.
func TestCanonicalKeepsEarlierFingerprints(t *testing.T) {
	b, err := service.Split(downstream, []byte(seed), Decode)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"1","items":[],"payment":{"id":"1","amount":0,"shipment":{"id":"1","directions":"home"}}}`
	if string(b.Canonical) != want {
		t.Errorf("canonical %s\nwant      %s", b.Canonical, want)
	}
	if want := `{"id":"1","amount":0,"shipment":{"id":"1","directions":"home"}}`; string(b.Next) != want {
		t.Errorf("payment's body %s, want %s", b.Next, want)
	}
}

// An order saved before payment_body kept a flattened copy of its payment: its body is rebuilt
// in the nested shape that version sent, so payment finds the same fingerprint (a replay).
func TestLegacyPaymentBody(t *testing.T) {
	rec := &record{Legacy: &legacyPayment{ID: "p", Amount: 5, ShipmentID: "s", Directions: "home"}}
	b, err := service.Split(downstream[1:], rec.paymentBody(), payment.Decode)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"p","amount":5,"shipment":{"id":"s","directions":"home"}}`; string(b.Canonical) != want {
		t.Errorf("rebuilt %s, canonical %s, want %s", rec.paymentBody(), b.Canonical, want)
	}
}

func fieldOf(se *problem.Error) string {
	if se == nil {
		return ""
	}
	return se.Field
}

// A chain's reply decides the order's status: completed only when every hop did its work.
func TestVerdict(t *testing.T) {
	now := time.Now()
	ship := messaging.ReplyDone("shipment", now, false, nil)
	pay := messaging.ReplyDone("payment", now, false, &ship)
	ok := messaging.ReplyDone("order", now, false, &pay)
	if s, r := statusOf(&ok); s != StatusCompleted || r != "" {
		t.Errorf("all ok: %s %q", s, r)
	}
	last := messaging.ReplyDone("payment", now, true, nil)
	jumped := messaging.ReplyDone("order", now, false, &last)
	if s, _ := statusOf(&jumped); s != StatusCompleted {
		t.Errorf("stopped by JUMPS: %s, want completed", s)
	}
	down := messaging.ReplyFailed("shipment", now, messaging.OutcomeRejected, "circuit open")
	pay2 := messaging.ReplyDone("payment", now, false, &down)
	pending := messaging.ReplyDone("order", now, false, &pay2)
	if s, r := statusOf(&pending); s != StatusPending || r != "shipment rejected: circuit open" {
		t.Errorf("shipment rejected: %s %q", s, r)
	}
	if got := toHops(&pending).reply(); got.Text() != pending.Text() {
		t.Errorf("stored hops do not round-trip:\n%s\n%s", got.Text(), pending.Text())
	}
}
