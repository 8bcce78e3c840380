package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/fallback"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

// BreakerSettings configure the policies guarding one hop: its circuit and timeout, and
// optionally its retries and bulkhead (zero leaves them out).
type BreakerSettings struct {
	Timeout     time.Duration // per-call limit; the caller's deadline may shorten it
	FailureRate uint          // open at this failure percentage (1–100) …
	MinCalls    uint          // … once this many calls were seen in the window
	Window      time.Duration // the rolling window the rate is measured in
	Delay       time.Duration // how long an open circuit rejects before a trial call
	Retries     int           // retry a failed call up to this many times; 0 = never
	Backoff     time.Duration // before the first retry; doubles for each next one, up to MaxBackoff, ±RetryJitter
	Bulkhead    uint          // calls in flight on this hop at once, retries included; 0 = unbounded
	// RetryBudget is the most retries may be of the calls in flight on this hop (0.1: one in
	// ten), beyond RetryFloor at once; 0 = no budget. Under a failure rate that retries would
	// multiply, it keeps the target from being asked several times per request: at a 50 % rate,
	// 1.16 times with 0.1, 1.25 with 0.15, 1.37 with 0.2 (TestRetryBudgetCapsRetries; the share
	// is counted in flight, where a retry's backoff is not, so the asks exceed it).
	RetryBudget float64
}

// RetryFloor is how many retries may be in flight on a hop at once whatever the budget: a lone
// caller's retry is never refused for being a large share of little traffic.
const RetryFloor = 3

// DefaultBreakerSettings are the seed's opossum settings (timeout 300 ms, 50 %, reset 10 s)
// with a 10 s rolling window and at least 5 calls before a rate can open the circuit; two
// retries starting 50 ms apart; 64 calls in flight, the bound a responder puts on its own
// requests (DefaultMaxConcurrent).
var DefaultBreakerSettings = BreakerSettings{
	Timeout: 300 * time.Millisecond, FailureRate: 50, MinCalls: 5,
	Window: 10 * time.Second, Delay: 10 * time.Second,
	Retries: 2, Backoff: 50 * time.Millisecond, Bulkhead: DefaultMaxConcurrent, RetryBudget: 0.1,
}

// Route names a hop: who calls, whom, on which subject.
type Route struct {
	From    string // the calling service, e.g. "payment"
	To      string // the target service, e.g. "shipment"
	Subject string // e.g. "shipment.create"
	Void    string // the target's void endpoint, e.g. "shipment.void"; "" when it has none
}

// Requester sends requests for one route through its circuit breaker and timeout. Build one per
// route at start and share it: a breaker built per request never opens. It is safe for
// concurrent use.
type Requester struct {
	nc       *nats.Conn
	route    Route
	settings BreakerSettings
	breaker  circuitbreaker.CircuitBreaker[*Reply]
	executor failsafe.Executor[*Reply]
	tracer   trace.Tracer
	events   *events
	stats    callStats
}

// RequesterOption changes an optional setting of a Requester.
type RequesterOption func(*Requester)

// WithObserver has every breaker event also handed to fn (for metrics). fn must not block.
func WithObserver(fn func(BreakerEvent)) RequesterOption {
	return func(r *Requester) { r.events.observer = fn }
}

// WithTracing has every call traced by tp (see Traces in trace.go); without it calls pass on a
// trace context they are given but record no span.
func WithTracing(tp trace.TracerProvider) RequesterOption {
	return func(r *Requester) { r.tracer = tracerOf(tp) }
}

// NewRequester builds the guarded requester for route over nc.
func NewRequester(nc *nats.Conn, route Route, s BreakerSettings, log *slog.Logger, opts ...RequesterOption) *Requester {
	r := &Requester{nc: nc, route: route, settings: s, tracer: tracerOf(nil)}
	r.events = &events{
		nc: nc, log: log, subject: BreakerSubject(route.From, route.To),
		service: route.From, target: route.To,
	}
	for _, o := range opts {
		o(r)
	}
	r.breaker = circuitbreaker.NewBuilder[*Reply]().
		HandleIf(func(_ *Reply, err error) bool { return IsFailure(err) }).
		WithFailureRateThreshold(float64(s.FailureRate)/100, s.MinCalls, s.Window).
		// One trial call decides in half-open (seed cases 7 and 8).
		WithSuccessThreshold(1).
		WithDelay(s.Delay).
		OnSuccess(func(e failsafe.ExecutionEvent[*Reply]) { r.events.emit(e.Context(), EventSuccess, r.State(), "") }).
		OnFailure(func(e failsafe.ExecutionEvent[*Reply]) {
			ev, reason := EventFailure, ""
			if out, why := outcomeOf(e.LastError()); out == OutcomeTimeout {
				ev = EventTimeout
			} else {
				reason = why
			}
			r.events.emit(e.Context(), ev, r.State(), reason)
		}).
		OnOpen(func(e circuitbreaker.StateChangedEvent) {
			r.events.emit(e.Context(), EventOpen, stateOf(e.NewState), "")
		}).
		OnHalfOpen(func(e circuitbreaker.StateChangedEvent) {
			r.events.emit(e.Context(), EventHalfOpen, stateOf(e.NewState), "")
		}).
		OnClose(func(e circuitbreaker.StateChangedEvent) {
			r.events.emit(e.Context(), EventClose, stateOf(e.NewState), "")
		}).
		Build()
	fb := fallback.NewWithFunc(func(exec failsafe.Execution[*Reply]) (*Reply, error) {
		err := exec.LastError()
		if errors.Is(err, circuitbreaker.ErrOpen) {
			reply := r.rejected(exec.Context())
			return &reply, nil
		}
		out, reason := outcomeOf(err)
		if reason == "request failed" {
			r.events.log.WarnContext(exec.Context(), "request failed", "target", r.route.To, "err", err)
		}
		if out == OutcomeTimeout {
			reason = fmt.Sprintf("timeout after %s", exec.ElapsedAttemptTime().Round(time.Millisecond))
		}
		if n := exec.Executions(); n > 1 {
			reason = fmt.Sprintf("%s, %d attempts", reason, n)
		}
		r.events.emit(exec.Context(), EventFallback, r.State(), reason)
		reply := ReplyFailed(r.route.To, time.Now(), out, reason)
		return &reply, nil
	})
	// The composition and why it is in this order: see the package doc.
	policies := []failsafe.Policy[*Reply]{fb}
	if s.Bulkhead > 0 {
		policies = append(policies, r.newBulkhead())
	}
	if s.Retries > 0 {
		policies = append(policies, r.newRetry(), retryGate{r})
	}
	policies = append(policies, r.breaker, timeout.New[*Reply](s.Timeout))
	r.executor = failsafe.With(policies...)
	return r
}

// Route returns the route this requester serves.
func (r *Requester) Route() Route { return r.route }

// State returns the circuit's state.
func (r *Requester) State() State { return stateOf(r.breaker.State()) }

// Breaker returns the circuit breaker, for inspection and for forcing a state.
func (r *Requester) Breaker() circuitbreaker.CircuitBreaker[*Reply] { return r.breaker }

// Request sends payload to the route's subject and returns the target's reply. It never fails:
// a rejected, timed-out or failed call comes back as a Reply on behalf of the target whose
// Outcome says what happened. ctx carries the Call (see WithCall) and the caller's deadline.
func (r *Requester) Request(ctx context.Context, payload []byte) Reply {
	return r.call(ctx, r.route.Subject, payload)
}

// Void sends payload to the route's void subject, as Request does: through the same circuit,
// timeout, retries and bulkhead, for the breaker is per (caller, target), whatever it is asked,
// and a target that cannot take a create cannot take a void either. A route without a void
// subject answers refused, never sent.
func (r *Requester) Void(ctx context.Context, payload []byte) Reply {
	if r.route.Void == "" {
		return ReplyFailed(r.route.To, time.Now(), OutcomeRefused, "it takes no void")
	}
	return r.call(ctx, r.route.Void, payload)
}

func (r *Requester) call(ctx context.Context, subject string, payload []byte) Reply {
	start := time.Now()
	ctx, span := r.startCall(ctx, subject)
	reply, attempts := r.request(ctx, subject, payload)
	r.stats.record(reply.Outcome, time.Since(start))
	endCall(span, reply, attempts)
	return reply
}

// Stats returns what the requester's calls came to so far.
func (r *Requester) Stats() CallStats { return r.stats.snapshot() }

// Window is the closed circuit's calls in its rolling window now: executions, failures and the
// failure rate (0 to 1). The breaker's own counts roll only when a call comes, so after a window
// without calls they are the last calls', however old; the window then holds none, and says so.
func (r *Requester) Window() (executions, failures uint, rate float64) {
	m := r.breaker.Metrics()
	if r.breaker.IsClosed() && time.Since(r.stats.lastCall()) > r.settings.Window {
		return 0, 0, 0
	}
	return m.Executions(), m.Failures(), m.FailureRate()
}

// Settings returns the settings of the requester's policies.
func (r *Requester) Settings() BreakerSettings { return r.settings }

// request makes the call and returns its reply and how many times it was sent.
func (r *Requester) request(ctx context.Context, subject string, payload []byte) (Reply, int) {
	budget, err := r.budget(ctx)
	if err != nil {
		// Not a verdict on the target: it was never asked, so the circuit is not told.
		out, reason := outcomeOf(err)
		if errors.Is(err, ErrNoTimeLeft) {
			r.events.emit(ctx, EventOutOfTime, r.State(), reason)
		}
		return ReplyFailed(r.route.To, time.Now(), out, reason), 0
	}
	if r.breaker.IsOpen() && r.breaker.RemainingDelay() > 0 {
		// The executor would reject it too, at twice the cost: an open circuit should cost as
		// little as possible. Once the delay has passed, the executor lets the trial call through.
		return r.rejected(ctx), 0
	}
	var sent atomic.Int32 // a timed-out attempt may still be running when the next one starts
	reply, err := r.executor.WithContext(ctx).GetWithExecution(func(exec failsafe.Execution[*Reply]) (*Reply, error) {
		sent.Add(1)
		if exec.IsRetry() {
			if b, err := r.budget(ctx); err == nil {
				budget = b // a retry gets what is left now; retryGate made sure that is enough
			}
		}
		return r.send(exec.Context(), subject, payload, budget)
	})
	if reply == nil {
		// failsafe skips the fallback when the caller's context ends first.
		out, reason := outcomeOf(err)
		return ReplyFailed(r.route.To, time.Now(), out, reason), int(sent.Load())
	}
	return *reply, int(sent.Load())
}

// rejected is the reply for a call the open circuit did not let through.
func (r *Requester) rejected(ctx context.Context) Reply {
	r.events.emit(ctx, EventReject, StateOpen, "")
	out, reason := outcomeOf(circuitbreaker.ErrOpen)
	r.events.emit(ctx, EventFallback, StateOpen, reason)
	return ReplyFailed(r.route.To, time.Now(), out, reason)
}

// budget is how long this call may take: the breaker timeout, or less when the caller's
// deadline is nearer, minus a margin for this hop's own answer to travel back.
func (r *Requester) budget(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, ErrNoTimeLeft
		}
		return 0, err
	}
	b := r.settings.Timeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		left -= Margin(left)
		b = min(b, left)
	}
	if b < r.settings.MinCallBudget() {
		return 0, ErrNoTimeLeft
	}
	return b, nil
}

// CallBudgetFloor is the floor under which a call is not sent at all (see MinCallBudget).
const CallBudgetFloor = 10 * time.Millisecond

// MinCallBudget is the least time a first attempt must be able to give its target:
// CallBudgetFloor, or half the per-call timeout when that is shorter. A healthy hop on loopback
// answers in a few milliseconds (a save by _id, ~0.1 ms of NATS round trip), but on two busy
// cores a scheduling pause alone can take several; a call sent with less than 10 ms would mostly
// time out, and the circuit would blame a healthy target for its caller's lateness. Retries ask
// more (MinRetryBudget).
func (s BreakerSettings) MinCallBudget() time.Duration { return min(CallBudgetFloor, s.Timeout/2) }

// Margin is what a hop keeps of its caller's remaining time for its own answer to get back:
// a fifth of it, from 2ms to 250ms. Less proved too thin on two busy cores: the answer arrived
// just after the caller had given up.
func Margin(left time.Duration) time.Duration {
	return min(max(left/5, 2*time.Millisecond), 250*time.Millisecond)
}

func (r *Requester) send(ctx context.Context, subject string, payload []byte, budget time.Duration) (*Reply, error) {
	if budget < r.settings.Timeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	if !r.nc.IsConnected() {
		// While reconnecting, nats.go would buffer the request and wait out the timeout:
		// fail fast instead, and let the circuit count it.
		return nil, nats.ErrConnectionReconnecting
	}
	msg := nats.NewMsg(subject)
	msg.Data = payload
	setHeaders(msg.Header, CallFrom(ctx), budget)
	InjectTrace(ctx, msg.Header)
	resp, err := r.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return nil, err
	}
	if se := ServiceError(resp); se != nil {
		return nil, se
	}
	var reply Reply
	if err := json.Unmarshal(resp.Data, &reply); err != nil || !reply.wellFormed() {
		// A reply that is not an envelope, or not one of ours, is a target that lies: a failure
		// like any other.
		return nil, errMalformedReply
	}
	return &reply, nil
}
