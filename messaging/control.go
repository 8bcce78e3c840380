package messaging

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/breakerchain/breakerchain/internal/problem"
)

// Control is an endpoint for operating a service (e.g. chaos.<service>), answered by every instance:
// it is outside the queue group, so a change sent to it reaches them all and a requester gets
// the first answer. Its handler runs in line on the subscription's goroutine and must be quick.
// A request whose reply subject is not an inbox (_INBOX.…, or _R_.… — the one the server makes
// up for a request through an import, as people's come from their account) is refused
// unhandled, unanswered.
type Control struct {
	Name    string // the micro endpoint's name, e.g. "chaos"
	Subject string // e.g. "chaos.shipment"
	// Handle answers with a value sent as JSON, or an error: a *problem.Error with its code,
	// anything else as 500 "internal error".
	Handle func(ctx context.Context, data []byte) (any, error)
}

func addControl(svc micro.Service, c Control, log *slog.Logger) error {
	h := func(req micro.Request) {
		call, _ := readHeaders(nats.Header(req.Headers()))
		ctx := WithCall(context.Background(), call)
		if reply := req.Reply(); reply != "" && !isInbox(reply) {
			// NATS lets a service answer on whatever reply subject a request names
			// (allow_responses), whatever its own publish rights: answering "payment.create" or
			// "chaos.payment.changed" would publish there in this service's name.
			log.WarnContext(ctx, "control request refused: its reply subject is not an inbox", "subject", c.Subject, "reply", reply)
			return
		}
		v, err := c.Handle(ctx, req.Data())
		var data []byte
		if err == nil {
			data, err = marshal(v)
		}
		if err == nil {
			err = req.Respond(data)
		} else {
			se := problem.From(err)
			if se.Description == problem.Internal {
				log.ErrorContext(ctx, "control request failed", "subject", c.Subject, "err", err)
			}
			err = req.Error(strconv.Itoa(se.Code), se.Description, nil)
		}
		if err != nil && req.Reply() != "" { // a request that asked for no answer gets none
			log.WarnContext(ctx, "control reply not sent", "subject", c.Subject, "err", err)
		}
	}
	if err := svc.AddEndpoint(c.Name, micro.HandlerFunc(h), micro.WithEndpointSubject(c.Subject),
		micro.WithEndpointQueueGroupDisabled()); err != nil {
		return fmt.Errorf("micro endpoint %s: %w", c.Subject, err)
	}
	return nil
}

// importReplyPrefix starts the reply subject nats-server makes up for a request that reaches this
// account through a service import (deploy/nats.conf: people's requests, from account PEOPLE).
// The server refuses it as the reply subject of a client's own request.
const importReplyPrefix = "_R_."

// isInbox tells whether reply is where a requester awaits answers, not a subject others read.
func isInbox(reply string) bool {
	return strings.HasPrefix(reply, nats.InboxPrefix) || strings.HasPrefix(reply, importReplyPrefix)
}
