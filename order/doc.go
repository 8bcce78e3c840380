// Package order is the entry of the chain: the HTTP API that takes an order, saves it, calls
// payment through its breaker and records what happened. An order is "completed" only when
// every hop did its work, "rejected" when a hop refused it (4xx) and what was done before the
// refusal is voided (compensate.go: payment.void, re-driven until it answers), and otherwise
// "pending" with the reason — until it is completed or rejected by itself: no order that may
// have been saved is left behind, whatever the client was told and whichever process died when.
// It must not know payment's or shipment's fields: it checks the body it sends payment with the
// next services' own rules (service.Split) and keeps it as sent.
//
// # One shape of an order
//
// An order has one shape of its own, its record and the state in it; every other is made from
// them in one place:
//   - Order is order's own part of the client's body: checked, then kept in a record.
//   - record is the order as saved — what was ordered, the body sent to payment, who asked it
//     and in which trace — and its State. It is inserted once into orders (and a copy into
//     orders_open until it is final) and never changed: the State it holds there is the one it
//     was saved in, pending and in progress. Loading an order (ledger.loadState) gives its
//     record the state it is in now.
//   - state is where the order's chain stands: its status and reason, the hops of its last run,
//     its attempts and last error, what a rejection voided, when it is re-driven next. A run of
//     the chain makes a new one (stateAfter). A final one is kept in order_outcomes as a result
//     (the state under the order's id); a pending one rides in the order's timer as an entry.
//   - View and Detail, the API's answers, are made from a record by record.view and
//     record.detail, and by nothing else. entry, the queue's message, is made from a state by
//     state.entry and read back by entry.state; its doc says why it carries what it carries.
//
// The store's documents (record, result, openOrder, hopRecord for the hops) are their own
// types, not the API's or the queue's (DESIGN.md), and the answers and the queue's message are
// contracts of their own, with clients and with entries already in a stream: so each keeps its
// own fields, and is derived from the state rather than filled by hand where it is used.
// shape_test.go keeps the rule: the documents, entries and answers as earlier versions wrote
// them are written and read the same, and every field of the state shows in GET /orders/{id}.
//
// # Pending orders: a write-ahead timer in JetStream, a copy in the store
//
// The fast path of orders not final yet is NATS JetStream: one stream, ORDERS (replicated
// JETSTREAM_REPLICAS times), holding for each such order exactly one entry — its timer, or its
// due message once the timer fired. The store is the source of truth: a copy of each such order
// in orders_open, written before the order and removed once it is final, which the reconciler
// (reconcile.go) reads to give a timer again to any order whose entry is gone.
//
//   - Before an order may be saved, POST /create sets its timer: a message on
//     orders.timer.<db>.<id> (MONGO_DB and the order's id: ids are per database, and instances
//     on different databases may share a NATS) with a JetStream message schedule, "@at" now +
//     REDRIVE_AFTER (by default the longest the chain and two store writes can take, plus
//     slack), whose target is orders.due.<db>.<id>. A schedule is one per subject: setting it
//     again replaces it. The first one is set only if the order has no entry at all (expected
//     last sequence 0 on orders.*.<db>.<id>, its timer and its due message), so a replay never
//     resets a pending order's attempts; a new order that found an entry left by an earlier
//     request gets its own timer once it is saved. A timer is deleted by its own sequence, never by subject: a request
//     only ever removes the timer it set.
//   - Then its copy goes into orders_open (with when the reconciler is to look at it: after its
//     first timer and one run), and only once that is written is the order inserted: so an
//     order in the store, or on its way there, always has a copy until it is final.
//   - Then the request runs as before: insert the order, call payment. A final outcome
//     (completed, rejected) is inserted into order_outcomes and the timer deleted; a pending one
//     (a hop unavailable, the circuit open) replaces the timer with one due after the
//     re-drive backoff (REDRIVE_BACKOFF, doubled per attempt), carrying the attempts and the
//     last error, which GET /orders/{id} shows with the next attempt's time.
//   - When a timer fires, the server moves it to orders.due.<db>.<id>. Every order instance takes
//     due orders from one durable pull consumer, "redriver": as many at once as its admission
//     limit leaves room for behind clients' orders (admission.go), at most REDRIVE_RATE a
//     second, one at a time while its circuit towards payment is half-open, and none while it
//     is open (it waits out the open delay, then the next due order is the trial). An order of another database (a
//     timer says its MONGO_DB) is given back for an instance of its own. It loads the order:
//     one not in the store is given back while its copy says its insert may still land, then
//     saved from the copy, and dropped only when it has no copy once a live request would have
//     written it (no insert of it was ever sent); one already final is finished (its copy and mark removed); otherwise it runs the
//     chain again (payment and shipment are idempotent by id and order, so a second run is a
//     replay, never a second charge) and records the outcome as above. Only then does it
//     acknowledge the due message.
//
// The age of the oldest pending order cannot be read from ORDERS alone, whose entries are
// written anew on every run: a second stream, ORDERS_SINCE, holds one message per order a
// re-drive left pending, set the first time one did (expected last sequence 0 on
// orders.since.<db>.<id>) and purged when the re-driver records the order final, before it
// acknowledges the due message (a crash in between leaves the mark to the redelivery, which
// finds the order final and purges it). The oldest pending order is the earlier of its first
// message and ORDERS' (an order not re-driven yet). Marking is best effort, since only that
// gauge reads it, and is left to the re-driver: a client waiting for its 202 does not pay for it.
//
// Why this shape and not a work queue every order flows through: the healthy path keeps its
// latency (the request runs its own chain; JetStream adds a timer write and its delete, measured
// in docs/BENCHMARKS.md), while any order whose request did not finish is still found.
// Nats-Msg-Id de-duplication is not used: the subject already makes a timer one per order, and
// a de-duplication window would swallow the timer of a client's retry after a 503.
//
// # What survives a crash at each step
//
//	step                                   process dies here                            who finishes the order
//	timer set, no copy yet                 the timer fires, finds no order, no copy:    nobody needed: nothing was saved (a
//	                                       given back until a live request would have   copy landing later still is found by
//	                                       written both, then dropped                   the reconciler)
//	copy written, order not (or held up)   the timer fires, finds the copy: given back  the re-driver or the reconciler, from the
//	                                       until the insert cannot be on its way         copy, once the insert's bounds have passed
//	order inserted (or its reply lost)     the timer fires, finds it, runs the chain    any order instance, after REDRIVE_AFTER
//	payment called, no outcome yet         same; payment's save is replayed             any order instance
//	outcome not recorded (store away)      the request re-arms the timer soon           the re-driver, once the store is back
//	pending outcome recorded               its timer fires after the backoff            the re-driver
//	re-driver mid-run (not acknowledged)   JetStream delivers it again after ack wait   another instance (ack wait: the longest run)
//	rejected, void not answered            the order stays pending "voiding"; re-run:   the re-driver, once payment answers
//	                                       the create is refused again, the void asked
//	                                       again (voiding twice is one void)
//	final outcome recorded, timer left     the timer fires, finds the order final       nobody needed: dropped
//	any step, and the timer is lost        its copy's check_at passes with nothing       the reconciler gives it a timer again
//	(files, a power loss, cancelled)       queued
//
// Without JetStream there is no timer, so there is no order: POST /create answers 503 "nothing
// was saved". The stream is on file; a single server syncs it every second (a process crash
// loses nothing, a power loss at most that last second), and on a three-node cluster with
// three replicas a write is on two nodes before it is acknowledged, so the loss of one node
// loses nothing and the cluster elects another leader within seconds, while a request's write
// is retried for up to QueueTimeout.
package order
