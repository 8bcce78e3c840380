package testkit

import "strings"

// seedOrder is the seed's request (tests.http), with ID for its ids.
const seedOrder = `{"id":"ID","items":[],"payment":{"amount":0,"id":"ID","shipment":{"id":"ID","directions":"home"}}}`

// SeedOrder is the seed's order with id for the order's, the payment's and the shipment's ids:
// the tests' one copy of it, written as the seed wrote it (the product builds its own from the
// chain: service.Chain.Example).
func SeedOrder(id string) string { return strings.ReplaceAll(seedOrder, "ID", id) }
