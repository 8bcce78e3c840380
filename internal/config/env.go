package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
)

// Lookup finds an environment variable; os.LookupEnv is one.
type Lookup func(name string) (string, bool)

// FromEnviron is a Lookup over environ, "NAME=value" entries as os.Environ returns them (the
// first of a repeated name wins, as for os.LookupEnv), and the names set in it.
func FromEnviron(environ []string) (Lookup, []string) {
	vars := make(map[string]string, len(environ))
	var names []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if _, seen := vars[k]; !seen && k != "" {
			vars[k] = v
			names = append(names, k)
		}
	}
	return func(name string) (string, bool) { v, ok := vars[name]; return v, ok }, names
}

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

// Checked returns the value of name if valid says it is, or def; want says what is valid.
func (s *Source) Checked(name, def, want string, valid func(string) bool) string {
	v, from, ok := s.get(name)
	if !ok {
		return def
	}
	if !valid(v) {
		s.bad(from, v, want)
		return def
	}
	return v
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

// Duration returns the value of name, a Go duration with its unit ("300ms", "10s"; "0" alone
// needs none) in [lo, hi], or def. A bare number is refused: BREAKER_TIMEOUT=5 would otherwise
// silently mean 5 ns or 5 ms depending on who reads it.
func (s *Source) Duration(name string, def, lo, hi time.Duration) time.Duration {
	v, from, ok := s.get(name)
	if !ok {
		return def
	}
	t := strings.TrimSpace(v)
	d, err := time.ParseDuration(t)
	if _, numErr := strconv.ParseFloat(t, 64); err != nil && numErr == nil {
		s.bad(from, v, fmt.Sprintf("a duration with a unit from %s to %s, like %s (a bare number has none)", lo, hi, example(lo, hi)))
		return def
	}
	if err != nil || d < lo || d > hi {
		s.bad(from, v, fmt.Sprintf("a duration from %s to %s, like %s", lo, hi, example(lo, hi)))
		return def
	}
	return d
}

// example is a duration in [lo, hi] to show in an error: 300ms when it fits.
func example(lo, hi time.Duration) string {
	return min(max(300*time.Millisecond, lo), hi).String()
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
	s.bad(from, v, "1, true, yes or on; or 0, false, no or off")
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

// URL returns the value of name, one URL with one of schemes, or def.
func (s *Source) URL(name, def string, schemes ...string) string {
	return s.urls(name, def, false, schemes)
}

// Servers returns the value of name, one or several comma-separated URLs (a NATS cluster's
// servers) each with one of schemes, or def.
func (s *Source) Servers(name, def string, schemes ...string) string {
	return s.urls(name, def, true, schemes)
}

func (s *Source) urls(name, def string, several bool, schemes []string) string {
	v, from, ok := s.get(name)
	if !ok {
		return def
	}
	parts := strings.Split(v, ",")
	for _, part := range parts {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || u.Host == "" || !contains(schemes, u.Scheme) || (len(parts) > 1 && !several) {
			s.bad(from, Mask(v), urlWant(schemes, several))
			return def
		}
	}
	return v
}

// urlWant says what a URL variable takes: "a URL like nats://host:port (nats, tls, ws or wss;
// several separated by commas)".
func urlWant(schemes []string, several bool) string {
	list := schemes[0]
	if n := len(schemes); n > 1 {
		list = strings.Join(schemes[:n-1], ", ") + " or " + schemes[n-1]
	}
	if several {
		list += "; several separated by commas"
	}
	return "a URL like " + schemes[0] + "://host:port (" + list + ")"
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
// problem once: an unprefixed variable read by every service is one problem, not one per service.
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
