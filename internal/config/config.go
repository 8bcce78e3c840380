// Package config reads a service's settings from the environment, with the seed's variable
// names. In the all-in-one a variable prefixed with the service's name (SHIPMENT_INJECT_ERR)
// applies to that service only and wins over the unprefixed one, which applies to all.
// A bad value is an error naming the variable and what it accepts; nothing panics.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/breakerchain/breakerchain/messaging"
)

// Lookup finds an environment variable; os.LookupEnv is one.
type Lookup func(name string) (string, bool)

// Source reads variables for one service and collects what was wrong with them.
type Source struct {
	prefix string
	lookup Lookup
	errs   []string
}

// NewSource reads variables for service (prefix "SERVICE_"); service "" reads unprefixed only.
func NewSource(service string, lookup Lookup) *Source {
	p := ""
	if service != "" {
		p = strings.ToUpper(service) + "_"
	}
	return &Source{prefix: p, lookup: lookup}
}

// get returns the value of name (prefixed first) and the variable it came from.
func (s *Source) get(name string) (val, from string, ok bool) {
	if s.prefix != "" {
		if v, ok := s.lookup(s.prefix + name); ok && v != "" {
			return v, s.prefix + name, true
		}
	}
	if v, ok := s.lookup(name); ok && v != "" {
		return v, name, true
	}
	return "", name, false
}

func (s *Source) bad(from, val, want string) {
	s.errs = append(s.errs, fmt.Sprintf("%s=%q: want %s", from, val, want))
}

// String returns the value of name, or def.
func (s *Source) String(name, def string) string {
	if v, _, ok := s.get(name); ok {
		return v
	}
	return def
}

// Int returns the value of name, an integer in [lo, hi], or def.
func (s *Source) Int(name string, def, lo, hi int) int {
	v, from, ok := s.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		s.bad(from, v, fmt.Sprintf("an integer from %d to %d", lo, hi))
		return def
	}
	return n
}

// Float returns the value of name, a number in [lo, hi], or def.
func (s *Source) Float(name string, def, lo, hi float64) float64 {
	v, from, ok := s.get(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(f) || f < lo || f > hi {
		s.bad(from, v, fmt.Sprintf("a number from %g to %g", lo, hi))
		return def
	}
	return f
}

// Duration returns the value of name, a Go duration ("300ms", "10s") or a bare number of
// milliseconds as in the seed, in [lo, hi], or def.
func (s *Source) Duration(name string, def, lo, hi time.Duration) time.Duration {
	v, from, ok := s.get(name)
	if !ok {
		return def
	}
	t := strings.TrimSpace(v)
	d, err := time.ParseDuration(t)
	if err != nil {
		ms, err2 := strconv.ParseInt(t, 10, 64)
		d, err = time.Duration(ms)*time.Millisecond, err2
	}
	if err != nil || d < lo || d > hi {
		s.bad(from, v, fmt.Sprintf("a duration from %s to %s, like 300ms or 10s", lo, hi))
		return def
	}
	return d
}

// Bool returns the value of name: 1/true/yes/on or 0/false/no/off; def when unset.
func (s *Source) Bool(name string, def bool) bool {
	v, from, ok := s.get(name)
	if !ok {
		return def
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	s.bad(from, v, "1 or 0")
	return def
}

// OneOf returns the value of name, one of choices (case-insensitive), or def.
func (s *Source) OneOf(name, def string, choices ...string) string {
	v, from, ok := s.get(name)
	if !ok {
		return def
	}
	for _, c := range choices {
		if strings.EqualFold(strings.TrimSpace(v), c) {
			return c
		}
	}
	s.bad(from, v, "one of "+strings.Join(choices, ", "))
	return def
}

// URL returns the value of name, a URL with one of schemes, or def.
func (s *Source) URL(name, def string, schemes ...string) string {
	v, from, ok := s.get(name)
	if !ok {
		return def
	}
	// Several comma-separated servers are allowed (NATS): each must parse.
	for _, part := range strings.Split(v, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || u.Host == "" || !contains(schemes, u.Scheme) {
			s.bad(from, Mask(v), "a URL like "+schemes[0]+"://host:port")
			return def
		}
	}
	return v
}

// MongoURL reads a MongoDB connection string: one host or a replica set's list
// (mongodb://user:pw@h1:27017,h2:27017/db?replicaSet=rs0), or mongodb+srv://, as the driver
// parses it.
func (s *Source) MongoURL(name string) string {
	v, from, ok := s.get(name)
	if !ok {
		return ""
	}
	if _, err := connstring.ParseAndValidate(v); err != nil {
		s.bad(from, Mask(v), "a URL like mongodb://host:port, or mongodb://h1:port,h2:port/?replicaSet=rs0")
		return ""
	}
	return v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Err returns every bad value as one *Error; nil when all were good.
func (s *Source) Err() error {
	if len(s.errs) == 0 {
		return nil
	}
	return &Error{Problems: s.errs}
}

// Error lists bad values, one per variable.
type Error struct {
	Problems []string
}

// Error is the one clear line a user sees.
func (e *Error) Error() string { return "bad configuration: " + strings.Join(e.Problems, "; ") }

// Merge joins the problems of several errors (nil ones are skipped) into one *Error, each
// problem once: an unprefixed variable read by three services is one problem, not three.
func Merge(errs ...error) error {
	var out []string
	seen := map[string]bool{}
	for _, err := range errs {
		var ce *Error
		switch {
		case err == nil:
			continue
		case errors.As(err, &ce):
			for _, p := range ce.Problems {
				if !seen[p] {
					seen[p] = true
					out = append(out, p)
				}
			}
		default:
			out = append(out, err.Error())
		}
	}
	if len(out) == 0 {
		return nil
	}
	return &Error{Problems: out}
}

// Mask hides the password of every URL in v, for logs and errors: "nats://u:p@h" becomes
// "nats://u:xxxxx@h", and a user without a password (a NATS token) is hidden whole. It works on
// text that does not parse as a URL too, erring on the side of hiding more: everything between
// "://" and the last "@" of each comma-separated part is user information.
func Mask(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = maskUserinfo(p)
	}
	return strings.Join(parts, ",")
}

const masked = "xxxxx"

func maskUserinfo(p string) string {
	start := 0
	if i := strings.Index(p, "://"); i >= 0 {
		start = i + len("://")
	}
	at := strings.LastIndexByte(p, '@')
	if at < start {
		return p
	}
	userinfo := p[start:at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return p[:start] + user + ":" + masked + p[at:]
	}
	return p[:start] + masked + p[at:]
}

// urlSecrets returns the secrets in a URL list: each part's password, or its user when it
// has no password (a NATS token), as written and as decoded.
func urlSecrets(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		start := 0
		if i := strings.Index(p, "://"); i >= 0 {
			start = i + len("://")
		}
		at := strings.LastIndexByte(p, '@')
		if at < start {
			continue
		}
		userinfo := p[start:at]
		secret := userinfo
		if _, pw, ok := strings.Cut(userinfo, ":"); ok {
			secret = pw
		}
		if secret == "" {
			continue
		}
		out = append(out, secret)
		if dec, err := url.PathUnescape(secret); err == nil && dec != secret {
			out = append(out, dec)
		}
	}
	return out
}

// Redact returns err with every secret, and the password of any URL, hidden from its text.
// errors.Is and errors.As still see the original error.
func Redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := RedactText(err.Error(), secrets...)
	if msg == err.Error() {
		return err
	}
	return &redacted{err: err, msg: msg}
}

// RedactText hides every secret, and the password of any URL, in s.
func RedactText(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, masked)
		}
	}
	return urlInText.ReplaceAllStringFunc(s, maskUserinfo)
}

// urlInText finds URLs with user information in free text: a scheme, "://", then up to the
// last "@" before a blank or a quote (a password may hold an unescaped "@": hide too much
// rather than too little).
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"']*@`)

type redacted struct {
	err error
	msg string
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

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
	Breaker       messaging.BreakerSettings
	MaxConcurrent uint
	PProf         bool     // PPROF=1: serve /debug/pprof on the HTTP port
	CORSOrigins   []string // origins a browser may call from; none: same origin only
	Chaos         bool     // CHAOS: faults may be changed at runtime (PUT /chaos, chaos.<service> on NATS)
	Redrive       Redrive
	// JetStreamReplicas is how many copies of order's queue stream JetStream keeps
	// (JETSTREAM_REPLICAS): 1 on a single server, 3 on a three-node cluster.
	JetStreamReplicas int
}

// NATSAuth is how a service proves who it is to NATS, and which CA it trusts for tls://.
type NATSAuth struct {
	User     string
	Password string // never logged: see Service.LogValue
	Creds    string // path of a credentials file (JWT and NKey seed), instead of User/Password
	CA       string // path of a PEM file of CA certificates
}

// Redrive is how order re-drives its pending orders in the background (order only).
type Redrive struct {
	Rate    int           // REDRIVE_RATE: orders re-driven per second by each order instance; 0 = off
	Backoff time.Duration // REDRIVE_BACKOFF: the wait before the first re-drive; doubles per failed attempt, up to MaxRedriveBackoff
	// After (REDRIVE_AFTER) is when a new order is re-driven if its own request never records
	// an outcome (its process died); 0 = derived from the breaker settings (see order).
	After time.Duration
	// AckWait (REDRIVE_ACK_WAIT) is how long a re-drive may hold a due order before JetStream
	// gives it to another instance; 0 = derived: the longest one run can take (see order).
	AckWait time.Duration
}

// MaxRedriveBackoff caps the wait between re-drives of one order (or is REDRIVE_BACKOFF when larger).
const MaxRedriveBackoff = time.Minute

// Defaults of the seed and of this design.
const (
	DefaultPort          = 3000
	DefaultJumps         = 6
	DefaultInjectErrRate = 0.4
	DefaultMongoDB       = "breakerchain"
)

// DefaultRedrive: ten orders a second per order instance, the first re-drive a second after the
// order was saved pending.
var DefaultRedrive = Redrive{Rate: 10, Backoff: time.Second}

// Load reads the configuration of the service name; host and port are its defaults for HOST and
// PORT (the all-in-one listens on 127.0.0.1, a container on every interface).
func Load(name, host string, port int, lookup Lookup) (Settings, error) {
	s := NewSource(name, lookup)
	d := messaging.DefaultBreakerSettings
	c := Settings{
		Name:          name,
		ID:            s.String("ID", name),
		Host:          s.String("HOST", host),
		Port:          s.Int("PORT", port, 0, 65535),
		Jumps:         s.Int("JUMPS", DefaultJumps, 1, 1000),
		InjectErr:     s.Bool("INJECT_ERR", false),
		InjectErrRate: s.Float("INJECT_ERR_RATE", DefaultInjectErrRate, 0, 1),
		InjectLatency: s.Duration("INJECT_LATENCY", 0, 0, time.Hour),
		MongoURL:      s.MongoURL("MONGO_URL"),
		MongoDB:       s.String("MONGO_DB", DefaultMongoDB),
		NatsURL:       s.URL("NATS_URL", "", "nats", "tls", "ws", "wss"),
		NATS:          s.natsAuth(),
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
		},
		MaxConcurrent: uint(s.Int("MAX_CONCURRENT", messaging.DefaultMaxConcurrent, 1, 100_000)),
		CORSOrigins:   s.Origins("CORS_ORIGINS"),
		Chaos:         s.Bool("CHAOS", false),
		Redrive: Redrive{
			Rate:    s.Int("REDRIVE_RATE", DefaultRedrive.Rate, 0, 10_000),
			Backoff: s.Duration("REDRIVE_BACKOFF", DefaultRedrive.Backoff, time.Millisecond, time.Hour),
			After:   s.Duration("REDRIVE_AFTER", 0, 0, time.Hour),
			AckWait: s.Duration("REDRIVE_ACK_WAIT", 0, 0, time.Hour),
		},
		JetStreamReplicas: s.Int("JETSTREAM_REPLICAS", 1, 1, 5),
	}
	return c, s.Err()
}

// natsAuth reads NATS_USER and NATS_PASSWORD, or NATS_CREDS, and NATS_CA.
func (s *Source) natsAuth() NATSAuth {
	a := NATSAuth{
		User:     s.String("NATS_USER", ""),
		Password: s.String("NATS_PASSWORD", ""),
		Creds: s.File("NATS_CREDS", "a readable NATS credentials file (a user JWT and its NKey seed)", func(b []byte) error {
			if _, err := nkeys.ParseDecoratedUserNKey(b); err != nil {
				return errors.New("no user NKey seed in it")
			}
			if jwt, _ := nkeys.ParseDecoratedJWT(b); !strings.HasPrefix(jwt, "ey") {
				return errors.New("no user JWT in it")
			}
			return nil
		}),
		CA: s.File("NATS_CA", "a readable PEM file of CA certificates", func(b []byte) error {
			if !x509.NewCertPool().AppendCertsFromPEM(b) {
				return errors.New("no PEM certificate in it")
			}
			return nil
		}),
	}
	_, userFrom, _ := s.get("NATS_USER")
	_, credsFrom, _ := s.get("NATS_CREDS")
	switch {
	case a.User != "" && a.Password == "":
		s.errs = append(s.errs, fmt.Sprintf("%s=%q: want %s set with it", userFrom, a.User, s.names("NATS_PASSWORD")))
	case a.User == "" && a.Password != "":
		// The password itself is never shown.
		s.errs = append(s.errs, fmt.Sprintf("%s is set: want %s with it", s.names("NATS_PASSWORD"), s.names("NATS_USER")))
	}
	if a.User != "" && a.Creds != "" {
		s.errs = append(s.errs, fmt.Sprintf("%s=%q: want either it or %s, not both", credsFrom, a.Creds, userFrom))
	}
	return a
}

// names is how to set name for this source: "ORDER_NATS_PASSWORD or NATS_PASSWORD".
func (s *Source) names(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + name + " or " + name
}

// File returns the value of name, the path of a file that can be read and that check accepts,
// or "" when unset. The file's content is never shown.
func (s *Source) File(name, want string, check func([]byte) error) string {
	v, from, ok := s.get(name)
	if !ok {
		return ""
	}
	b, err := os.ReadFile(v)
	if err == nil {
		err = check(b)
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is shown once already
		}
		s.errs = append(s.errs, fmt.Sprintf("%s=%q: want %s (%v)", from, v, want, err))
		return ""
	}
	return v
}

// Origins returns the value of name, a comma-separated list of web origins
// (scheme://host[:port], at most one "*" in the host as in https://*.example.com) or "*" alone
// for any origin; nil when unset.
func (s *Source) Origins(name string) []string {
	v, from, ok := s.get(name)
	if !ok {
		return nil
	}
	var out []string
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if !validOrigin(o) || (o == "*" && strings.Contains(v, ",")) {
			s.bad(from, v, `"*" or comma-separated origins like https://shop.example.com or http://localhost:8080`)
			return nil
		}
		out = append(out, o)
	}
	return out
}

func validOrigin(o string) bool {
	if o == "*" {
		return true
	}
	if strings.Count(o, "*") > 1 {
		return false
	}
	u, err := url.Parse(strings.Replace(o, "*", "wildcard", 1))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && !strings.HasSuffix(o, "?") && !strings.HasSuffix(o, "#")
}

// Secrets lists every secret in the configuration, for redacting error texts.
func (c Settings) Secrets() []string {
	out := append(urlSecrets(c.MongoURL), urlSecrets(c.NatsURL)...)
	if c.NATS.Password != "" {
		out = append(out, c.NATS.Password)
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
		slog.String("breaker", fmt.Sprintf("timeout=%s rate=%d%% min_calls=%d window=%s delay=%s retries=%d backoff=%s bulkhead=%d",
			b.Timeout, b.FailureRate, b.MinCalls, b.Window, b.Delay, b.Retries, b.Backoff, b.Bulkhead)),
		slog.Uint64("max_concurrent", uint64(c.MaxConcurrent)),
		slog.String("cors_origins", strings.Join(c.CORSOrigins, ",")), slog.Bool("pprof", c.PProf),
		slog.Bool("chaos", c.Chaos),
	}
	if c.Name == "order" {
		attrs = append(attrs, slog.String("redrive",
			fmt.Sprintf("rate=%d/s backoff=%s after=%s ack_wait=%s", c.Redrive.Rate, c.Redrive.Backoff, c.Redrive.After, c.Redrive.AckWait)),
			slog.Int("jetstream_replicas", c.JetStreamReplicas))
	}
	return slog.GroupValue(attrs...)
}
