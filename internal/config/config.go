// Package config reads a service's settings from the environment, with the seed's variable
// names. In the all-in-one a variable prefixed with the service's name (SHIPMENT_INJECT_ERR)
// applies to that service only and wins over the unprefixed one, which applies to all.
// A bad value is an error naming the variable and what it accepts; nothing panics.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

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

// Mask hides the password of every URL in v, for logs and errors.
func Mask(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
				parts[i] = u.String()
			}
		}
	}
	return strings.Join(parts, ",")
}

// Service is the configuration of one service.
type Service struct {
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
	Breaker       messaging.BreakerSettings
	MaxConcurrent uint
	Chaos         bool // CHAOS: faults may be changed at runtime (PUT /chaos, chaos.<service> on NATS)
	Redrive       Redrive
}

// Redrive is how order re-drives its pending orders in the background (order only).
type Redrive struct {
	Rate     int           // REDRIVE_RATE: orders re-driven per second by each order instance; 0 = off
	Interval time.Duration // REDRIVE_INTERVAL: how often it looks for orders that are due
	Backoff  time.Duration // REDRIVE_BACKOFF: the wait before the first re-drive; doubles per failed attempt, up to MaxRedriveBackoff
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

// DefaultRedrive: ten orders a second per order instance, looked for every second, the first
// re-drive a second after the order was saved pending.
var DefaultRedrive = Redrive{Rate: 10, Interval: time.Second, Backoff: time.Second}

// Load reads the configuration of the service name; host and port are its defaults for HOST and
// PORT (the all-in-one listens on 127.0.0.1, a container on every interface).
func Load(name, host string, port int, lookup Lookup) (Service, error) {
	s := NewSource(name, lookup)
	d := messaging.DefaultBreakerSettings
	c := Service{
		Name:          name,
		ID:            s.String("ID", name),
		Host:          s.String("HOST", host),
		Port:          s.Int("PORT", port, 0, 65535),
		Jumps:         s.Int("JUMPS", DefaultJumps, 1, 1000),
		InjectErr:     s.Bool("INJECT_ERR", false),
		InjectErrRate: s.Float("INJECT_ERR_RATE", DefaultInjectErrRate, 0, 1),
		InjectLatency: s.Duration("INJECT_LATENCY", 0, 0, time.Hour),
		MongoURL:      s.URL("MONGO_URL", "", "mongodb", "mongodb+srv"),
		MongoDB:       s.String("MONGO_DB", DefaultMongoDB),
		NatsURL:       s.URL("NATS_URL", "", "nats", "tls", "ws", "wss"),
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
		Chaos:         s.Bool("CHAOS", false),
		Redrive: Redrive{
			Rate:     s.Int("REDRIVE_RATE", DefaultRedrive.Rate, 0, 10_000),
			Interval: s.Duration("REDRIVE_INTERVAL", DefaultRedrive.Interval, 10*time.Millisecond, time.Hour),
			Backoff:  s.Duration("REDRIVE_BACKOFF", DefaultRedrive.Backoff, time.Millisecond, time.Hour),
		},
	}
	return c, s.Err()
}

// LogValue shows the configuration once at start, passwords masked.
func (c Service) LogValue() slog.Value {
	b := c.Breaker
	attrs := []slog.Attr{
		slog.String("id", c.ID), slog.String("host", c.Host), slog.Int("port", c.Port), slog.Int("jumps", c.Jumps),
		slog.Bool("inject_err", c.InjectErr), slog.Float64("inject_err_rate", c.InjectErrRate),
		slog.Duration("inject_latency", c.InjectLatency),
		slog.String("mongo", Mask(c.MongoURL)), slog.String("mongo_db", c.MongoDB), slog.String("nats", Mask(c.NatsURL)),
		slog.String("breaker", fmt.Sprintf("timeout=%s rate=%d%% min_calls=%d window=%s delay=%s retries=%d backoff=%s bulkhead=%d",
			b.Timeout, b.FailureRate, b.MinCalls, b.Window, b.Delay, b.Retries, b.Backoff, b.Bulkhead)),
		slog.Uint64("max_concurrent", uint64(c.MaxConcurrent)),
		slog.Bool("chaos", c.Chaos),
	}
	if c.Name == "order" {
		attrs = append(attrs, slog.String("redrive",
			fmt.Sprintf("rate=%d/s interval=%s backoff=%s", c.Redrive.Rate, c.Redrive.Interval, c.Redrive.Backoff)))
	}
	return slog.GroupValue(attrs...)
}
