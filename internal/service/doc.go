// Package service runs one service of the chain, whichever it is: it connects what the service
// needs (the store, NATS — and a second connection for its JetStream state when NATS_QUEUE_* says
// so —, through internal/plumbing, the breaker-guarded requester for the next service in the
// Chain), starts it (its NATS endpoint, its HTTP server with the ops routes every service has)
// and stops it in reverse, each step bounded: HTTP Shutdown → micro Stop → NATS drain (both
// connections) → store disconnect. What a service shows of itself (GET /breakers,
// circuits.<service>) it builds in internal/observe's shapes, which the dashboard reads without
// importing this package. It also holds the seed's hop, written once for every service: split a
// request body (Split), wait any injected latency, save the record once by its id (Save), fail on
// purpose if asked to, stop at the JUMPS limit, and otherwise call the next service (Forward).
// And its undo, the saga's compensation: a Step serves <name>.void with the same body, voids its
// own record if its service declared an undo (Service.Undo), and passes the void on (VoidNext)
// only towards a later service that declared one. The single-service command and the all-in-one
// call the same Start. It must not know any particular service: each describes itself with a
// Service, and which calls which is the command's Chain.
//
// An example request (Chain.Example: the all-in-one's banner, the dashboard's order button) is
// built the way a body is read: each service gives an example of its own fields
// (Service.Example) and the chain nests them. A service knows what it needs and nothing of who
// comes after it, so an example written by the entry alone would miss a fourth service's fields
// (a 422); built from the chain, it has them all.
package service
