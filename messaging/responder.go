package messaging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/breakerchain/breakerchain/internal/problem"
)

// Handler handles one request. ctx carries the Call and, when the caller sent one, its deadline.
// A *problem.Error is answered with its code; any other error as 500 "internal error", its text
// kept in the log.
type Handler func(ctx context.Context, data []byte) (Reply, error)

// Endpoint describes the one endpoint a service serves.
type Endpoint struct {
	Service     string // micro service name and queue group, e.g. "payment"
	Version     string // semver, shown by `nats micro ls`
	Description string
	Subject     string // e.g. "payment.create"
	// Void, when set, is served on VoidSubject ("payment.void") beside the requests, in the same
	// queue group and within the same MaxConcurrent: the undo of what a request saved.
	Void        Handler
	VoidSubject string
	// MaxConcurrent bounds the requests handled at once; a micro endpoint is serial otherwise.
	MaxConcurrent uint
	// Tracing, when set, traces every request handled (see Traces in trace.go).
	Tracing trace.TracerProvider
	// Info, when set, is what the service adds to every endpoint's `nats micro stats` data
	// (its circuits, its faults).
	Info func() map[string]any
}

// DefaultMaxConcurrent is the bound on concurrent requests when Endpoint.MaxConcurrent is 0.
const DefaultMaxConcurrent = 64

// Responder serves an Endpoint as a NATS micro service in a queue group named after the
// service, so several instances share the load, with its controls beside it.
type Responder struct {
	nc      *nats.Conn
	ep      Endpoint
	handle  Handler
	log     *slog.Logger
	svc     micro.Service
	slots   bulkhead.Bulkhead[any]
	tracer  trace.Tracer
	handled atomic.Int64
	failed  atomic.Int64

	mu       sync.Mutex
	stopping bool          // set by Stop: requests still drained are handled in line
	active   int           // handlers running in their own goroutines
	idle     chan struct{} // closed once stopping and active is 0
}

// Serve starts serving ep on nc: its requests with h on ep.Subject, unless h is nil (a service
// that takes no requests on NATS, like order), and each of controls.
func Serve(nc *nats.Conn, ep Endpoint, h Handler, log *slog.Logger, controls ...Control) (*Responder, error) {
	if ep.MaxConcurrent == 0 {
		ep.MaxConcurrent = DefaultMaxConcurrent
	}
	r := &Responder{nc: nc, ep: ep, handle: h, log: log, slots: bulkhead.New[any](ep.MaxConcurrent),
		tracer: tracerOf(ep.Tracing), idle: make(chan struct{})}
	svc, err := micro.AddService(nc, micro.Config{
		Name: ep.Service, Version: ep.Version, Description: ep.Description,
		QueueGroup:   ep.Service,
		StatsHandler: r.endpointStats,
	})
	if err != nil {
		return nil, fmt.Errorf("micro service %s: %w", ep.Service, err)
	}
	if h != nil {
		if err := svc.AddEndpoint("create", r.dispatcher(h), micro.WithEndpointSubject(ep.Subject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("micro endpoint %s: %w", ep.Subject, err)
		}
	}
	if ep.Void != nil {
		if err := svc.AddEndpoint("void", r.dispatcher(ep.Void), micro.WithEndpointSubject(ep.VoidSubject)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("micro endpoint %s: %w", ep.VoidSubject, err)
		}
	}
	for _, c := range controls {
		if err := addControl(svc, c, log); err != nil {
			_ = svc.Stop()
			return nil, err
		}
	}
	r.svc = svc
	if nc.IsConnected() {
		// The server knows the subscription before Serve returns: no "no responders" for a
		// caller that asks right after.
		if err := nc.Flush(); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("micro service %s: %w", ep.Service, err)
		}
	}
	return r, nil
}

// Handled counts the requests answered, errors included.
func (r *Responder) Handled() int64 { return r.handled.Load() }

// endpointStats is the stats data of each endpoint in `nats micro stats`: the service's Info, and
// for the request endpoint its own accounting (micro's num_errors stays 0 and its processing time
// covers only the hand-off, because handlers answer from their own goroutines).
func (r *Responder) endpointStats(e *micro.Endpoint) any {
	s := map[string]any{}
	if r.ep.Info != nil {
		s = r.ep.Info()
	}
	if e.Subject == r.ep.Subject && r.handle != nil { // its counts include the voids
		s["handled"], s["errors"], s["max_concurrent"] = r.handled.Load(), r.failed.Load(), r.ep.MaxConcurrent
	}
	return s
}

// dispatcher is dispatch with h as the handler, for one endpoint.
func (r *Responder) dispatcher(h Handler) micro.HandlerFunc {
	return func(req micro.Request) { r.dispatch(req, h) }
}

// dispatch runs on the subscription's goroutine and hands each request to a goroutine of its
// own, up to MaxConcurrent at once (creates and voids together). When all slots are taken it answers 503 at once rather than
// wait: a request queued behind a full service would start late with its full Timeout still in
// hand, doing work its caller has already given up on. A caller counts the 503 as a failure,
// which is what an overloaded service is.
func (r *Responder) dispatch(req micro.Request, h Handler) {
	headers := nats.Header(req.Headers())
	call, budget := readHeaders(headers)
	if call.RequestID == "" {
		call.RequestID = nuid.Next()
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if budget > 0 {
		ctx, cancel = context.WithTimeout(ctx, budget)
	}
	ctx, _ = r.startHandling(WithCall(ctx, call), req.Subject(), headers) // respond ends the span
	if !r.slots.TryAcquirePermit() {
		cancel()
		r.respond(ctx, req.Reply(), Reply{}, problem.Errorf(503, "%s is busy", r.ep.Service))
		return
	}
	serve := func() {
		defer cancel()
		defer r.slots.ReleasePermit()
		reply, err := h(ctx, req.Data())
		r.respond(ctx, req.Reply(), reply, err)
	}
	r.mu.Lock()
	if r.stopping {
		// Stop has begun: what the drain still delivers is handled in line, so the
		// connection's drain waits for it before closing.
		r.mu.Unlock()
		serve()
		return
	}
	r.active++
	r.mu.Unlock()
	go func() {
		defer r.done()
		serve()
	}()
}

func (r *Responder) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active--
	if r.stopping && r.active == 0 {
		close(r.idle)
	}
}

// respond publishes the reply or the service error. It does not use micro's Respond/Error: those
// record into the request, which micro reads on the dispatch goroutine, a data race here.
func (r *Responder) respond(ctx context.Context, subject string, reply Reply, err error) {
	defer endHandling(ctx, err)
	r.handled.Add(1)
	msg := nats.NewMsg(subject)
	if err != nil {
		r.failed.Add(1)
		if errors.Is(err, context.DeadlineExceeded) {
			// The caller has stopped waiting: its own timer reports the timeout, and an
			// answer racing that timer would only blur what happened.
			r.log.DebugContext(ctx, "deadline passed, no answer")
			return
		}
		se := problem.From(err)
		if se.Description == problem.Internal {
			r.log.ErrorContext(ctx, "request failed", "err", err)
		}
		msg.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(se.Code))
		msg.Header.Set(micro.ErrorHeader, se.Description)
	} else if msg.Data, err = marshal(reply); err != nil {
		r.log.ErrorContext(ctx, "encode reply", "err", err)
		return
	}
	if subject == "" {
		return // published, not requested: nobody waits for an answer
	}
	if err := r.nc.PublishMsg(msg); err != nil {
		r.log.WarnContext(ctx, "reply not sent", "err", err)
	}
}

// Stop stops taking requests and waits, until ctx ends, for the handlers running in their own
// goroutines. micro drains the subscription: requests it still delivers are handled in line, and
// the connection's Drain (which must come after Stop) waits for those.
func (r *Responder) Stop(ctx context.Context) error {
	r.mu.Lock()
	if !r.stopping {
		r.stopping = true
		if r.active == 0 {
			close(r.idle)
		}
	}
	r.mu.Unlock()
	err := r.svc.Stop()
	select {
	case <-r.idle:
		return err
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("%s: requests still in flight: %w", r.ep.Service, ctx.Err()))
	}
}

// marshal encodes v without escaping '>' and '&', so "->" stays readable in `nats req`.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
