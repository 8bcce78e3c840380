package chaintest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// The observer cannot strand a pending order (issue 20): nats-server cancels a subject's message
// schedule when a message without one is stored on that subject, and the observer may ask order
// ($SRV.PING.order), payment ($SRV.PING.payment, answered under allow_responses) and the server
// ($JS.API.INFO) to answer on a reply subject of its choosing. Given three pending orders (payment
// failing) and one untouched, when the observer names each one's timer subject as the reply of one
// of those requests, then every timer is still a timer, and once payment heals all four complete.
func TestObserverCannotCancelATimer(t *testing.T) {
	url := securedNATS(t)
	uri, db := testkit.Database(t)
	testkit.Start(t, from(shipment.Service), url, uri, db, asUser(shipment.Service))
	payEnv := asUser(payment.Service)
	payEnv["CHAOS"], payEnv["INJECT_ERR"], payEnv["INJECT_ERR_RATE"] = "1", "1", "1"
	testkit.Start(t, from(payment.Service), url, uri, db, payEnv)
	orderEnv := asUser(order.Service)
	// Long enough that every timer waits through the attack; a short open circuit, so that the
	// first re-drive after the heal goes through.
	orderEnv["REDRIVE_BACKOFF"], orderEnv["BREAKER_DELAY"] = "3s", "200ms"
	o := testkit.Start(t, from(order.Service), url, uri, db, orderEnv)

	obs, obsErrs := connectAs(t, url, "observer")
	ops, _ := connectAs(t, url, "chaos")
	js, err := jetstream.New(obs)
	if err != nil {
		t.Fatal(err)
	}
	attacks := map[string]string{ // order id → the request whose reply names its timer
		"strand-untouched": "",
		"strand-order":     "$SRV.PING.order",
		"strand-payment":   "$SRV.PING.payment",
		"strand-jetstream": "$JS.API.INFO",
	}
	for id := range attacks {
		if r := post(t, o, seedOrder(id)); r.code != http.StatusAccepted {
			t.Fatalf("POST /create %s with payment failing: %d %s, want 202", id, r.code, r.body)
		}
		if !isTimer(t, js, db, id) {
			t.Fatalf("order %s answered 202 without a timer", id)
		}
	}
	for id, subject := range attacks {
		if subject != "" {
			if err := obs.PublishRequest(subject, order.TimerSubject(db, id), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The same requests, answered on an inbox: once they are, the attacks were answered too.
	for _, subject := range []string{"$SRV.PING.order", "$SRV.PING.payment", "$JS.API.INFO"} {
		if _, err := obs.Request(subject, nil, 5*time.Second); err != nil {
			t.Fatalf("%s as observer: %v", subject, err)
		}
	}
	deadline := time.Now().Add(500 * time.Millisecond) // JetStream stores what it is given a moment later
	for time.Now().Before(deadline) {
		for id, subject := range attacks {
			if !isTimer(t, js, db, id) {
				t.Fatalf("order %s: its timer is gone after the observer asked %q to answer on %s", id, subject, order.TimerSubject(db, id))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	if _, se := setChaos(t, ops, "payment", `{"error_rate":0}`); se != nil {
		t.Fatalf("heal payment: %v", se)
	}
	for id := range attacks {
		completed(t, o, id)
	}
	select {
	case err := <-obsErrs:
		t.Errorf("observer: %v", err)
	default:
	}
}

// The watchers cannot answer for a service. The observer sees every request on the bus, with the
// inbox its answer is awaited on, and may ask for answers that come from others — discovery from a
// service (order itself, or the one asked, under allow_responses), JetStream's API, circuits, and
// with the chaos user's rights (the dashboard holds both) a fault change. Named as the reply to
// a request in flight, such an answer reached the requester first: a malformed reply, a failure
// of a healthy hop, and at the watcher's will an open circuit with every order 202. Given the
// chain as compose runs it, when a watcher answers every payment.create and shipment.create in
// one of those ways, then every order completes and both circuits stay closed.
func TestWatchersCannotAnswerForAService(t *testing.T) {
	for _, way := range []struct{ user, subject string }{
		{"observer", "$SRV.PING.order"},
		{"observer", "$SRV.INFO.payment"},
		{"observer", "$SRV.STATS"},
		{"observer", "$JS.API.INFO"},
		{"observer", "circuits.order"},
		{"observer", "circuits.payment"},
		{"chaos", "chaos.payment"},
		{"chaos", "chaos.shipment"},
	} {
		t.Run(way.user+" "+way.subject, func(t *testing.T) {
			url, o, p, _ := securedChainWithChaos(t)
			obs, _ := connectAs(t, url, "observer")
			forger, forgerErrs := connectAs(t, url, way.user)
			// The forged answers, as people see them: on the inboxes, answers that are no envelope
			// (the real ones, the chain's, come through as well).
			answers, err := obs.SubscribeSync("_INBOX.*.>")
			if err != nil {
				t.Fatal(err)
			}
			var forged atomic.Int64
			for _, subject := range []string{"payment.create", "shipment.create"} {
				if _, err := obs.Subscribe(subject, func(m *nats.Msg) {
					forged.Add(1)
					_ = forger.PublishRequest(way.subject, m.Reply, []byte(`{}`))
				}); err != nil {
					t.Fatal(err)
				}
			}
			if err := obs.Flush(); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				id := fmt.Sprintf("forged-%d", i)
				if r := post(t, o, seedOrder(id)); r.code != http.StatusCreated {
					t.Errorf("order %s while %s answers on its hops' inboxes with %s: %d %s, want 201",
						id, way.user, way.subject, r.code, r.body)
				}
			}
			if forged.Load() == 0 {
				t.Fatal("the watcher saw no request to answer")
			}
			select {
			case err := <-forgerErrs:
				t.Fatalf("%s was refused a forgery, so it tried nothing: %v", way.user, err)
			default:
			}
			testkit.Eventually(t, 5*time.Second, "a forged answer, in the people's account", func() bool {
				m, err := answers.NextMsg(100 * time.Millisecond)
				return err == nil && !bytes.Contains(m.Data, []byte(`"outcome"`))
			})
			if o.Requester.State() != messaging.StateClosed || p.Requester.State() != messaging.StateClosed {
				t.Errorf("circuits: order's %s, payment's %s; want both closed", o.Requester.State(), p.Requester.State())
			}
		})
	}
}

// isTimer tells whether the entry in ORDERS of order id of database db, as the observer reads
// it, is a timer: the last message on its timer subject carries a schedule.
func isTimer(t *testing.T, js jetstream.JetStream, db, id string) bool {
	t.Helper()
	stream, err := js.Stream(t.Context(), observe.OrdersStream)
	if err != nil {
		t.Fatalf("observer: stream info %s: %v", observe.OrdersStream, err)
	}
	m, err := stream.GetLastMsgForSubject(t.Context(), order.TimerSubject(db, id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("observer: the last message on %s: %v", order.TimerSubject(db, id), err)
	}
	return m.Header.Get(jetstream.ScheduleHeader) != ""
}

// No user of the services' or the people's account puts a message on order's queue subjects, by
// any way there is to make the server or a service publish: a plain publish, a request to micro's
// discovery ($SRV.*), to JetStream's API ($JS.API.*, answered by order's queue account through
// the imports), to the services' endpoints (answered under allow_responses) or their controls,
// each with the queue subject as its reply. Given the chain running as its users (CHAOS=1, so
// every control exists), when every user tries every way on orders.timer.…, orders.due.… and
// orders.since.…, then each is refused, or answered in the sender's account (the observer sees
// the answer there: the services' account exports all it carries to the people's) — and neither
// ORDERS nor ORDERS_SINCE stored a thing.
func TestNoUserReachesTheQueue(t *testing.T) {
	url, o, _, _ := securedChainWithChaos(t)
	if r := post(t, o, seedOrder("reach-1")); r.code != http.StatusCreated {
		t.Fatalf("POST /create: %d %s, want 201", r.code, r.body)
	}

	// The streams as order's queue sees them, in its own account: every message ever stored
	// moves a stream's last sequence, even one a consumer took since.
	queueConn, _ := connectAs(t, url, queueUser)
	qjs, err := jetstream.New(queueConn)
	if err != nil {
		t.Fatal(err)
	}
	lastSeqs := func() map[string]uint64 {
		seqs := map[string]uint64{}
		for _, name := range []string{observe.OrdersStream, observe.OrdersSinceStream} {
			s, err := qjs.Stream(t.Context(), name)
			if err != nil {
				t.Fatalf("%s: stream info %s: %v", queueUser, name, err)
			}
			seqs[name] = s.CachedInfo().State.LastSeq
		}
		return seqs
	}
	before := lastSeqs()

	seen := watch(t, url, "orders.>")

	all := []string{"order", "payment", "shipment", "observer", "chaos"}
	ways := []struct {
		subject string // "" is a plain publish on the queue subject
		body    string
		by      string // who may send it, and is answered in their account; the others are refused
	}{
		{subject: ""},
		{subject: "$SRV.PING", by: "observer"},
		{subject: "$SRV.PING.order", by: "observer"},
		{subject: "$SRV.INFO.payment", by: "observer"},
		{subject: "$SRV.STATS.shipment", by: "observer"},
		{subject: "$JS.API.INFO", by: "observer"},
		{subject: "$JS.API.STREAM.NAMES", by: "observer"},
		{subject: "$JS.API.STREAM.INFO.ORDERS", by: "observer"},
		{subject: "$JS.API.CONSUMER.INFO.ORDERS.redriver", by: "observer"},
		{subject: "$JS.API.STREAM.MSG.GET.ORDERS", body: `{"last_by_subj":"orders.timer.none"}`, by: "observer"},
		{subject: "$JS.API.DIRECT.GET.ORDERS.orders.timer.none", by: "observer"},
		{subject: "$JS.API.STREAM.CREATE.ORDERS_SINCE"},
		{subject: "$JS.API.STREAM.MSG.DELETE.ORDERS", body: `{"seq":1}`},
		{subject: "payment.create", body: `{}`, by: "order"},
		{subject: "shipment.create", body: `{}`, by: "payment"},
		{subject: "circuits.order", by: "observer"},
		{subject: "circuits.payment", by: "observer"},
		{subject: "chaos.order", body: `{"latency":"0s"}`, by: "chaos"},
		{subject: "chaos.shipment", body: `{"latency":"0s"}`, by: "chaos"},
	}
	n := 0
	for _, user := range all {
		t.Run(user, func(t *testing.T) {
			violations := make(chan string, 256)
			nc, err := nats.Connect(url, nats.UserInfo(user, passwordOf(user)),
				nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
					if errors.Is(err, nats.ErrPermissionViolation) {
						violations <- err.Error()
					}
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			wantRefused := map[string][]string{} // the refused subject → the attempts
			wantAnswer := map[string]string{}    // the reply subject → the attempt
			for _, way := range ways {
				for _, queueSubject := range []func(db, id string) string{order.TimerSubject, order.DueSubject, order.SinceSubject} {
					n++
					target := queueSubject(o.Config.MongoDB, fmt.Sprintf("x%d", n))
					attempt := fmt.Sprintf("%s with reply %s", way.subject, target)
					if way.subject == "" {
						attempt = "publish " + target
						if err := nc.Publish(target, []byte("forged")); err != nil {
							t.Fatal(err)
						}
						wantRefused[target] = append(wantRefused[target], attempt)
						continue
					}
					if err := nc.PublishRequest(way.subject, target, []byte(way.body)); err != nil {
						t.Fatal(err)
					}
					if way.by == user {
						wantAnswer[target] = attempt
					} else {
						wantRefused[way.subject] = append(wantRefused[way.subject], attempt)
					}
				}
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			for len(wantRefused) > 0 {
				select {
				case v := <-violations:
					_, quoted, _ := strings.Cut(v, `Publish to "`)
					subject := strings.TrimSuffix(quoted, `"`)
					if len(wantRefused[subject]) == 0 {
						t.Fatalf("%s: refused what it may send: %s", user, v)
					}
					if wantRefused[subject] = wantRefused[subject][1:]; len(wantRefused[subject]) == 0 {
						delete(wantRefused, subject)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: not refused: %v", user, slices.Collect(maps.Values(wantRefused)))
				}
			}
			for len(wantAnswer) > 0 {
				m, err := seen.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatalf("%s: no answer in its account to %v", user, slices.Collect(maps.Values(wantAnswer)))
				}
				delete(wantAnswer, m.Subject)
			}
			select {
			case v := <-violations:
				t.Errorf("%s: refused what it may send: %s", user, v)
			default:
			}
		})
	}

	if after := lastSeqs(); !maps.Equal(after, before) {
		t.Errorf("streams' last sequences %v, then %v: something reached order's queue", before, after)
	}
}

// The observer still reads order's queue, now in another account, through the read-only API
// QUEUE exports: stream info (nats stream info ORDERS), consumer info (nats consumer info ORDERS
// redriver), the stream list, a message by subject both ways JetStream serves it (nats stream
// get), and the dashboard's pending-orders reading (observe.Pending on the observer's connection).
func TestObserverReadsTheQueue(t *testing.T) {
	url := securedNATS(t)
	uri, db := testkit.Database(t)
	// Shipment away: payment answers "unavailable", the order stays pending on its timer.
	testkit.Start(t, from(payment.Service), url, uri, db, asUser(payment.Service))
	orderEnv := asUser(order.Service)
	orderEnv["REDRIVE_BACKOFF"] = "1h"
	o := testkit.Start(t, from(order.Service), url, uri, db, orderEnv)
	if r := post(t, o, seedOrder("watched")); r.code != http.StatusAccepted {
		t.Fatalf("POST /create with shipment away: %d %s, want 202", r.code, r.body)
	}

	obs, obsErrs := connectAs(t, url, "observer")
	var info jetstream.StreamInfo
	request(t, obs, "$JS.API.STREAM.INFO."+observe.OrdersStream, &info)
	if info.Config.Name != observe.OrdersStream || info.State.Msgs != 1 {
		t.Errorf("stream info: %s with %d messages, want %s with the pending order's timer", info.Config.Name, info.State.Msgs, observe.OrdersStream)
	}
	var consumer jetstream.ConsumerInfo
	request(t, obs, "$JS.API.CONSUMER.INFO."+observe.OrdersStream+"."+order.ConsumerName, &consumer)
	if consumer.Name != order.ConsumerName {
		t.Errorf("consumer info: %+v, want %s", consumer, order.ConsumerName)
	}
	var names struct {
		Streams []string `json:"streams"`
	}
	request(t, obs, "$JS.API.STREAM.NAMES", &names)
	if slices.Sort(names.Streams); !slices.Equal(names.Streams, []string{observe.OrdersStream, observe.OrdersSinceStream}) {
		t.Errorf("stream names %v, want order's two", names.Streams)
	}
	// By subject: the stored message API, as `nats stream get` asks it, then a direct get.
	m, err := obs.Request("$JS.API.STREAM.MSG.GET."+observe.OrdersStream, []byte(`{"last_by_subj":"`+order.TimerSubject(db, "watched")+`"}`), 5*time.Second)
	var stored struct {
		Message struct {
			Subject string `json:"subject"`
		} `json:"message"`
	}
	if err != nil || jsonUnmarshal(m.Data, &stored) != nil || stored.Message.Subject != order.TimerSubject(db, "watched") {
		t.Errorf("$JS.API.STREAM.MSG.GET: %v %v, want the order's timer", m, err)
	}
	js, err := jetstream.New(obs)
	if err != nil {
		t.Fatal(err)
	}
	if !isTimer(t, js, db, "watched") {
		t.Error("direct get: the pending order's entry is not a timer")
	}
	entries, _, err := observe.Pending(t.Context(), js)
	if err != nil || entries != 1 {
		t.Errorf("observe.Pending as observer: %d, %v; want the one pending order", entries, err)
	}
	select {
	case err := <-obsErrs:
		t.Errorf("observer: %v", err)
	default:
	}
}
