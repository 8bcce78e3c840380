package order

import (
	"bytes"
	"errors"
	"testing"

	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/service"
)

// FuzzDecode: whatever the body, decoding and validating an order never panics and ends in one
// of two ways. Either a 400/422 that says what is wrong (a 422 names its field), or a valid order
// whose canonical form survives a round trip unchanged, so its fingerprint, the idempotency key,
// is stable.
// The corpus in testdata/fuzz/FuzzDecode runs with every `go test`; `go test -fuzz=FuzzDecode
// ./order` explores further.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		seed,
		`{"id":"1","date":"2023-01-18T20:23:47Z","items":[{"sku":"a","n":2},[1,[2]],"x",null,true],"payment":{"amount":12.5,"id":"p","shipment":{"id":"s","directions":"home"}}}`,
		`{"ID":"1","Items":[],"PAYMENT":{"Amount":0,"ID":"1","Shipment":{"ID":"1","Directions":"home"}}}`,
		`{"id":"1","items":[],"payment":{"amount":-0,"id":"1","shipment":{"id":"1","directions":"\u00e9t\u00e9 \ud83d\ude9a"}}}`,
		`{"id":"1","id":"2","items":[],"payment":{"amount":1e308,"id":"1","shipment":{"id":"1","directions":"d"}}}`,
		`{"id":"1","items":[{"$gt":1}],"payment":{}}`, `{"id":`, `[]`, `null`, `""`, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := service.Split(downstream, body, Decode)
		if err != nil {
			var se *problem.Error
			switch {
			case !errors.As(err, &se):
				t.Fatalf("error %v (%T) is not a *problem.Error", err, err)
			case se.Code != 400 && se.Code != 422:
				t.Fatalf("code %d for %q: want 400 or 422", se.Code, body)
			case se.Description == "":
				t.Fatalf("no description for %q", body)
			case se.Code == 422 && se.Field == "":
				t.Fatalf("422 without a field: %v", se)
			}
			return
		}
		again := o.Canonical
		o2, err := service.Split(downstream, again, Decode)
		if err != nil {
			t.Fatalf("a valid order %s fails its own round trip: %v", again, err)
		}
		if !bytes.Equal(o2.Canonical, again) {
			t.Fatalf("canonical form changed in a round trip: %s, then %s", again, o2.Canonical)
		}
	})
}
