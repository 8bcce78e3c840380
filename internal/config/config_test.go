package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// A prefixed variable applies to its service only and wins over the unprefixed one.
func TestPrefixedWins(t *testing.T) {
	e := env{"BREAKER_TIMEOUT": "200ms", "PAYMENT_BREAKER_TIMEOUT": "50ms", "INJECT_ERR": "1", "SHIPMENT_INJECT_ERR": "0"}
	pay, err := Load("payment", "", 3001, e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	ship, err := Load("shipment", "", 3002, e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if pay.Breaker.Timeout != 50*time.Millisecond || ship.Breaker.Timeout != 200*time.Millisecond {
		t.Errorf("timeouts %s/%s, want 50ms (prefixed) and 200ms", pay.Breaker.Timeout, ship.Breaker.Timeout)
	}
	if !pay.InjectErr || ship.InjectErr {
		t.Errorf("inject_err %v/%v, want on for payment, off for shipment", pay.InjectErr, ship.InjectErr)
	}
	if pay.Port != 3001 || pay.ID != "payment" || pay.Jumps != DefaultJumps || pay.InjectErrRate != DefaultInjectErrRate {
		t.Errorf("defaults: %+v", pay)
	}
}

// A duration without a unit is refused, with a message that shows one; "0" alone needs none.
func TestDurationNeedsAUnit(t *testing.T) {
	_, err := Load("order", "", 3000, env{"BREAKER_TIMEOUT": "5", "PAYMENT_BREAKER_DELAY": "2.5"}.lookup)
	want := `BREAKER_TIMEOUT="5": want a duration with a unit from 1ms to 1h0m0s, like 300ms (a bare number has none)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("BREAKER_TIMEOUT=5: %v, want %q", err, want)
	}
	_, err = Load("payment", "", 3000, env{"PAYMENT_BREAKER_DELAY": "2.5"}.lookup)
	if err == nil || !strings.Contains(err.Error(), `PAYMENT_BREAKER_DELAY="2.5": want a duration with a unit`) {
		t.Errorf("PAYMENT_BREAKER_DELAY=2.5: %v", err)
	}
	c, err := Load("order", "", 3000, env{"INJECT_LATENCY": "0", "BREAKER_TIMEOUT": "1.5s"}.lookup)
	if err != nil || c.InjectLatency != 0 || c.Breaker.Timeout != 1500*time.Millisecond {
		t.Errorf("INJECT_LATENCY=0, BREAKER_TIMEOUT=1.5s: %v, %s, %s", err, c.InjectLatency, c.Breaker.Timeout)
	}
}

// Every bad value is reported, once, in one line.
func TestBadValues(t *testing.T) {
	e := env{"JUMPS": "0", "BREAKER_WINDOW": "soon", "ORDER_PORT": "http", "NATS_URL": "nats://ok:4222,bogus"}
	_, err1 := Load("order", "", 3000, e.lookup)
	_, err2 := Load("payment", "", 3001, e.lookup)
	msg := Merge(err1, err2).Error()
	for _, want := range []string{`JUMPS="0"`, `BREAKER_WINDOW="soon"`, `ORDER_PORT="http"`, `NATS_URL="nats://ok:4222,bogus"`} {
		if strings.Count(msg, want) != 1 {
			t.Errorf("%q should name %s once", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("not one line: %q", msg)
	}
}

// A bad value's message says what the variable accepts, and everything it names is accepted:
// INJECT_ERR=maybe names every spelling of on and off, ORDER_URL one URL, NATS_URL several.
func TestBadValueSaysWhatIsAccepted(t *testing.T) {
	rows := []struct {
		name     string
		read     func(*Source)
		bad      string
		words    []string // in the message
		accepted []string // values it names, each read without a problem
	}{
		{"INJECT_ERR", func(s *Source) { s.Bool("INJECT_ERR", false) }, "maybe",
			[]string{"1, true, yes or on", "0, false, no or off"}, []string{"1", "true", "yes", "on", "0", "false", "no", "off", "ON", " Yes "}},
		{"JUMPS", func(s *Source) { s.Int("JUMPS", 6, 1, 1000) }, "many", []string{"integer", "1", "1000"}, []string{"1", "1000"}},
		{"INJECT_ERR_RATE", func(s *Source) { s.Float("INJECT_ERR_RATE", 0.4, 0, 1) }, "half", []string{"number", "0", "1"}, []string{"0", "1", "0.5"}},
		{"BREAKER_DELAY", func(s *Source) { s.Duration("BREAKER_DELAY", time.Second, time.Millisecond, time.Hour) }, "10",
			[]string{"unit", "1ms", "1h0m0s", "300ms"}, []string{"1ms", "1h0m0s", "300ms"}},
		{"BREAKER_DELAY", func(s *Source) { s.Duration("BREAKER_DELAY", time.Second, time.Millisecond, time.Hour) }, "2h",
			[]string{"1ms", "1h0m0s", "300ms"}, []string{"1h"}},
		{"LOG_LEVEL", func(s *Source) { s.OneOf("LOG_LEVEL", "info", "debug", "info") }, "loud", []string{"debug", "info"}, []string{"debug", "INFO"}},
		{"ORDER_URL", func(s *Source) { s.URL("ORDER_URL", "", "http", "https") }, "http://a:1,http://b:2",
			[]string{"http://host:port", "http or https)"}, []string{"http://a:1", "https://a"}},
		{"NATS_URL", func(s *Source) { s.Servers("NATS_URL", "", "nats", "tls", "ws", "wss") }, "127.0.0.1:4222",
			[]string{"nats://host:port", "nats, tls, ws or wss", "several separated by commas"},
			[]string{"nats://a:4222", "tls://a:4222,tls://b:4222", "ws://a", "wss://a"}},
		{"MONGO_URL", func(s *Source) { s.MongoURL("MONGO_URL") }, "db:27017",
			[]string{"mongodb://host:port", "replicaSet"}, []string{"mongodb://db:27017", "mongodb://h1:1,h2:2/?replicaSet=rs0"}},
		{"CORS_ORIGINS", func(s *Source) { s.Origins("CORS_ORIGINS") }, "shop.example.com",
			[]string{`"*"`, "https://shop.example.com", "http://localhost:8080"}, []string{"*", "https://shop.example.com,http://localhost:8080"}},
	}
	for _, row := range rows {
		t.Run(row.name+"="+row.bad, func(t *testing.T) {
			s := NewSource("", env{row.name: row.bad}.lookup)
			row.read(s)
			err := s.Err()
			if err == nil {
				t.Fatalf("%s=%q accepted", row.name, row.bad)
			}
			for _, w := range row.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: does not say %q", err, w)
				}
			}
			for _, v := range row.accepted {
				s := NewSource("", env{row.name: v}.lookup)
				if row.read(s); s.Err() != nil {
					t.Errorf("%s=%q, which the message names, is refused: %v", row.name, v, s.Err())
				}
			}
		})
	}
}

func TestMaskHidesPasswords(t *testing.T) {
	got := Mask("mongodb://app:s3cret@db:27017/x,nats://u:p@n:4222")
	if strings.Contains(got, "s3cret") || strings.Contains(got, ":p@") || !strings.Contains(got, "app:xxxxx@db") {
		t.Errorf("Mask = %q", got)
	}
}

// Text that does not parse as a URL is masked too, and a user without a password (a NATS token)
// is hidden whole; text without user information is left alone.
func TestMaskWhatDoesNotParse(t *testing.T) {
	for in, want := range map[string]string{
		"mongodb://app:s3cret@db:notaport/x":          "mongodb://app:xxxxx@db:notaport/x",
		"mongodb://app:p@ss@db:27017":                 "mongodb://app:xxxxx@db:27017",
		"nats://s3cret-token@nats:4222":               "nats://xxxxx@nats:4222",
		"app:s3cret@db:27017":                         "app:xxxxx@db:27017",
		"nats://a:1@n1:4222, nats://b:s3cret@n2:4222": "nats://a:xxxxx@n1:4222, nats://b:xxxxx@n2:4222",
		"localhost:27017":                             "localhost:27017",
		"nats://nats:4222":                            "nats://nats:4222",
	} {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

// An error that quotes a URL or a secret is shown without them, and still matches what it wraps.
func TestRedact(t *testing.T) {
	inner := errors.New(`parse "nats://u:s3cret@host:bad": invalid port; password hunter2 refused`)
	err := Redact(fmt.Errorf("nats: %w", inner), "hunter2")
	if msg := err.Error(); strings.Contains(msg, "s3cret") || strings.Contains(msg, "hunter2") || !strings.Contains(msg, "nats://u:xxxxx@host") {
		t.Errorf("Redact = %q", msg)
	}
	if !errors.Is(err, inner) {
		t.Error("the redacted error no longer wraps the original")
	}
	if Redact(nil, "x") != nil {
		t.Error("Redact(nil) is not nil")
	}
}

// NATS_USER and NATS_PASSWORD go together, or NATS_CREDS alone, and so do their NATS_QUEUE_
// counterparts (the queue's own connection); files must be readable and be what they claim; a
// bad value names its variable and never shows a password.
func TestNATSAuth(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := write("garbage", "not a certificate\n")
	rows := []struct {
		name      string
		env       env
		want      NATSAuth
		wantQueue NATSAuth
		wantErr   string
	}{
		{name: "none", env: env{}},
		{name: "a queue of its own", env: env{"NATS_USER": "order", "NATS_PASSWORD": "pw-1", "NATS_QUEUE_USER": "order-queue", "NATS_QUEUE_PASSWORD": "pw-1"},
			want: NATSAuth{User: "order", Password: "pw-1"}, wantQueue: NATSAuth{User: "order-queue", Password: "pw-1"}},
		{name: "queue user alone", env: env{"NATS_USER": "order", "NATS_PASSWORD": "pw-1", "ORDER_NATS_QUEUE_USER": "order-queue"},
			wantErr: `ORDER_NATS_QUEUE_USER="order-queue": want ORDER_NATS_QUEUE_PASSWORD or NATS_QUEUE_PASSWORD set with it`},
		{name: "queue password alone", env: env{"NATS_QUEUE_PASSWORD": "pw-1"},
			wantErr: `ORDER_NATS_QUEUE_PASSWORD or NATS_QUEUE_PASSWORD is set: want ORDER_NATS_QUEUE_USER or NATS_QUEUE_USER with it`},
		{name: "missing queue creds", env: env{"NATS_QUEUE_CREDS": filepath.Join(dir, "none.creds")},
			wantErr: `NATS_QUEUE_CREDS="` + filepath.Join(dir, "none.creds") + `": want a readable NATS credentials file (a user JWT and its NKey seed) (no such file or directory)`},
		{name: "user and password", env: env{"NATS_USER": "order", "NATS_PASSWORD": "pw-1"},
			want: NATSAuth{User: "order", Password: "pw-1"}},
		{name: "prefixed wins", env: env{"NATS_USER": "x", "NATS_PASSWORD": "pw-x", "ORDER_NATS_USER": "order", "ORDER_NATS_PASSWORD": "pw-1"},
			want: NATSAuth{User: "order", Password: "pw-1"}},
		{name: "user alone", env: env{"ORDER_NATS_USER": "order"},
			wantErr: `ORDER_NATS_USER="order": want ORDER_NATS_PASSWORD or NATS_PASSWORD set with it`},
		{name: "password alone", env: env{"NATS_PASSWORD": "pw-1"},
			wantErr: `ORDER_NATS_PASSWORD or NATS_PASSWORD is set: want ORDER_NATS_USER or NATS_USER with it`},
		{name: "missing creds", env: env{"NATS_CREDS": filepath.Join(dir, "none.creds")},
			wantErr: `NATS_CREDS="` + filepath.Join(dir, "none.creds") + `": want a readable NATS credentials file (a user JWT and its NKey seed) (no such file or directory)`},
		{name: "creds not creds", env: env{"NATS_CREDS": garbage}, wantErr: `NATS_CREDS="` + garbage + `": want a readable NATS credentials file`},
		{name: "missing CA", env: env{"NATS_CA": filepath.Join(dir, "none.pem")},
			wantErr: `NATS_CA="` + filepath.Join(dir, "none.pem") + `": want a readable PEM file of CA certificates (no such file or directory)`},
		{name: "CA not PEM", env: env{"NATS_CA": garbage}, wantErr: `NATS_CA="` + garbage + `": want a readable PEM file of CA certificates (no PEM certificate in it)`},
		{name: "unreadable CA", env: env{"NATS_CA": dir}, wantErr: `NATS_CA="` + dir + `": want a readable PEM file`},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			c, err := Load("order", "", 3000, row.env.lookup)
			if row.wantErr == "" {
				if err != nil || c.NATS != row.want || c.NATSQueue != row.wantQueue {
					t.Errorf("got %+v and queue %+v, %v; want %+v and %+v", c.NATS, c.NATSQueue, err, row.want, row.wantQueue)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), row.wantErr) {
				t.Fatalf("err %v, want %q", err, row.wantErr)
			}
			if strings.Contains(err.Error(), "pw-1") {
				t.Errorf("the password is shown: %v", err)
			}
		})
	}
}

// CORS_ORIGINS is "*" alone or a list of origins; anything else is refused, naming the variable.
func TestCORSOrigins(t *testing.T) {
	for v, want := range map[string][]string{
		"*":                        {"*"},
		"https://shop.example.com": {"https://shop.example.com"},
		"http://localhost:8080, https://*.example.com": {"http://localhost:8080", "https://*.example.com"},
	} {
		c, err := Load("order", "", 3000, env{"CORS_ORIGINS": v}.lookup)
		if err != nil || !slices.Equal(c.CORSOrigins, want) {
			t.Errorf("CORS_ORIGINS=%q: %q, %v; want %q", v, c.CORSOrigins, err, want)
		}
	}
	for _, v := range []string{"shop.example.com", "https://shop.example.com/", "https://a.com/path", "ftp://a.com",
		"*,https://a.com", "https://a.com?", "https://u@a.com", "https://*.*.a.com", "https://a.com,,https://b.com", "null"} {
		_, err := Load("order", "", 3000, env{"ORDER_CORS_ORIGINS": v}.lookup)
		if err == nil || !strings.Contains(err.Error(), `ORDER_CORS_ORIGINS="`+v+`": want "*" or comma-separated origins`) {
			t.Errorf("ORDER_CORS_ORIGINS=%q: %v, want it refused by name", v, err)
		}
	}
}

// The configuration line logged at start shows who the service is on NATS, never a password.
func TestLogValueHidesSecrets(t *testing.T) {
	c, err := Load("order", "", 3000, env{
		"MONGO_URL": "mongodb://app:mongo-pw@db:27017/x", "NATS_URL": "nats://tok-pw@n:4222",
		"NATS_USER": "order", "NATS_PASSWORD": "nats-pw", "NATS_QUEUE_USER": "order-queue", "NATS_QUEUE_PASSWORD": "queue-pw",
	}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("starting", "config", c)
	line := b.String()
	for _, secret := range []string{"mongo-pw", "tok-pw", "nats-pw", "queue-pw"} {
		if strings.Contains(line, secret) {
			t.Errorf("%q shows %s", line, secret)
		}
	}
	if !strings.Contains(line, "config.nats_auth.user=order ") || !strings.Contains(line, "config.nats_queue_auth.user=order-queue") ||
		!strings.Contains(line, "mongodb://app:xxxxx@db") {
		t.Errorf("%q: want the NATS users and the masked store URL", line)
	}
	if got := c.Secrets(); !slices.Contains(got, "mongo-pw") || !slices.Contains(got, "tok-pw") || !slices.Contains(got, "nats-pw") || !slices.Contains(got, "queue-pw") {
		t.Errorf("Secrets() = %q, want every secret", got)
	}
}

// Retries, the bulkhead, chaos and the re-driver have the documented defaults, and prefixed
// values apply to one service.
func TestResilienceDefaults(t *testing.T) {
	e := env{"ORDER_RETRY_MAX": "0", "SHIPMENT_CHAOS": "1", "REDRIVE_RATE": "50"}
	o, err := Load("order", "", 3000, e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load("shipment", "", 3002, e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if o.Breaker.Retries != 0 || s.Breaker.Retries != 2 || s.Breaker.Backoff != 50*time.Millisecond || s.Breaker.Bulkhead != 64 {
		t.Errorf("retries %d/%d backoff %s bulkhead %d, want 0 for order, 2, 50ms and 64 by default",
			o.Breaker.Retries, s.Breaker.Retries, s.Breaker.Backoff, s.Breaker.Bulkhead)
	}
	if o.Chaos || !s.Chaos {
		t.Errorf("chaos %v/%v, want off for order, on for shipment", o.Chaos, s.Chaos)
	}
	if o.Redrive != (Redrive{Rate: 50, Backoff: time.Second, ReconcileEvery: 10 * time.Second}) {
		t.Errorf("redrive %+v, want rate 50 with the default backoff", o.Redrive)
	}
}

// The settings only the service that takes orders reads are in its start log (Settings.TakesOrders,
// set by order's Settle), decided by that flag, not by a service's name.
func TestOrderSettingsLogged(t *testing.T) {
	logged := func(name string, takesOrders bool) string {
		c, err := Load(name, "", 3000, env{}.lookup)
		if err != nil {
			t.Fatal(err)
		}
		c.TakesOrders = takesOrders
		var b strings.Builder
		slog.New(slog.NewTextHandler(&b, nil)).Info("starting", "config", c)
		return b.String()
	}
	if line := logged("front", true); !strings.Contains(line, "config.redrive=") || !strings.Contains(line, "config.admission=") {
		t.Errorf("the start log of a service that takes orders lacks its re-drive and admission: %q", line)
	}
	if line := logged("order", false); strings.Contains(line, "config.redrive=") {
		t.Errorf("a service that takes no orders logs re-drive settings it does not read: %q", line)
	}
}

// `breakerchain dashboard` beside a chain of n services listens by default on the port after
// theirs, and looks for the entry's API and NATS where the all-in-one puts them.
func TestDashboardDefaults(t *testing.T) {
	for n, want := range map[int]int{3: 3003, 4: 3004} {
		d, err := LoadDashboard(env{}.lookup, n)
		if err != nil {
			t.Fatal(err)
		}
		if d.Port != want || d.OrderURL != "http://127.0.0.1:3000" || d.Watch.NatsURL != "nats://127.0.0.1:4222" {
			t.Errorf("%d services: port %d, order %s, NATS %s; want %d, http://127.0.0.1:3000, nats://127.0.0.1:4222",
				n, d.Port, d.OrderURL, d.Watch.NatsURL, want)
		}
	}
}
