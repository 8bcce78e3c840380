package chaintest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// world is a nats-server and a fresh database for one test.
type world struct {
	t       testing.TB
	natsURL string
	uri, db string
	client  *mongo.Client
}

func newWorld(t testing.TB) *world {
	uri, db := testkit.Database(t)
	return &world{t: t, natsURL: testkit.NATS(t).URL(), uri: uri, db: db, client: testkit.Client(t, uri)}
}

// product is the product's chain, as the command lists it.
var product = service.Chain{order.Service, payment.Service, shipment.Service}

// from is the product's chain from svc on: svc, then the services it calls.
func from(svc service.Service) service.Chain {
	for i := range product {
		if product[i].Name == svc.Name {
			return product[i:]
		}
	}
	return service.Chain{svc}
}

// start starts svc. Unless env says otherwise the breaker timeout is 5s: a test whose subject
// is not a timeout must not see one because -race on 2 cores made a store write slow. Retries
// and the re-driver are off unless a test turns them on: a test of the circuit counts calls,
// and one that checks an order pending must not see it completed behind its back.
func (w *world) start(svc service.Service, env testkit.Env) *testkit.Instance {
	full := testkit.Env{"BREAKER_TIMEOUT": "5s", "RETRY_MAX": "0", "REDRIVE_RATE": "0"}
	for k, v := range env {
		full[k] = v
	}
	return testkit.Start(w.t, from(svc), w.natsURL, w.uri, w.db, full)
}

// chain starts shipment, payment and order with env and returns order.
func (w *world) chain(env testkit.Env) (o, p, s *testkit.Instance) {
	s = w.start(shipment.Service, env)
	p = w.start(payment.Service, env)
	o = w.start(order.Service, env)
	return o, p, s
}

func (w *world) count(coll string, filter bson.D) int64 {
	return testkit.Count(w.t, w.client, w.db, coll, filter)
}

// counts returns the number of orders, payments and shipments.
func (w *world) counts() [3]int64 {
	return [3]int64{w.count(order.Collection, nil), w.count(payment.Collection, nil), w.count(shipment.Collection, nil)}
}

// orderState is an order's status and reason as the store keeps them.
type orderState struct {
	ID     string `bson:"_id"`
	Status string
	Reason string
}

// storedStates reads every order and what became of it from the store alone: its final outcome,
// else the order as it was saved. It asks nothing of JetStream, which may be electing a leader.
func (w *world) storedStates() map[string]orderState {
	w.t.Helper()
	out := map[string]orderState{}
	for _, coll := range []string{order.Collection, order.ResultsCollection} {
		cur, err := w.client.Database(w.db).Collection(coll).Find(context.Background(), bson.D{})
		if err != nil {
			w.t.Fatal(err)
		}
		var docs []orderState
		if err := cur.All(context.Background(), &docs); err != nil {
			w.t.Fatal(err)
		}
		for _, d := range docs {
			if _, ok := out[d.ID]; !ok && coll != order.Collection {
				w.t.Errorf("%s has %s, an order that does not exist", coll, d.ID)
			}
			out[d.ID] = d
		}
	}
	return out
}

// orderStates reads every order and what became of it: its final outcome, else its pending one
// from its entry in the queue (JetStream), else the order as it was saved.
func (w *world) orderStates() map[string]orderState {
	w.t.Helper()
	out := w.storedStates()
	stream := w.stream()
	for id, st := range out {
		if st.Status != order.StatusPending {
			continue
		}
		for _, subject := range []string{order.TimerSubject(w.db, id), order.DueSubject(w.db, id)} {
			m, err := stream.GetLastMsgForSubject(context.Background(), subject)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				w.t.Fatal(err)
			}
			var e struct{ Reason string }
			if err := json.Unmarshal(m.Data, &e); err != nil {
				w.t.Fatal(err)
			}
			if e.Reason != "" {
				st.Reason = e.Reason
			}
			out[id] = st
			break
		}
	}
	return out
}

// stream is order's queue stream, as the test's own client sees it.
func (w *world) stream() jetstream.Stream {
	w.t.Helper()
	js, err := jetstream.New(w.conn())
	if err != nil {
		w.t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), observe.OrdersStream)
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

// queued counts the orders in the queue that are not final yet: timers and due orders.
func (w *world) queued() uint64 {
	w.t.Helper()
	info, err := w.stream().Info(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return info.State.Msgs
}

func (w *world) conn() *nats.Conn {
	nc, err := nats.Connect(w.natsURL)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(nc.Close)
	return nc
}

// seedOrder is the seed's tests.http body with id as every id.
var seedOrder = testkit.SeedOrder

type response struct {
	code   int
	body   []byte
	header http.Header
}

func (r response) view(t *testing.T) order.View {
	t.Helper()
	var v order.View
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return v
}

func (r response) errorBody(t *testing.T) wire.ErrorBody {
	t.Helper()
	var e wire.ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("want a JSON error, got %d %q (%v)", r.code, r.body, err)
	}
	return e
}

var client = &http.Client{Timeout: 10 * time.Second}

func do(t testing.TB, method, url, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: res.StatusCode, body: b, header: res.Header}
}

func post(t testing.TB, o *testkit.Instance, body string, header ...string) response {
	t.Helper()
	return do(t, http.MethodPost, o.URL()+"/create", body, header...)
}

// hops lists the services and outcomes of a reply chain, "order:ok payment:ok shipment:ok".
func hops(v order.View) string {
	var parts []string
	for h := v.Reply; h != nil; h = h.Next {
		parts = append(parts, h.Service+":"+string(h.Outcome))
	}
	return strings.Join(parts, " ")
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// completed waits, up to 20 s, until GET /orders/{id} on o shows the order completed (by itself:
// the test never replays it), and returns what it shows.
func completed(t *testing.T, o *testkit.Instance, id string) order.Detail {
	t.Helper()
	var d order.Detail
	testkit.Eventually(t, 20*time.Second, "order "+id+" to complete by itself", func() bool {
		r := do(t, http.MethodGet, o.URL()+"/orders/"+id, "")
		return jsonUnmarshal(r.body, &d) == nil && d.Status == order.StatusCompleted
	})
	return d
}
