package messaging

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/breakerchain/breakerchain/internal/problem"

	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/timeout"
)

// errMalformedReply is a reply that is not an envelope: a target that lies.
var errMalformedReply = errors.New("malformed reply")

// ErrNoTimeLeft is returned, without calling, when the caller's deadline leaves the next hop
// less than its MinCallBudget.
var ErrNoTimeLeft = errors.New("not sent: the caller ran out of time")

// ServiceError reads the service error a micro reply carries in its headers
// (Nats-Service-Error-Code and Nats-Service-Error), or nil when it carries none: the one reading
// of them for every caller, a Requester or the dashboard's controls. A code that is not a 4xx or
// a 5xx is not one a service of ours sends: it reads as 502, a target that failed.
func ServiceError(m *nats.Msg) *problem.Error {
	code := m.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return nil
	}
	n, err := strconv.Atoi(code)
	if err != nil || n < http.StatusBadRequest || n > 599 {
		n = http.StatusBadGateway
	}
	return &problem.Error{Code: n, Description: m.Header.Get(micro.ErrorHeader)}
}

// IsFailure reports whether err counts against a circuit. Timeouts, no responders, connection
// errors and 5xx replies do; 4xx replies and the caller's own cancellation do not.
func IsFailure(err error) bool {
	var se *problem.Error
	switch {
	case err == nil:
		return false
	case errors.As(err, &se):
		return se.Code >= 500
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, nats.ErrBadHeaderMsg), errors.Is(err, nats.ErrInvalidMsg):
		// The caller's own mistake: the target was never asked, so it is not to blame.
		return false
	default:
		return true
	}
}

// outcomeOf turns a failed call's error into the outcome and reason its reply shows.
func outcomeOf(err error) (Outcome, string) {
	var se *problem.Error
	switch {
	case errors.Is(err, circuitbreaker.ErrOpen):
		return OutcomeRejected, "circuit open"
	case errors.Is(err, bulkhead.ErrFull):
		return OutcomeRejected, "too many requests in flight"
	case errors.Is(err, timeout.ErrExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return OutcomeTimeout, "timeout"
	case errors.Is(err, budget.ErrExceeded):
		// A retry not made: the attempt before it failed, and the hop's budget was spent.
		return OutcomeUnavailable, "failed, and not retried: the retry budget was spent"
	case errors.Is(err, ErrNoTimeLeft):
		// The target was never asked: it is not late, it is unreachable in the time given.
		return OutcomeUnavailable, ErrNoTimeLeft.Error()
	case errors.Is(err, nats.ErrNoResponders):
		return OutcomeUnavailable, "no responders"
	case errors.As(err, &se) && se.Code < 500:
		return OutcomeRefused, se.Error()
	case errors.As(err, &se):
		return OutcomeUnavailable, se.Error()
	case errors.Is(err, context.Canceled):
		return OutcomeUnavailable, "canceled by the caller"
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrConnectionReconnecting):
		return OutcomeUnavailable, "not connected to NATS"
	case errors.Is(err, errMalformedReply):
		return OutcomeUnavailable, "malformed reply"
	case errors.Is(err, nats.ErrMaxPayload):
		return OutcomeRefused, "request too large for NATS"
	default:
		// Fixed words: internal error text never reaches a reply (the requester logs it).
		return OutcomeUnavailable, "request failed"
	}
}
