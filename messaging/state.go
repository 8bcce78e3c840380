package messaging

import (
	"fmt"
	"strings"

	"github.com/failsafe-go/failsafe-go/circuitbreaker"
)

// State is a circuit's state, as failsafe-go's circuitbreaker.State is: a closed set, not a
// string, so a misspelt state does not compile. Its names are a contract — /breakers,
// circuits.<service>, breaker events and the metrics' state label all say them — and are written
// here only; it travels as JSON by MarshalText.
type State int

// The states of a circuit; the zero State is closed, as a new circuit is.
const (
	StateClosed   State = iota // calls go through
	StateOpen                  // calls are rejected until the delay has passed
	StateHalfOpen              // the next call is a trial that decides
)

// States are every State, in the order of their values.
var States = [...]State{StateClosed, StateOpen, StateHalfOpen}

var stateNames = names[State]{what: "circuit state", of: []string{
	StateClosed: "closed", StateOpen: "open", StateHalfOpen: "half-open"}}

// String returns the state's name: closed, open or half-open.
func (s State) String() string { return stateNames.String(s) }

// MarshalText writes the state's name; a State outside the set is an error, never sent.
func (s State) MarshalText() ([]byte, error) { return stateNames.MarshalText(s) }

// UnmarshalText reads a state's name; any other text is an error.
func (s *State) UnmarshalText(text []byte) error { return stateNames.UnmarshalText(s, text) }

// stateOf is failsafe-go's state in this package's words.
func stateOf(s circuitbreaker.State) State {
	switch s {
	case circuitbreaker.OpenState:
		return StateOpen
	case circuitbreaker.HalfOpenState:
		return StateHalfOpen
	default:
		return StateClosed
	}
}

// names are the text form of a small closed set numbered from 0 (State, CallKind).
type names[T ~int] struct {
	what string   // what a value is, for errors
	of   []string // each value's name, by value
}

func (n names[T]) String(v T) string {
	if v < 0 || int(v) >= len(n.of) {
		return fmt.Sprintf("%s(%d)", n.what, int(v))
	}
	return n.of[v]
}

func (n names[T]) MarshalText(v T) ([]byte, error) {
	if v < 0 || int(v) >= len(n.of) {
		return nil, fmt.Errorf("messaging: no %s %d", n.what, int(v))
	}
	return []byte(n.of[v]), nil
}

func (n names[T]) UnmarshalText(v *T, text []byte) error {
	for i, name := range n.of {
		if string(text) == name {
			*v = T(i)
			return nil
		}
	}
	return fmt.Errorf("messaging: %q is no %s (%s)", text, n.what, strings.Join(n.of, ", "))
}
