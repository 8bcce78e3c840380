package chaintest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/breakerchain/breakerchain/internal/chaos"
	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/dashboard"
	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// natsConf is the NATS configuration compose runs, committed in the repository. These tests
// load that very file, so what they prove is what is deployed.
const natsConf = "deploy/nats.conf"

// natsUsers are the users of deploy/nats.conf and the passwords these tests give them.
var natsUsers = map[string]string{
	"order": "order-pw-1", "payment": "payment-pw-2", "shipment": "shipment-pw-3", "observer": "observer-pw-4",
	"chaos": "chaos-pw-5",
}

// queueUser is order's second user, the one of account QUEUE, where its queue is: the file gives
// it order's password.
const queueUser = "order-queue"

// passwordOf is user's password in these tests.
func passwordOf(user string) string {
	if user == queueUser {
		return natsUsers["order"]
	}
	return natsUsers[user]
}

// securedNATS starts a nats-server from deploy/nats.conf with the passwords in the environment,
// as compose starts it, and returns its URL.
func securedNATS(t *testing.T) string {
	t.Helper()
	return securedServer(t).URL()
}

// securedServer is securedNATS's server, for what only the server can tell (its connections).
func securedServer(t *testing.T) *embedded.NATS {
	t.Helper()
	for user, pw := range natsUsers {
		t.Setenv(strings.ToUpper(user)+"_NATS_PASSWORD", pw)
	}
	return testkit.NATSWithConfig(t, natsConf)
}

// connectAs connects as user with its password; the connection's asynchronous errors (the
// server's permission violations) arrive on the channel.
func connectAs(t *testing.T, url, user string) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 16)
	opts := []nats.Option{nats.UserInfo(user, passwordOf(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		})}
	if user == queueUser {
		opts = append(opts, nats.CustomInboxPrefix(messaging.InboxPrefix("order"))) // its only replies
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// watch subscribes to subject as the observer, on a connection of its own, and returns once the
// server has the subscription.
func watch(t *testing.T, url, subject string) *nats.Subscription {
	t.Helper()
	watcher, _ := connectAs(t, url, "observer")
	sub, err := watcher.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// asUser is the environment that makes svc connect as its own user, and order's queue as
// order-queue.
func asUser(svc service.Service) testkit.Env {
	env := testkit.Env{"BREAKER_TIMEOUT": "5s", "NATS_USER": svc.Name, "NATS_PASSWORD": natsUsers[svc.Name]}
	if svc.Name == order.Service.Name {
		env["NATS_QUEUE_USER"], env["NATS_QUEUE_PASSWORD"] = queueUser, passwordOf(queueUser)
	}
	return env
}

// withChaos is asUser with CHAOS=1: faults may be changed at runtime, over chaos.<service>.
func withChaos(svc service.Service) testkit.Env {
	env := asUser(svc)
	env["CHAOS"] = "1"
	return env
}

// securedChainWithChaos starts the chain on a securedNATS as compose runs it with chaos on
// everywhere: each service as its own user, with CHAOS=1. It returns the server's URL.
func securedChainWithChaos(t *testing.T) (url string, o, p, s *testkit.Instance) {
	t.Helper()
	url = securedNATS(t)
	uri, db := testkit.Database(t)
	s = testkit.Start(t, from(shipment.Service), url, uri, db, withChaos(shipment.Service))
	p = testkit.Start(t, from(payment.Service), url, uri, db, withChaos(payment.Service))
	o = testkit.Start(t, from(order.Service), url, uri, db, withChaos(order.Service))
	return url, o, p, s
}

// refusedAtStart starts shipment with env, which must not start, and returns why it did not.
func refusedAtStart(t *testing.T, env testkit.Env) error {
	t.Helper()
	cfg, err := config.Load("shipment", "127.0.0.1", 0, env.Lookup)
	if err != nil {
		t.Fatal(err)
	}
	r, err := service.Start(t.Context(), from(shipment.Service), cfg, testkit.Logger(t))
	if err == nil {
		_ = r.Stop(context.Background())
		t.Fatal("started; want a refusal at start")
	}
	return err
}

// Nobody gets in without a user of deploy/nats.conf and its own password; a service given a
// wrong password stops at start, saying which variables to check, without showing the password.
func TestNATSRefusesStrangers(t *testing.T) {
	url := securedNATS(t)
	for _, row := range []struct {
		name string
		opts []nats.Option
	}{
		{"anonymous", nil},
		{"wrong password", []nats.Option{nats.UserInfo("order", "guess")}},
		{"another user's password", []nats.Option{nats.UserInfo("order", natsUsers["payment"])}},
		{"unknown user", []nats.Option{nats.UserInfo("mallory", natsUsers["observer"])}},
		{"empty password", []nats.Option{nats.UserInfo("shipment", "")}},
	} {
		t.Run(row.name, func(t *testing.T) {
			nc, err := nats.Connect(url, row.opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connected; want the server to refuse")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("err %v, want %v", err, nats.ErrAuthorization)
			}
		})
	}

	t.Run("service with a wrong password", func(t *testing.T) {
		uri, db := testkit.Database(t)
		err := refusedAtStart(t, testkit.Env{"NATS_URL": url, "MONGO_URL": uri, "MONGO_DB": db, "PORT": "0",
			"NATS_USER": "shipment", "NATS_PASSWORD": "stale-password-7"})
		msg := err.Error()
		if !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(msg, "NATS_PASSWORD") || strings.Contains(msg, "stale-password-7") {
			t.Errorf("err %q: want the authorization error, naming NATS_PASSWORD, without the password", msg)
		}
	})
}

// The whole chain works with every service as its own least-privileged user, and order's queue
// as order-queue, the one user of account QUEUE: the order completes, a pending one is re-driven
// to completion, the circuits' events reach an observer, discovery answers, and no service was
// refused anything on the way (a refusal is logged as an error by the connection's handler).
// None of the queue's traffic is in the services' account: the observer, who sees all of it,
// sees none.
func TestChainWithLeastPrivilege(t *testing.T) {
	ns := securedServer(t)
	url := ns.URL()
	uri, db := testkit.Database(t)
	s := testkit.Start(t, from(shipment.Service), url, uri, db, asUser(shipment.Service))
	p := testkit.Start(t, from(payment.Service), url, uri, db, asUser(payment.Service))
	orderEnv := asUser(order.Service)
	orderEnv["REDRIVE_BACKOFF"] = "100ms"
	o := testkit.Start(t, from(order.Service), url, uri, db, orderEnv)

	obs, obsErrs := connectAs(t, url, "observer")
	// A person watching everything, plainly (nats sub '>'), takes nothing from the services.
	everything, err := obs.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	events, err := obs.SubscribeSync("breaker.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}

	res := post(t, o, seedOrder("least-privilege"))
	if res.code != http.StatusCreated || hops(res.view(t)) != "order:ok payment:ok shipment:ok" {
		t.Fatalf("POST /create: %d %s, want 201 with three ok hops", res.code, res.body)
	}

	// The observer reads order's queue as `nats stream info` and `nats consumer info` do.
	js, err := jetstream.New(obs)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), observe.OrdersStream)
	if err != nil {
		t.Fatalf("observer: stream info: %v", err)
	}
	if info := stream.CachedInfo(); info.Config.Name != observe.OrdersStream || info.Config.Replicas != 1 {
		t.Errorf("stream info %+v", info.Config)
	}
	if _, err := stream.GetLastMsgForSubject(t.Context(), order.TimerSubject(o.Config.MongoDB, "least-privilege")); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("observer: the completed order's timer: %v, want none (read allowed, nothing there)", err)
	}

	// A pending order is marked, re-driven and unmarked with order's rights, and the observer
	// sees its mark come and go.
	s.Stop()
	if res := post(t, o, seedOrder("least-privilege-pending")); res.code != http.StatusAccepted {
		t.Fatalf("POST /create with shipment away: %d %s, want 202", res.code, res.body)
	}
	marks := func() uint64 {
		since, err := js.Stream(t.Context(), observe.OrdersSinceStream)
		if err != nil {
			t.Fatalf("observer: stream info %s: %v", observe.OrdersSinceStream, err)
		}
		return since.CachedInfo().State.Msgs
	}
	// Shipment's requests time out rather than find no responder: the observer's '>' is interest.
	testkit.Eventually(t, 15*time.Second, "a re-drive to mark the order pending", func() bool { return marks() == 1 })
	s = testkit.Start(t, from(shipment.Service), url, uri, db, asUser(shipment.Service))
	completed(t, o, "least-privilege-pending")
	testkit.Eventually(t, 5*time.Second, "the completed order's mark to go", func() bool { return marks() == 0 })

	// A rejection after payment voids the payment with order's and payment's rights (payment.void).
	if r := post(t, o, strings.ReplaceAll(seedOrder("least-privilege-void"), `"shipment":{"id":"least-privilege-void"`, `"shipment":{"id":"least-privilege"`)); r.code != http.StatusConflict {
		t.Fatalf("POST /create reusing a shipment id: %d %s, want 409", r.code, r.body)
	}
	if v := do(t, http.MethodGet, o.URL()+"/orders/least-privilege-void", "").view(t); v.Status != order.StatusRejected || v.Compensation["payment"] != messaging.OutcomeVoided {
		t.Errorf("the rejected order: %+v, want rejected with its payment voided", v)
	}

	// Each caller published its circuit's events on its own breaker subject.
	seen := map[string]bool{}
	for !seen[messaging.BreakerSubject("order", "payment")] || !seen[messaging.BreakerSubject("payment", "shipment")] {
		m, err := events.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("breaker events: %v; seen %v", err, seen)
		}
		seen[m.Subject] = true
	}

	// Discovery, as `nats micro ls|info|stats` asks it: every verb, by name and by id.
	inbox := nats.NewInbox()
	pings, err := obs.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.PublishRequest("$SRV.PING", inbox, nil); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for len(names) < 3 {
		m, err := pings.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("$SRV.PING: %v; answered by %v", err, names)
		}
		var ping micro.Ping
		if err := jsonUnmarshal(m.Data, &ping); err != nil {
			t.Fatal(err)
		}
		names[ping.Name] = true
	}
	if !names["order"] || !names["payment"] || !names["shipment"] {
		t.Errorf("$SRV.PING answered by %v, want order, payment and shipment", names)
	}
	for _, name := range []string{"payment", "shipment"} {
		var info micro.Info
		request(t, obs, "$SRV.INFO."+name, &info)
		var stats micro.Stats
		request(t, obs, "$SRV.STATS."+name+"."+info.ID, &stats)
		if stats.Name != name || len(stats.Endpoints) != 3 {
			t.Errorf("$SRV.STATS.%s.%s: %+v", name, info.ID, stats)
		}
	}

	// order is connected twice: as order in APP, and its queue as order-queue in QUEUE, alone there;
	// the observer watches from PEOPLE.
	for account, want := range map[string]string{"APP": "order", "QUEUE": queueUser, "PEOPLE": "observer"} {
		conns, err := ns.Connz(&server.ConnzOptions{Account: account, Username: true})
		if err != nil {
			t.Fatal(err)
		}
		var users []string
		for _, c := range conns.Conns {
			users = append(users, c.AuthorizedUser)
		}
		if !slices.Contains(users, want) || account == "QUEUE" && len(users) != 1 {
			t.Errorf("account %s: connections of %q, want %s's (alone in QUEUE)", account, users, want)
		}
	}
	for {
		m, err := everything.NextMsg(0)
		if err != nil {
			break
		}
		if strings.HasPrefix(m.Subject, "orders.") || strings.HasPrefix(m.Subject, "$JS.ACK.") {
			t.Errorf("the observer saw order's queue traffic in its account: %s", m.Subject)
		}
	}

	for _, svc := range []*testkit.Instance{o, p, s} {
		if errs := svc.LoggedErrors(); len(errs) > 0 {
			t.Errorf("%s logged errors: %q", svc.Config.Name, errs)
		}
	}
	select {
	case err := <-obsErrs:
		t.Errorf("observer: %v", err)
	default:
	}
}

// Chaos at runtime works with least privilege, as compose runs it: every service with CHAOS=1 as
// its own user, faults changed by the chaos user (compose's nats-chaos). Each service answers on
// chaos.<service> and announces the change on chaos.<service>.changed, which the chaos user and
// the observer both see; discovery lists the chaos endpoints; nobody is refused anything. The
// chaos user reads its own answers on _INBOX.>, but never the services' replies, which match the
// same wildcards. A change naming a subject of the chain as its reply is answered in the people's
// account, never in the chain's: a service answers on whatever subject a request names, its
// publish rights notwithstanding, and the import the request came through names it anew.
func TestChaosWithLeastPrivilege(t *testing.T) {
	url, o, p, s := securedChainWithChaos(t)

	obs, obsErrs := connectAs(t, url, "observer")
	ops, opsErrs := connectAs(t, url, "chaos")
	watched, err := obs.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	// Every wildcard that covers the services' inboxes (_INBOX.order.<nuid>.<n>): some servers
	// filtered only a deny that the subscription contains as a subset (nats-server < 2.11.16).
	var sniffers []*nats.Subscription
	for _, wildcard := range []string{"_INBOX.>", "_INBOX.*.*.*", "_INBOX.*.*.>"} {
		sub, err := ops.SubscribeSync(wildcard)
		if err != nil {
			t.Fatal(err)
		}
		sniffers = append(sniffers, sub)
	}
	changes, err := ops.SubscribeSync("chaos.*.changed")
	if err != nil {
		t.Fatal(err)
	}
	for _, nc := range []*nats.Conn{obs, ops} {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	// Each service takes a change from the chaos user and announces it.
	for _, svc := range []string{"order", "payment", "shipment"} {
		c, se := setChaos(t, ops, svc, `{"latency":"1ms"}`)
		if se != nil || !c.Enabled || c.Latency != "1ms" {
			t.Fatalf("chaos.%s as chaos: %+v %v", svc, c, se)
		}
		m, err := changes.NextMsg(5 * time.Second)
		var ev chaos.Changed
		if err != nil || jsonUnmarshal(m.Data, &ev) != nil || m.Subject != messaging.ChaosChangedSubject(svc) || ev.Service != svc || ev.Faults.Latency != "1ms" {
			t.Fatalf("the chaos user saw no change of %s: %v %v", svc, m, err)
		}
	}
	// Discovery lists order's chaos endpoint beside its circuits (it serves nothing else on NATS).
	var info micro.Info
	request(t, obs, "$SRV.INFO.order", &info)
	if len(info.Endpoints) != 2 || info.Endpoints[1].Subject != messaging.ChaosSubject("order") {
		t.Errorf("$SRV.INFO.order: %+v, want its circuits and chaos endpoints", info.Endpoints)
	}

	// An order passes through order's and payment's inboxes; the observer sees those replies,
	// the chaos user does not.
	res := post(t, o, seedOrder("chaos-least-privilege"))
	if res.code != http.StatusCreated {
		t.Fatalf("POST /create: %d %s, want 201", res.code, res.body)
	}
	seen := map[string]bool{}
	for !seen["_INBOX.order."] || !seen["_INBOX.payment."] {
		m, err := watched.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("the observer saw no replies to order and payment: %v; seen %v", err, seen)
		}
		for _, prefix := range []string{"_INBOX.order.", "_INBOX.payment."} {
			seen[prefix] = seen[prefix] || strings.HasPrefix(m.Subject, prefix)
		}
	}
	// A change asking to be answered on payment.create: the chaos user's to make, so applied, but
	// answered in the people's account, where the chaos user is: never on the chain's
	// payment.create, which payment serves (it counts only the order's request).
	if err := ops.PublishRequest(messaging.ChaosSubject("shipment"), messaging.Subject("payment"), []byte(`{"latency":"2ms"}`)); err != nil {
		t.Fatal(err)
	}
	// Shipment handles its chaos requests in order, so the forged one was handled when the chaos
	// user's own is answered; the replies the chaos user may not read were queued before it.
	own := "_INBOX.chaos-test.1.2"
	if err := ops.PublishRequest(messaging.ChaosSubject("shipment"), own, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, sub := range sniffers {
		for {
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("%s: the chaos user's own answer never came: %v", sub.Subject, err)
			}
			if strings.HasPrefix(m.Subject, "_INBOX.order.") || strings.HasPrefix(m.Subject, "_INBOX.payment.") || strings.HasPrefix(m.Subject, "_INBOX.shipment.") {
				t.Fatalf("the chaos user read a service's reply on %s through %s", m.Subject, sub.Subject)
			}
			if m.Subject == own {
				var c chaos.State
				if err := jsonUnmarshal(m.Data, &c); err != nil || c.Latency != "2ms" {
					t.Fatalf("shipment's faults after a change answered on payment.create: %s (%v), want latency 2ms", m.Data, err)
				}
				break
			}
		}
	}
	var stats micro.Stats
	request(t, obs, "$SRV.STATS.payment", &stats)
	served := -1
	for _, e := range stats.Endpoints {
		if e.Subject == messaging.Subject("payment") {
			served = e.NumRequests
		}
	}
	if served != 1 {
		t.Errorf("payment.create served %d requests (-1: no such endpoint), want 1 (the order's): a change's answer reached it", served)
	}

	for _, svc := range []*testkit.Instance{o, p, s} {
		if errs := svc.LoggedErrors(); len(errs) > 0 {
			t.Errorf("%s logged errors: %q", svc.Config.Name, errs)
		}
	}
	for user, errs := range map[string]<-chan error{"observer": obsErrs, "chaos": opsErrs} {
		select {
		case err := <-errs:
			t.Errorf("%s: %v", user, err)
		default:
		}
	}
}

// What each user may not do, the server refuses, and nats.go reports the refusal as an
// asynchronous permission violation. A refused publish never reaches a subscriber: the same
// connection's next, allowed, message (the marker) is the first a watcher of '>' sees.
func TestNATSPermissionsRefuse(t *testing.T) {
	url := securedNATS(t)
	for _, row := range []struct {
		user, op, subject, queue string
		marker                   string // an allowed subject the user publishes after a refused publish
		why                      string
	}{
		{user: "order", op: "publish", subject: "shipment.create", marker: "breaker.order.marker", why: "ship goods never paid for"},
		{user: "order", op: "publish", subject: "breaker.payment.shipment", marker: "breaker.order.marker", why: "forge payment's circuit events"},
		{user: "order", op: "subscribe", subject: "payment.create", why: "take payment's requests"},
		{user: "order", op: "subscribe", subject: "_INBOX.payment.>", why: "read payment's replies"},
		{user: "order", op: "publish", subject: "shipment.void", marker: "breaker.order.marker", why: "void past payment"},
		{user: "order", op: "subscribe", subject: "payment.void", queue: "payment", why: "take payment's voids"},
		{user: "payment", op: "publish", subject: "payment.void", marker: "breaker.payment.marker", why: "void payments unasked"},
		{user: "payment", op: "subscribe", subject: "payment.void", queue: "thief", why: "serve voids in another queue group"},
		{user: "shipment", op: "publish", subject: "payment.void", marker: "chaos.shipment.changed", why: "void a payment"},
		{user: "shipment", op: "subscribe", subject: "shipment.void", why: "serve voids outside its queue group"},
		{user: "observer", op: "publish", subject: "payment.void", marker: "$SRV.PING.marker", why: "void a payment: it only watches"},
		{user: "observer", op: "subscribe", subject: "payment.void", queue: "payment", why: "take a share of payment's voids and never answer them"},
		{user: "chaos", op: "publish", subject: "payment.void", marker: "chaos.marker", why: "void a payment"},
		{user: "payment", op: "publish", subject: "payment.create", marker: "breaker.payment.marker", why: "pay without an order"},
		{user: "payment", op: "publish", subject: "breaker.order.payment", marker: "breaker.payment.marker", why: "forge order's circuit events"},
		{user: "payment", op: "subscribe", subject: "shipment.create", why: "take shipment's requests"},
		{user: "payment", op: "subscribe", subject: "payment.create", why: "serve outside its queue group: every request twice"},
		{user: "payment", op: "subscribe", subject: "payment.create", queue: "thief", why: "serve in another queue group"},
		{user: "shipment", op: "subscribe", subject: "shipment.create", why: "serve outside its queue group: every request twice"},
		{user: "shipment", op: "publish", subject: "shipment.create", marker: "chaos.shipment.changed", why: "publish anything but its answers and its chaos changes"},
		{user: "shipment", op: "publish", subject: "payment.create", marker: "chaos.shipment.changed", why: "publish anything but its answers and its chaos changes"},
		{user: "shipment", op: "publish", subject: "chaos.payment.changed", marker: "chaos.shipment.changed", why: "announce another service's chaos change"},
		{user: "payment", op: "subscribe", subject: "chaos.shipment", why: "take shipment's chaos changes"},
		{user: "order", op: "publish", subject: "chaos.payment", marker: "breaker.order.marker", why: "fail payments at will"},
		{user: "observer", op: "publish", subject: "payment.create", marker: "$SRV.PING.marker", why: "place a payment"},
		{user: "observer", op: "publish", subject: "shipment.create", marker: "$SRV.PING.marker", why: "ship goods"},
		{user: "observer", op: "publish", subject: "chaos.shipment", marker: "$SRV.PING.marker", why: "change faults: it only watches"},
		{user: "observer", op: "publish", subject: "$JS.API.STREAM.DELETE.ORDERS", marker: "$SRV.PING.marker", why: "delete order's queue: it only reads JetStream"},
		{user: "observer", op: "publish", subject: "$JS.API.STREAM.PURGE.ORDERS", marker: "$SRV.PING.marker", why: "empty order's queue: it only reads JetStream"},
		{user: "observer", op: "publish", subject: "$JS.API.CONSUMER.MSG.NEXT.ORDERS.redriver", marker: "$SRV.PING.marker", why: "take order's due orders"},
		{user: "observer", op: "publish", subject: "orders.timer.forged", marker: "$SRV.PING.marker", why: "queue an order"},
		{user: "order", op: "publish", subject: "$JS.API.STREAM.INFO.ORDERS", marker: "breaker.order.marker", why: "use JetStream: its queue is order-queue's, in QUEUE"},
		{user: "order", op: "publish", subject: "orders.timer.forged", marker: "breaker.order.marker", why: "publish on its queue's subjects, in the wrong account"},
		// order-queue is alone in its account: no watcher there to see a refused message.
		{user: queueUser, op: "publish", subject: "$JS.API.STREAM.DELETE.ORDERS", why: "delete its own queue"},
		{user: queueUser, op: "publish", subject: "$JS.API.STREAM.PURGE.ORDERS", why: "empty its own queue at once"},
		{user: queueUser, op: "publish", subject: "$JS.API.STREAM.CREATE.OTHER", why: "create any stream"},
		{user: queueUser, op: "publish", subject: "$JS.API.STREAM.DELETE.ORDERS_SINCE", why: "delete the marks of pending orders"},
		{user: queueUser, op: "publish", subject: "payment.create", why: "use the chain: it is only order's queue"},
		{user: queueUser, op: "subscribe", subject: "orders.>", why: "subscribe to anything but its replies"},
		{user: "observer", op: "publish", subject: "$JS.API.STREAM.PURGE.ORDERS_SINCE", marker: "$SRV.PING.marker", why: "remove pending orders' marks: it only reads JetStream"},
		{user: "payment", op: "publish", subject: "orders.since.forged", marker: "breaker.payment.marker", why: "mark an order pending"},
		{user: "payment", op: "publish", subject: "$JS.API.STREAM.PURGE.ORDERS", marker: "breaker.payment.marker", why: "empty order's queue"},
		{user: "payment", op: "publish", subject: "orders.due.forged", marker: "breaker.payment.marker", why: "make an order due"},
		{user: "chaos", op: "publish", subject: "$JS.API.STREAM.INFO.ORDERS", marker: "chaos.marker", why: "use JetStream"},
		{user: "observer", op: "subscribe", subject: "payment.create", queue: "payment", why: "take a share of payment's requests and never answer them"},
		{user: "observer", op: "subscribe", subject: "shipment.create", queue: "shipment", why: "take a share of shipment's requests and never answer them"},
		{user: "observer", op: "subscribe", subject: "inventory.create", queue: "inventory", why: "join the queue group of a service added later"},
		{user: "observer", op: "subscribe", subject: ">", queue: "watchers", why: "join any queue group at all"},
		{user: "chaos", op: "subscribe", subject: "chaos.shipment.changed", queue: "shipment", why: "join a queue group: it only watches"},
		{user: "chaos", op: "subscribe", subject: "_INBOX.anything", queue: "payment", why: "join a queue group: it only watches"},
		{user: "chaos", op: "publish", subject: "payment.create", marker: "chaos.marker", why: "place a payment"},
		{user: "chaos", op: "publish", subject: "chaos.shipment.changed", marker: "chaos.marker", why: "forge shipment's announcement of a change"},
		{user: "chaos", op: "subscribe", subject: "payment.create", why: "take payment's requests"},
		{user: "chaos", op: "subscribe", subject: "_INBOX.payment.>", why: "read payment's replies"},
		{user: "chaos", op: "subscribe", subject: "chaos.shipment", why: "read the changes others ask for"},
		{user: "payment", op: "publish", subject: "chaos.shipment", marker: "breaker.payment.marker", why: "fail shipments at will"},
		{user: "payment", op: "publish", subject: "chaos.shipment.changed", marker: "breaker.payment.marker", why: "announce shipment's chaos changes"},
		{user: "order", op: "subscribe", subject: "chaos.shipment", why: "take shipment's chaos changes, and answer them first"},
		{user: "shipment", op: "subscribe", subject: "chaos.payment", why: "take payment's chaos changes, and answer them first"},
		{user: "order", op: "subscribe", subject: "$SRV.INFO.payment", why: "answer discovery for payment"},
		{user: "shipment", op: "publish", subject: "chaos.shipment.changed.more", marker: "chaos.shipment.changed", why: "publish anything but its answers and its chaos changes"},
	} {
		t.Run(row.user+" "+row.op+" "+row.subject+" "+row.queue, func(t *testing.T) {
			nc, errs := connectAs(t, url, row.user)
			watched := watch(t, url, ">")

			want := `subscription to "` + row.subject + `"`
			switch row.op {
			case "publish":
				want = `publish to "` + row.subject + `"`
				if err := nc.Publish(row.subject, []byte(`{"id":"forged"}`)); err != nil {
					t.Fatal(err)
				}
				if row.marker != "" {
					if err := nc.Publish(row.marker, []byte("marker")); err != nil {
						t.Fatal(err)
					}
				}
			case "subscribe":
				var err error
				if row.queue != "" {
					_, err = nc.QueueSubscribeSync(row.subject, row.queue)
				} else {
					_, err = nc.SubscribeSync(row.subject)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}

			select {
			case err := <-errs:
				if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) {
					t.Errorf("async error %q, want a permission violation for %s", err, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no permission violation for %s %s %s: %s is allowed to %s", row.user, row.op, row.subject, row.user, row.why)
			}

			if row.marker != "" {
				for {
					m, err := watched.NextMsg(5 * time.Second)
					if err != nil {
						t.Fatalf("the marker never arrived: %v", err)
					}
					if m.Subject == row.subject {
						t.Fatalf("the refused message reached a subscriber of %s", row.subject)
					}
					if m.Subject == row.marker {
						break
					}
				}
			}
		})
	}
}

// Loading deploy/nats.conf fails, naming the problem, when a password variable is not set or
// is empty: a user with an empty password would let in anyone who knows its name.
func TestNATSConfigNeedsEveryPassword(t *testing.T) {
	path := filepath.Join(testkit.Root(t), natsConf)
	for user, pw := range natsUsers {
		t.Setenv(strings.ToUpper(user)+"_NATS_PASSWORD", pw)
	}
	if _, err := embedded.LoadNATSConfig(path); err != nil {
		t.Fatalf("with every password set: %v", err)
	}

	t.Setenv("PAYMENT_NATS_PASSWORD", "")
	if _, err := embedded.LoadNATSConfig(path); err == nil || !strings.Contains(err.Error(), `"payment" has an empty password`) {
		t.Errorf("empty PAYMENT_NATS_PASSWORD: %v, want it refused", err)
	}
	if err := os.Unsetenv("PAYMENT_NATS_PASSWORD"); err != nil {
		t.Fatal(err)
	}
	if _, err := embedded.LoadNATSConfig(path); err == nil || !strings.Contains(err.Error(), "PAYMENT_NATS_PASSWORD") {
		t.Errorf("unset PAYMENT_NATS_PASSWORD: %v, want an error naming it", err)
	}
}

// A tls:// server with a certificate from a private CA: a service given that CA in NATS_CA
// connects and serves; without it the service stops at start (an untrusted certificate does not
// get better by retrying) and says which variable to check.
func TestNATSOverTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, serverCert := testCA(t, dir)
	ns, err := embedded.StartNATS("127.0.0.1", -1, &server.Options{NoLog: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	url := ns.URL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("server URL %s, want tls://", url)
	}
	uri, db := testkit.Database(t)

	testkit.Start(t, from(shipment.Service), url, uri, db, testkit.Env{"NATS_CA": caFile})
	nc, err := nats.Connect(url, nats.RootCAs(caFile))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg, err := nc.Request(messaging.Subject("shipment"), []byte(`{"id":"tls-1","directions":"home"}`), 5*time.Second)
	if err != nil {
		t.Fatalf("request over TLS: %v", err)
	}
	var reply messaging.Reply
	if err := jsonUnmarshal(msg.Data, &reply); err != nil || reply.Outcome != messaging.OutcomeOK {
		t.Errorf("reply %s (%v), want ok", msg.Data, err)
	}

	err = refusedAtStart(t, testkit.Env{"NATS_URL": url, "MONGO_URL": uri, "MONGO_DB": db, "PORT": "0"}) // no NATS_CA
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) && !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "NATS_CA") {
		t.Errorf("err %q: want the certificate error, naming NATS_CA", err)
	}
}

// testCA writes a private CA's certificate to dir and returns its path and a server
// certificate for 127.0.0.1 signed by it.
func testCA(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "breakerchain test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}

// A credentials file (NATS_CREDS: a user JWT and its NKey seed, as `nsc` writes them) is how a
// service logs in to a server that trusts an operator: it connects and serves; anonymous is
// refused.
func TestNATSCredsFile(t *testing.T) {
	operator, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	operatorPub, _ := operator.PublicKey()
	operatorClaims := jwt.NewOperatorClaims(operatorPub)
	if _, err := operatorClaims.Encode(operator); err != nil {
		t.Fatal(err)
	}
	account, _ := nkeys.CreateAccount()
	accountPub, _ := account.PublicKey()
	accountJWT, err := jwt.NewAccountClaims(accountPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	userJWT, err := jwt.NewUserClaims(userPub).Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(t.TempDir(), "shipment.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}

	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accountPub, accountJWT); err != nil {
		t.Fatal(err)
	}
	ns, err := embedded.StartNATS("127.0.0.1", -1, &server.Options{NoLog: true,
		TrustedOperators: []*jwt.OperatorClaims{operatorClaims}, AccountResolver: resolver})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)

	if nc, err := nats.Connect(ns.URL()); err == nil {
		nc.Close()
		t.Fatal("anonymous connected to a server that trusts an operator")
	}
	uri, db := testkit.Database(t)
	s := testkit.Start(t, from(shipment.Service), ns.URL(), uri, db, testkit.Env{"NATS_CREDS": credsFile})
	if got := do(t, http.MethodGet, s.URL()+"/readyz", ""); got.code != http.StatusOK {
		t.Errorf("/readyz %d %s, want 200: connected with the credentials file", got.code, got.body)
	}
}

// The dashboard works with least privilege, as compose runs it (`breakerchain dashboard` with
// the environment of compose's dashboard service): it watches as the observer (discovery of every
// service's circuits, order's queue, the breaker events) and changes faults as the chaos user,
// through each service's chaos API; the server refuses it nothing.
func TestDashboardWithLeastPrivilege(t *testing.T) {
	url := securedNATS(t)
	uri, db := testkit.Database(t)
	testkit.Start(t, from(shipment.Service), url, uri, db, withChaos(shipment.Service))
	testkit.Start(t, from(payment.Service), url, uri, db, asUser(payment.Service))
	o := testkit.Start(t, from(order.Service), url, uri, db, asUser(order.Service))

	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelError}))
	cfg, err := config.LoadDashboard(testkit.Env{"NATS_URL": url, "NATS_USER": "observer", "NATS_PASSWORD": natsUsers["observer"],
		"CHAOS_NATS_USER": "chaos", "CHAOS_NATS_PASSWORD": natsUsers["chaos"], "ORDER_URL": o.URL(), "DASHBOARD_PORT": "0"}.Lookup, len(product))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OrderBody = product.Example // as the command gives it
	d, err := dashboard.Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	base := "http://" + d.Addr

	if r := post(t, o, seedOrder("dash-lp")); r.code != http.StatusCreated {
		t.Fatalf("seed order: %d %s", r.code, r.body)
	}
	var st dashboard.State
	testkit.Eventually(t, 10*time.Second, "the dashboard to show both circuits, the services and the queue", func() bool {
		r := do(t, http.MethodGet, base+"/api/state", "")
		st = dashboard.State{}
		return jsonUnmarshal(r.body, &st) == nil && len(st.Circuits) == 2 && len(st.Services) == 3 && st.Pending != nil && st.Controls
	})
	r := do(t, http.MethodPut, base+"/api/chaos/shipment", `{"error_rate":0.25}`, "Content-Type", "application/json")
	var faults chaos.State
	if r.code != http.StatusOK || jsonUnmarshal(r.body, &faults) != nil || faults.ErrorRate != 0.25 {
		t.Errorf("PUT /api/chaos/shipment as the chaos user: %d %s", r.code, r.body)
	}
	if r := do(t, http.MethodPut, base+"/api/chaos/payment", `{"error_rate":1}`, "Content-Type", "application/json"); r.code != http.StatusForbidden {
		t.Errorf("chaos on payment, which runs without CHAOS: %d %s, want 403, as payment's own PUT /chaos", r.code, r.body)
	}
	if b := do(t, http.MethodPost, base+"/api/orders", `{"count":2}`, "Content-Type", "application/json"); b.code != http.StatusOK {
		t.Errorf("POST /api/orders: %d %s", b.code, b.body)
	}
	if logged.Len() > 0 {
		t.Errorf("the dashboard logged errors (a permission refused?):\n%s", logged.String())
	}
}
