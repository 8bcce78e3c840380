package chaintest

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// The seed's request through HTTP: 201, three hops in the reply (JSON and text), one document
// in each collection; the same request again is a replay; the same id with another body a 409.
func TestSeedOrderCompletes(t *testing.T) {
	w := newWorld(t)
	o, _, _ := w.chain(nil)

	res := post(t, o, seedOrder("1"), "X-Request-Id", "seed-1")
	if res.code != http.StatusCreated {
		t.Fatalf("POST /create: %d %s", res.code, res.body)
	}
	v := res.view(t)
	if v.ID != "1" || v.Status != order.StatusCompleted || hops(v) != "order:ok payment:ok shipment:ok" {
		t.Fatalf("got %s %s [%s], want 1 completed with three ok hops", v.ID, v.Status, hops(v))
	}
	if got := res.header.Get("X-Request-Id"); got != "seed-1" {
		t.Errorf("X-Request-Id %q, want the client's", got)
	}
	for _, coll := range []string{order.Collection, payment.Collection, shipment.Collection} {
		if n := w.count(coll, bson.D{{Key: "_id", Value: "1"}}); n != 1 {
			t.Errorf("%s has %d documents for id 1, want 1", coll, n)
		}
		// The request id travelled with the request through every hop.
		if n := w.count(coll, bson.D{{Key: "request_id", Value: "seed-1"}}); n != 1 {
			t.Errorf("%s: %d documents carry request id seed-1, want 1", coll, n)
		}
	}

	text := post(t, o, seedOrder("2"), "Accept", "text/plain")
	lines := strings.Split(strings.TrimSpace(string(text.body)), "\n")
	seedLine := regexp.MustCompile(`^This is (order|payment|shipment) @\d\d:\d\d -> (Next|Last)$`)
	if text.code != http.StatusCreated || len(lines) != 3 {
		t.Fatalf("text form: %d %q, want 201 and three lines", text.code, text.body)
	}
	for i, want := range []string{"order", "payment", "shipment"} {
		if !seedLine.MatchString(lines[i]) || !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q, want the seed's line for %s", i+1, lines[i], want)
		}
	}

	replay := post(t, o, " "+seedOrder("1")+"\n")
	if replay.code != http.StatusOK || replay.view(t).Status != order.StatusCompleted {
		t.Errorf("replay: %d %s, want 200 with the stored order", replay.code, replay.body)
	}
	conflict := post(t, o, strings.Replace(seedOrder("1"), `"home"`, `"work"`, 1))
	if conflict.code != http.StatusConflict || conflict.errorBody(t).Error == "" {
		t.Errorf("same id, other body: %d %s, want 409", conflict.code, conflict.body)
	}
	if got := w.counts(); got != [3]int64{2, 2, 2} {
		t.Errorf("orders, payments, shipments = %v, want 2 each: a replay or conflict writes nothing", got)
	}
	if n := w.queued(); n != 0 {
		t.Errorf("%d entries in the queue after completed orders, a replay and a conflict: want none", n)
	}
	// Nor an open copy (a final order needs none): the conflict's own is gone with its answer.
	testkit.Eventually(t, 3*time.Second, "no open copy left", func() bool { return w.count(openOrders, nil) == 0 })

	got := do(t, http.MethodGet, o.URL()+"/orders/1", "")
	var d order.Detail
	if got.code != http.StatusOK || jsonUnmarshal(got.body, &d) != nil || d.Status != order.StatusCompleted ||
		string(d.Payment) != `{"id":"1","amount":0,"shipment":{"id":"1","directions":"home"}}` || d.Items == nil {
		// The payment as order sent it: payment's fields in its own order, shipment's nested.
		t.Errorf("GET /orders/1: %d %s", got.code, got.body)
	}
	if nf := do(t, http.MethodGet, o.URL()+"/orders/nope", ""); nf.code != http.StatusNotFound {
		t.Errorf("GET unknown order: %d, want 404", nf.code)
	}
	if hello := do(t, http.MethodGet, o.URL()+"/", ""); string(hello.body) != "hello from order\n" {
		t.Errorf("GET /: %q", hello.body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := do(t, http.MethodGet, o.URL()+path, ""); r.code != http.StatusOK || !strings.Contains(string(r.body), `"ok"`) {
			t.Errorf("GET %s: %d %s", path, r.code, r.body)
		}
	}
}

// Shipment has no responder: payment's shipment circuit opens, order's payment circuit stays
// closed, every answer keeps the format, and once open nothing is published on shipment.create.
func TestShipmentDownOpensOnlyPaymentsCircuit(t *testing.T) {
	w := newWorld(t)
	env := testkit.Env{"BREAKER_MIN_CALLS": "3", "BREAKER_DELAY": "1m"}
	p := w.start(payment.Service, env)
	o := w.start(order.Service, env)

	for i := range 3 {
		res := post(t, o, seedOrder("down"+string(rune('a'+i))))
		v := res.view(t)
		if res.code != http.StatusAccepted || v.Status != order.StatusPending ||
			hops(v) != "order:ok payment:ok shipment:unavailable" || !strings.Contains(v.Reason, "no responders") {
			t.Fatalf("order %d: %d %s [%s] %q, want 202 pending, shipment unavailable (no responders)",
				i, res.code, v.Status, hops(v), v.Reason)
		}
	}
	if p.Requester.State() != messaging.StateOpen || o.Requester.State() != messaging.StateClosed {
		t.Fatalf("payment→shipment %s, order→payment %s; want open and closed",
			p.Requester.State(), o.Requester.State())
	}
	if f := o.Requester.Breaker().Metrics().Failures(); f != 0 {
		t.Errorf("order's payment circuit saw %d failures, want 0: payment answered every time", f)
	}

	// Now the circuit is open, listen on the subject (a plain subscriber would also end the
	// no-responders fast path, which no longer matters: an open circuit publishes nothing).
	nc := w.conn()
	sub, err := nc.SubscribeSync(messaging.Subject("shipment"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	res := post(t, o, seedOrder("down-open"), "Accept", "text/plain")
	lines := strings.Split(strings.TrimSpace(string(res.body)), "\n")
	if res.code != http.StatusAccepted || len(lines) != 3 ||
		!regexp.MustCompile(`^shipment @\d\d:\d\d -> unavailable \(circuit open\)$`).MatchString(lines[2]) {
		t.Fatalf("open circuit answer: %d %q, want 202 and the seed's 'unavailable (circuit open)' line", res.code, res.body)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := sub.Pending(); n != 0 {
		t.Fatalf("%d messages reached shipment.create while the circuit was open, want 0", n)
	}
	var b struct {
		Circuits []struct{ Target, State string }
	}
	if r := do(t, http.MethodGet, p.URL()+"/breakers", ""); jsonUnmarshal(r.body, &b) != nil ||
		len(b.Circuits) != 1 || b.Circuits[0].Target != "shipment" || b.Circuits[0].State != "open" {
		t.Errorf("payment /breakers: %s", r.body)
	}
	if got := w.counts(); got != [3]int64{4, 4, 0} {
		t.Errorf("orders, payments, shipments = %v, want 4 4 0", got)
	}
}

// A shipment that hangs longer than the timeout: payment gives it only what order's deadline
// leaves, so order answers within its own timeout, status pending, its circuit closed.
func TestHangingShipmentDoesNotTimeOutOrder(t *testing.T) {
	w := newWorld(t)
	s := w.start(shipment.Service, testkit.Env{"INJECT_LATENCY": "1m"})
	w.start(payment.Service, nil) // its own timeout (5s) is longer than what order leaves it
	o := w.start(order.Service, testkit.Env{"BREAKER_TIMEOUT": "1s"})
	timeout := o.Config.Breaker.Timeout

	start := time.Now()
	res := post(t, o, seedOrder("slow"))
	took := time.Since(start)
	v := res.view(t)
	if res.code != http.StatusAccepted || hops(v) != "order:ok payment:ok shipment:timeout" {
		t.Fatalf("got %d [%s] %q, want 202 with shipment timeout", res.code, hops(v), v.Reason)
	}
	// The semantic bound, not a speed claim: order waited for no more than its timeout and
	// the store writes around it (generous for -race on 2 cores).
	if took > timeout+timeout/2 {
		t.Errorf("order answered after %s, want within its %s timeout plus a margin", took, timeout)
	}
	if o.Requester.State() != messaging.StateClosed || o.Requester.Breaker().Metrics().Failures() != 0 {
		t.Errorf("order→payment %s with %d failures, want closed with none",
			o.Requester.State(), o.Requester.Breaker().Metrics().Failures())
	}
	var d order.Detail
	if r := do(t, http.MethodGet, o.URL()+"/orders/slow", ""); jsonUnmarshal(r.body, &d) != nil ||
		d.Status != order.StatusPending || !strings.Contains(d.Reason, "shipment timeout") {
		t.Errorf("stored order: %s", r.body)
	}
	// Shipment gave up when its deadline passed, before saving anything.
	testkit.Eventually(t, 5*time.Second, "shipment to finish with the request", func() bool {
		return s.Responder.Handled() == 1
	})
	if n := w.count(shipment.Collection, nil); n != 0 {
		t.Errorf("%d shipments saved by a hop whose caller had given up, want 0", n)
	}
}

// JUMPS=2: payment is hop 2 and answers "Last" without calling shipment.
func TestJumpsLimitStopsAtPayment(t *testing.T) {
	w := newWorld(t)
	o, _, _ := w.chain(testkit.Env{"JUMPS": "2"})
	res := post(t, o, seedOrder("j"), "Accept", "text/plain")
	want := regexp.MustCompile(`^This is order @\d\d:\d\d -> Next\nThis is payment @\d\d:\d\d -> Last\n$`)
	if res.code != http.StatusCreated || !want.Match(res.body) {
		t.Fatalf("got %d %q, want 201 and payment's Last", res.code, res.body)
	}
	if v := do(t, http.MethodGet, o.URL()+"/orders/j", "").view(t); hops(v) != "order:ok payment:last" {
		t.Errorf("stored hops [%s]", hops(v))
	}
	if got := w.counts(); got != [3]int64{1, 1, 0} {
		t.Errorf("orders, payments, shipments = %v, want 1 1 0", got)
	}
}

// A flaky shipment (INJECT_ERR) opens payment's circuit; after BREAKER_DELAY a successful trial
// against a healthy shipment closes it again.
func TestFlakyShipmentOpensThenRecovers(t *testing.T) {
	w := newWorld(t)
	flaky := w.start(shipment.Service, testkit.Env{"INJECT_ERR": "1", "INJECT_ERR_RATE": "1"})
	env := testkit.Env{"BREAKER_MIN_CALLS": "3", "BREAKER_DELAY": "300ms"}
	p := w.start(payment.Service, env)
	o := w.start(order.Service, env)

	for i := range 3 {
		v := post(t, o, seedOrder("f"+string(rune('a'+i)))).view(t)
		if hops(v) != "order:ok payment:ok shipment:unavailable" || !strings.Contains(v.Reason, "502 injected error") {
			t.Fatalf("flaky order %d: [%s] %q", i, hops(v), v.Reason)
		}
	}
	if p.Requester.State() != messaging.StateOpen {
		t.Fatalf("payment→shipment %s after three injected errors, want open", p.Requester.State())
	}

	flaky.Stop()
	w.start(shipment.Service, nil)
	testkit.Eventually(t, 2*time.Second, "the open delay to pass", func() bool {
		return p.Requester.Breaker().RemainingDelay() == 0
	})
	res := post(t, o, seedOrder("after"))
	if res.code != http.StatusCreated || p.Requester.State() != messaging.StateClosed {
		t.Fatalf("trial after the delay: %d %s, circuit %s; want 201 and closed", res.code, res.body, p.Requester.State())
	}
}

// Bad input gets a clear 4xx that names the problem, and changes nothing: no document, no
// failure on any circuit.
func TestBadInputChangesNothing(t *testing.T) {
	w := newWorld(t)
	o, p, _ := w.chain(nil)
	huge := `{"id":"h","items":["` + strings.Repeat("x", 1<<20) + `"],"payment":{}}`
	rows := []struct {
		name, body, contentType string
		want                    int
		field                   string
	}{
		{"malformed JSON", `{"id":`, "", 400, ""},
		{"not an object", `[1,2]`, "", 400, ""},
		{"null", ` null `, "", 400, ""},
		{"trailing garbage", seedOrder("t") + `{}`, "", 400, ""},
		{"empty body", ``, "application/json", 400, ""},
		{"not UTF-8", "{\"id\":\"\xff\"}", "", 400, ""},
		{"wrong type", strings.Replace(seedOrder("w"), `"amount":0`, `"amount":"0"`, 1), "", 422, "payment.amount"},
		{"missing payment", `{"id":"m","items":[]}`, "", 422, "payment"},
		{"missing shipment id", strings.Replace(seedOrder("s"), `"id":"s","directions"`, `"directions"`, 1), "", 422, "payment.shipment.id"},
		{"negative amount", strings.Replace(seedOrder("n"), `"amount":0`, `"amount":-1`, 1), "", 422, "payment.amount"},
		{"bad id", seedOrder("a b"), "", 422, "id"},
		{"nested unknown field", strings.Replace(seedOrder("v"), `"directions"`, `"colour":"red","directions"`, 1), "", 422, "payment.shipment.colour"},
		{"item key the store refuses", strings.Replace(seedOrder("k"), `"items":[]`, `"items":[{"$set":1}]`, 1), "", 422, "items[0]"},
		{"dotted item key", strings.Replace(seedOrder("k"), `"items":[]`, `"items":[{"a":{"b.c":1}}]`, 1), "", 422, "items[0].a"},
		{"items nested too deep", strings.Replace(seedOrder("k"), `"items":[]`, `"items":[`+strings.Repeat(`{"a":`, 12)+`1`+strings.Repeat("}", 12)+`]`, 1), "", 422, "items[0]" + strings.Repeat(".a", wire.MaxDepth)},
		{"array inside an array", strings.Replace(seedOrder("k"), `"items":[]`, `"items":[{"c":[[1]]}]`, 1), "", 422, "items[0].c[0]"},
		{"bad date", strings.Replace(seedOrder("d"), `"items"`, `"date":"yesterday","items"`, 1), "", 422, "date"},
		{"unknown field", strings.Replace(seedOrder("u"), `"items"`, `"itmes":1,"items"`, 1), "", 422, "itmes"},
		{"not JSON", seedOrder("x"), "text/plain", 415, ""},
		{"too large", huge, "", 413, ""},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			hdr := []string{}
			if row.contentType != "" {
				hdr = []string{"Content-Type", row.contentType}
			}
			// An error is JSON even to a client that asks for the seed's text (the README's curls).
			for _, accept := range []string{"", "text/plain"} {
				res := post(t, o, row.body, append(hdr, "Accept", accept)...)
				e := res.errorBody(t)
				if res.code != row.want || e.Field != row.field {
					t.Errorf("Accept %q: got %d field %q (%s), want %d field %q", accept, res.code, e.Field, e.Error, row.want, row.field)
				}
			}
		})
	}
	if got := w.counts(); got != [3]int64{0, 0, 0} {
		t.Errorf("documents after bad input: %v, want none", got)
	}
	if o.Requester.Breaker().Metrics().Executions() != 0 || p.Requester.Breaker().Metrics().Executions() != 0 {
		t.Error("bad input reached a circuit")
	}
}

// Garbage sent straight to payment.create is refused with a 4xx service error, saves nothing
// and never counts against a circuit.
func TestGarbageOnNATSIsRefused(t *testing.T) {
	w := newWorld(t)
	w.chain(nil)
	nc := w.conn()
	r := messaging.NewRequester(nc, messaging.Route{From: "test", To: "payment", Subject: messaging.Subject("payment")},
		messaging.BreakerSettings{Timeout: time.Second, FailureRate: 50, MinCalls: 2, Window: time.Minute, Delay: time.Minute},
		testkit.Logger(t))
	for _, garbage := range []string{`not json`, `{}`, `{"id":"p","amount":-5,"shipment":{"id":"s","directions":"x"}}`, `[]`} {
		reply := r.Request(context.Background(), []byte(garbage))
		if reply.Outcome != messaging.OutcomeRefused || !regexp.MustCompile(`^4\d\d `).MatchString(reply.Reason) {
			t.Errorf("%q: %s %q, want refused with a 4xx", garbage, reply.Outcome, reply.Reason)
		}
	}
	if r.State() != messaging.StateClosed || r.Breaker().Metrics().Failures() != 0 {
		t.Errorf("circuit %s with %d failures after garbage, want closed with none", r.State(), r.Breaker().Metrics().Failures())
	}
	if got := w.counts(); got != [3]int64{0, 0, 0} {
		t.Errorf("documents after garbage: %v, want none", got)
	}
}

// A client's X-Request-Id travels through every hop only when it is a sane one; anything else
// (too long, odd characters) is replaced, so a header can never make the chain fail.
func TestRequestIDIsSanitized(t *testing.T) {
	w := newWorld(t)
	o, _, _ := w.chain(nil)
	for _, sent := range []string{strings.Repeat("x", 8<<10), "bad id\twith spaces"} {
		res := post(t, o, seedOrder("rid"+string(rune('a'+len(sent)%26))), "X-Request-Id", sent)
		got := res.header.Get("X-Request-Id")
		if res.code != http.StatusCreated || got == "" || got == sent {
			t.Fatalf("got %d with id %q, want 201 and a generated id", res.code, got)
		}
		if n := w.count(shipment.Collection, bson.D{{Key: "request_id", Value: got}}); n != 1 {
			t.Errorf("the generated id reached %d shipments, want 1", n)
		}
	}
	if o.Requester.Breaker().Metrics().Failures() != 0 {
		t.Error("a request id counted against order's circuit")
	}
}

// A hop that refuses an order (here: a payment id already used for another amount) makes it
// rejected, final, with a 409; nothing is charged twice and no circuit counts a failure.
func TestDownstreamRefusalRejectsTheOrder(t *testing.T) {
	w := newWorld(t)
	o, p, _ := w.chain(nil)
	if res := post(t, o, seedOrder("first")); res.code != http.StatusCreated {
		t.Fatalf("first order: %d %s", res.code, res.body)
	}
	second := strings.Replace(strings.Replace(seedOrder("first"), `"id":"first","items"`, `"id":"second","items"`, 1),
		`"amount":0`, `"amount":99`, 1)
	res := post(t, o, second)
	e := res.errorBody(t)
	if res.code != http.StatusConflict || !strings.Contains(e.Error, "payment refused it: 409") {
		t.Fatalf("got %d %q, want 409 saying payment refused it", res.code, e.Error)
	}
	if v := do(t, http.MethodGet, o.URL()+"/orders/second", "").view(t); v.Status != order.StatusRejected {
		t.Errorf("stored status %q, want rejected", v.Status)
	}
	if n := w.count(payment.Collection, nil); n != 1 {
		t.Errorf("%d payments, want 1: the refused one is not charged", n)
	}
	if o.Requester.Breaker().Metrics().Failures() != 0 || p.Requester.Breaker().Metrics().Failures() != 0 {
		t.Error("a refusal counted as a circuit failure")
	}
	if n := w.queued(); n != 0 {
		t.Errorf("%d orders queued for a re-drive, want none: a rejected order is final", n)
	}
}

// -0 and 0 are one number: an order sent again with -0 for an amount or an item is a replay of
// the one sent with 0 (200), not another body (409).
func TestMinusZeroIsZero(t *testing.T) {
	w := newWorld(t)
	o, _, _ := w.chain(nil)
	body := strings.Replace(seedOrder("zero"), `"items":[]`, `"items":[0,{"n":0}]`, 1)
	if res := post(t, o, body); res.code != http.StatusCreated {
		t.Fatalf("first: %d %s", res.code, res.body)
	}
	for _, again := range []string{
		strings.Replace(body, `"amount":0`, `"amount":-0`, 1),
		strings.Replace(body, `"items":[0,{"n":0}]`, `"items":[-0,{"n":-0.0}]`, 1),
	} {
		if res := post(t, o, again); res.code != http.StatusOK {
			t.Errorf("%s after the same with 0: %d %s, want 200, a replay", again, res.code, res.body)
		}
	}
	if got := w.counts(); got != [3]int64{1, 1, 1} {
		t.Errorf("orders, payments, shipments = %v, want one each", got)
	}
}

// A payment belongs to the order it was made for: another order carrying the same payment object
// (same id, same amount, same shipment) is refused by payment with a 409 naming the payment id,
// and rejected, with no second payment or shipment; not completed for free on the first
// order's payment. The first order's own replay is still a replay.
func TestPaymentOfAnotherOrderIsRefused(t *testing.T) {
	w := newWorld(t)
	o, p, _ := w.chain(nil)
	shared := `"payment":{"amount":42,"id":"pay-shared","shipment":{"id":"ship-shared","directions":"home"}}`
	o1 := `{"id":"o1","items":["tea"],` + shared + `}`
	o2 := `{"id":"o2","items":["coffee"],` + shared + `}`
	if res := post(t, o, o1); res.code != http.StatusCreated {
		t.Fatalf("o1: %d %s, want 201", res.code, res.body)
	}
	res := post(t, o, o2)
	if res.code != http.StatusConflict {
		t.Fatalf("o2 with o1's payment: %d %s, want 409", res.code, res.body)
	}
	if e := res.errorBody(t); !strings.Contains(e.Error, "payment refused it: 409") || !strings.Contains(e.Error, `"pay-shared"`) {
		t.Errorf("o2's error %q: want payment's refusal naming the payment id", e.Error)
	}
	if got := w.counts(); got != [3]int64{2, 1, 1} {
		t.Errorf("orders, payments, shipments = %v, want {2 1 1}", got)
	}
	if st := w.orderStates()["o2"]; st.Status != order.StatusRejected || !strings.Contains(st.Reason, "pay-shared") {
		t.Errorf("o2 stored as %q (%s), want rejected naming the payment id", st.Status, st.Reason)
	}
	var paid struct{ Origin string }
	if err := w.client.Database(w.db).Collection(payment.Collection).FindOne(context.Background(),
		bson.D{{Key: "_id", Value: "pay-shared"}}).Decode(&paid); err != nil || paid.Origin != "o1" {
		t.Errorf("the payment records order %q (%v), want o1", paid.Origin, err)
	}
	if res := post(t, o, o1); res.code != http.StatusOK || res.view(t).Status != order.StatusCompleted {
		t.Errorf("o1's replay: %d %s, want 200 completed", res.code, res.body)
	}
	if p.Requester.Breaker().Metrics().Failures() != 0 {
		t.Error("a refusal counted as a circuit failure")
	}
}

// Payment and shipment are idempotent by their own ids: the same payment requested twice on
// NATS (a retry, a duplicate) makes one payment and one shipment, and both answers succeed.
func TestRepeatedPaymentIsOnePayment(t *testing.T) {
	w := newWorld(t)
	w.chain(nil)
	nc := w.conn()
	r := messaging.NewRequester(nc, messaging.Route{From: "test", To: "payment", Subject: messaging.Subject("payment")},
		messaging.BreakerSettings{Timeout: 5 * time.Second, FailureRate: 50, MinCalls: 5, Window: time.Minute, Delay: time.Minute},
		testkit.Logger(t))
	body := []byte(`{"id":"pay-1","amount":12.5,"shipment":{"id":"ship-1","directions":"home"}}`)
	for i := range 3 {
		if reply := r.Request(context.Background(), body); reply.Problem() != nil {
			t.Fatalf("request %d: %s", i+1, reply.Text())
		}
	}
	if got := w.counts(); got != [3]int64{0, 1, 1} {
		t.Errorf("orders, payments, shipments = %v, want one payment and one shipment", got)
	}
}
