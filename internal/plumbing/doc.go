// Package plumbing is what every breakerchain process does with NATS and HTTP, whatever it runs
// — a service or the dashboard: connect to NATS as its settings say, reconnecting forever
// (ConnectNATS, and ConnectQueue for a service's JetStream state), drain a connection at the end
// (Drain), and serve HTTP in a goroutine of its own (Listen). It sits below internal/service and
// internal/dashboard so that the dashboard need not import what runs the services for it; it
// must not know what a process serves.
package plumbing
