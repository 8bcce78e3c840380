package messaging

import (
	"errors"
	"fmt"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/common"
	"github.com/failsafe-go/failsafe-go/policy"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
)

// Events of the retry policy and the bulkhead, published beside the breaker's.
const (
	EventRetry Event = "retry"        // a failed call will be tried again after a backoff
	EventFull  Event = "bulkheadFull" // the hop had as many calls in flight as allowed: rejected at once
	// EventOutOfTime is a call not sent because its caller's deadline left less than
	// MinCallBudget: the target was never asked, and the circuit is not told.
	EventOutOfTime Event = "outOfTime"
	// EventBudget is a retry not made because retries were already as large a share of the
	// hop's calls in flight as its budget allows (BreakerSettings.RetryBudget).
	EventBudget Event = "retryBudget"
)

// RetryJitter is how much each retry's backoff varies, as a share of it (±50 %), so callers
// that failed together do not retry together.
const RetryJitter = 0.5

// MaxBackoff caps the doubling backoff between retries (or is Backoff itself when larger).
const MaxBackoff = time.Second

// backoffCap is the longest delay before a retry.
func (s BreakerSettings) backoffCap() time.Duration { return max(s.Backoff, MaxBackoff) }

// nextDelayAtMost is the longest backoff before retry number n (1-based), jitter included:
// failsafe-go doubles the delay from Backoff up to the cap, then varies it by RetryJitter.
func (s BreakerSettings) nextDelayAtMost(n int) time.Duration {
	d := s.Backoff
	for i := 1; i < n && d < s.backoffCap(); i++ {
		d *= 2
	}
	return time.Duration(float64(min(d, s.backoffCap())) * (1 + RetryJitter))
}

// Longest is the longest a Request with these settings can take: every attempt's timeout and
// the longest backoff before each retry. What waits for a request (a re-drive timer, an ack wait)
// should wait at least this long.
func (s BreakerSettings) Longest() time.Duration {
	d := s.Timeout
	for n := 1; n <= s.Retries; n++ {
		d += s.nextDelayAtMost(n) + s.Timeout
	}
	return d
}

// MinRetryBudget is the least time a retry must be able to give its target: half the per-call
// timeout. A retry cut shorter would mostly time out and blame a healthy target for the
// caller's own lack of time.
func (s BreakerSettings) MinRetryBudget() time.Duration { return s.Timeout / 2 }

// newRetry is the retry policy of r: only failures (as the circuit counts them) are retried —
// every hop is idempotent by its id, so a repeat is a replay, never a second record — never a
// call the open circuit rejected, never a 4xx, never the caller's cancellation, and never past
// the caller's deadline (retryGate). The last failure, not a "retries exceeded" error, is what
// the fallback turns into the reply.
func (r *Requester) newRetry() failsafe.Policy[*Reply] {
	s := r.settings
	b := retrypolicy.NewBuilder[*Reply]()
	if s.RetryBudget > 0 {
		// One budget per hop, shared by all its calls: failsafe-go counts the calls and the
		// retries in flight, and refuses a retry that would exceed the share.
		b = b.WithBudget(budget.NewBuilder().WithMaxRate(s.RetryBudget).WithMinConcurrency(RetryFloor).
			OnBudgetExceeded(func(e budget.ExceededEvent) {
				r.events.emit(e.Context(), EventBudget, r.State(), fmt.Sprintf("retry budget spent: %.0f %% of the calls in flight are retries", 100*e.Rate()))
			}).Build())
	}
	return b.
		HandleIf(func(_ *Reply, err error) bool { return IsFailure(err) }).
		AbortOnErrors(circuitbreaker.ErrOpen).
		AbortIf(func(_ *Reply, err error) bool { return errors.As(err, new(*retryStopped)) }).
		WithMaxRetries(s.Retries).
		WithBackoff(s.Backoff, s.backoffCap()).
		WithJitterFactor(RetryJitter).
		ReturnLastFailure().
		OnRetryScheduled(func(e failsafe.ExecutionScheduledEvent[*Reply]) {
			_, why := outcomeOf(e.LastError())
			r.events.emit(e.Context(), EventRetry, r.State(),
				fmt.Sprintf("%s; retry %d of %d in %s", why, e.Attempts(), s.Retries, e.Delay.Round(time.Millisecond)))
		}).
		Build()
}

// newBulkhead bounds the calls in flight on r's hop. It does not wait for a permit: a call
// queued behind a full hop would start late and hold its caller longer than answering at once.
func (r *Requester) newBulkhead() failsafe.Policy[*Reply] {
	return bulkhead.NewBuilder[*Reply](r.settings.Bulkhead).
		OnFull(func(e failsafe.ExecutionEvent[*Reply]) {
			r.events.emit(e.Context(), EventFull, r.State(), "too many requests in flight")
		}).
		Build()
}

// retryStopped is a failure that will not be retried although retries are left: the circuit
// it went through is now open, or what is left of the caller's deadline is too short for a
// worthwhile attempt. It wraps the failure, which the reply still reports.
type retryStopped struct {
	err error
	why string
}

func (e *retryStopped) Error() string { return e.err.Error() + " (not retried: " + e.why + ")" }
func (e *retryStopped) Unwrap() error { return e.err }

// retryGate is a small failsafe-go policy between the retry policy and the circuit breaker. It
// stops retrying, by wrapping a failure in retryStopped, when the failure opened the circuit or
// when the caller's deadline leaves no room for the backoff and a worthwhile attempt
// (MinRetryBudget); and it checks once more, before a retry reaches the breaker, with the time
// actually left after the backoff. So a retry never outlives its caller's deadline, and one
// that is not made is never recorded by the circuit, neither as a failure (the target is not
// to blame) nor as a success.
type retryGate struct{ r *Requester }

func (g retryGate) ToExecutor(_ *Reply) any {
	e := &gateExecutor{r: g.r}
	e.Executor = e
	return e
}

type gateExecutor struct {
	policy.BaseExecutor[*Reply]
	r *Requester
}

// PreExecute lets a retry through only with enough time left.
func (e *gateExecutor) PreExecute(exec policy.ExecutionInternal[*Reply]) *common.PolicyResult[*Reply] {
	if !exec.IsRetry() || e.enoughTime(exec, 0) {
		return nil
	}
	return &common.PolicyResult[*Reply]{
		Error: &retryStopped{err: exec.LastError(), why: "no time left before the caller's deadline"},
		Done:  true,
	}
}

// OnFailure marks a failure that must not be retried although retries are left.
func (e *gateExecutor) OnFailure(exec policy.ExecutionInternal[*Reply], result *common.PolicyResult[*Reply]) *common.PolicyResult[*Reply] {
	err := result.Error
	switch {
	case errors.Is(err, circuitbreaker.ErrOpen) && exec.IsRetry() && exec.LastError() != nil:
		// Another call opened the circuit during the backoff: this retry was never sent. What
		// the caller should hear is the failure of the attempt that was.
		return withError(result, &retryStopped{err: exec.LastError(), why: "the circuit opened"})
	case !IsFailure(err) || errors.Is(err, circuitbreaker.ErrOpen) || exec.Retries() >= e.r.settings.Retries:
		return result // not retried anyway
	case e.r.breaker.IsOpen():
		return withError(result, &retryStopped{err: err, why: "the circuit opened"})
	case !e.enoughTime(exec, e.r.settings.nextDelayAtMost(exec.Retries()+1)):
		return withError(result, &retryStopped{err: err, why: "no time left before the caller's deadline"})
	}
	return result
}

// enoughTime reports whether, after waiting wait, a call would still get MinRetryBudget.
func (e *gateExecutor) enoughTime(exec failsafe.ExecutionInfo, wait time.Duration) bool {
	dl, ok := exec.Context().Deadline()
	if !ok {
		return true
	}
	left := time.Until(dl) - wait
	return left-Margin(left) >= e.r.settings.MinRetryBudget()
}

func withError(result *common.PolicyResult[*Reply], err error) *common.PolicyResult[*Reply] {
	c := *result
	c.Error = err
	return &c
}
