package messaging_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/metrics"
	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
)

// mode is how the test's target answers.
type mode int32

const (
	answerOK      mode = iota // a well-formed reply
	answer500                 // a 5xx service error
	answer422                 // a 4xx service error: the request was bad
	answerHang                // no answer until the caller gave up
	answerGarbage             // a reply that is not an envelope
	answerUnknown             // an envelope with an outcome this package never writes
	answerDeep                // a chain of envelopes nested far deeper than any chain
)

// target is a real responder on a real nats-server whose behaviour the test controls and which
// counts the requests that reached it.
type target struct {
	mode     atomic.Int32
	received atomic.Int64
	deadline chan time.Duration // how long each request's handler was given
}

func newTarget(t *testing.T, nc *nats.Conn, subject string) *target {
	t.Helper()
	tg := &target{deadline: make(chan time.Duration, 100)}
	r, err := messaging.Serve(nc, messaging.Endpoint{
		Service: "target", Version: "1.0.0", Subject: subject,
	}, func(ctx context.Context, _ []byte) (messaging.Reply, error) {
		tg.received.Add(1)
		if dl, ok := ctx.Deadline(); ok {
			tg.deadline <- time.Until(dl)
		}
		switch mode(tg.mode.Load()) {
		case answer500:
			return messaging.Reply{}, problem.Errorf(502, "injected error")
		case answer422:
			return messaging.Reply{}, problem.Errorf(422, "amount: must be a number ≥ 0")
		case answerHang:
			<-ctx.Done()
			return messaging.Reply{}, ctx.Err()
		case answerGarbage:
			return messaging.Reply{Service: "target"}, nil // no outcome: not an envelope
		case answerUnknown:
			return messaging.Reply{Service: "target", Outcome: "paid-twice"}, nil
		case answerDeep:
			deep := messaging.ReplyDone("target", time.Now(), false, nil)
			for range 1000 {
				next := deep
				deep = messaging.ReplyDone("target", time.Now(), false, &next)
			}
			return deep, nil
		}
		return messaging.ReplyDone("target", time.Now(), false, nil), nil
	}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	return tg
}

// recorder keeps the breaker events a requester emits.
type recorder struct {
	mu     sync.Mutex
	events []messaging.Event
}

func (r *recorder) observe(e messaging.BreakerEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e.Event)
}

func (r *recorder) saw(ev messaging.Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.events, ev)
}

func connect(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(testkit.NATS(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Short windows and delays so the seed's timers run in well under a second, with room for -race
// on 2 cores: a timeout no healthy call comes near, a window that easily holds a row's calls.
var quick = messaging.BreakerSettings{
	Timeout: time.Second, FailureRate: 50, MinCalls: 4,
	Window: 2 * time.Second, Delay: 200 * time.Millisecond,
}

// afterDelay waits, by watching the breaker, until an open circuit lets a trial through.
func afterDelay(t *testing.T, r *messaging.Requester) {
	testkit.Eventually(t, 10*quick.Delay, "the open delay to pass", func() bool {
		return r.Breaker().RemainingDelay() == 0
	})
}

// call sends n requests with the target in mode m and returns the last reply.
func call(r *messaging.Requester, tg *target, m mode, n int) messaging.Reply {
	tg.mode.Store(int32(m))
	var reply messaging.Reply
	for range n {
		reply = r.Request(context.Background(), []byte(`{}`))
	}
	return reply
}

// TestSeedBreakerCases walks the seed's eight cases (docs/seed-breaker-cases.png) against a real
// responder: each row brings a fresh breaker to its starting state (Given), makes one call
// (When) and checks the state, whether the call reached the target and the reply (Then).
func TestSeedBreakerCases(t *testing.T) {
	nc := connect(t)
	open := func(t *testing.T, r *messaging.Requester, tg *target) { call(r, tg, answer500, int(quick.MinCalls)) }
	rows := []struct {
		seed        string
		given       func(t *testing.T, r *messaging.Requester, tg *target)
		when        mode
		wantState   messaging.State
		wantReached bool
		wantOutcome messaging.Outcome
		then        func(t *testing.T, r *messaging.Requester, ev *recorder)
	}{{
		seed:  "1 closed: a success changes nothing",
		given: func(*testing.T, *messaging.Requester, *target) {},
		when:  answerOK, wantState: messaging.StateClosed, wantReached: true, wantOutcome: messaging.OutcomeOK,
		then: func(t *testing.T, r *messaging.Requester, ev *recorder) {
			if m := r.Breaker().Metrics(); m.Successes() != 1 || m.Failures() != 0 {
				t.Errorf("successes/failures = %d/%d, want 1/0", m.Successes(), m.Failures())
			}
		},
	}, {
		seed:  "2 closed: the first error is recorded in the window, the circuit stays closed",
		given: func(*testing.T, *messaging.Requester, *target) {},
		when:  answer500, wantState: messaging.StateClosed, wantReached: true, wantOutcome: messaging.OutcomeUnavailable,
		then: func(t *testing.T, r *messaging.Requester, ev *recorder) {
			if f := r.Breaker().Metrics().Failures(); f != 1 {
				t.Errorf("failures = %d, want 1", f)
			}
			if !ev.saw(messaging.EventFailure) || !ev.saw(messaging.EventFallback) {
				t.Errorf("events %v, want failure and fallback", ev.events)
			}
		},
	}, {
		seed: "3 successes after an error within the window: no change, rate below threshold",
		given: func(t *testing.T, r *messaging.Requester, tg *target) {
			call(r, tg, answer500, 1)
			call(r, tg, answerOK, 3)
		},
		when: answerOK, wantState: messaging.StateClosed, wantReached: true, wantOutcome: messaging.OutcomeOK,
		then: func(t *testing.T, r *messaging.Requester, ev *recorder) {
			if m := r.Breaker().Metrics(); m.Failures() != 1 || m.FailureRate() >= 0.5 {
				t.Errorf("failures %d rate %.2f, want 1 failure below 50%%", m.Failures(), m.FailureRate())
			}
		},
	}, {
		seed: "4 after the window rolls over, old failures are forgotten",
		given: func(t *testing.T, r *messaging.Requester, tg *target) {
			call(r, tg, answer500, 1)
			// Time passing is the condition here: the window's slices expire on the next call.
			time.Sleep(quick.Window + quick.Window/5)
		},
		when: answerOK, wantState: messaging.StateClosed, wantReached: true, wantOutcome: messaging.OutcomeOK,
		then: func(t *testing.T, r *messaging.Requester, ev *recorder) {
			if f := r.Breaker().Metrics().Failures(); f != 0 {
				t.Errorf("failures = %d, want 0 after the window rolled over", f)
			}
		},
	}, {
		seed: "5 error rate reached with the minimum calls: open",
		given: func(t *testing.T, r *messaging.Requester, tg *target) {
			call(r, tg, answerOK, 2)
			call(r, tg, answer500, 1)
		},
		when: answer500, wantState: messaging.StateOpen, wantReached: true, wantOutcome: messaging.OutcomeUnavailable,
		then: func(t *testing.T, r *messaging.Requester, ev *recorder) {
			if !ev.saw(messaging.EventOpen) {
				t.Errorf("events %v, want open", ev.events)
			}
		},
	}, {
		seed:  "6 open: requests are rejected at once and never reach the target",
		given: open,
		when:  answerOK, wantState: messaging.StateOpen, wantReached: false, wantOutcome: messaging.OutcomeRejected,
		then: func(t *testing.T, r *messaging.Requester, ev *recorder) {
			if !ev.saw(messaging.EventReject) {
				t.Errorf("events %v, want reject", ev.events)
			}
		},
	}, {
		seed:  "7 after the delay a failing trial opens it again and restarts the delay",
		given: func(t *testing.T, r *messaging.Requester, tg *target) { open(t, r, tg); afterDelay(t, r) },
		when:  answer500, wantState: messaging.StateOpen, wantReached: true, wantOutcome: messaging.OutcomeUnavailable,
		then: func(t *testing.T, r *messaging.Requester, ev *recorder) {
			if !ev.saw(messaging.EventHalfOpen) {
				t.Errorf("events %v, want halfOpen before the trial", ev.events)
			}
			if d := r.Breaker().RemainingDelay(); d < quick.Delay/2 {
				t.Errorf("remaining delay %s, want the delay restarted (~%s)", d, quick.Delay)
			}
		},
	}, {
		seed:  "8 after the delay a successful trial goes half-open, then closed",
		given: func(t *testing.T, r *messaging.Requester, tg *target) { open(t, r, tg); afterDelay(t, r) },
		when:  answerOK, wantState: messaging.StateClosed, wantReached: true, wantOutcome: messaging.OutcomeOK,
		then: func(t *testing.T, r *messaging.Requester, ev *recorder) {
			if !ev.saw(messaging.EventHalfOpen) || !ev.saw(messaging.EventClose) {
				t.Errorf("events %v, want halfOpen then close", ev.events)
			}
		},
	}}
	for i, row := range rows {
		t.Run(row.seed, func(t *testing.T) {
			subject := "case" + string(rune('1'+i)) + ".create"
			tg := newTarget(t, nc, subject)
			ev := &recorder{}
			r := messaging.NewRequester(nc, messaging.Route{From: "caller", To: "target", Subject: subject},
				quick, testkit.Logger(t), messaging.WithObserver(ev.observe))
			row.given(t, r, tg) // Given
			before := tg.received.Load()

			reply := call(r, tg, row.when, 1) // When

			if got := r.State(); got != row.wantState { // Then
				t.Errorf("state %q, want %q", got, row.wantState)
			}
			if reached := tg.received.Load() > before; reached != row.wantReached {
				t.Errorf("reached the target: %v, want %v", reached, row.wantReached)
			}
			if reply.Outcome != row.wantOutcome || reply.Service != "target" || reply.Line == "" {
				t.Errorf("reply %+v, want outcome %q from target with a line", reply, row.wantOutcome)
			}
			row.then(t, r, ev)
		})
	}
}

// TestWhatCountsAsFailure: timeouts, no responders, 5xx and lying replies count against the
// circuit; a 4xx (bad input) and the caller's own cancellation never do.
func TestWhatCountsAsFailure(t *testing.T) {
	nc := connect(t)
	rows := []struct {
		name        string
		mode        mode
		noResponder bool
		closed      bool // the caller's connection is gone
		cancel      bool
		wantOutcome messaging.Outcome
		wantFailure bool
	}{
		{name: "success", mode: answerOK, wantOutcome: messaging.OutcomeOK},
		{name: "5xx reply", mode: answer500, wantOutcome: messaging.OutcomeUnavailable, wantFailure: true},
		{name: "timeout", mode: answerHang, wantOutcome: messaging.OutcomeTimeout, wantFailure: true},
		{name: "reply that is not an envelope", mode: answerGarbage, wantOutcome: messaging.OutcomeUnavailable, wantFailure: true},
		{name: "reply with an unknown outcome", mode: answerUnknown, wantOutcome: messaging.OutcomeUnavailable, wantFailure: true},
		{name: "reply nested 1000 deep", mode: answerDeep, wantOutcome: messaging.OutcomeUnavailable, wantFailure: true},
		{name: "no responders", noResponder: true, wantOutcome: messaging.OutcomeUnavailable, wantFailure: true},
		{name: "connection lost", closed: true, wantOutcome: messaging.OutcomeUnavailable, wantFailure: true},
		{name: "4xx reply", mode: answer422, wantOutcome: messaging.OutcomeRefused},
		{name: "caller cancels", mode: answerHang, cancel: true, wantOutcome: messaging.OutcomeUnavailable},
	}
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			subject := "kind" + string(rune('a'+i)) + ".create"
			tg := &target{}
			if !row.noResponder {
				tg = newTarget(t, nc, subject)
			}
			tg.mode.Store(int32(row.mode))
			conn := nc
			if row.closed {
				conn = connect(t)
				conn.Close()
			}
			r := messaging.NewRequester(conn, messaging.Route{From: "caller", To: "target", Subject: subject},
				quick, testkit.Logger(t))
			ctx := context.Background()
			if row.cancel {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(20*time.Millisecond, cancel)
			}
			reply := r.Request(ctx, []byte(`{}`))
			if reply.Outcome != row.wantOutcome {
				t.Errorf("outcome %q (%s), want %q", reply.Outcome, reply.Reason, row.wantOutcome)
			}
			if failed := r.Breaker().Metrics().Failures() == 1; failed != row.wantFailure {
				t.Errorf("counted as failure: %v, want %v", failed, row.wantFailure)
			}
		})
	}
}

// TestGarbageNeverOpensTheCircuit: a burst of requests the target refuses as bad input leaves
// the circuit closed.
func TestGarbageNeverOpensTheCircuit(t *testing.T) {
	nc := connect(t)
	tg := newTarget(t, nc, "bad.create")
	r := messaging.NewRequester(nc, messaging.Route{From: "caller", To: "target", Subject: "bad.create"},
		quick, testkit.Logger(t))
	reply := call(r, tg, answer422, 3*int(quick.MinCalls))
	if r.State() != messaging.StateClosed || reply.Outcome != messaging.OutcomeRefused {
		t.Fatalf("state %s, outcome %s; want closed and refused", r.State(), reply.Outcome)
	}
	if got := tg.received.Load(); got != 3*int64(quick.MinCalls) {
		t.Fatalf("target received %d, want every request", got)
	}
}

// TestDeadlinePropagates: the target is given only the time its caller will still wait, minus a
// margin, and a caller with no time left does not call at all.
func TestDeadlinePropagates(t *testing.T) {
	nc := connect(t)
	tg := newTarget(t, nc, "dl.create")
	r := messaging.NewRequester(nc, messaging.Route{From: "caller", To: "target", Subject: "dl.create"},
		quick, testkit.Logger(t))

	call(r, tg, answerOK, 1)
	if got := <-tg.deadline; got <= 0 || got > quick.Timeout {
		t.Errorf("without a caller deadline the target got %s, want (0, %s]", got, quick.Timeout)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	if reply := r.Request(ctx, []byte(`{}`)); reply.Outcome != messaging.OutcomeOK {
		t.Fatalf("outcome %s", reply.Outcome)
	}
	// The margin is a fifth of what is left: 60ms leaves the target at most 48ms.
	if got, most := <-tg.deadline, 60*time.Millisecond-messaging.Margin(60*time.Millisecond); got <= 0 || got > most {
		t.Errorf("with 60ms left the target got %s, want at most %s", got, most)
	}

	before := tg.received.Load()
	spent, cancel2 := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel2()
	time.Sleep(2 * time.Millisecond)
	reply := r.Request(spent, []byte(`{}`))
	if reply.Outcome != messaging.OutcomeUnavailable || tg.received.Load() != before {
		t.Errorf("with no time left: outcome %s, target reached %v; want unavailable, not reached",
			reply.Outcome, tg.received.Load() != before)
	}
	if f := r.Breaker().Metrics().Failures(); f != 0 {
		t.Errorf("a call never made counted as %d failures", f)
	}
}

// TestOutOfTimeIsNotTheTargetsFault: given a healthy target that answers in 5 ms, when five
// callers each have 5 ms left, so a budget of 3 ms for the target after the 2 ms margin, then
// none of them is sent (nothing on the bus), each comes
// back "unavailable" saying the caller ran out of time, each is counted as out of time, and the
// circuit, never told, stays closed with no failure recorded.
func TestOutOfTimeIsNotTheTargetsFault(t *testing.T) {
	url := testkit.NATS(t).URL()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	srv, err := messaging.Serve(nc, messaging.Endpoint{Service: "slowish", Version: "1.0.0", Subject: "ot.create"},
		func(context.Context, []byte) (messaging.Reply, error) {
			time.Sleep(5 * time.Millisecond)
			return messaging.ReplyDone("slowish", time.Now(), false, nil), nil
		}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	watcher, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watcher.Close)
	onBus, err := watcher.SubscribeSync("ot.create")
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}

	var outOfTime atomic.Int32
	rec := metrics.New("caller") // what the caller's /metrics shows
	settings := quick
	settings.Timeout, settings.MinCalls = 300*time.Millisecond, 5
	r := messaging.NewRequester(nc, messaging.Route{From: "caller", To: "slowish", Subject: "ot.create"},
		settings, testkit.Logger(t), messaging.WithObserver(func(e messaging.BreakerEvent) {
			rec.Observe(e)
			if e.Event == messaging.EventOutOfTime {
				outOfTime.Add(1)
			}
		}))
	if reply := r.Request(context.Background(), []byte(`{}`)); reply.Outcome != messaging.OutcomeOK {
		t.Fatalf("with time to spare: outcome %s %q, want ok", reply.Outcome, reply.Reason)
	}
	if _, err := onBus.NextMsg(time.Second); err != nil {
		t.Fatalf("the healthy call was not seen on the bus: %v", err)
	}

	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		reply := r.Request(ctx, []byte(`{}`))
		cancel()
		if reply.Outcome != messaging.OutcomeUnavailable || !strings.Contains(reply.Reason, "ran out of time") {
			t.Errorf("call %d with a 3 ms budget: outcome %s %q, want unavailable because the caller ran out of time",
				i+1, reply.Outcome, reply.Reason)
		}
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := onBus.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("a call with a 3 ms budget was sent: %q on %s", m.Data, m.Subject)
	}
	if got := outOfTime.Load(); got != 5 {
		t.Errorf("%d calls counted as out of time, want 5", got)
	}
	families, err := rec.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var shown float64
	for _, f := range families {
		if f.GetName() == "breakerchain_calls_out_of_time_total" {
			for _, m := range f.GetMetric() {
				shown += m.GetCounter().GetValue()
			}
		}
	}
	if shown != 5 {
		t.Errorf("breakerchain_calls_out_of_time_total %v, want 5", shown)
	}
	if st, f := r.State(), r.Breaker().Metrics().Failures(); st != messaging.StateClosed || f != 0 {
		t.Errorf("circuit %s with %d failures; want closed with none: the target was never asked", st, f)
	}
}

// TestEventsOnTheBus: a circuit's transitions are published on breaker.<service>.<target>.
func TestEventsOnTheBus(t *testing.T) {
	nc := connect(t)
	sub, err := nc.SubscribeSync(messaging.BreakerSubject("caller", "target"))
	if err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, nc, "ev.create")
	r := messaging.NewRequester(nc, messaging.Route{From: "caller", To: "target", Subject: "ev.create"},
		quick, testkit.Logger(t))
	r.Breaker().Open()
	call(r, tg, answerOK, 1)
	var seen []messaging.Event
	for {
		m, err := sub.NextMsg(time.Second)
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var e messaging.BreakerEvent
		if err := jsonUnmarshal(m.Data, &e); err != nil {
			t.Fatalf("event %q: %v", m.Data, err)
		}
		if e.Service != "caller" || e.Target != "target" {
			t.Errorf("event names %s→%s", e.Service, e.Target)
		}
		seen = append(seen, e.Event)
		if e.Event == messaging.EventFallback {
			break
		}
	}
	want := []messaging.Event{messaging.EventOpen, messaging.EventReject, messaging.EventFallback}
	if !slices.Equal(seen, want) {
		t.Fatalf("events on the bus %v, want %v", seen, want)
	}
}

// TestWindowForgetsOldCalls: the window shows a closed circuit's recent calls, and none once a
// whole window passed without a call — the breaker's own counts roll only on the next call, and
// a dashboard showing them would say "50 % of 2 calls in 2s" for ever on an idle chain.
func TestWindowForgetsOldCalls(t *testing.T) {
	nc := connect(t)
	tg := newTarget(t, nc, "window.create")
	s := quick
	s.Window = 300 * time.Millisecond
	r := messaging.NewRequester(nc, messaging.Route{From: "caller", To: "target", Subject: "window.create"}, s, testkit.Logger(t))
	call(r, tg, answer500, 1)
	call(r, tg, answerOK, 1)
	if n, f, rate := r.Window(); n != 2 || f != 1 || rate != 0.5 {
		t.Fatalf("window after two calls: %d calls, %d failures, rate %v; want 2, 1, 0.5", n, f, rate)
	}
	testkit.Eventually(t, 5*time.Second, "the window to empty", func() bool {
		n, f, rate := r.Window()
		return n == 0 && f == 0 && rate == 0
	})
	if r.State() != messaging.StateClosed {
		t.Errorf("circuit %s, want closed", r.State())
	}
}
