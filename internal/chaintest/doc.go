// Package chaintest holds the end-to-end tests of the chain: the services started in-process
// against an embedded nats-server and an embedded FerretDB, driven over HTTP and NATS, checked
// by what clients are answered, what the store holds and what crosses the bus. It must not reach
// into a service's internals: what a test needs to see, a user could see too.
package chaintest
