// Package dashboard is the live circuits dashboard for operators: a page embedded in the binary
// (no build step, no CDN) fed by Server-Sent Events from a hub that watches NATS as any observer
// may: breaker events and chaos changes as they arrive, and every second each service's circuits
// (micro discovery: circuits.<service>) and order's queue. Its controls go through each service's
// chaos API on NATS and order's public HTTP API, never a side door. It must not know the
// services' internals: what it shows, `nats sub` and `nats micro stats` show too. It reads the
// shapes the services publish from the packages both sides share — internal/observe (the circuit
// snapshot, the reading of order's queue), messaging (breaker events, states, call kinds) and
// internal/chaos — and imports no service, nor internal/service (TestImportsNoService): it
// stands beside the services, not above them.
package dashboard
