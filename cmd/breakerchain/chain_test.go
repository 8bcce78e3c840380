package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
)

// What the command says of the chain comes from its list: the usage names each service, and a
// service added to the list is named too.
func TestUsageNamesTheChain(t *testing.T) {
	if !strings.Contains(usage, "[order|payment|shipment|servers") || !strings.Contains(usage, "order → payment → shipment") {
		t.Errorf("usage does not name the chain:\n%s", usage)
	}
	four := append(service.Chain{}, services...)
	four = append(four, service.Service{Name: "inventory"})
	if u := usageOf(four); !strings.Contains(u, "|shipment|inventory|servers") || !strings.Contains(u, "shipment → inventory)") {
		t.Errorf("usage of a chain with inventory does not name it:\n%s", u)
	}
}

// The product's example body (the banner's curl, the dashboard's order button), built from each
// service's own example, is the seed's order.
func TestExampleIsTheSeedsOrder(t *testing.T) {
	var got, want any
	if err := json.Unmarshal(services.Example("1"), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(testkit.SeedOrder("1")), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the chain's example %s, want the seed's order %s", services.Example("1"), testkit.SeedOrder("1"))
	}
}
