package config

import (
	"strings"
	"testing"
	"time"
)

type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// A prefixed variable applies to its service only and wins over the unprefixed one.
func TestPrefixedWins(t *testing.T) {
	e := env{"BREAKER_TIMEOUT": "200ms", "PAYMENT_BREAKER_TIMEOUT": "50", "INJECT_ERR": "1", "SHIPMENT_INJECT_ERR": "0"}
	pay, err := Load("payment", "", 3001, e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	ship, err := Load("shipment", "", 3002, e.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if pay.Breaker.Timeout != 50*time.Millisecond || ship.Breaker.Timeout != 200*time.Millisecond {
		t.Errorf("timeouts %s/%s, want 50ms (prefixed, bare ms) and 200ms", pay.Breaker.Timeout, ship.Breaker.Timeout)
	}
	if !pay.InjectErr || ship.InjectErr {
		t.Errorf("inject_err %v/%v, want on for payment, off for shipment", pay.InjectErr, ship.InjectErr)
	}
	if pay.Port != 3001 || pay.ID != "payment" || pay.Jumps != DefaultJumps || pay.InjectErrRate != DefaultInjectErrRate {
		t.Errorf("defaults: %+v", pay)
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

func TestMaskHidesPasswords(t *testing.T) {
	got := Mask("mongodb://app:s3cret@db:27017/x,nats://u:p@n:4222")
	if strings.Contains(got, "s3cret") || strings.Contains(got, ":p@") || !strings.Contains(got, "app:xxxxx@db") {
		t.Errorf("Mask = %q", got)
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
	if o.Redrive != (Redrive{Rate: 50, Interval: time.Second, Backoff: time.Second}) {
		t.Errorf("redrive %+v, want rate 50 with the default interval and backoff", o.Redrive)
	}
}
