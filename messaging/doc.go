// Package messaging is everything that travels between the services of the chain: the
// breaker-guarded [Requester] (with its retries and bulkhead; [Requester.Void] sends a void to
// the target through the same circuit as its requests), the [Responder] (a NATS micro
// service with a queue group and bounded concurrency), [Control] endpoints every instance of a
// service answers, the headers a request carries, the [Reply] envelope and the seed demo's
// one-line-per-hop text form. It knows nothing of orders, payments or shipments.
//
// # Policy composition
//
// Every outgoing call runs through one failsafe-go executor built once per (caller, target),
// outermost first:
//
//	failsafe.With(fallback, bulkhead, retryPolicy, retryGate, circuitBreaker, timeout)
//	  = Fallback(Bulkhead(RetryPolicy(retryGate(CircuitBreaker(Timeout(request))))))
//
// Inside out, and why each sits where it does:
//
//   - The timeout is innermost, so it bounds each attempt on its own and an expired attempt is
//     recorded by the circuit as a failure.
//   - The circuit breaker is inside the retry policy, so every retry is a breaker call: counted
//     in the rolling window like any call, and refused by an open circuit. A retry policy
//     outside an open circuit would only be rejected again, and one inside the breaker would
//     hide failures from it.
//   - The retryGate (a small policy of this package) sits between the two: a failure that just
//     opened the circuit is not retried, nor one whose caller's deadline leaves too little time
//     (MinRetryBudget, after the longest backoff). It checks again, with the time really left,
//     before a retry reaches the breaker, so a retry that is not made is never recorded by the
//     circuit, neither as a failure nor as a success. A retry the circuit refused because another
//     call opened it during the backoff reports the failure of the attempt that was made:
//     "rejected" keeps meaning "never sent".
//   - The retry policy (BreakerSettings.Retries, exponential backoff from Backoff, ±RetryJitter)
//     retries only what the circuit counts as a failure; every hop is idempotent by its id, so a
//     repeat is a replay, never a second record or charge. It never retries a call the open
//     circuit rejected (circuitbreaker.ErrOpen), a 4xx, or the caller's cancellation, and the
//     fallback gets the last real failure, not "retries exceeded". Retries draw on the hop's
//     budget (BreakerSettings.RetryBudget, failsafe-go's budget package): a retry that would
//     make retries more than that share of the calls in flight (beyond RetryFloor at once) is
//     not made, and the call is answered "failed, and not retried: the retry budget was spent"
//     (EventBudget), so a failing target is not asked several times per request.
//   - The bulkhead (BreakerSettings.Bulkhead) is outside the retries: a call holds its permit
//     through its retries and backoffs, so the bound counts callers waiting on the target, not
//     attempts, and a call is never cut off by the bulkhead halfway through its retries. It does
//     not wait: a full hop answers at once with outcome rejected and never touches the circuit
//     (an overload of the caller's own making says nothing about the target).
//   - The fallback is outermost, so every failure — a rejection by an open circuit or a full
//     bulkhead, a timeout, the last failed retry — comes back as a [Reply] in the same format,
//     with an [Outcome] that says what happened and, after retries, how many attempts were made.
//
// Retries and the bulkhead are left out when their settings are zero. TestPolicyComposition
// checks each of these points.
//
// # What counts as a failure
//
// A timeout (the policy's own, or the caller's deadline running out), no responders, a lost
// connection and a reply carrying a 5xx service error count against the circuit. A 4xx reply
// (the target refused bad input) and the caller's own cancellation do not: bad input must never
// open a circuit.
//
// # Deadlines
//
// A request carries the time its caller will still wait (header [HeaderTimeout], relative like
// gRPC's grpc-timeout so clock skew between hosts does not matter). The responder runs its
// handler under that deadline, and when it calls on, it gives the next hop only what is left
// minus a margin for its own answer (see Margin), so a hanging hop three steps down is reported as
// "unavailable" before the first caller gives up. A call whose budget would be below
// BreakerSettings.MinCallBudget is not sent: it comes back "unavailable" (the caller ran out of
// time), counted as EventOutOfTime and never recorded by the circuit, so a healthy target is not
// blamed for its caller's lateness.
package messaging
