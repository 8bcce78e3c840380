package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/wire"
)

// A request body nests the next service's body under that service's name, as the seed's does:
// order's body has a "payment", payment's a "shipment". Each service knows only its own fields;
// which field is whose is the chain's order (Chain), so a new service after shipment touches no
// existing service. The first service checks the whole body at once (Split), so bad input is
// refused before anything is saved anywhere.

// Body is a request body split at the next service.
type Body[T any] struct {
	Own  T               // this service's own part, decoded and valid
	Next json.RawMessage // the next service's body, checked and canonical; nil at the end of the chain
	// Canonical is the whole body in canonical form (own fields in struct order, the next
	// service's body last): what a record's fingerprint is of, whatever whitespace, key order or
	// key case the sender used.
	Canonical []byte
}

// Split decodes data for a service with decode (its own fields) and checks what it nests for
// every service after it (Hop.After). A bad field is a 422 naming its full path
// ("payment.shipment.directions").
func Split[T any](after Chain, data []byte, decode func([]byte) (T, error)) (Body[T], error) {
	var b Body[T]
	own, next, err := cut(data, after)
	if err != nil {
		return b, err
	}
	if b.Own, err = decode(own); err != nil {
		return b, err
	}
	if len(after) > 0 {
		if next == nil {
			return b, wire.Invalid(after[0].Name, "is required")
		}
		if b.Next, err = canonical(after, next); err != nil {
			return b, nested(after[0].Name, err)
		}
	}
	b.Canonical, err = join(b.Own, after, b.Next)
	return b, err
}

// cut takes the next service's body (the field named after after[0], in any case, given once)
// out of data; the service's own fields stay as they were, in their order, so its decoder sees
// them as encoding/json would (a repeated key: the last one wins).
func cut(data []byte, after Chain) (own, next []byte, err error) {
	if len(after) == 0 {
		return data, nil, nil
	}
	var fields map[string]json.RawMessage
	if err := wire.Decode(data, &fields); err != nil { // the body's own rules: one JSON object
		return nil, nil, err
	}
	if fields == nil {
		return []byte("null"), nil, nil // let the service's own decoder say what is missing
	}
	name := after[0].Name
	out := []byte{'{'}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // {
		return nil, nil, err
	}
	found := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := t.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, nil, err
		}
		if strings.EqualFold(key, name) {
			if found {
				return nil, nil, wire.Invalid(name, "is given more than once")
			}
			found = true
			if !bytes.Equal(value, []byte("null")) {
				next = value
			}
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		k, _ := json.Marshal(key)
		out = append(append(append(out, k...), ':'), value...)
	}
	return append(out, '}'), next, nil
}

// canonical checks data as the body of chain[0] and the services after it, and returns it in
// canonical form.
func canonical(chain Chain, data []byte) ([]byte, error) {
	own, next, err := cut(data, chain[1:])
	if err != nil {
		return nil, err
	}
	v, err := chain[0].Check(own)
	if err != nil {
		return nil, err
	}
	var nextCanon []byte
	if len(chain) > 1 {
		if next == nil {
			return nil, wire.Invalid(chain[1].Name, "is required")
		}
		if nextCanon, err = canonical(chain[1:], next); err != nil {
			return nil, nested(chain[1].Name, err)
		}
	}
	return join(v, chain[1:], nextCanon)
}

// join encodes own with the next service's body, if any, as its last field.
func join(own any, after Chain, next []byte) ([]byte, error) {
	b, err := json.Marshal(own)
	if err != nil || len(after) == 0 {
		return b, err
	}
	key, _ := json.Marshal(after[0].Name)
	out := append(b[:len(b)-1:len(b)-1], ',')
	if len(b) == 2 { // "{}"
		out = out[:1]
	}
	out = append(append(append(out, key...), ':'), next...)
	return append(out, '}'), nil
}

// Example is an example request body for c[0] whose ids are id: each service's own example fields
// (Service.Example), nested under the next one's name as Split reads them, in canonical form. So
// what the all-in-one's banner and the dashboard's order button send names every service's
// fields, however long the chain: each service says what it needs, and only the chain knows the
// nesting. For the product's chain and id "1" it is the seed's order.
func (c Chain) Example(id string) []byte {
	var next []byte
	for i := len(c) - 1; i >= 0; i-- {
		if c[i].Example == nil {
			panic("service " + c[i].Name + " has no Example") // a programming error: any test of the chain shows it
		}
		b, err := join(c[i].Example(id), c[i+1:], next)
		if err != nil {
			panic(fmt.Sprintf("service %s: its example does not encode: %v", c[i].Name, err))
		}
		next = b
	}
	return next
}

// nested puts an error about the body under field in front of its field's name.
func nested(field string, err error) error {
	pe, ok := err.(*problem.Error)
	switch {
	case !ok:
		return err
	case pe.Code == 400:
		return wire.Invalid(field, "must be a JSON object")
	case pe.Field != "":
		return &problem.Error{Code: pe.Code, Field: field + "." + pe.Field, Description: field + "." + pe.Description}
	}
	return pe
}

// Check makes a service's Check from its typed decoder.
func Check[T any](decode func([]byte) (T, error)) func([]byte) (any, error) {
	return func(b []byte) (any, error) { return decode(b) }
}
