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
