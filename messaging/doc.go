// Package messaging is everything that travels between the services of the chain: the
// breaker-guarded [Requester], the [Responder] (a NATS micro service with a queue group and
// bounded concurrency), the headers a request carries, the [Reply] envelope and the seed
// demo's one-line-per-hop text form. It knows nothing of orders, payments or shipments.
//
// # Policy composition
//
// Every outgoing call runs through one failsafe-go executor built once per (caller, target):
//
//	failsafe.With(fallback, circuitBreaker, timeout)  =  Fallback(CircuitBreaker(Timeout(request)))
//
// The timeout sits inside the breaker so an expired call is recorded as a failure; the fallback
// sits outside so that every failure, including a rejection by an open circuit, still comes back
// as a [Reply] in the same format, with an [Outcome] that says what happened.
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
// "unavailable" before the first caller gives up.
package messaging
