package messaging_test

import (
	"encoding/json"
	"testing"

	"github.com/breakerchain/breakerchain/messaging"
)

// TestStateAndCallKindText pins the names /breakers, breaker events, the metrics' labels and the
// dashboard say (docs/breaker-cases.md, docs/dashboard.md): they travel as JSON text, both ways,
// and a name outside the set is refused rather than read as the zero value.
func TestStateAndCallKindText(t *testing.T) {
	states := map[messaging.State]string{messaging.StateClosed: `"closed"`, messaging.StateOpen: `"open"`, messaging.StateHalfOpen: `"half-open"`}
	kinds := map[messaging.CallKind]string{messaging.CallSuccess: `"success"`, messaging.CallFailure: `"failure"`,
		messaging.CallTimeout: `"timeout"`, messaging.CallRejected: `"rejected"`}
	if len(states) != len(messaging.States) || len(kinds) != len(messaging.CallKinds) {
		t.Fatalf("%d states and %d kinds named here, want %d and %d", len(states), len(kinds), len(messaging.States), len(messaging.CallKinds))
	}
	for s, want := range states {
		roundTrip(t, s, want)
	}
	for k, want := range kinds {
		roundTrip(t, k, want)
	}
	var s messaging.State
	if err := json.Unmarshal([]byte(`"half_open"`), &s); err == nil {
		t.Errorf(`"half_open" read as %v, want an error`, s)
	}
	var k messaging.CallKind
	if err := json.Unmarshal([]byte(`"reject"`), &k); err == nil {
		t.Errorf(`"reject" read as %v, want an error`, k)
	}
	if _, err := json.Marshal(messaging.State(7)); err == nil {
		t.Error("State(7) marshalled, want an error")
	}
	// As a map key too: the dashboard keys its counts by state and kind.
	if b, err := json.Marshal(map[messaging.State]int{messaging.StateHalfOpen: 1}); err != nil || string(b) != `{"half-open":1}` {
		t.Errorf("map key: %s %v", b, err)
	}
}

func roundTrip[T comparable](t *testing.T, v T, want string) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil || string(b) != want {
		t.Errorf("%v marshals to %s %v, want %s", v, b, err, want)
	}
	var back T
	if err := json.Unmarshal(b, &back); err != nil || back != v {
		t.Errorf("%s reads as %v %v, want %v", b, back, err, v)
	}
}
