package chaintest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// What `nats micro ls|info|stats` shows, through nats.go: payment and shipment are micro services
// with a version, a description, their endpoint in a queue group, and their circuits in the stats.
func TestMicroDiscovery(t *testing.T) {
	w := newWorld(t)
	o, _, _ := w.chain(nil)
	nc := w.conn()
	for _, name := range []string{"payment", "shipment"} {
		var info micro.Info
		request(t, nc, "$SRV.INFO."+name, &info)
		if info.Name != name || info.Version != service.Version || info.Description == "" || len(info.Endpoints) != 3 ||
			info.Endpoints[0].Subject != messaging.Subject(name) || info.Endpoints[0].QueueGroup != name ||
			info.Endpoints[1].Subject != messaging.VoidSubject(name) || info.Endpoints[1].QueueGroup != name ||
			info.Endpoints[2].Subject != messaging.CircuitsSubject(name) || info.Endpoints[2].QueueGroup != "" {
			t.Errorf("$SRV.INFO.%s: %+v, want %s and %s in queue group %s, and %s answered by every instance",
				name, info, messaging.Subject(name), messaging.VoidSubject(name), name, messaging.CircuitsSubject(name))
		}
	}
	// Order serves no requests on NATS, but is discoverable with its circuits, which
	// circuits.order answers too, as GET /breakers does.
	var breakers observe.Breakers
	request(t, nc, messaging.CircuitsSubject("order"), &breakers)
	if breakers.Service != "order" || len(breakers.Circuits) != 1 || breakers.Circuits[0].Target != "payment" {
		t.Errorf("circuits.order: %+v, want order's circuit to payment", breakers)
	}
	var info micro.Info
	request(t, nc, "$SRV.INFO.order", &info)
	if len(info.Endpoints) != 1 || info.Endpoints[0].Subject != messaging.CircuitsSubject("order") {
		t.Errorf("$SRV.INFO.order: %+v, want its circuits endpoint alone", info)
	}
	post(t, o, seedOrder("stats"))
	var stats micro.Stats
	request(t, nc, "$SRV.STATS.payment", &stats)
	var data struct {
		Handled  int64
		Circuits []observe.Circuit
	}
	if len(stats.Endpoints) != 3 || stats.Endpoints[0].NumRequests != 1 || json.Unmarshal(stats.Endpoints[0].Data, &data) != nil ||
		data.Handled != 1 || len(data.Circuits) != 1 || data.Circuits[0].Target != "shipment" || data.Circuits[0].State != messaging.StateClosed ||
		data.Circuits[0].Calls.Success != 1 || data.Circuits[0].Calls.P50 <= 0 || data.Circuits[0].Threshold != 50 {
		t.Errorf("$SRV.STATS.payment: %+v data %s, want one request and the shipment circuit closed, one success", stats, stats.Endpoints[0].Data)
	}
}

// A circuit forced open and closed shows up as messages on breaker.<service>.<target>.
func TestCircuitChangesOnTheBus(t *testing.T) {
	w := newWorld(t)
	_, p, _ := w.chain(nil)
	nc := w.conn()
	sub, err := nc.SubscribeSync(messaging.BreakerSubject("payment", "shipment"))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p.Requester.Breaker().Open()
	p.Requester.Breaker().Close()
	for _, want := range []messaging.Event{messaging.EventOpen, messaging.EventClose} {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		var e messaging.BreakerEvent
		if err := json.Unmarshal(m.Data, &e); err != nil || e.Event != want || e.Service != "payment" || e.Target != "shipment" {
			t.Fatalf("event %s, want %s on payment→shipment", m.Data, want)
		}
	}
}

// /metrics shows a circuit that real failures opened as open, with the calls that did it.
func TestMetricsShowAnOpenCircuit(t *testing.T) {
	w := newWorld(t)
	env := testkit.Env{"BREAKER_MIN_CALLS": "3", "BREAKER_DELAY": "1m"}
	p := w.start(payment.Service, env) // no shipment: every call fails with no responders
	o := w.start(order.Service, env)
	before := scrape(t, p.URL())
	if before[`breakerchain_circuit_state{service="payment",state="closed",target="shipment"}`] != 1 {
		t.Fatalf("at start the circuit should show closed:\n%v", before)
	}
	for i := range 4 {
		post(t, o, seedOrder("metric"+strconv.Itoa(i)))
	}
	m := scrape(t, p.URL())
	for series, want := range map[string]float64{
		`breakerchain_circuit_state{service="payment",state="open",target="shipment"}`:                                                1,
		`breakerchain_circuit_state{service="payment",state="closed",target="shipment"}`:                                              0,
		`breakerchain_circuit_calls_total{outcome="failure",service="payment",target="shipment"}`:                                     3,
		`breakerchain_circuit_calls_total{outcome="rejected",service="payment",target="shipment"}`:                                    1,
		`breakerchain_circuit_transitions_total{service="payment",target="shipment",to="open"}`:                                       1,
		`breakerchain_store_operation_duration_seconds_count{collection="payments",operation="insert",result="ok",service="payment"}`: 4,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
	om := scrape(t, o.URL())
	if om[`breakerchain_http_request_duration_seconds_count{code="202",method="POST",route="/create",service="order"}`] != 4 {
		t.Errorf("order's HTTP histogram did not count the four 202s")
	}
}

// /readyz follows its dependencies: 503 when NATS or the store is lost, 200 again when they
// return, with no restart.
func TestReadinessFollowsNATSAndStore(t *testing.T) {
	ns := testkit.NATS(t)
	dir := t.TempDir()
	st, err := embedded.StartStore("127.0.0.1:0", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	su, _ := url.Parse(st.URI())
	s := testkit.Start(t, from(shipment.Service), ns.URL(), st.URI(), "ready", nil)
	ready := func() (int, string) {
		r := do(t, http.MethodGet, s.URL()+"/readyz", "")
		return r.code, string(r.body)
	}
	waitReady := func(what string, want int) {
		t.Helper()
		testkit.Eventually(t, 15*time.Second, what, func() bool { c, _ := ready(); return c == want })
	}
	waitReady("ready at start", http.StatusOK)

	ns.Stop()
	waitReady("503 with NATS gone", http.StatusServiceUnavailable)
	if _, body := ready(); !strings.Contains(body, `"store":"ok"`) || strings.Contains(body, `"nats":"ok"`) {
		t.Errorf("readyz %s, want nats named as the problem", body)
	}
	testkit.RestartNATS(t, ns)
	waitReady("ready once NATS is back", http.StatusOK)

	st.Stop()
	start := time.Now()
	waitReady("503 with the store gone", http.StatusServiceUnavailable)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("readyz took %s to notice the store was gone", took)
	}
	var st2 *embedded.Store
	testkit.Eventually(t, 10*time.Second, "the store to restart on its port", func() bool {
		st2, err = embedded.StartStore(su.Host, dir, nil)
		return err == nil
	})
	t.Cleanup(st2.Stop)
	waitReady("ready once the store is back", http.StatusOK)
}

// scrape reads a /metrics page into series → value.
func scrape(t testing.TB, base string) map[string]float64 { return testkit.Metrics(t, base) }

func request(t *testing.T, nc *nats.Conn, subject string, v any) {
	t.Helper()
	m, err := nc.Request(subject, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if err := json.Unmarshal(m.Data, v); err != nil {
		t.Fatalf("%s: %q: %v", subject, m.Data, err)
	}
}
