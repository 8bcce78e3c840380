// Package chaintest holds the end-to-end tests of the chain: the three services started
// in-process against an embedded nats-server and an embedded FerretDB, driven over HTTP and NATS.
package chaintest
