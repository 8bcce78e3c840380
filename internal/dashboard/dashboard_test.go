package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/breakerchain/breakerchain/internal/dashboard"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// startDashboard starts a dashboard watching (and controlling, with control) the NATS at url,
// sending orders to orderURL, served by an httptest server; both end with the test.
func startDashboard(t *testing.T, url string, control bool, orderURL string) (*dashboard.Server, *httptest.Server) {
	t.Helper()
	watch := connect(t, url)
	cfg := dashboard.Config{Watch: watch, OrderURL: orderURL, Log: testkit.Logger(t),
		OrderBody: func(id string) []byte { return []byte(testkit.SeedOrder(id)) }}
	if control {
		cfg.Control = connect(t, url)
	}
	d, err := dashboard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(func() { srv.Close(); d.Close() })
	return d, srv
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// stream reads an event stream's messages onto a channel until ctx ends.
func stream(t *testing.T, ctx context.Context, url string) <-chan dashboard.Message {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("GET /events: %s, %s", res.Status, ct)
	}
	out := make(chan dashboard.Message, 64)
	go func() {
		defer close(out)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var m dashboard.Message
			if err := json.Unmarshal([]byte(data), &m); err != nil {
				t.Errorf("not a Message: %s", data)
				return
			}
			out <- m
		}
	}()
	return out
}

// A breaker transition on the bus reaches a connected client within a second, in the documented
// JSON, and what is no event of its subject does not; a client that disconnects leaks nothing.
func TestEventStream(t *testing.T) {
	ns := testkit.NATS(t)
	_, srv := startDashboard(t, ns.URL(), false, "")
	pub := connect(t, ns.URL())
	// The hub's first poll starts what it keeps for good (the connection's reply subscription):
	// after it, what a client starts is the client's.
	testkit.Eventually(t, 5*time.Second, "the first poll", func() bool {
		return do(t, http.MethodGet, srv.URL+"/api/state", "").code == http.StatusOK
	})
	before := goleak.IgnoreCurrent()

	ctx, cancel := context.WithCancel(t.Context())
	msgs := stream(t, ctx, srv.URL)
	ev := messaging.BreakerEvent{Service: "payment", Target: "shipment", Event: messaging.EventOpen, State: messaging.StateOpen,
		RequestID: "r1", Time: time.Now().UTC()}
	b, _ := json.Marshal(ev)
	// What is no event is not shown: any JSON published on those subjects (people can have a
	// service's answer land there, naming them as a reply), or another service's event.
	for subject, junk := range map[string]string{
		messaging.ChaosChangedSubject("shipment"):       `{"enabled":true,"error_rate":0}`,
		messaging.BreakerSubject("payment", "shipment"): `{"name":"payment","type":"io.nats.micro.v1.ping_response"}`,
		messaging.BreakerSubject("order", "payment"):    string(b),
	} {
		if err := pub.Publish(subject, []byte(junk)); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Now()
	if err := pub.Publish(messaging.BreakerSubject("payment", "shipment"), b); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(time.Second)
	for got := false; !got; {
		select {
		case m := <-msgs:
			if m.Type == "chaos" || m.Type == "breaker" && (m.Breaker == nil || m.Breaker.Service != "payment") {
				t.Fatalf("shown, though no event of its subject: %+v %+v", m.Chaos, m.Breaker)
			}
			if m.Type == "breaker" && m.Breaker != nil && m.Breaker.Event == messaging.EventOpen && m.Breaker.Service == "payment" &&
				m.Breaker.Target == "shipment" && m.Breaker.State == messaging.StateOpen && m.Breaker.RequestID == "r1" {
				got = true
				t.Logf("breaker event on the stream %s after it was published", time.Since(sent).Round(time.Millisecond))
			}
		case <-deadline:
			t.Fatal("the breaker event did not reach the stream within a second")
		}
	}
	// The poll's state comes too, in the documented shape (no services here: empty lists).
	for got, deadline := false, time.After(3*dashboard.Poll); !got; {
		select {
		case m := <-msgs:
			if got = m.Type == "state"; got && (m.State == nil || m.Services == nil || m.Circuits == nil || m.Time.IsZero()) {
				t.Errorf("state message: %+v", m)
			}
		case <-deadline:
			t.Fatalf("no state message within %s", 3*dashboard.Poll)
		}
	}

	// Disconnect: the handler returns and nothing is left running for this client.
	cancel()
	for range msgs {
	}
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, append(testkit.StoreGoroutines(), before)...)
}

// Bad input to the controls gets a clear error and changes nothing; a dashboard without the
// chaos connection refuses them. An unknown path or a method a route does not serve is a JSON
// error too, the 405 naming in Allow what is served.
func TestControlsRefuseBadInput(t *testing.T) {
	ns := testkit.NATS(t)
	_, watchOnly := startDashboard(t, ns.URL(), false, "http://127.0.0.1:1")
	if r := do(t, http.MethodPut, watchOnly.URL+"/api/chaos/shipment", `{"error_rate":1}`); r.code != http.StatusForbidden {
		t.Errorf("watch-only dashboard, PUT chaos: %d %s, want 403", r.code, r.body)
	}
	_, srv := startDashboard(t, ns.URL(), true, "http://127.0.0.1:1")
	for _, c := range []struct {
		method, path, body string
		code               int
		field              string
	}{
		{http.MethodPut, "/api/chaos/nobody", `{"error_rate":1}`, http.StatusNotFound, ""},
		{http.MethodPut, "/api/chaos/Bad%20Name", `{"error_rate":1}`, http.StatusNotFound, ""},
		{http.MethodPost, "/api/orders", `{"count":0}`, http.StatusUnprocessableEntity, "count"},
		{http.MethodPost, "/api/orders", `{"count":101}`, http.StatusUnprocessableEntity, "count"},
		{http.MethodPost, "/api/orders", `{"count":"many"}`, http.StatusUnprocessableEntity, "count"},
		{http.MethodPost, "/api/orders", `{"count":1,"colour":"red"}`, http.StatusUnprocessableEntity, "colour"},
		{http.MethodPost, "/api/orders", `{"count":`, http.StatusBadRequest, ""},
		{http.MethodPost, "/api/orders", strings.Repeat(" ", 5<<10), http.StatusRequestEntityTooLarge, ""},
		{http.MethodGet, "/nowhere", "", http.StatusNotFound, ""},
		{http.MethodGet, "/api/orders", "", http.StatusMethodNotAllowed, ""},
		{http.MethodPost, "/app.js", "", http.StatusMethodNotAllowed, ""},
	} {
		r := do(t, c.method, srv.URL+c.path, c.body)
		var e struct{ Error, Field string }
		if r.code != c.code || json.Unmarshal(r.body, &e) != nil || e.Error == "" || e.Field != c.field {
			t.Errorf("%s %s %.40q: %d %s, want %d naming %q", c.method, c.path, c.body, r.code, r.body, c.code, c.field)
		}
	}
	for path, allow := range map[string]string{"/api/orders": "POST", "/app.js": "GET, HEAD", "/api/chaos/shipment": "PUT"} {
		req, _ := http.NewRequest(http.MethodDelete, srv.URL+path, nil)
		if res, err := http.DefaultClient.Do(req); err != nil || res.Header.Get("Allow") != allow {
			t.Errorf("DELETE %s: %v %v, want Allow %q", path, res, err, allow)
		}
	}
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		if r := do(t, http.MethodGet, srv.URL+path, ""); r.code != http.StatusOK || len(r.body) == 0 {
			t.Errorf("GET %s: %d, %d bytes; want the page's file", path, r.code, len(r.body))
		}
	}
	big, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/state", nil)
	big.Header.Set("X-Padding", strings.Repeat("x", 70<<10))
	if res, err := http.DefaultClient.Do(big); err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge ||
		res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("70 KiB of headers: %v %v, want a JSON 431", res, err)
	}
	// Addressed by a name (a rebound one, say): refused, even the page.
	for _, path := range []string{"/", "/api/orders"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Host = "evil.example:80"
		if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusForbidden {
			t.Errorf("Host evil.example, GET %s: %v %v, want 403", path, res, err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/orders", strings.NewReader(`{"count":1}`))
	req.Header.Set("Content-Type", "text/plain")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: %v %v, want 415", res, err)
	}
}

type response struct {
	code int
	body []byte
}

func do(t *testing.T, method, url, body string) response {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	return response{res.StatusCode, b.Bytes()}
}
