package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// faultPhase is how long faults are injected under load; settleWithin bounds the wait, once
// everything is healed, for every order to be final.
const (
	faultPhase   = 60 * time.Second
	settleWithin = 90 * time.Second
)

// The chain as compose runs it — order twice, payment and shipment, each a process of its own,
// order's store behind a proxy — under a steady load of orders, replays, conflicting bodies and
// shipment ids reused by another order, while a seeded schedule kills and pauses processes,
// restarts NATS on its files or without them (every timer lost), cuts the store and holds,
// drops or fails its inserts, and turns payment's and shipment's injected errors and latency up. Then everything is healed, and every
// order that was acknowledged or may have been saved must end final once: completed with one
// payment and one shipment, or rejected with no live payment; an order answered "nothing was
// saved" or refused must not exist. BREAKERCHAIN_SEED=n replays a schedule (the test prints its
// seed; BREAKERCHAIN_SEED=random draws a new one); the load's interleaving is the machine's.
func TestRandomFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("randomized faults: skipped with -short")
	}
	seed := faultSeed(t)
	plan := planFaults(rand.New(rand.NewPCG(seed, 0)), faultPhase)
	t.Logf("seed %d (BREAKERCHAIN_SEED=%d replays this schedule); %d faults in %s:", seed, seed, len(plan), faultPhase)
	for _, f := range plan {
		t.Logf("  %s", f)
	}

	c := startFaultyChain(t)
	load := startLoad(seed, c.orders)
	c.run(plan, load.began)
	load.stop()
	c.heal()
	healed := time.Since(load.began)
	settled := c.settle()
	c.check(load)
	c.report(load, plan, seed, healed, settled)
}

// faultSeed is BREAKERCHAIN_SEED: a number, or "random" for a new one each run. Unset, it is
// defaultFaultSeed, so that the test command runs one known schedule (a change that breaks it
// fails every run, not one in a while); random ones are for looking further.
func faultSeed(t *testing.T) uint64 {
	switch s := os.Getenv("BREAKERCHAIN_SEED"); s {
	case "":
		return defaultFaultSeed
	case "random":
		return uint64(time.Now().UnixNano()) % 1_000_000
	default:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BREAKERCHAIN_SEED=%q: want an unsigned integer, or random", s)
		}
		return n
	}
}

// defaultFaultSeed is the schedule the test command runs.
const defaultFaultSeed = 1

// fault is one event of the schedule: what, to what, when, for how long.
type fault struct {
	at, dur time.Duration
	kind    string // kill, pause, nats, wipe, cut, hold, drop, fail, errors, latency
	target  string // a process (order1, order2, payment, shipment), "store" or "nats"
	n       int    // inserts held, dropped or failed
	rate    float64
	latency time.Duration
}

func (f fault) String() string {
	s := fmt.Sprintf("+%4.1fs %-7s %-8s", f.at.Seconds(), f.kind, f.target)
	switch f.kind {
	case "hold":
		return s + fmt.Sprintf(" next %d inserts, each %s", f.n, f.dur)
	case "drop":
		return s + fmt.Sprintf(" the replies of the next %d inserts (and their connections)", f.n)
	case "fail":
		return s + fmt.Sprintf(" the next %d inserts: NotWritablePrimary", f.n)
	case "errors":
		return s + fmt.Sprintf(" rate %.2f for %s", f.rate, f.dur)
	case "latency":
		return s + fmt.Sprintf(" %s for %s", f.latency, f.dur)
	case "wipe":
		return s + " for " + f.dur.String() + ", back without its files"
	}
	return s + " for " + f.dur.String()
}

// processes are the services the schedule may kill or pause.
var processes = []string{"order1", "order2", "payment", "shipment"}

// planFaults draws a schedule over phase: a fault every 1–5 s, never two on one resource at a
// time (a process, NATS, the store), each over by the end of the phase.
func planFaults(rng *rand.Rand, phase time.Duration) []fault {
	between := func(lo, hi time.Duration) time.Duration {
		return (lo + time.Duration(rng.Int64N(int64(hi-lo)))).Round(100 * time.Millisecond)
	}
	free := map[string]time.Duration{} // when each resource is free again
	var plan []fault
	natsRestarts := 0
	for at := between(2*time.Second, 4*time.Second); at < phase-4*time.Second; at += between(time.Second, 5*time.Second) {
		for range 5 { // a few draws, until one finds its resource free
			f := fault{at: at}
			rest := time.Second // the resource's rest after the fault: a restarted process starts
			switch k := rng.IntN(20); {
			case k < 3:
				f.kind, f.target, f.dur, rest = "kill", processes[rng.IntN(len(processes))], between(time.Second, 6*time.Second), 4*time.Second
			case k < 6:
				f.kind, f.target, f.dur = "pause", processes[rng.IntN(len(processes))], between(2*time.Second, 12*time.Second)
			case k < 7:
				f.kind, f.target, f.dur, rest = "nats", "nats", between(time.Second, 4*time.Second), 3*time.Second
				if rng.IntN(2) == 0 {
					f.kind = "wipe" // back without its files: every timer lost, the reconciler's work
				}
			case k < 9:
				f.kind, f.target, f.dur = "cut", "store", between(2*time.Second, 6*time.Second)
			case k < 11:
				f.kind, f.target, f.n, f.dur = "hold", "store", 1+rng.IntN(3), between(5*time.Second, 25*time.Second)
				rest = -f.dur + 2*time.Second // an armed hold; the held inserts need the store no more
			case k < 13:
				f.kind, f.target, f.n, f.dur = "drop", "store", 1+rng.IntN(3), 0
			case k < 14:
				f.kind, f.target, f.n, f.dur = "fail", "store", 1+rng.IntN(3), 0
			case k < 17:
				f.kind, f.target, f.rate, f.dur = "errors", []string{"payment", "shipment"}[rng.IntN(2)], 0.3+0.7*rng.Float64(), between(3*time.Second, 10*time.Second)
				f.rate = float64(int(f.rate*100)) / 100
			default:
				f.kind, f.target, f.latency, f.dur = "latency", []string{"payment", "shipment"}[rng.IntN(2)], between(500*time.Millisecond, 4*time.Second), between(3*time.Second, 10*time.Second)
			}
			if free[f.target] > at || ((f.kind == "nats" || f.kind == "wipe") && natsRestarts == 2) || (f.kind != "hold" && at+f.dur > phase) {
				continue
			}
			if f.target == "nats" {
				natsRestarts++
			}
			free[f.target] = at + f.dur + rest
			plan = append(plan, f)
			break
		}
	}
	return plan
}

// faultyChain is the chain under test and what the schedule acts on.
type faultyChain struct {
	t      *testing.T
	ns     *embedded.NATS
	px     *testkit.Proxy
	nc     *nats.Conn // the test's own, for chaos and the queue; it reconnects through restarts
	client *mongo.Client
	db     string
	procs  map[string]*proc
	orders []string // the order instances' URLs
}

// notWritable is a MongoDB primary's answer while it steps down.
var notWritable = bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "not primary"},
	{Key: "code", Value: int32(10107)}, {Key: "codeName", Value: "NotWritablePrimary"}}

func startFaultyChain(t *testing.T) *faultyChain {
	ns := testkit.NATS(t)
	uri, db := testkit.Database(t)
	for _, svc := range services { // as the all-in-one does
		testkit.IndexIDs(t, db, svc.Collections...)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	px := testkit.StartProxy(t, u.Host)
	proxied := *u
	proxied.Host = px.Addr()
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := &faultyChain{t: t, ns: ns, px: px, nc: nc, client: testkit.Client(t, uri), db: db, procs: map[string]*proc{}}
	// Short timeouts and delays, so that the faults show within seconds and the queue drains
	// within the test; the re-driver and the reconciler on in both order instances, with an ack
	// wait that the longer pauses outlast (their held due orders go to the other instance).
	common := []string{"NATS_URL=" + ns.URL(), "MONGO_DB=" + db, "HOST=127.0.0.1", "LOG_LEVEL=info",
		"BREAKER_TIMEOUT=2s", "BREAKER_DELAY=1s"}
	orderEnv := append(slices.Clone(common), "MONGO_URL="+proxied.String(), "REDRIVE_RATE=50",
		"REDRIVE_AFTER=5s", "REDRIVE_BACKOFF=250ms", "REDRIVE_ACK_WAIT=6s", "RECONCILE_EVERY=1s")
	hopEnv := append(slices.Clone(common), "MONGO_URL="+uri, "CHAOS=1")
	for _, name := range processes {
		env := hopEnv
		if strings.HasPrefix(name, "order") {
			env = orderEnv
		}
		p := newProc(t, name, strings.TrimRight(name, "12"), env)
		c.procs[name] = p
		if strings.HasPrefix(name, "order") {
			c.orders = append(c.orders, p.url)
		}
	}
	for _, name := range processes {
		c.procs[name].waitReady(t, 60*time.Second)
	}
	return c
}

// run carries out plan, from began: each fault begins and ends at its time.
func (c *faultyChain) run(plan []fault, began time.Time) {
	type action struct {
		at   time.Duration
		what string
		do   func() error
	}
	var actions []action
	for _, f := range plan {
		begin, end := c.actions(f)
		actions = append(actions, action{f.at, f.kind + " " + f.target, begin})
		if end != nil {
			actions = append(actions, action{f.at + f.dur, "end " + f.kind + " " + f.target, end})
		}
	}
	slices.SortStableFunc(actions, func(a, b action) int { return cmp.Compare(a.at, b.at) })
	for _, a := range actions {
		time.Sleep(time.Until(began.Add(a.at)))
		at := time.Since(began)
		if err := a.do(); err != nil || at-a.at > time.Second {
			c.t.Logf("  +%4.1fs (due +%4.1fs) %s: %v", at.Seconds(), a.at.Seconds(), a.what, err)
		}
	}
	time.Sleep(time.Until(began.Add(faultPhase)))
}

// actions are what begins fault f and what ends it (nil: it ends by itself).
func (c *faultyChain) actions(f fault) (begin, end func() error) {
	p := c.procs[f.target]
	switch f.kind {
	case "kill":
		return p.kill, func() error { return p.start(c.t) }
	case "pause":
		return func() error { return p.signal(syscall.SIGSTOP) }, func() error { return p.signal(syscall.SIGCONT) }
	case "nats":
		return func() error { c.ns.Stop(); return nil }, func() error { c.ns = testkit.RestartNATS(c.t, c.ns); return nil }
	case "wipe":
		return func() error { c.ns.Stop(); return nil }, func() error { c.ns = testkit.RestartNATSWithoutFiles(c.t, c.ns); return nil }
	case "cut":
		return func() error { c.px.Cut(); return nil }, func() error { c.px.Restore(); return nil }
	case "hold":
		return func() error { c.px.DelayNextInserts("", f.n, f.dur); return nil }, nil
	case "drop":
		return func() error { c.px.DropNextInsertReplies("", f.n); return nil }, nil
	case "fail":
		return func() error { return c.px.FailNextInserts("", f.n, notWritable) }, nil
	case "errors":
		return func() error { return c.chaos(f.target, fmt.Sprintf(`{"error_rate":%g}`, f.rate)) },
			func() error { return c.chaos(f.target, `{"error_rate":0}`) }
	case "latency":
		return func() error { return c.chaos(f.target, fmt.Sprintf(`{"latency":%q}`, f.latency)) },
			func() error { return c.chaos(f.target, `{"latency":"0s"}`) }
	}
	panic("unknown fault " + f.kind)
}

// chaos asks service for faults over chaos.<service>.
func (c *faultyChain) chaos(service, change string) error {
	m, err := c.nc.Request("chaos."+service, []byte(change), 3*time.Second)
	if err != nil {
		return err
	}
	if !strings.Contains(string(m.Data), `"enabled":true`) {
		return fmt.Errorf("chaos.%s answered %s", service, m.Data)
	}
	return nil
}

// heal ends every fault: the store whole, every process up and running (one that exited by
// itself is a failure), no injected fault left.
func (c *faultyChain) heal() {
	t := c.t
	c.px.Restore()
	c.px.DelayNextInserts("", 0, 0)
	c.px.DropNextInsertReplies("", 0)
	if err := c.px.FailNextInserts("", 0, notWritable); err != nil {
		t.Fatal(err)
	}
	for _, name := range processes {
		p := c.procs[name]
		if err := p.exited(); err != nil {
			t.Errorf("%s exited by itself: %v\n%s", name, err, p.tail(30))
			if err := p.start(t); err != nil {
				t.Fatal(err)
			}
		}
		_ = p.signal(syscall.SIGCONT)
	}
	for _, name := range processes {
		c.procs[name].waitReady(t, 60*time.Second)
	}
	for _, svc := range []string{"payment", "shipment"} {
		testkit.Eventually(t, 30*time.Second, svc+" to take its faults off", func() bool {
			return c.chaos(svc, `{"error_rate":0,"latency":"0s"}`) == nil
		})
	}
}

// settle waits until nothing is pending: every saved order has its final outcome, no open copy
// is left, the queue is empty and no held insert can land any more. It returns how long that
// took, and on timeout says what is left.
func (c *faultyChain) settle() time.Duration {
	start := time.Now()
	var left string
	for time.Since(start) < settleWithin {
		if left = c.pending(); left == "" {
			return time.Since(start)
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.t.Errorf("not settled within %s of healing: %s", settleWithin, left)
	for _, name := range []string{"order1", "order2"} {
		c.t.Logf("%s's warnings and errors:\n%s", name, c.procs[name].grep("level=WARN", "level=ERROR"))
	}
	return time.Since(start)
}

// pending says what is not final yet, or "".
func (c *faultyChain) pending() string {
	var left []string
	if n := c.px.Holding(); n > 0 {
		left = append(left, fmt.Sprintf("%d inserts still held", n))
	}
	saved, final := c.count(order.Collection), c.count(order.ResultsCollection)
	if saved != final {
		left = append(left, fmt.Sprintf("%d orders saved, %d final", saved, final))
	}
	if n := c.count(order.OpenCollection); n > 0 {
		left = append(left, fmt.Sprintf("%d open copies", n))
	}
	for _, stream := range []string{observe.OrdersStream, observe.OrdersSinceStream} {
		if n, err := c.streamMsgs(stream); err != nil || n > 0 {
			left = append(left, fmt.Sprintf("%s: %d messages (%v)", stream, n, err))
		}
	}
	return strings.Join(left, "; ")
}

func (c *faultyChain) count(coll string) int64 { return testkit.Count(c.t, c.client, c.db, coll, nil) }

func (c *faultyChain) streamMsgs(name string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(c.nc)
	if err != nil {
		return 0, err
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// stored is what the store holds for the check: every order, outcome, open copy, payment and
// shipment.
type stored struct {
	orders   map[string]bson.M
	outcomes map[string]bson.M
	open     map[string]bson.M
	payments map[string][]bson.M // by origin (the order they were made for)
	ships    map[string][]bson.M // by origin
}

func (c *faultyChain) read() stored {
	all := func(coll string) []bson.M {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cur, err := c.client.Database(c.db).Collection(coll).Find(ctx, bson.D{})
		if err != nil {
			c.t.Fatalf("find %s: %v", coll, err)
		}
		var docs []bson.M
		if err := cur.All(ctx, &docs); err != nil {
			c.t.Fatalf("read %s: %v", coll, err)
		}
		return docs
	}
	byID := func(coll string) map[string]bson.M {
		out := map[string]bson.M{}
		for _, d := range all(coll) {
			out[fmt.Sprint(d["_id"])] = d
		}
		return out
	}
	byOrigin := func(coll string) map[string][]bson.M {
		out := map[string][]bson.M{}
		for _, d := range all(coll) {
			o := fmt.Sprint(d["origin"])
			out[o] = append(out[o], d)
		}
		return out
	}
	return stored{orders: byID(order.Collection), outcomes: byID(order.ResultsCollection), open: byID(order.OpenCollection),
		payments: byOrigin(payment.Collection), ships: byOrigin(shipment.Collection)}
}

// check holds every order the load sent to the promise, and reports each that breaks it.
func (c *faultyChain) check(l *load) {
	t := c.t
	st := c.read()
	byID := l.byID()
	for id, d := range st.orders {
		if _, sent := byID[id]; !sent {
			t.Errorf("order %s is in the store, but the load never sent it: %v", id, d)
		}
	}
	told := 0
	for id, reqs := range byID {
		wrong := st.judge(id, reqs)
		for _, w := range wrong {
			t.Errorf("order %s (answers: %s): %s", id, answers(reqs), w)
		}
		if len(wrong) > 0 && told < 5 { // the first few are enough to start from
			told++
			t.Logf("what the services logged of order %s:\n%s", id, c.story(id))
		}
	}
}

// judge says how order id, sent as reqs, breaks the promise; nothing when it keeps it.
func (st stored) judge(id string, reqs []request) []string {
	var wrong []string
	d, saved := st.orders[id]
	payments, ships := st.payments[id], st.ships[id]
	live := 0
	for _, p := range payments {
		if p["voided"] == nil {
			live++
		}
	}
	switch {
	case !saved && acknowledged(reqs):
		wrong = append(wrong, "acknowledged, but not in the store")
	case !saved && (len(payments) > 0 || len(ships) > 0 || st.open[id] != nil):
		wrong = append(wrong, fmt.Sprintf("not saved, but %d payments, %d shipments, open copy %v", len(payments), len(ships), st.open[id] != nil))
	case saved && !mayBeSaved(reqs):
		wrong = append(wrong, fmt.Sprintf("every answer said it was not saved, yet it is: %v", d))
	case saved && st.open[id] != nil:
		wrong = append(wrong, "its open copy is left")
	}
	if !saved {
		return wrong
	}
	for _, r := range reqs {
		if r.class == refusedConflict && r.variant == variantConflict && len(asSlice(d["items"])) > 0 {
			wrong = append(wrong, "the body answered 409 (another body) is the one stored")
		}
	}
	switch out := st.outcomes[id]; fmt.Sprint(out["status"]) {
	case order.StatusCompleted:
		if len(payments) != 1 || live != 1 || len(ships) != 1 {
			wrong = append(wrong, fmt.Sprintf("completed with %d payments (%d live) and %d shipments, want one of each", len(payments), live, len(ships)))
		}
	case order.StatusRejected:
		if live != 0 {
			wrong = append(wrong, fmt.Sprintf("rejected, but %d of its %d payments are live (not voided)", live, len(payments)))
		}
	default:
		wrong = append(wrong, fmt.Sprintf("not final: outcome %v", out))
	}
	return wrong
}

// story is what the services logged of order id (at most 60 lines).
func (c *faultyChain) story(id string) string {
	var out []string
	for _, name := range processes {
		for _, line := range strings.Split(c.procs[name].out.String(), "\n") {
			if strings.Contains(line, "="+id+" ") || strings.HasSuffix(line, "="+id) {
				out = append(out, name+": "+line)
			}
		}
	}
	return strings.Join(out[max(0, len(out)-60):], "\n")
}

// report logs what the load sent, how it was answered, and what became of it.
func (c *faultyChain) report(l *load, plan []fault, seed uint64, healed, settled time.Duration) {
	st := c.read()
	kinds, codes := map[string]int{}, map[string]int{}
	for _, r := range l.all() {
		kinds[r.kind]++
		codes[r.code]++
	}
	status := map[string]int{}
	for _, o := range st.outcomes {
		status[fmt.Sprint(o["status"])]++
	}
	payments, voided, shipments := 0, 0, 0
	for _, ps := range st.payments {
		for _, p := range ps {
			payments++
			if p["voided"] != nil {
				voided++
			}
		}
	}
	for _, s := range st.ships {
		shipments += len(s)
	}
	var logs strings.Builder
	for _, name := range []string{"order1", "order2"} {
		logs.WriteString(c.procs[name].out.String())
	}
	all := logs.String()
	c.t.Logf("the schedule, with the answers to the orders sent during each fault:")
	for _, f := range plan {
		inside := map[string]int{}
		for _, r := range l.all() {
			if r.sent >= f.at && r.sent < f.at+max(f.dur, time.Second) && f.kind != "hold" {
				inside[r.code]++
			}
		}
		c.t.Logf("  %s  %v", f, inside)
	}
	c.t.Logf("seed %d: faults for %s, healed at +%s, settled %s later", seed, faultPhase, healed.Round(time.Second), settled.Round(time.Second))
	ids := map[string]int{}
	for _, reqs := range l.byID() {
		switch {
		case acknowledged(reqs):
			ids["acknowledged"]++
		case mayBeSaved(reqs):
			ids["maybe saved"]++
		default:
			ids["not saved"]++
		}
	}
	c.t.Logf("requests %d by kind %v; answers %v; order ids %v", len(l.all()), kinds, codes, ids)
	c.t.Logf("orders saved %d: %v; payments %d (%d voided), shipments %d", len(st.orders), status, payments, voided, shipments)
	if dir := os.Getenv("BREAKERCHAIN_FAULT_LOGS"); dir != "" { // every line, for a replay's reader
		for name, p := range c.procs {
			if err := os.WriteFile(filepath.Join(dir, name+".log"), []byte(p.out.String()), 0o644); err != nil {
				c.t.Error(err)
			}
		}
	}
	c.t.Logf("order logs: re-armed by the reconciler %d, saved from an open copy %d, re-driven %d, due orders never saved %d",
		strings.Count(all, "given a timer again"), strings.Count(all, "saved from its open copy"),
		strings.Count(all, "re-driving pending order"), strings.Count(all, "was never saved; dropped"))
}

// proc is a service run as a process of its own (the test binary as the program), which the
// schedule kills, restarts, pauses and resumes; its output is kept across restarts.
type proc struct {
	name, args string
	env        []string
	url        string
	out        syncBuffer
	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{} // closed when cmd has exited
	err        error         // how it exited
	killed     bool          // by the test
}

// newProc starts `breakerchain args` with env on a port of its own, kept across restarts.
func newProc(t *testing.T, name, args string, env []string) *proc {
	addr := freeAddr(t)
	p := &proc{name: name, args: args, url: "http://" + addr,
		env: append(slices.Clone(env), "PORT="+addr[strings.LastIndex(addr, ":")+1:])}
	if err := p.start(t); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.signal(syscall.SIGCONT); _ = p.kill() })
	return p
}

func (p *proc) start(t *testing.T) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "BREAKERCHAIN_MAIN=1", "BREAKERCHAIN_ARGS="+p.args)
	cmd.Env = append(cmd.Env, p.env...)
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	p.cmd, p.done, p.killed, p.err = cmd, done, false, nil
	return nil
}

// kill SIGKILLs the process and waits for it.
func (p *proc) kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.killed = true
	p.mu.Unlock()
	err := cmd.Process.Signal(syscall.SIGKILL)
	<-done
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Signal(sig)
}

// exited reports how the process ended if it ended by itself; nil while it runs or when the
// test killed it.
func (p *proc) exited() error {
	p.mu.Lock()
	done, killed := p.done, p.killed
	p.mu.Unlock()
	select {
	case <-done:
		if killed {
			return nil
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return fmt.Errorf("exit: %v", p.err)
	default:
		return nil
	}
}

func (p *proc) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		res, err := http.Get(p.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %s (%v); its last lines:\n%s", p.name, within, err, p.tail(20))
		}
	}
}

// tail is the last n lines of the process's output.
func (p *proc) tail(n int) string {
	lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// grep is the lines of the process's output that contain any of words (at most 200).
func (p *proc) grep(words ...string) string {
	var out []string
	for _, line := range strings.Split(p.out.String(), "\n") {
		if slices.ContainsFunc(words, func(w string) bool { return strings.Contains(line, w) }) {
			out = append(out, line)
		}
	}
	return strings.Join(out[max(0, len(out)-200):], "\n")
}

// What the load sends: a new order, a replay of one sent (same id, same body), another body
// for an id sent (409 if it was saved), a new order whose shipment id is an earlier order's (its
// shipment refuses it; its payment must be voided), an invalid one (422).
const (
	kindNew      = "new"
	kindReplay   = "replay"
	kindConflict = "conflict"
	kindReuse    = "reuse-shipment"
	kindInvalid  = "invalid"

	variantConflict = 1 // the body of a conflict: items ["conflict"]
)

// How an answer classes an order: acknowledged (2xx, or 409 rejected: saved and final), may be
// saved (no answer, a 5xx other than "nothing saved"), not saved (503 saying nothing was saved,
// or the connection refused), refused (4xx), refused as another body of a saved id.
const (
	classAcked      = "acked"
	classMaybe      = "maybe"
	classNothing    = "nothing-saved"
	classRefused    = "refused"
	refusedConflict = "conflict"
)

type request struct {
	id, kind, code, class string
	variant               int
	sent, took            time.Duration // since the load began; how long the answer took
}

// load is the steady stream of orders the faults run under.
type load struct {
	began time.Time
	mu    sync.Mutex
	sent  []sentOrder // the bodies that may make an order, for replays and reuse
	reqs  []request
	next  int
	quit  chan struct{}
	wg    sync.WaitGroup
	httpc *http.Client
}

type sentOrder struct{ id, body, shipment string }

// loadClients post orders, each one at a time.
const loadClients = 3

// startLoad posts orders to the order instances at urls from loadClients clients, each drawing
// what to send from its own seeded source, until stop.
func startLoad(seed uint64, urls []string) *load {
	l := &load{began: time.Now(), quit: make(chan struct{}), httpc: &http.Client{Timeout: 20 * time.Second}}
	for i := range loadClients {
		rng := rand.New(rand.NewPCG(seed, uint64(i+1)))
		l.wg.Go(func() {
			for {
				select {
				case <-l.quit:
					return
				case <-time.After(time.Duration(20+rng.IntN(60)) * time.Millisecond):
				}
				l.send(rng, urls[rng.IntN(len(urls))])
			}
		})
	}
	return l
}

func (l *load) stop() { close(l.quit); l.wg.Wait() }

// send draws a request and posts it.
func (l *load) send(rng *rand.Rand, url string) {
	l.mu.Lock()
	l.next++
	n, earlier := l.next, len(l.sent)
	var prev sentOrder
	if earlier > 0 {
		prev = l.sent[rng.IntN(earlier)]
	}
	l.mu.Unlock()
	r := request{kind: kindNew}
	switch k := rng.IntN(100); {
	case earlier > 0 && k < 12:
		r.kind = kindReplay
	case earlier > 0 && k < 18:
		r.kind = kindConflict
	case earlier > 0 && k < 24:
		r.kind = kindReuse
	case k < 28:
		r.kind = kindInvalid
	}
	var body, ship string
	switch r.kind {
	case kindNew:
		r.id = fmt.Sprintf("o%d", n)
		ship = r.id
		body = faultOrder(r.id, "[]", 1, ship)
	case kindReplay:
		r.id, body = prev.id, prev.body
	case kindConflict:
		r.id, r.variant = prev.id, variantConflict
		body = faultOrder(r.id, `["conflict"]`, 2, prev.shipment)
	case kindReuse:
		r.id, ship = fmt.Sprintf("r%d", n), prev.shipment
		body = faultOrder(r.id, "[]", 99, ship)
	case kindInvalid:
		r.id = fmt.Sprintf("x%d", n)
		body = faultOrder(r.id, "[]", -1, r.id)
	}
	if ship != "" {
		l.mu.Lock()
		l.sent = append(l.sent, sentOrder{id: r.id, body: body, shipment: ship})
		l.mu.Unlock()
	}
	r.sent = time.Since(l.began)
	r.code, r.class = l.post(url, body)
	r.took = time.Since(l.began) - r.sent
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	l.mu.Unlock()
}

// faultOrder is an order with id as its and its payment's id, shipment as its shipment's.
func faultOrder(id, items string, amount int, shipment string) string {
	return fmt.Sprintf(`{"id":%q,"items":%s,"payment":{"amount":%d,"id":%q,"shipment":{"id":%q,"directions":"home"}}}`,
		id, items, amount, id, shipment)
}

// post sends body and classes the answer.
func (l *load) post(url, body string) (code, class string) {
	res, err := l.httpc.Post(url+"/create", "application/json", strings.NewReader(body))
	switch {
	case errors.Is(err, syscall.ECONNREFUSED): // a killed order instance: the request reached no one
		return "connection refused", classNothing
	case err != nil:
		return "no answer", classMaybe
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var e struct{ Error string }
	_ = json.Unmarshal(b, &e)
	code = strconv.Itoa(res.StatusCode)
	switch {
	case res.StatusCode < 300:
		return code, classAcked
	case res.StatusCode == http.StatusConflict && strings.Contains(e.Error, "rejected"):
		return code + " rejected", classAcked
	case res.StatusCode == http.StatusConflict:
		return code + " conflict", refusedConflict
	case res.StatusCode < 500:
		return code, classRefused
	case res.StatusCode == http.StatusServiceUnavailable && (strings.Contains(e.Error, "nothing was saved") || e.Error == "store unavailable"):
		return code + " nothing saved", classNothing
	case res.StatusCode == http.StatusServiceUnavailable && strings.Contains(e.Error, "may or may not"):
		return code + " maybe saved", classMaybe
	}
	return code + " " + e.Error, classMaybe
}

func (l *load) all() []request { l.mu.Lock(); defer l.mu.Unlock(); return slices.Clone(l.reqs) }

// byID groups the requests by order id.
func (l *load) byID() map[string][]request {
	out := map[string][]request{}
	for _, r := range l.all() {
		out[r.id] = append(out[r.id], r)
	}
	return out
}

func acknowledged(reqs []request) bool {
	return slices.ContainsFunc(reqs, func(r request) bool { return r.class == classAcked })
}

func mayBeSaved(reqs []request) bool {
	return slices.ContainsFunc(reqs, func(r request) bool { return r.class == classAcked || r.class == classMaybe })
}

// answers lists the requests of one order as kind:code.
func answers(reqs []request) string {
	var s []string
	for _, r := range reqs {
		s = append(s, r.kind+":"+r.code)
	}
	return strings.Join(s, ", ")
}

func asSlice(v any) []any {
	switch s := v.(type) {
	case bson.A:
		return s
	case []any:
		return s
	}
	return nil
}
