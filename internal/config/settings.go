// Package config reads a service's settings from the environment, with the seed's variable
// names. In the all-in-one a variable prefixed with the service's name (SHIPMENT_INJECT_ERR)
// applies to that service only and wins over the unprefixed one, which applies to all.
// A bad value is an error naming the variable and what it accepts; nothing panics.
// It must not know what a service does with its settings: only their names, types, bounds and
// defaults (Settings and Load have every default of a service in one place; local.go the local
// addresses and ports the all-in-one, a service run alone and the dashboard share).
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nkeys"

	"github.com/breakerchain/breakerchain/messaging"
)

// Settings is the configuration of one service.
type Settings struct {
	Name          string // the role: order, payment or shipment
	ID            string // name in messages and logs
	Host          string // HTTP listen address; "" is every interface
	Port          int    // HTTP port; 0 picks a free one
	Jumps         int
	InjectErr     bool
	InjectErrRate float64
	InjectLatency time.Duration
	MongoURL      string
	MongoDB       string
	NatsURL       string
	NATS          NATSAuth
	// NATSQueue is the identity of a second connection for the service's JetStream state
	// (order's queue), in an account of its own (NATS_QUEUE_USER…); unset, NATS serves both.
	NATSQueue     NATSAuth
	Breaker       messaging.BreakerSettings
	MaxConcurrent uint
	PProf         bool     // PPROF=1: serve /debug/pprof on the HTTP port
	CORSOrigins   []string // origins a browser may call from; none: same origin only
	Chaos         bool     // CHAOS: faults may be changed at runtime (PUT /chaos, chaos.<service> on NATS)
	Redrive       Redrive
	// TakesOrders is set by the service that takes clients' orders (order's Settle, wherever it
	// starts): the settings only it reads (admission, backlog, re-drive, queue replicas) are then
	// in its start log, and in no other service's.
	TakesOrders bool
	// JetStreamReplicas is how many copies of order's queue stream JetStream keeps
	// (JETSTREAM_REPLICAS): 1 on a single server, 3 on a three-node cluster.
	JetStreamReplicas int
	// BacklogMax (BACKLOG_MAX, order only) is how many orders may wait to complete before new
	// ones are refused (503) rather than taken and deferred; 0 = no bound.
	BacklogMax int
	// Admission (order only) is the adaptive limit on the orders the chain takes at once.
	Admission Admission
	// Tracing is where the service's traces go (OTEL_*), if anywhere.
	Tracing Tracing
}

// Admission is the adaptive concurrency limit at order's entry (see order's admission).
type Admission struct {
	// Max (ADMIT_MAX) is the most orders in flight the limit may grow to, re-drives included; at
	// most BULKHEAD_MAX, so the hop's own bulkhead never turns away the chain's own load; 0 = no
	// adaptive limit (only the bulkhead).
	Max int
	// MaxWait (ADMIT_MAX_WAIT) is how long an order may wait for room before it is refused; 0 =
	// refused at once when the limit is reached.
	MaxWait time.Duration
}

// DefaultAdmitMaxWait is about one chain's latency at its peak here (p50 at 64 clients): an order
// that waits longer would be answered later than refusing it and being retried.
const DefaultAdmitMaxWait = 100 * time.Millisecond

// NATSAuth is how a service proves who it is to NATS, and which CA it trusts for tls://.
type NATSAuth struct {
	User     string
	Password string // never logged: see NATSAuth.LogValue
	Creds    string // path of a credentials file (JWT and NKey seed), instead of User/Password
	CA       string // path of a PEM file of CA certificates
}

// Redrive is how order re-drives its pending orders in the background (order only).
type Redrive struct {
	// Rate (REDRIVE_RATE) is the most orders each order instance re-drives a second: a ceiling,
	// the pace is what the admission limit leaves room for; 0 = off.
	Rate    int
	Backoff time.Duration // REDRIVE_BACKOFF: the wait before the first re-drive; doubles per failed attempt, up to MaxRedriveBackoff
	// After (REDRIVE_AFTER) is when a new order is re-driven if its own request never records
	// an outcome (its process died); 0 = derived from the breaker settings by order, which fills
	// it in before the start log (Service.Settle).
	After time.Duration
	// AckWait (REDRIVE_ACK_WAIT) is how long a re-drive may hold a due order before JetStream
	// gives it to another instance; 0 = derived by order: the longest one run can take (filled
	// in as After is).
	AckWait time.Duration
	// ReconcileEvery (RECONCILE_EVERY) is how often an instance that re-drives also looks in the
	// store for orders not final whose timer is gone (see order's reconciler); 0 = never.
	ReconcileEvery time.Duration
}

// MaxRedriveBackoff caps the wait between re-drives of one order (or is REDRIVE_BACKOFF when larger).
const MaxRedriveBackoff = time.Minute

// Defaults of the seed and of this design.
const (
	DefaultJumps         = 6
	DefaultInjectErrRate = 0.4
	DefaultMongoDB       = "breakerchain"
)

// DefaultBacklogMax is the orders that may wait to complete, all order instances together: a
// few minutes of the chain's throughput on two cores (650 orders/s) — what an outage of a few
// minutes leaves — and small beside what one JetStream stream holds.
const DefaultBacklogMax = 100_000

// DefaultRedrive: at most a thousand orders a second per order instance (above what the chain
// completes on two cores, so the chain's capacity sets the pace), the first re-drive a second
// after the order was saved pending.
// The reconciler sweeps every ten seconds.
var DefaultRedrive = Redrive{Rate: 1000, Backoff: time.Second, ReconcileEvery: 10 * time.Second}

// Load reads the configuration of the service name; host and port are its defaults for HOST and
// PORT (the all-in-one listens on 127.0.0.1, a container on every interface).
func Load(name, host string, port int, lookup Lookup) (Settings, error) {
	s := NewSource(name, lookup)
	d := messaging.DefaultBreakerSettings
	c := Settings{
		Name:          name,
		ID:            s.Checked("ID", name, "a name of 1 to 64 letters, digits, '-', '_' or '.'", validID),
		Host:          s.Checked("HOST", host, "an IP address or a host name to listen on", validHost),
		Port:          s.Int("PORT", port, 0, 65535),
		Jumps:         s.Int("JUMPS", DefaultJumps, 1, 1000),
		InjectErr:     s.Bool("INJECT_ERR", false),
		InjectErrRate: s.Float("INJECT_ERR_RATE", DefaultInjectErrRate, 0, 1),
		InjectLatency: s.Duration("INJECT_LATENCY", 0, 0, time.Hour),
		MongoURL:      s.MongoURL("MONGO_URL"),
		MongoDB:       s.Checked("MONGO_DB", DefaultMongoDB, "a database name of 1 to 63 letters, digits, '-' or '_'", validDatabase),
		NatsURL:       s.Servers("NATS_URL", "", "nats", "tls", "ws", "wss"),
		NATS:          s.natsAuth("NATS_"),
		NATSQueue:     s.natsAuth("NATS_QUEUE_"),
		PProf:         s.Bool("PPROF", false),
		Breaker: messaging.BreakerSettings{
			Timeout:     s.Duration("BREAKER_TIMEOUT", d.Timeout, time.Millisecond, time.Hour),
			FailureRate: uint(s.Int("BREAKER_FAILURE_RATE", int(d.FailureRate), 1, 100)),
			MinCalls:    uint(s.Int("BREAKER_MIN_CALLS", int(d.MinCalls), 1, 1_000_000)),
			Window:      s.Duration("BREAKER_WINDOW", d.Window, 10*time.Millisecond, 24*time.Hour),
			Delay:       s.Duration("BREAKER_DELAY", d.Delay, time.Millisecond, 24*time.Hour),
			Retries:     s.Int("RETRY_MAX", d.Retries, 0, 10),
			Backoff:     s.Duration("RETRY_BACKOFF", d.Backoff, time.Millisecond, time.Minute),
			Bulkhead:    uint(s.Int("BULKHEAD_MAX", int(d.Bulkhead), 1, 100_000)),
			RetryBudget: s.Float("RETRY_BUDGET", d.RetryBudget, 0, 1),
		},
		MaxConcurrent: uint(s.Int("MAX_CONCURRENT", messaging.DefaultMaxConcurrent, 1, 100_000)),
		CORSOrigins:   s.Origins("CORS_ORIGINS"),
		Chaos:         s.Bool("CHAOS", false),
		Redrive: Redrive{
			Rate:           s.Int("REDRIVE_RATE", DefaultRedrive.Rate, 0, 10_000),
			Backoff:        s.Duration("REDRIVE_BACKOFF", DefaultRedrive.Backoff, time.Millisecond, time.Hour),
			After:          s.Duration("REDRIVE_AFTER", 0, 0, time.Hour),
			AckWait:        s.Duration("REDRIVE_ACK_WAIT", 0, 0, time.Hour),
			ReconcileEvery: s.Duration("RECONCILE_EVERY", DefaultRedrive.ReconcileEvery, 0, time.Hour),
		},
		JetStreamReplicas: s.Int("JETSTREAM_REPLICAS", 1, 1, 5),
		BacklogMax:        s.Int("BACKLOG_MAX", DefaultBacklogMax, 0, 100_000_000),
		Tracing:           s.tracing(name),
	}
	c.Admission = Admission{
		Max:     s.Int("ADMIT_MAX", int(c.Breaker.Bulkhead), 0, int(c.Breaker.Bulkhead)),
		MaxWait: s.Duration("ADMIT_MAX_WAIT", DefaultAdmitMaxWait, 0, time.Minute),
	}
	return c, s.Err()
}

// validID: a service's name in messages and logs, one word a reader can take as a name.
func validID(v string) bool {
	if len(v) > 64 {
		return false
	}
	for _, r := range v {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("-_.", r) {
			return false
		}
	}
	return true
}

// validHost: an IP address, or a host name as DNS spells one (letters, digits, '-', dots between
// labels): the rest would fail only once every port was tried, as a lookup.
func validHost(v string) bool {
	if net.ParseIP(v) != nil { // an IPv6 one without brackets: they are added with the port
		return true
	}
	if len(v) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(v, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// validDatabase: a database name the embedded store takes (FerretDB's rule, stricter than
// MongoDB's, and portable to it).
func validDatabase(v string) bool { return databaseName.MatchString(v) }

var databaseName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

// natsAuth reads <v>USER and <v>PASSWORD, or <v>CREDS: v is "NATS_" (the service's identity,
// with NATS_CA, which both connections trust) or "NATS_QUEUE_" (its queue's).
func (s *Source) natsAuth(v string) NATSAuth {
	a := NATSAuth{
		User:     s.String(v+"USER", ""),
		Password: s.String(v+"PASSWORD", ""),
		Creds: s.File(v+"CREDS", "a readable NATS credentials file (a user JWT and its NKey seed)", func(b []byte) error {
			if _, err := nkeys.ParseDecoratedUserNKey(b); err != nil {
				return errors.New("no user NKey seed in it")
			}
			if jwt, _ := nkeys.ParseDecoratedJWT(b); !strings.HasPrefix(jwt, "ey") {
				return errors.New("no user JWT in it")
			}
			return nil
		}),
	}
	if v == "NATS_" {
		a.CA = s.File("NATS_CA", "a readable PEM file of CA certificates", func(b []byte) error {
			if !x509.NewCertPool().AppendCertsFromPEM(b) {
				return errors.New("no PEM certificate in it")
			}
			return nil
		})
	}
	_, userFrom, _ := s.get(v + "USER")
	_, credsFrom, _ := s.get(v + "CREDS")
	switch {
	case a.User != "" && a.Password == "":
		s.errs = append(s.errs, fmt.Sprintf("%s=%q: want %s set with it", userFrom, a.User, s.names(v+"PASSWORD")))
	case a.User == "" && a.Password != "":
		// The password itself is never shown.
		s.errs = append(s.errs, fmt.Sprintf("%s is set: want %s with it", s.names(v+"PASSWORD"), s.names(v+"USER")))
	}
	if a.User != "" && a.Creds != "" {
		s.errs = append(s.errs, fmt.Sprintf("%s=%q: want either it or %s, not both", credsFrom, a.Creds, userFrom))
	}
	return a
}

// Set tells whether an identity is given: a user or a credentials file.
func (a NATSAuth) Set() bool { return a.User != "" || a.Creds != "" }

// names is how to set name for this source: "ORDER_NATS_PASSWORD or NATS_PASSWORD".
func (s *Source) names(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + name + " or " + name
}

// Secrets lists every secret in the configuration, for redacting error texts.
func (c Settings) Secrets() []string {
	out := append(urlSecrets(c.MongoURL), urlSecrets(c.NatsURL)...)
	for _, pw := range []string{c.NATS.Password, c.NATSQueue.Password} {
		if pw != "" {
			out = append(out, pw)
		}
	}
	return out
}

// LogValue shows the NATS identity: the user, or the credentials file; never a password.
func (a NATSAuth) LogValue() slog.Value {
	var as []slog.Attr
	switch {
	case a.Creds != "":
		as = append(as, slog.String("creds", a.Creds))
	case a.User != "":
		as = append(as, slog.String("user", a.User), slog.String("password", masked))
	default:
		as = append(as, slog.String("user", "none"))
	}
	if a.CA != "" {
		as = append(as, slog.String("ca", a.CA))
	}
	return slog.GroupValue(as...)
}

// LogValue shows the configuration once at start, passwords masked.
func (c Settings) LogValue() slog.Value {
	b := c.Breaker
	attrs := []slog.Attr{
		slog.String("id", c.ID), slog.String("host", c.Host), slog.Int("port", c.Port), slog.Int("jumps", c.Jumps),
		slog.Bool("inject_err", c.InjectErr), slog.Float64("inject_err_rate", c.InjectErrRate),
		slog.Duration("inject_latency", c.InjectLatency),
		slog.String("mongo", Mask(c.MongoURL)), slog.String("mongo_db", c.MongoDB), slog.String("nats", Mask(c.NatsURL)),
		slog.Any("nats_auth", c.NATS),
		slog.String("breaker", fmt.Sprintf("timeout=%s rate=%d%% min_calls=%d window=%s delay=%s retries=%d backoff=%s retry_budget=%g bulkhead=%d",
			b.Timeout, b.FailureRate, b.MinCalls, b.Window, b.Delay, b.Retries, b.Backoff, b.RetryBudget, b.Bulkhead)),
		slog.Uint64("max_concurrent", uint64(c.MaxConcurrent)),
		slog.String("cors_origins", strings.Join(c.CORSOrigins, ",")), slog.Bool("pprof", c.PProf),
		slog.Bool("chaos", c.Chaos), slog.Any("tracing", c.Tracing),
	}
	if c.NATSQueue.Set() {
		attrs = append(attrs, slog.Any("nats_queue_auth", c.NATSQueue))
	}
	if c.TakesOrders {
		attrs = append(attrs, slog.String("redrive",
			fmt.Sprintf("rate=%d/s backoff=%s after=%s ack_wait=%s reconcile_every=%s", c.Redrive.Rate, c.Redrive.Backoff, c.Redrive.After, c.Redrive.AckWait, c.Redrive.ReconcileEvery)),
			slog.Int("jetstream_replicas", c.JetStreamReplicas), slog.Int("backlog_max", c.BacklogMax),
			slog.String("admission", fmt.Sprintf("max=%d max_wait=%s", c.Admission.Max, c.Admission.MaxWait)))
	}
	return slog.GroupValue(attrs...)
}
