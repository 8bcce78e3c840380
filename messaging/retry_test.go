package messaging_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
)

// scripted is a real responder whose n-th request (1-based) is answered by answer.
type scripted struct {
	received atomic.Int64
}

func newScripted(t *testing.T, nc *nats.Conn, subject string, answer func(ctx context.Context, n int64) (messaging.Reply, error)) *scripted {
	t.Helper()
	s := &scripted{}
	r, err := messaging.Serve(nc, messaging.Endpoint{Service: "target", Version: "1.0.0", Subject: subject},
		func(ctx context.Context, _ []byte) (messaging.Reply, error) { return answer(ctx, s.received.Add(1)) },
		testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	return s
}

func ok() (messaging.Reply, error) { return messaging.ReplyDone("target", time.Now(), false, nil), nil }

func injected() (messaging.Reply, error) {
	return messaging.Reply{}, problem.Errorf(502, "injected error")
}

// failFirst fails the first n requests with a 502, then answers well.
func failFirst(n int64) func(context.Context, int64) (messaging.Reply, error) {
	return func(_ context.Context, i int64) (messaging.Reply, error) {
		if i <= n {
			return injected()
		}
		return ok()
	}
}

func alwaysFail(context.Context, int64) (messaging.Reply, error) { return injected() }

// counter counts the events a requester emits, by kind.
type counter struct {
	mu sync.Mutex
	n  map[messaging.Event]int
}

func (c *counter) observe(e messaging.BreakerEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[messaging.Event]int{}
	}
	c.n[e.Event]++
}

func (c *counter) get(ev messaging.Event) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[ev]
}

// TestPolicyComposition checks the order the package doc gives:
// Fallback(Bulkhead(RetryPolicy(retryGate(CircuitBreaker(Timeout(request)))))).
func TestPolicyComposition(t *testing.T) {
	nc := connect(t)
	retrying := quick
	retrying.Retries, retrying.Backoff = 2, 10*time.Millisecond
	requester := func(t *testing.T, subject string, s messaging.BreakerSettings, c *counter) *messaging.Requester {
		return messaging.NewRequester(nc, messaging.Route{From: "caller", To: "target", Subject: subject}, s,
			testkit.Logger(t), messaging.WithObserver(c.observe))
	}

	t.Run("a transient failure becomes a success through a retry, and each attempt is a breaker call", func(t *testing.T) {
		tg := newScripted(t, nc, "transient.create", failFirst(1))
		c := &counter{}
		r := requester(t, "transient.create", retrying, c)

		reply := r.Request(context.Background(), []byte(`{}`))

		if reply.Outcome != messaging.OutcomeOK || tg.received.Load() != 2 {
			t.Fatalf("outcome %s (%s) after %d requests, want ok after 2", reply.Outcome, reply.Reason, tg.received.Load())
		}
		if m := r.Breaker().Metrics(); m.Failures() != 1 || m.Successes() != 1 {
			t.Errorf("breaker saw %d failures and %d successes, want 1 and 1: every attempt is a breaker call", m.Failures(), m.Successes())
		}
		if c.get(messaging.EventRetry) != 1 || c.get(messaging.EventFallback) != 0 {
			t.Errorf("events %v, want one retry and no fallback", c.n)
		}
	})

	t.Run("the last real failure is the reply, with the attempts made", func(t *testing.T) {
		tg := newScripted(t, nc, "fail.create", alwaysFail)
		r := requester(t, "fail.create", retrying, &counter{})
		reply := r.Request(context.Background(), []byte(`{}`))
		if reply.Outcome != messaging.OutcomeUnavailable || reply.Reason != "502 injected error, 3 attempts" || tg.received.Load() != 3 {
			t.Fatalf("outcome %s %q after %d requests, want unavailable \"502 injected error, 3 attempts\" after 3",
				reply.Outcome, reply.Reason, tg.received.Load())
		}
	})

	t.Run("a 4xx is not retried", func(t *testing.T) {
		tg := newScripted(t, nc, "refuse.create", func(context.Context, int64) (messaging.Reply, error) {
			return messaging.Reply{}, problem.Errorf(422, "amount: must be a number ≥ 0")
		})
		r := requester(t, "refuse.create", retrying, &counter{})
		if reply := r.Request(context.Background(), []byte(`{}`)); reply.Outcome != messaging.OutcomeRefused || tg.received.Load() != 1 {
			t.Fatalf("outcome %s after %d requests, want refused after 1", reply.Outcome, tg.received.Load())
		}
	})

	t.Run("an open circuit is not retried: nothing reaches the target", func(t *testing.T) {
		tg := newScripted(t, nc, "open.create", alwaysFail)
		c := &counter{}
		r := requester(t, "open.create", retrying, c)
		r.Breaker().Open()
		reply := r.Request(context.Background(), []byte(`{}`))
		if reply.Outcome != messaging.OutcomeRejected || tg.received.Load() != 0 || c.get(messaging.EventRetry) != 0 {
			t.Fatalf("outcome %s, %d requests, %d retries; want rejected, none, none", reply.Outcome, tg.received.Load(), c.get(messaging.EventRetry))
		}
	})

	t.Run("a retry the circuit refused reports the failure of the attempt that was made", func(t *testing.T) {
		tg := newScripted(t, nc, "reopened.create", alwaysFail)
		s := retrying
		// The backoff (up to 300ms with jitter) must end inside the open delay.
		s.Backoff, s.Delay = 200*time.Millisecond, time.Minute
		c := &counter{}
		r := requester(t, "reopened.create", s, c)
		done := make(chan messaging.Reply, 1)
		go func() { done <- r.Request(context.Background(), []byte(`{}`)) }()
		testkit.Eventually(t, 5*time.Second, "the first attempt to fail", func() bool { return c.get(messaging.EventRetry) == 1 })
		r.Breaker().Open() // as another call's failure would, during the backoff

		reply := <-done

		if reply.Outcome != messaging.OutcomeUnavailable || reply.Reason != "502 injected error" || tg.received.Load() != 1 {
			t.Fatalf("outcome %s %q after %d requests, want the first attempt's failure, not a rejection",
				reply.Outcome, reply.Reason, tg.received.Load())
		}
	})

	t.Run("a failure that opens the circuit is not retried", func(t *testing.T) {
		tg := newScripted(t, nc, "opens.create", alwaysFail)
		s := retrying
		s.Retries, s.MinCalls = 5, 2 // the second failure opens it; three retries would be left
		r := requester(t, "opens.create", s, &counter{})
		reply := r.Request(context.Background(), []byte(`{}`))
		if r.State() != messaging.StateOpen || tg.received.Load() != 2 || reply.Reason != "502 injected error, 2 attempts" {
			t.Fatalf("state %s after %d requests, reason %q; want open after 2 with the real failure", r.State(), tg.received.Load(), reply.Reason)
		}
	})

	t.Run("no retry past the caller's deadline, and one not made is not recorded by the circuit", func(t *testing.T) {
		tg := newScripted(t, nc, "deadline.create", alwaysFail)
		s := retrying
		s.Timeout, s.Backoff = 400*time.Millisecond, 100*time.Millisecond // a retry needs 200ms, after up to 150ms of backoff
		r := requester(t, "deadline.create", s, &counter{})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()

		reply := r.Request(ctx, []byte(`{}`))

		if ctx.Err() != nil {
			t.Fatal("the reply came after the caller's deadline")
		}
		if reply.Outcome != messaging.OutcomeUnavailable || reply.Reason != "502 injected error" || tg.received.Load() != 1 {
			t.Errorf("outcome %s %q after %d requests, want the first failure and no retry", reply.Outcome, reply.Reason, tg.received.Load())
		}
		if m := r.Breaker().Metrics(); m.Executions() != 1 || m.Failures() != 1 {
			t.Errorf("breaker recorded %d calls (%d failures), want the one made", m.Executions(), m.Failures())
		}
	})

	t.Run("retries stop in time for the caller: the reply beats its deadline", func(t *testing.T) {
		tg := newScripted(t, nc, "budget.create", alwaysFail)
		s := retrying
		s.Retries, s.Timeout, s.Backoff = 10, 400*time.Millisecond, 100*time.Millisecond
		r := requester(t, "budget.create", s, &counter{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()

		reply := r.Request(ctx, []byte(`{}`))

		if ctx.Err() != nil {
			t.Fatal("the reply came after the caller's deadline")
		}
		// Backoffs of up to 150, 300, 600ms: a second attempt fits in a second, eleven do not.
		if n := tg.received.Load(); n < 2 || n > 4 || !strings.HasPrefix(reply.Reason, "502 injected error, ") {
			t.Errorf("%d attempts, reason %q; want a few retries, stopped early, reporting the real failure", n, reply.Reason)
		}
	})

	t.Run("the bulkhead is outside the retries: a call waiting to retry holds its permit", func(t *testing.T) {
		tg := newScripted(t, nc, "held.create", failFirst(1))
		s := retrying
		s.Bulkhead, s.Retries, s.Backoff = 1, 1, time.Second
		c := &counter{}
		r := requester(t, "held.create", s, c)
		first := make(chan messaging.Reply, 1)
		go func() { first <- r.Request(context.Background(), []byte(`{}`)) }()
		testkit.Eventually(t, 5*time.Second, "the first call to fail and wait for its retry", func() bool {
			return c.get(messaging.EventRetry) == 1
		})

		second := r.Request(context.Background(), []byte(`{}`))

		if second.Outcome != messaging.OutcomeRejected || second.Reason != "too many requests in flight" || c.get(messaging.EventFull) != 1 {
			t.Errorf("second call: %s %q, want rejected by the bulkhead", second.Outcome, second.Reason)
		}
		if reply := <-first; reply.Outcome != messaging.OutcomeOK || tg.received.Load() != 2 {
			t.Errorf("first call: %s after %d requests, want ok after its retry", reply.Outcome, tg.received.Load())
		}
		if m := r.Breaker().Metrics(); m.Executions() != 2 {
			t.Errorf("breaker recorded %d calls, want the first call's 2: a rejection never reaches it", m.Executions())
		}
	})
}

// TestBulkheadRejectsABurstAtOnce: with the hop's bulkhead full, the calls of a burst beyond it
// are answered at once, in the same reply format, with outcome rejected; they never reach the
// target or the circuit, and each is counted.
func TestBulkheadRejectsABurstAtOnce(t *testing.T) {
	nc := connect(t)
	release := make(chan struct{})
	tg := newScripted(t, nc, "burst.create", func(ctx context.Context, _ int64) (messaging.Reply, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ok()
	})
	s := quick
	s.Bulkhead, s.Timeout = 3, 10*time.Second
	c := &counter{}
	r := messaging.NewRequester(nc, messaging.Route{From: "caller", To: "target", Subject: "burst.create"}, s,
		testkit.Logger(t), messaging.WithObserver(c.observe))
	bus, err := nc.SubscribeSync(messaging.BreakerSubject("caller", "target"))
	if err != nil {
		t.Fatal(err)
	}

	held := make(chan messaging.Reply, 3)
	for range 3 {
		go func() { held <- r.Request(context.Background(), []byte(`{}`)) }()
	}
	testkit.Eventually(t, 5*time.Second, "three calls held by the target", func() bool { return tg.received.Load() == 3 })

	for i := range 5 {
		// Answered while the three are still held: the burst did not wait for a permit.
		reply := r.Request(context.Background(), []byte(`{}`))
		if reply.Outcome != messaging.OutcomeRejected || reply.Service != "target" || !strings.Contains(reply.Line, "-> unavailable (too many requests in flight)") {
			t.Errorf("call %d beyond the bulkhead: %+v, want rejected in the usual format", i+1, reply)
		}
	}
	if len(held) != 0 {
		t.Fatal("a held call finished before the target released it")
	}
	close(release)
	for range 3 {
		if reply := <-held; reply.Outcome != messaging.OutcomeOK {
			t.Errorf("held call: %s, want ok", reply.Outcome)
		}
	}
	if tg.received.Load() != 3 || c.get(messaging.EventFull) != 5 || r.Breaker().Metrics().Executions() != 3 {
		t.Errorf("target %d, full events %d, breaker calls %d; want 3, 5, 3",
			tg.received.Load(), c.get(messaging.EventFull), r.Breaker().Metrics().Executions())
	}
	// On the bus, like every per-call event, the burst is the first rejection in full and the
	// rest summed up when the second ends: an overload does not flood the bus and the log.
	var full []messaging.BreakerEvent
	for len(full) == 0 || full[len(full)-1].Count == 0 {
		m, err := bus.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("bulkheadFull on the bus: %v; got %+v", err, full)
		}
		var e messaging.BreakerEvent
		if jsonUnmarshal(m.Data, &e) == nil && e.Event == messaging.EventFull {
			full = append(full, e)
		}
	}
	if len(full) != 2 || full[1].Count != 4 {
		t.Errorf("bulkheadFull on the bus: %+v, want one in full and one summing up the other 4", full)
	}
}

// Longest bounds a Request: every attempt's timeout plus the longest backoffs.
func TestLongest(t *testing.T) {
	s := messaging.BreakerSettings{Timeout: 300 * time.Millisecond, Retries: 2, Backoff: 50 * time.Millisecond}
	// 300 + 75 + 300 + 150 + 300
	if got := s.Longest(); got != 1125*time.Millisecond {
		t.Errorf("Longest = %s, want 1.125s", got)
	}
	s.Retries = 0
	if got := s.Longest(); got != s.Timeout {
		t.Errorf("without retries Longest = %s, want the timeout", got)
	}
}

// TestRetryBudgetCapsRetries: the target fails every other request it gets (a 50 % failure rate)
// and 32 callers send 800 requests through one hop with two retries each. Without a budget the
// target is asked about 1.75 times per request; with one, retries beyond it are not made — the
// failed call is answered as it failed, "not retried", and
// counted — and with the default budget (10 % of the calls in flight) the target is asked at
// most 1.25 times per request. The circuit never
// opens here (its minimum number of calls is out of reach), so only the budget is measured.
func TestRetryBudgetCapsRetries(t *testing.T) {
	for _, tc := range []struct {
		budget    float64
		within    func(perRequest float64) bool
		wantShare string
	}{
		{budget: 0, within: func(p float64) bool { return p > 1.5 }, wantShare: "more than 1.5"},
		{budget: messaging.DefaultBreakerSettings.RetryBudget, within: func(p float64) bool { return p <= 1.25 }, wantShare: "at most 1.25"},
	} {
		t.Run(fmt.Sprintf("budget=%g", tc.budget), func(t *testing.T) {
			nc := connect(t)
			subject := fmt.Sprintf("flaky%d.create", int(tc.budget*100))
			tg := newScripted(t, nc, subject, func(ctx context.Context, n int64) (messaging.Reply, error) {
				time.Sleep(2 * time.Millisecond) // calls overlap, as under load
				if n%2 == 1 {
					return injected()
				}
				return ok()
			})
			s := messaging.BreakerSettings{Timeout: 10 * time.Second, FailureRate: 100, MinCalls: 1_000_000,
				Window: time.Minute, Delay: time.Minute, Retries: 2, Backoff: time.Millisecond, RetryBudget: tc.budget}
			c := &counter{}
			r := messaging.NewRequester(nc, messaging.Route{From: "caller", To: "target", Subject: subject}, s,
				testkit.DiscardLogger(), messaging.WithObserver(c.observe))
			const callers, each = 32, 25
			var wg sync.WaitGroup
			var notRetried atomic.Int64
			for range callers {
				wg.Go(func() {
					for range each {
						reply := r.Request(context.Background(), []byte(`{}`))
						if strings.Contains(reply.Line, "the retry budget was spent") {
							notRetried.Add(1)
						}
					}
				})
			}
			wg.Wait()
			perRequest := float64(tg.received.Load()) / (callers * each)
			if !tc.within(perRequest) {
				t.Errorf("the target was asked %.2f times per request, want %s", perRequest, tc.wantShare)
			}
			if tc.budget > 0 && (c.get(messaging.EventBudget) == 0 || notRetried.Load() == 0) {
				t.Errorf("%d budget events, %d replies saying so; want both above 0", c.get(messaging.EventBudget), notRetried.Load())
			}
			t.Logf("budget %g: the target was asked %.2f times per request; %d retries refused by the budget",
				tc.budget, perRequest, c.get(messaging.EventBudget))
		})
	}
}
