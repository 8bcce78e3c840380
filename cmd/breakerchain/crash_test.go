package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// startOrder runs `breakerchain order` as a process of its own against natsURL and the store,
// with env after the test's defaults, and waits until it is ready; the process is killed when
// the test ends.
func startOrder(t *testing.T, natsURL, mongoURL, db string, env ...string) (*exec.Cmd, string) {
	t.Helper()
	addr := freeAddr(t)
	port := addr[strings.LastIndex(addr, ":")+1:]
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "BREAKERCHAIN_MAIN=1", "BREAKERCHAIN_ARGS=order", "HOST=127.0.0.1", "PORT="+port,
		"NATS_URL="+natsURL, "MONGO_URL="+mongoURL, "MONGO_DB="+db, "LOG_LEVEL=warn",
		"BREAKER_TIMEOUT=5s", "RETRY_MAX=0", "REDRIVE_RATE=100", "REDRIVE_AFTER=2s")
	cmd.Env = append(cmd.Env, env...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + addr
	testkit.Eventually(t, 30*time.Second, "order to be ready", func() bool {
		res, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return cmd, url
}

// Order is SIGKILLed while 20 chains are in flight (payment slowed by 400 ms of injected latency):
// no outcome recorded, clients cut off. A new order process, and no request replayed by the test,
// completes every order that was saved, each with exactly one payment and one shipment: the
// timers set before each insert survive the process in JetStream.
func TestKilledOrderLosesNothing(t *testing.T) {
	ns := testkit.NATS(t)
	uri, db := testkit.Database(t)
	testkit.Start(t, from(shipment.Service), ns.URL(), uri, db, testkit.Env{"BREAKER_TIMEOUT": "5s"})
	testkit.Start(t, from(payment.Service), ns.URL(), uri, db, testkit.Env{"BREAKER_TIMEOUT": "5s", "INJECT_LATENCY": "400ms"})
	first, url := startOrder(t, ns.URL(), uri, db)

	const inFlight = 20
	var wg sync.WaitGroup
	answered := make(chan int, inFlight)
	for i := range inFlight {
		wg.Go(func() {
			res, err := http.Post(url+"/create", "application/json", strings.NewReader(orderBody(fmt.Sprintf("killed-%d", i))))
			if err == nil {
				res.Body.Close()
				answered <- res.StatusCode
			}
		})
	}
	client := testkit.Client(t, uri)
	count := func(coll string, filter bson.D) int64 { return testkit.Count(t, client, db, coll, filter) }
	testkit.Eventually(t, 10*time.Second, "orders to be saved", func() bool { return count(order.Collection, nil) >= inFlight/2 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	wg.Wait()
	close(answered)
	for code := range answered {
		t.Errorf("a client was answered %d by a process killed before payment could answer", code)
	}
	if n := count(order.ResultsCollection, nil); n != 0 {
		t.Fatalf("%d outcomes recorded before the kill, want none: the test must kill mid-chain", n)
	}

	startOrder(t, ns.URL(), uri, db)
	allCompletedOnce(t, count)
}

// orderBody is an order, its payment and its shipment, all with id id: the seed's.
var orderBody = testkit.SeedOrder

// allCompletedOnce waits until every order saved has completed, and checks each has one payment
// and one shipment. The orders are counted again each time: an insert the killed process had
// sent may land after it died.
func allCompletedOnce(t *testing.T, count func(coll string, filter bson.D) int64) {
	t.Helper()
	completed := bson.D{{Key: "status", Value: order.StatusCompleted}}
	var saved int64
	testkit.Eventually(t, 60*time.Second, "every saved order to complete by itself", func() bool {
		saved = count(order.Collection, nil)
		return count(order.ResultsCollection, completed) == saved
	})
	p, s, c := count(payment.Collection, nil), count(shipment.Collection, nil), count(order.ResultsCollection, completed)
	if now := count(order.Collection, nil); now != saved || c != saved || p != saved || s != saved {
		t.Errorf("%d orders saved (%d a moment before), %d completed, %d payments, %d shipments: want one each, exactly once", now, saved, c, p, s)
	}
	t.Logf("%d orders saved, all completed once by themselves", saved)
}

// Scaled out: two order processes drain the orders left pending while payment was away, and
// one is SIGKILLed mid-drain. The other completes everything, nothing twice: what the dead one
// held unacknowledged is delivered again after the ack wait.
func TestKilledMidDrainLosesNothing(t *testing.T) {
	// Each run holds its due order a little longer, so the kill finds some held.
	d := startDrain(t, 100, "3s", "20ms")
	doomed, survivor, count := d.first, d.secondURL, d.count
	testkit.Eventually(t, 30*time.Second, "the drain to begin", func() bool { return count(order.ResultsCollection, nil) >= 10 })
	if err := doomed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = doomed.Wait()
	if n := count(order.ResultsCollection, nil); n >= d.pending {
		t.Fatalf("%d of %d completed before the kill: the test must kill mid-drain", n, d.pending)
	}
	allCompletedOnce(t, count)
	t.Logf("the survivor's breakerchain_redeliveries_total %v (the dead one's held orders)",
		testkit.MetricsByName(t, survivor)["breakerchain_redeliveries_total"])
}

// drain is two order processes re-driving the same queue, with pending orders to drain.
type drain struct {
	first               *exec.Cmd
	firstURL, secondURL string
	pending             int64
	count               func(coll string, filter bson.D) int64 // documents in the store
}

// startDrain starts shipment, two order processes re-driving with ackWait, posts pending orders
// while payment is away (202), then starts payment, each request held latency: the drain begins.
func startDrain(t *testing.T, pending int, ackWait, latency string) drain {
	t.Helper()
	ns := testkit.NATS(t)
	uri, db := testkit.Database(t)
	testkit.Start(t, from(shipment.Service), ns.URL(), uri, db, testkit.Env{"BREAKER_TIMEOUT": "5s"})
	env := []string{"REDRIVE_RATE=20", "REDRIVE_BACKOFF=100ms", "REDRIVE_ACK_WAIT=" + ackWait, "BREAKER_DELAY=500ms"}
	d := drain{pending: int64(pending)}
	d.first, d.firstURL = startOrder(t, ns.URL(), uri, db, env...)
	_, d.secondURL = startOrder(t, ns.URL(), uri, db, env...)
	for i := range pending {
		res, err := http.Post(d.firstURL+"/create", "application/json", strings.NewReader(orderBody(fmt.Sprintf("drained-%d", i))))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("with payment away: %d, want 202", res.StatusCode)
		}
	}
	testkit.Start(t, from(payment.Service), ns.URL(), uri, db, testkit.Env{"BREAKER_TIMEOUT": "5s", "INJECT_LATENCY": latency})
	client := testkit.Client(t, uri)
	d.count = func(coll string, filter bson.D) int64 { return testkit.Count(t, client, db, coll, filter) }
	return d
}

// Two all-in-ones on one DATA_DIR would share JetStream's files and corrupt them: the second
// refuses to start, naming the directory and the process that holds it.
func TestDataDirHasOneOwner(t *testing.T) {
	dir := t.TempDir()
	env := testkit.Env{"NATS_PORT": "0", "MONGO_PORT": "0", "PORT": "0", "DASHBOARD_PORT": "0", "DATA_DIR": dir}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"servers"}, env.Environ(), &stdout, &stderr) }()
	testkit.Eventually(t, 30*time.Second, "the first to start", func() bool { return strings.Contains(stdout.String(), "NATS_URL=") })

	second := exec.Command(os.Args[0])
	second.Env = append(os.Environ(), "BREAKERCHAIN_MAIN=1", "BREAKERCHAIN_ARGS=servers",
		"NATS_PORT=0", "MONGO_PORT=0", "DATA_DIR="+dir)
	out, err := second.CombinedOutput()
	want := fmt.Sprintf("data dir %s is in use by process %d", dir, os.Getpid())
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("a second on the same DATA_DIR: %v\n%s\nwant it refused: %q", err, out, want)
	}
	cancel()
	stopped(t, done, "servers")

	// Once the first has stopped, the directory is free again.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	stdout = syncBuffer{}
	go func() { done <- run(ctx2, []string{"servers"}, env.Environ(), &stdout, &stderr) }()
	testkit.Eventually(t, 30*time.Second, "a new owner to start", func() bool { return strings.Contains(stdout.String(), "NATS_URL=") })
	cancel2()
	stopped(t, done, "servers")
}

// from is the chain from svc on: svc, then the services it calls.
func from(svc service.Service) service.Chain {
	for i := range services {
		if services[i].Name == svc.Name {
			return services[i:]
		}
	}
	return service.Chain{svc}
}

// A re-driver paused mid-run (SIGSTOP) for longer than the ack wait: the other order process
// takes the held order again and completes it; the paused one, resumed, finishes its own run of
// it too. Each order is one recovery between the two (breakerchain_orders_recovered_total), not
// two: the run that finds the outcome recorded already does not count it.
func TestPausedRedriverCountsRecoveriesOnce(t *testing.T) {
	// Each run spends most of its time waiting on payment, so the pause finds one held.
	d := startDrain(t, 80, "1s", "200ms")
	paused, first, second, count := d.first, d.firstURL, d.secondURL, d.count
	testkit.Eventually(t, 30*time.Second, "the drain to begin", func() bool { return count(order.ResultsCollection, nil) >= 4 })
	sum := func(series string) (n float64) {
		for _, url := range []string{first, second} {
			n += testkit.MetricsByName(t, url)[series]
		}
		return n
	}
	// A pause finds a run in flight most times, not always: paused again until one did.
	for range 3 {
		if err := paused.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond) // past the ack wait, within the breaker's timeout
		if err := paused.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if sum("breakerchain_redeliveries_total") > 0 {
			break
		}
	}
	allCompletedOnce(t, count)
	recovered, redelivered := sum("breakerchain_orders_recovered_total"), sum("breakerchain_redeliveries_total")
	if recovered != float64(d.pending) {
		t.Errorf("%v recoveries counted between the two processes for %d orders, want %d: each once", recovered, d.pending, d.pending)
	}
	if redelivered == 0 {
		t.Error("no order was delivered again: the pause did not catch a run, and the test showed nothing")
	}
	t.Logf("%v recoveries, %v redeliveries", recovered, redelivered)
}
