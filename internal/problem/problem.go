// Package problem is the error every layer answers with: a code that follows HTTP (4xx the
// request is wrong, 5xx the service failed) and a description safe to show a client. It sits at
// the bottom of the import graph, so decoding (wire), logging and the transport (messaging) share
// it without knowing each other. It must not know NATS, HTTP servers or the store.
package problem

import (
	"errors"
	"fmt"
)

// Error is an error a service answers with: on HTTP as its status and JSON body, on NATS in the
// micro service-error headers.
type Error struct {
	Code        int
	Description string // safe to show a client: never internal error text
	Field       string // the request field at fault, if any (in-process only)
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Description) }

// Errorf returns an Error with the given code.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// Internal is the description of every error that is not an *Error: the real text belongs in
// the log, never in an answer.
const Internal = "internal error"

// From returns err as the Error a client may see: itself when it is one, else 500 Internal.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Errorf(500, Internal)
}
