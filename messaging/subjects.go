package messaging

// Every subject the services use to reach each other and their operators, in one place; the
// NATS permissions (deploy/nats.conf) grant exactly these. Order's own queue
// (orders.timer.<db>.<id>, orders.due.<db>.<id> in the stream ORDERS) is order's business:
// order/queue.go (the stream names its readers need are internal/observe's).

// Subject is the subject service serves requests on, in a queue group named after it.
func Subject(service string) string { return service + ".create" }

// VoidSubject is where service, in the same queue group, takes the void of what it saved for an
// order that a later hop refused for good (the saga's compensation; see service.Service.Undo).
func VoidSubject(service string) string { return service + ".void" }

// BreakerSubject is where the circuit from service to target publishes its events.
func BreakerSubject(service, target string) string { return "breaker." + service + "." + target }

// ChaosSubject is the subject every instance of service takes chaos changes on (CHAOS=1).
func ChaosSubject(service string) string { return "chaos." + service }

// ChaosChangedSubject is the subject an instance publishes each change of its faults on.
func ChaosChangedSubject(service string) string { return "chaos." + service + ".changed" }

// CircuitsSubject is where every instance of service answers with its circuits and faults, as
// GET /breakers shows them: it makes every service, order too, discoverable with its circuits in
// `nats micro stats` (and so on the dashboard).
func CircuitsSubject(service string) string { return "circuits." + service }

// InboxPrefix is where service's requests get their replies: a prefix of its own, so NATS
// permissions can let each service receive its own replies and nobody else's
// (deploy/nats.conf: order may subscribe to _INBOX.order.> only).
func InboxPrefix(service string) string { return "_INBOX." + service }
