package chaintest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/chaos"
	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// setChaos sends a change on chaos.<service> and returns the reply, or the service error.
func setChaos(t *testing.T, nc *nats.Conn, service, change string) (chaos.State, *problem.Error) {
	t.Helper()
	m, err := nc.Request(messaging.ChaosSubject(service), []byte(change), 5*time.Second)
	if err != nil {
		t.Fatalf("chaos.%s: %v", service, err)
	}
	if se := messaging.ServiceError(m); se != nil {
		return chaos.State{}, se
	}
	var c chaos.State
	if err := json.Unmarshal(m.Data, &c); err != nil {
		t.Fatalf("chaos.%s: %q: %v", service, m.Data, err)
	}
	return c, nil
}

// A failure that goes away between two attempts is not a failure for the caller: shipment fails
// payment's first attempt after saving, payment retries after its backoff (meanwhile the test
// turns shipment's chaos off, prompted by the retry event on the bus), the retry is a replay at
// shipment. The order completes with one record per collection, and payment's circuit saw one
// failure and one success.
func TestRetryTurnsATransientFailureIntoSuccess(t *testing.T) {
	w := newWorld(t)
	s := w.start(shipment.Service, testkit.Env{"CHAOS": "1"})
	p := w.start(payment.Service, testkit.Env{"RETRY_MAX": "2", "RETRY_BACKOFF": "1s"})
	o := w.start(order.Service, nil)
	nc := w.conn()
	events, err := nc.SubscribeSync(messaging.BreakerSubject("payment", "shipment"))
	if err != nil {
		t.Fatal(err)
	}
	if _, se := setChaos(t, nc, "shipment", `{"error_rate":1}`); se != nil {
		t.Fatal(se)
	}

	answer := make(chan response, 1)
	go func() {
		res, err := client.Post(o.URL()+"/create", "application/json", strings.NewReader(seedOrder("transient")))
		if err != nil {
			answer <- response{}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		answer <- response{code: res.StatusCode, body: b}
	}()
	for {
		m, err := events.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for payment to schedule a retry: %v", err)
		}
		var e messaging.BreakerEvent
		if json.Unmarshal(m.Data, &e) == nil && e.Event == messaging.EventRetry {
			break
		}
	}
	if r := do(t, http.MethodPut, s.URL()+"/chaos", `{"error_rate":0}`); r.code != http.StatusOK {
		t.Fatalf("PUT /chaos: %d %s", r.code, r.body)
	}

	res := <-answer
	if res.code != http.StatusCreated || hops(res.view(t)) != "order:ok payment:ok shipment:ok" {
		t.Fatalf("order: %d %s, want 201 completed", res.code, res.body)
	}
	if got := w.counts(); got != [3]int64{1, 1, 1} {
		t.Errorf("orders, payments, shipments = %v, want 1 each: the retry was a replay", got)
	}
	if m := p.Requester.Breaker().Metrics(); m.Failures() != 1 || m.Successes() != 1 {
		t.Errorf("payment→shipment saw %d failures and %d successes, want 1 and 1", m.Failures(), m.Successes())
	}
	if n := scrape(t, p.URL())[`breakerchain_retries_total{service="payment",target="shipment"}`]; n != 1 {
		t.Errorf("payment's retries_total = %v, want 1", n)
	}
}

// Chaos at runtime: shipment's error rate and latency change while it runs, on NATS and over
// HTTP; the outcomes change with them and payment's circuit opens, stays open on a failed trial
// and closes on a good one. Bad input is refused naming the field and changes nothing; every
// change is published; the values show in /breakers, GET /chaos, /metrics and micro stats; a
// service without CHAOS=1 refuses.
func TestChaosAtRuntime(t *testing.T) {
	w := newWorld(t)
	s := w.start(shipment.Service, testkit.Env{"CHAOS": "1"})
	p := w.start(payment.Service, testkit.Env{"CHAOS": "1", "BREAKER_MIN_CALLS": "3", "BREAKER_DELAY": "300ms",
		"BREAKER_TIMEOUT": "1s"})
	o := w.start(order.Service, nil) // no CHAOS
	nc := w.conn()
	changes, err := nc.SubscribeSync(messaging.ChaosChangedSubject("shipment"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	n := 0
	send := func(want string) order.View {
		t.Helper()
		n++
		v := post(t, o, seedOrder("c"+strconv.Itoa(n))).view(t)
		if got := hops(v); got != want {
			t.Fatalf("order c%d: [%s] %q, want [%s]", n, got, v.Reason, want)
		}
		return v
	}
	breakers := func(svc *testkit.Instance) observe.Breakers {
		var b observe.Breakers
		if r := do(t, http.MethodGet, svc.URL()+"/breakers", ""); jsonUnmarshal(r.body, &b) != nil {
			t.Fatalf("/breakers: %s", r.body)
		}
		return b
	}
	afterDelay := func() {
		testkit.Eventually(t, 5*time.Second, "the open delay to pass", func() bool {
			return p.Requester.Breaker().RemainingDelay() == 0
		})
	}

	// Healthy.
	if c := breakers(s).Chaos; !c.Enabled || c.ErrorRate != 0 || c.Latency != "0s" {
		t.Fatalf("shipment /breakers chaos %+v, want enabled with no faults", c)
	}
	for range 2 {
		send("order:ok payment:ok shipment:ok")
	}

	// Every shipment fails: payment's circuit opens, then rejects.
	c, se := setChaos(t, nc, "shipment", `{"error_rate":1}`)
	if se != nil || c.ErrorRate != 1 || c.Latency != "0s" {
		t.Fatalf("chaos.shipment error_rate 1: %+v %v", c, se)
	}
	var ev chaos.Changed
	nextChange := func() {
		t.Helper()
		m, err := changes.NextMsg(5 * time.Second)
		if err != nil || json.Unmarshal(m.Data, &ev) != nil {
			t.Fatalf("no change on the bus: %v", err)
		}
	}
	if nextChange(); ev.Via != "nats" || ev.Service != "shipment" || ev.Faults.ErrorRate != 1 || ev.Previous.ErrorRate != 0 {
		t.Fatalf("change on the bus: %+v", ev)
	}
	for range 2 { // with the two good calls in the window, 2 failures of 4 reach the 50 %
		v := send("order:ok payment:ok shipment:unavailable")
		if !strings.Contains(v.Reason, "502 injected error") {
			t.Fatalf("reason %q, want the injected error", v.Reason)
		}
	}
	if p.Requester.State() != messaging.StateOpen || breakers(p).Circuits[0].State != messaging.StateOpen {
		t.Fatalf("payment→shipment %s, want open", p.Requester.State())
	}
	send("order:ok payment:ok shipment:rejected")

	// Bad input is refused, naming the field, and changes nothing.
	for _, bad := range []struct{ body, field string }{
		{`{"error_rate":2}`, "error_rate"},
		{`{"error_rate":"high"}`, "error_rate"},
		{`{"latency":"soon"}`, "latency"},
		{`{"latency":"2h"}`, "latency"},
		{`{"latency":-5}`, "latency"},
		{`{"latency":400}`, "latency"}, // a bare number: no unit
		{`{"colour":"red"}`, "colour"},
	} {
		if _, se := setChaos(t, nc, "shipment", bad.body); se == nil || se.Code != 422 || !strings.HasPrefix(se.Description, bad.field+": ") {
			t.Errorf("chaos.shipment %s: %v, want a 422 naming %s", bad.body, se, bad.field)
		}
		r := do(t, http.MethodPut, s.URL()+"/chaos", bad.body)
		if e := r.errorBody(t); r.code != 422 || e.Field != bad.field {
			t.Errorf("PUT /chaos %s: %d %+v, want 422 naming %s", bad.body, r.code, e, bad.field)
		}
	}
	if r := do(t, http.MethodPut, s.URL()+"/chaos", `{"error_rate":`); r.code != http.StatusBadRequest {
		t.Errorf("PUT /chaos malformed: %d, want 400", r.code)
	}
	var cur chaos.State
	if r := do(t, http.MethodGet, s.URL()+"/chaos", ""); jsonUnmarshal(r.body, &cur) != nil || cur.ErrorRate != 1 || cur.Latency != "0s" {
		t.Fatalf("GET /chaos after bad input: %s, want it unchanged", r.body)
	}

	// Slower than payment's 1s timeout, over HTTP: the trial after the delay times out and the
	// circuit opens again.
	r := do(t, http.MethodPut, s.URL()+"/chaos", `{"error_rate":0,"latency":"1500ms"}`)
	if r.code != http.StatusOK || jsonUnmarshal(r.body, &cur) != nil || cur.ErrorRate != 0 || cur.Latency != "1.5s" {
		t.Fatalf("PUT /chaos: %d %s", r.code, r.body)
	}
	if nextChange(); ev.Via != "http" || ev.Faults.Latency != "1.5s" || ev.Previous.ErrorRate != 1 {
		t.Fatalf("HTTP change on the bus: %+v", ev)
	}
	var stats micro.Stats
	request(t, nc, "$SRV.STATS.shipment", &stats)
	var data struct{ Chaos chaos.State }
	if len(stats.Endpoints) != 4 || json.Unmarshal(stats.Endpoints[0].Data, &data) != nil || data.Chaos.Latency != "1.5s" {
		t.Errorf("$SRV.STATS.shipment: %+v, want the create, void, circuits and chaos endpoints and the chaos in force", stats)
	}
	if got := scrape(t, s.URL())[`breakerchain_chaos_latency_seconds{service="shipment"}`]; got != 1.5 {
		t.Errorf("shipment chaos_latency_seconds = %v, want 1.5", got)
	}
	afterDelay()
	send("order:ok payment:ok shipment:timeout")
	if p.Requester.State() != messaging.StateOpen {
		t.Fatalf("after a failed trial payment→shipment is %s, want open again", p.Requester.State())
	}

	// Healthy again: the next trial closes the circuit.
	if _, se := setChaos(t, nc, "shipment", `{"latency":"0s"}`); se != nil {
		t.Fatal(se)
	}
	afterDelay()
	send("order:ok payment:ok shipment:ok")
	if p.Requester.State() != messaging.StateClosed {
		t.Fatalf("after a good trial payment→shipment is %s, want closed", p.Requester.State())
	}

	// Without CHAOS=1 nothing listens on chaos.order, and PUT /chaos says how to turn it on.
	if _, err := nc.Request(messaging.ChaosSubject("order"), []byte(`{"error_rate":1}`), time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("chaos.order without CHAOS=1: %v, want no responders", err)
	}
	if r := do(t, http.MethodPut, o.URL()+"/chaos", `{"error_rate":1}`); r.code != http.StatusForbidden || !strings.Contains(r.errorBody(t).Error, "CHAOS=1") {
		t.Errorf("PUT /chaos without CHAOS=1: %d %s, want 403 naming CHAOS=1", r.code, r.body)
	}
	if c := breakers(o).Chaos; c.Enabled || c.ErrorRate != 0 {
		t.Errorf("order chaos %+v, want off and untouched", c)
	}
}

// Payment down → 1,000 orders pending → payment back → all 1,000 completed exactly once, by two
// order instances taking from the shared queue (JetStream). Each re-drive goes through the
// instance's own circuit: while payment is down it waits out the open delay and probes; once
// payment is back the first good trial closes the circuit and the queue drains.
func TestPendingOrdersCompleteThemselves(t *testing.T) {
	orders := 1000
	if raceDetector {
		// The race detector slows the embedded store several-fold: the race build drains 25
		// through the same code, and the plain build, the second half of the test command, all.
		orders = 25
	}
	w := newWorld(t)
	w.start(shipment.Service, nil)
	env := testkit.Env{"REDRIVE_RATE": "1000", "REDRIVE_BACKOFF": "100ms",
		"RETRY_MAX": "1", "RETRY_BACKOFF": "10ms", "BREAKER_MIN_CALLS": "3", "BREAKER_DELAY": "200ms", "LOG_LEVEL": "warn"}
	replicas := []*testkit.Instance{w.start(order.Service, env), w.start(order.Service, env)}

	// Payment is down: every order is saved and answered 202 pending.
	var wg sync.WaitGroup
	codes := make(chan int, orders)
	for i := range orders {
		wg.Go(func() {
			res, err := client.Post(replicas[i%2].URL()+"/create", "application/json", strings.NewReader(seedOrder("p"+strconv.Itoa(i))))
			if err != nil {
				codes <- 0
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		})
		if i%4 == 3 {
			wg.Wait() // four at a time: a store on 2 busy cores, not a load test
		}
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusAccepted {
			t.Fatalf("an order answered %d with payment down, want 202", c)
		}
	}
	if n := w.queued(); n != uint64(orders) {
		t.Fatalf("%d orders queued, want %d", n, orders)
	}

	// While payment stays down, each instance's re-driver only probes, once per open delay:
	// the circuit never has to reject one of its calls.
	metric := func(o *testkit.Instance, series string) float64 { return scrape(t, o.URL())[series] }
	const rejected = `breakerchain_circuit_calls_total{outcome="rejected",service="order",target="payment"}`
	const probes = `breakerchain_redrive_attempts_total{service="order",status="pending"}`
	var before [2][2]float64
	for i, o := range replicas {
		before[i] = [2]float64{metric(o, rejected), metric(o, probes)}
	}
	time.Sleep(time.Second) // five open delays; time passing is the point
	for i, o := range replicas {
		if got := metric(o, rejected); got != before[i][0] {
			t.Errorf("instance %d: the circuit rejected %v re-drives while open, want none", i+1, got-before[i][0])
		}
		if got := metric(o, probes); got <= before[i][1] {
			t.Errorf("instance %d: no probe in a second of open delays of 200ms", i+1)
		}
	}

	// Payment is back.
	const retriesSeries = `breakerchain_retries_total{service="order",target="payment"}`
	retriedBefore := metric(replicas[0], retriesSeries) + metric(replicas[1], retriesSeries)
	start := time.Now()
	w.start(payment.Service, testkit.Env{"LOG_LEVEL": "warn"})
	pollEvery(t, 120*time.Second, 100*time.Millisecond, "the queue to drain", func() bool {
		return w.queued() == 0
	})
	drained := time.Since(start)

	if n := w.count(order.ResultsCollection, bson.D{{Key: "status", Value: order.StatusCompleted}}); n != int64(orders) {
		t.Errorf("%d orders completed, want %d", n, orders)
	}
	if got := w.counts(); got != [3]int64{int64(orders), int64(orders), int64(orders)} {
		t.Errorf("orders, payments, shipments = %v, want %d each: exactly once", got, orders)
	}
	recovered, attempts, retries := 0.0, 0.0, 0.0
	var split []string
	for i, o := range replicas {
		m := scrape(t, o.URL())
		r := m[`breakerchain_orders_recovered_total{service="order"}`]
		recovered += r
		for _, st := range []string{"completed", "pending", "rejected"} {
			attempts += m[`breakerchain_redrive_attempts_total{service="order",status="`+st+`"}`]
		}
		retries += m[`breakerchain_retries_total{service="order",target="payment"}`]
		split = append(split, "instance "+strconv.Itoa(i+1)+" recovered "+strconv.Itoa(int(r)))
	}
	if recovered != float64(orders) {
		t.Errorf("%v recoveries counted, want %d: each order once", recovered, orders)
	}
	var d order.Detail
	if r := do(t, http.MethodGet, replicas[0].URL()+"/orders/p7", ""); jsonUnmarshal(r.body, &d) != nil ||
		d.Status != order.StatusCompleted || d.Attempts < 2 || !strings.HasPrefix(d.LastError, "payment ") || d.NextAttempt != nil {
		t.Errorf("GET /orders/p7: %s, want completed after at least 2 attempts, with the last error", r.body)
	}
	t.Logf("payment back → %d pending orders completed in %s (%s); %v re-drives (%.2f per order, probes while down included); requester retries: %v while payment was down, %v during the drain",
		orders, drained.Round(time.Millisecond), strings.Join(split, ", "), attempts, attempts/float64(orders), retriedBefore, retries-retriedBefore)
}

// pollEvery is testkit.Eventually with a slower pace, for conditions that cost a store query.
func pollEvery(t *testing.T, d, every time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(every)
	}
}

// A re-driver that dies mid-run leaves its due order unacknowledged: nobody takes it within the
// ack wait (REDRIVE_ACK_WAIT), then JetStream delivers it again, to another instance, which
// completes it, once, and counts the redelivery.
func TestADeadRedriversOrderIsRedelivered(t *testing.T) {
	w := newWorld(t)
	w.start(shipment.Service, nil)
	env := testkit.Env{"REDRIVE_RATE": "100", "REDRIVE_BACKOFF": "100ms", "REDRIVE_ACK_WAIT": "3s"}
	first := w.start(order.Service, env)
	if res := post(t, first, seedOrder("orphan")); res.code != http.StatusAccepted {
		t.Fatalf("with payment down: %d %s, want 202", res.code, res.body)
	}
	first.Stop()

	// The test is the instance that dies: it takes the due order and never answers.
	cons, err := w.stream().Consumer(t.Context(), order.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for m := range batch.Messages() {
		if m.Subject() != order.DueSubject(w.db, "orphan") {
			t.Fatalf("took %s, want the orphan's due order", m.Subject())
		}
		taken++
	}
	if taken != 1 {
		t.Fatalf("took %d due orders (%v), want the orphan's", taken, batch.Error())
	}
	tookAt := time.Now()

	w.start(payment.Service, nil)
	second := w.start(order.Service, env)
	var d order.Detail
	time.Sleep(time.Second) // within the ack wait; time passing is the point
	if r := do(t, http.MethodGet, second.URL()+"/orders/orphan", ""); jsonUnmarshal(r.body, &d) != nil || d.Status != order.StatusPending {
		t.Fatalf("within the ack wait: %s, want still pending", r.body)
	}
	d = completed(t, second, "orphan")
	if took := time.Since(tookAt); took < 3*time.Second {
		t.Errorf("re-driven %s after the dead instance took it, before its ack wait of 3s", took)
	}
	if got := w.counts(); got != [3]int64{1, 1, 1} {
		t.Errorf("orders, payments, shipments = %v, want one each", got)
	}
	if n := scrape(t, second.URL())[`breakerchain_redeliveries_total{service="order"}`]; n != 1 {
		t.Errorf("%v redeliveries counted, want 1", n)
	}
}

// While payment is down and order's circuit open, the queue is paced by the circuit: over 10
// seconds, with 50 orders due again and again, payment.create sees no more requests than the
// trials the open delay allows, one per delay.
func TestPendingOrdersArePacedByTheCircuit(t *testing.T) {
	w := newWorld(t)
	delay := 2 * time.Second
	o := w.start(order.Service, testkit.Env{"REDRIVE_RATE": "1000", "REDRIVE_BACKOFF": "1ms",
		"BREAKER_TIMEOUT": "100ms", "BREAKER_MIN_CALLS": "1", "BREAKER_DELAY": delay.String(), "LOG_LEVEL": "warn"})
	// Payment is down but its subject watched: every request sent is seen, and times out.
	nc := w.conn()
	seen, err := nc.SubscribeSync(messaging.Subject("payment"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if res := post(t, o, seedOrder("paced"+strconv.Itoa(i))); res.code != http.StatusAccepted {
			t.Fatalf("with payment down: %d %s, want 202", res.code, res.body)
		}
	}
	if o.Requester.State() != messaging.StateOpen {
		t.Fatalf("circuit %s after 50 failures, want open", o.Requester.State())
	}
	const rejected = `breakerchain_circuit_calls_total{outcome="rejected",service="order",target="payment"}`
	r0 := scrape(t, o.URL())[rejected]
	n0, _, _ := seen.Pending()
	const window = 10 * time.Second
	time.Sleep(window) // time passing is the point
	n1, _, _ := seen.Pending()
	trials := n1 - n0
	// Nothing is even offered to the open circuit: due orders wait for its delay to end.
	if r := scrape(t, o.URL())[rejected] - r0; r != 0 {
		t.Errorf("the open circuit rejected %v re-drives, want none: the queue waits out the delay", r)
	}
	// One trial per delay, and one more for a delay that ended as the window began.
	if most := int(window/delay) + 1; trials > most {
		t.Errorf("%d requests on payment.create in %s with the circuit open, want at most %d: one trial per %s", trials, window, most, delay)
	}
	if trials == 0 {
		t.Errorf("no trial in %s: the queue must still probe payment once per open delay", window)
	}
	// 50, or 51 for a moment: a re-drive sets the order's next timer before it acknowledges the
	// due message it took.
	if q := w.queued(); q < 50 || q > 51 {
		t.Errorf("%d entries queued, want all 50 orders still pending", q)
	}
	t.Logf("%d trials on payment.create in %s with a %s open delay", trials, window, delay)
}

// A pending order's next_attempt is a time ahead, or absent: with no re-driver (REDRIVE_RATE=0),
// GET /orders/{id} shows the time of its re-drive while it is ahead, and none once it has passed
// (the order waits for a re-driver), never a time in the past.
func TestNextAttemptIsNeverPast(t *testing.T) {
	w := newWorld(t)
	o := w.start(order.Service, testkit.Env{"REDRIVE_RATE": "0", "REDRIVE_BACKOFF": "2s"}) // payment away
	if res := post(t, o, seedOrder("waits")); res.code != http.StatusAccepted {
		t.Fatalf("with payment away: %d %s, want 202", res.code, res.body)
	}
	get := func() order.Detail {
		var d order.Detail
		if err := jsonUnmarshal(do(t, http.MethodGet, o.URL()+"/orders/waits", "").body, &d); err != nil {
			t.Fatal(err)
		}
		if d.Status != order.StatusPending || d.Attempts != 1 {
			t.Fatalf("GET: %s after %d attempts, want pending after 1", d.Status, d.Attempts)
		}
		return d
	}
	if d := get(); d.NextAttempt == nil {
		t.Errorf("at once: no next attempt, want the re-drive's time while it is ahead (about 2 s)")
	}
	testkit.Eventually(t, 10*time.Second, "next_attempt to go once its time has passed", func() bool {
		return get().NextAttempt == nil
	})
}

// What /metrics and GET /orders/{id} say of pending orders while they are re-driven again and
// again: shipment away, payment up (order's circuit stays closed, so every due order runs and
// its entry in the queue is written anew each time). The oldest pending order's age counts from
// when it was first pending, not from its last run; once shipment is back and the orders
// completed, both gauges are 0.
func TestPendingOrdersAreMeasured(t *testing.T) {
	w := newWorld(t)
	w.start(payment.Service, testkit.Env{"BREAKER_TIMEOUT": "300ms"})
	o := w.start(order.Service, testkit.Env{"REDRIVE_RATE": "100", "REDRIVE_BACKOFF": "100ms", "LOG_LEVEL": "warn"})
	ids := []string{"measured-1", "measured-2", "measured-3"}
	for _, id := range ids {
		if res := post(t, o, seedOrder(id)); res.code != http.StatusAccepted {
			t.Fatalf("with shipment away: %d %s, want 202", res.code, res.body)
		}
	}
	posted := time.Now()
	// Re-driven after 0.1, 0.2, 0.4 … s (doubling; timers fire on the second): after 8 s an
	// order's entry is at most about 4 s old, while the order has been pending for 8.
	time.Sleep(8 * time.Second) // time passing is what is measured
	m := scrape(t, o.URL())
	if n := m[`breakerchain_orders_pending{service="order"}`]; n != float64(len(ids)) {
		t.Errorf("breakerchain_orders_pending %v, want %d", n, len(ids))
	}
	const oldest = `breakerchain_orders_pending_oldest_seconds{service="order"}`
	// Short of the truth by at most the first backoff and run (the first re-drive marks it).
	if age, want := m[oldest], time.Since(posted).Seconds()-3; age < want {
		t.Errorf("breakerchain_orders_pending_oldest_seconds %.1f, want at least %.1f: the orders are pending since they were posted", age, want)
	}
	if o.Requester.State() != messaging.StateClosed {
		t.Fatalf("order's circuit %s, want closed: payment answers", o.Requester.State())
	}
	// A due order shows no next attempt until its re-drive sets the next one: look until it does.
	var d order.Detail
	testkit.Eventually(t, 10*time.Second, "a next attempt", func() bool {
		d = order.Detail{}
		return jsonUnmarshal(do(t, http.MethodGet, o.URL()+"/orders/"+ids[0], "").body, &d) == nil && d.NextAttempt != nil
	})
	if d.Status != order.StatusPending || d.Attempts < 2 || !strings.Contains(d.LastError, "shipment") ||
		d.NextAttempt == nil || d.NextAttempt.Before(posted) {
		t.Errorf("GET a pending order: status %q, %d attempts, last error %q, next attempt %v; want pending, re-driven, shipment's error, a next attempt",
			d.Status, d.Attempts, d.LastError, d.NextAttempt)
	}

	w.start(shipment.Service, nil)
	// By now each order's backoff is 6–15 s, and payment's circuit towards shipment is open for
	// up to its 10 s delay: a re-drive it rejects waits out one more backoff. Completion is what is
	// checked, not how soon.
	for _, id := range ids {
		testkit.Eventually(t, 45*time.Second, "order "+id+" to complete by itself", func() bool {
			var d order.Detail
			return jsonUnmarshal(do(t, http.MethodGet, o.URL()+"/orders/"+id, "").body, &d) == nil && d.Status == order.StatusCompleted
		})
	}
	testkit.Eventually(t, 10*time.Second, "both gauges at 0", func() bool {
		m := scrape(t, o.URL())
		return m[`breakerchain_orders_pending{service="order"}`] == 0 && m[oldest] == 0
	})
	if c := w.counts(); c != [3]int64{3, 3, 3} {
		t.Errorf("orders, payments, shipments %v, want one each", c)
	}
}
