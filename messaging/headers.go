package messaging

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Headers every request carries.
const (
	HeaderHop       = "Hop"        // the sender's hop number; the seed's ?count=
	HeaderRequestID = "Request-Id" // the id of the client request the chain serves
	HeaderTimeout   = "Timeout"    // how long the sender will still wait, as a Go duration
	HeaderOrigin    = "Origin-Id"  // the business id the chain serves (the order's), set at the entry
	HeaderReason    = "Reason"     // why a void is asked: the refusal that rejected the order
)

// Call describes the client request a hop is serving.
type Call struct {
	Hop       int    // this hop's number: 1 at the entry, +1 per hop
	RequestID string // from the client's X-Request-Id, or generated at the entry
	// Origin is the business id the whole chain serves, set by the entry and passed on
	// unchanged: every hop records it, so an id another origin already used is told from a
	// replay of the same one.
	Origin string
	// Reason is why a void is asked (the refusal that rejected the order), which each hop keeps
	// with what it voids; empty on a create.
	Reason string
}

type callKey struct{}

// WithCall returns ctx carrying c; a Requester sends it on.
func WithCall(ctx context.Context, c Call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// CallFrom returns the Call in ctx; the zero Call when there is none.
func CallFrom(ctx context.Context) Call {
	c, _ := ctx.Value(callKey{}).(Call)
	return c
}

// setHeaders writes what the next hop needs to know.
func setHeaders(h nats.Header, c Call, budget time.Duration) {
	h.Set(HeaderHop, strconv.Itoa(c.Hop))
	if c.RequestID != "" {
		h.Set(HeaderRequestID, c.RequestID)
	}
	if c.Origin != "" {
		h.Set(HeaderOrigin, c.Origin)
	}
	if c.Reason != "" {
		h.Set(HeaderReason, c.Reason)
	}
	h.Set(HeaderTimeout, budget.Truncate(time.Millisecond).String())
}

// ValidRequestID reports whether id may serve as a request id: short, and made of characters
// that are safe in logs, headers and the store. Anything else is replaced, never passed on.
func ValidRequestID(id string) bool { return saneRequestID.MatchString(id) }

var saneRequestID = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)

// maxHop bounds the Hop header: far beyond any chain, far below an overflow.
const maxHop = 1 << 10

// readHeaders is the receiving side of setHeaders: the Call of this hop and how long its caller
// waits (0 when the header is absent or malformed). A malformed hop counts as absent, and a
// malformed request id is dropped (the responder then makes one).
func readHeaders(h nats.Header) (Call, time.Duration) {
	hop, err := strconv.Atoi(h.Get(HeaderHop))
	if err != nil || hop < 0 || hop > maxHop {
		hop = 0
	}
	budget, err := time.ParseDuration(h.Get(HeaderTimeout))
	if err != nil || budget < 0 {
		budget = 0
	}
	id := h.Get(HeaderRequestID)
	if !ValidRequestID(id) {
		id = ""
	}
	origin := h.Get(HeaderOrigin)
	if !ValidRequestID(origin) {
		origin = "" // as if absent: a request from outside the chain (nats req)
	}
	reason := h.Get(HeaderReason)
	if len(reason) > maxReplyText {
		reason = strings.ToValidUTF8(reason[:maxReplyText], "") // it is stored: bounded like a reply's text
	}
	return Call{Hop: hop + 1, RequestID: id, Origin: origin, Reason: reason}, budget
}
