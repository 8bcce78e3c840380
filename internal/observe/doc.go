// Package observe is what a service shows of itself on the bus, as a contract its producers and
// its readers share: the circuit snapshot (Breakers: a process's outgoing circuits, its limits on
// the work it takes and its faults, as GET /breakers, circuits.<service> and `nats micro stats`
// carry it) and the reading of order's queue of pending orders in JetStream (Pending, and the
// names of the streams it reads). Services produce them (internal/service, order); the dashboard
// and the tests read them, and so need import no service.
//
// It must not know how a service works: it holds shapes and names, and the one reading of a
// stream every reader does the same way. Like nats.go micro's Info and Stats, kept in the
// package both sides use, not in the producer's.
package observe
