package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/breakerchain/breakerchain/internal/chaos"
	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/metrics"
	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/plumbing"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/tracing"
	"github.com/breakerchain/breakerchain/messaging"
)

// Version is the services' version, shown by `nats micro ls`.
const Version = "1.0.0"

// Service describes one service of the chain. Where it sits in the chain is not its business:
// that is the Chain's order.
type Service struct {
	Name        string // order, payment or shipment: its subject is Name.create
	Description string
	Collections []string // the store collections it uses (the embedded store indexes them)
	// Check decodes and validates the service's own part of a request body (without the next
	// service's field; see Split), so the services before it can check a whole body up front.
	Check func(own []byte) (any, error)
	// Build makes the service from what Start connected; ctx bounds its start.
	Build func(context.Context, Deps) (Parts, error)
	// API names its public HTTP routes, for the all-in-one's banner ("POST /create · GET
	// /orders/{id}"); "" when clients do not call it (it has only the ops routes).
	API string
	// Example is its own fields of an example request whose ids are id: the chain's example
	// body nests each service's (Chain.Example). Every service has one.
	Example func(id string) any
	// Settle, when set, fills in the settings the service derives from others (order's re-drive
	// timers from the breaker's), so the start log shows them as they will be used.
	Settle func(config.Settings) config.Settings
	// Undo declares that what the service saves for an order is undone when a later hop refuses
	// the order for good: its record is marked voided, with the reason, and a replay of it is
	// refused (Step.Void). The saga is these fields in the chain's list: the entry voids the
	// chain after a rejection (Hop.VoidNext) whenever a service after it declares one.
	Undo bool
}

// Chain is the services in the order a request passes them, upstream first: each calls the one
// after it. The command's list is the one place this order is written. c[i:] is the chain from
// the i-th service on.
type Chain []Service

// Deps is what Start hands a service.
type Deps struct {
	Config  config.Settings
	Log     *slog.Logger
	DB      *mongo.Database
	NATS    *nats.Conn // for a service's own use of NATS beyond its hop
	Queue   *nats.Conn // for its JetStream state (order's queue): its own with NATS_QUEUE_*, else NATS
	Hop     *Hop
	Metrics *metrics.Recorder // to register the service's own metrics on
}

// Parts is what a service adds to the common plumbing.
type Parts struct {
	Routes func(chi.Router)  // its own HTTP routes, beside the ops routes
	Handle messaging.Handler // its NATS endpoint; nil for none
	Void   messaging.Handler // its void endpoint (Step.Void); nil for none
	// Background, when set, runs in its own goroutine from start until ctx ends, which is the
	// first step of the shutdown; Stop waits for it to return.
	Background func(ctx context.Context)
	// Ready are what else /readyz checks, by name, beside the store and NATS: what the service
	// cannot take requests without.
	Ready map[string]func(context.Context) error
	// Limiters, when set, shows the service's limits on the work it takes in /breakers (and so
	// on the dashboard and `circuits.<service>`).
	Limiters func() []observe.Limiter
}

// Running is a started service.
type Running struct {
	Addr      string               // the HTTP listener's address
	Requester *messaging.Requester // towards the next service; nil at the end of the chain
	Responder *messaging.Responder // its NATS endpoints: requests (not order), circuits, chaos
	Metrics   *metrics.Recorder
	Hop       *Hop // the service's place in the chain: its faults, its next hop
	log       *slog.Logger
	http      *plumbing.Listening
	nc        *nats.Conn
	queue     *nats.Conn // Deps.Queue: nc, or a connection of its own
	mongo     *mongo.Client
	chaos     *chaos.Controller
	checks    map[string]func(context.Context) error // Parts.Ready
	limiters  func() []observe.Limiter               // Parts.Limiters
	traces    *tracing.Provider                      // the service's spans, exported as OTEL_* says
	stopBg    context.CancelFunc                     // ends Parts.Background
	bgDone    chan struct{}                          // closed when it has returned
}

// Start connects and starts the first service of c, calling the second, with cfg. log should
// already name the service.
func Start(ctx context.Context, c Chain, cfg config.Settings, log *slog.Logger) (_ *Running, err error) {
	svc := c[0]
	r := &Running{log: log, Metrics: metrics.New(svc.Name)}
	defer func() {
		if err != nil {
			r.teardown(context.Background())
			// A driver's error may quote the URL it was given: never show its password.
			err = config.Redact(err, cfg.Secrets()...)
		}
	}()
	if svc.Settle != nil {
		cfg = svc.Settle(cfg)
	}
	log.InfoContext(ctx, "starting", "config", cfg)

	if r.traces, err = tracing.Start(ctx, cfg.Tracing, tracing.Service{Instance: cfg.ID, Version: Version}); err != nil {
		return nil, err
	}
	monitor := r.Metrics.CommandMonitor()
	if cfg.Tracing.On() {
		monitor = store.Monitors(monitor, store.TraceCommands(r.traces))
	}
	if r.mongo, err = store.Connect(cfg.MongoURL, monitor); err != nil {
		return nil, err
	}
	if err := store.Ping(ctx, r.mongo, 5*time.Second); err != nil {
		// Not fatal: the driver keeps trying and /readyz says 503 until the store answers.
		log.WarnContext(ctx, "store not reachable yet", "err", config.Redact(err, cfg.Secrets()...))
	}
	if r.nc, err = plumbing.ConnectNATS(cfg, log); err != nil {
		return nil, err
	}
	r.queue = r.nc
	if cfg.NATSQueue.Set() {
		if r.queue, err = plumbing.ConnectQueue(cfg, log); err != nil {
			return nil, err
		}
	}
	hop := &Hop{ID: cfg.ID, Jumps: cfg.Jumps, Log: log, Faults: &chaos.Injector{}, After: c[1:], Undo: svc.Undo,
		Tracer: r.traces.Tracer("github.com/breakerchain/breakerchain/" + svc.Name)}
	faults := chaos.Faults{Latency: cfg.InjectLatency}
	if cfg.InjectErr {
		faults.ErrorRate = cfg.InjectErrRate
	}
	hop.Faults.Set(faults)
	r.Hop = hop
	r.chaos = chaos.NewController(cfg.Chaos, svc.Name, cfg.ID, hop.Faults, r.nc, log)
	r.Metrics.TrackFaults(func() (float64, time.Duration) { f := hop.Faults.Faults(); return f.ErrorRate, f.Latency })
	if len(c) > 1 {
		next := c[1].Name
		r.Requester = messaging.NewRequester(r.nc,
			messaging.Route{From: svc.Name, To: next, Subject: messaging.Subject(next), Void: messaging.VoidSubject(next)}, cfg.Breaker, log,
			messaging.WithObserver(r.Metrics.Observe), messaging.WithTracing(r.traces))
		r.Metrics.TrackState(next, r.Requester.State)
		hop.Next = r.Requester
	}
	parts, err := svc.Build(ctx, Deps{Config: cfg, Log: log, DB: r.mongo.Database(cfg.MongoDB), NATS: r.nc, Queue: r.queue, Hop: hop, Metrics: r.Metrics})
	if err != nil {
		return nil, err
	}
	r.limiters = parts.Limiters
	ep := messaging.Endpoint{
		Service: svc.Name, Version: Version, Description: svc.Description,
		Subject: messaging.Subject(svc.Name), MaxConcurrent: cfg.MaxConcurrent,
		Void: parts.Void, VoidSubject: messaging.VoidSubject(svc.Name), Tracing: r.traces,
		Info: func() map[string]any { return r.breakers(cfg).Stats() },
	}
	controls := []messaging.Control{{Name: "circuits", Subject: messaging.CircuitsSubject(svc.Name),
		Handle: func(context.Context, []byte) (any, error) { return r.breakers(cfg), nil }}}
	if cfg.Chaos {
		// Only when chaos is on does anything listen on chaos.<service>: off, the subject does
		// not exist and needs no permission.
		controls = append(controls, r.chaos.Control())
	}
	if r.Responder, err = messaging.Serve(r.nc, ep, parts.Handle, log, controls...); err != nil {
		return nil, err
	}
	if parts.Background != nil {
		var bctx context.Context
		bctx, r.stopBg = context.WithCancel(context.WithoutCancel(ctx))
		r.bgDone = make(chan struct{})
		go func() {
			defer close(r.bgDone)
			parts.Background(bctx)
		}()
	}

	r.checks = parts.Ready
	if r.http, err = plumbing.Listen(cfg.Host, cfg.Port, newHTTPServer(r.router(cfg, parts.Routes))); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	r.Addr = r.http.Addr
	_, port, _ := net.SplitHostPort(r.Addr)
	log.InfoContext(ctx, "🕹  App listening on port "+port, "addr", r.Addr)
	return r, nil
}

// Wait blocks until ctx ends or the HTTP server fails.
func (r *Running) Wait(ctx context.Context) error {
	if err := r.http.Wait(ctx); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}

// Stop shuts the service down in order, within ctx.
func (r *Running) Stop(ctx context.Context) error {
	err := r.teardown(ctx)
	r.log.Info("stopped")
	return err
}

func (r *Running) teardown(ctx context.Context) error {
	var errs []error
	if r.stopBg != nil {
		r.stopBg()
		select {
		case <-r.bgDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("background work still running: %w", ctx.Err()))
		}
	}
	if r.http != nil {
		errs = append(errs, r.http.Shutdown(ctx))
	}
	if r.Responder != nil {
		errs = append(errs, r.Responder.Stop(ctx))
	}
	if r.nc != nil {
		errs = append(errs, plumbing.Drain(ctx, r.nc))
	}
	if r.queue != nil && r.queue != r.nc {
		errs = append(errs, plumbing.Drain(ctx, r.queue))
	}
	if r.mongo != nil {
		errs = append(errs, r.mongo.Disconnect(ctx))
	}
	// Last: the spans of everything above are ended, and exported now.
	errs = append(errs, r.traces.Shutdown(ctx))
	return errors.Join(errs...)
}

// Run starts the first service of c, serves until ctx ends, then stops within stopTimeout.
func Run(ctx context.Context, c Chain, cfg config.Settings, log *slog.Logger, stopTimeout time.Duration) error {
	r, err := Start(ctx, c, cfg, log)
	if err != nil {
		return err
	}
	werr := r.Wait(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return errors.Join(werr, r.Stop(sctx))
}
