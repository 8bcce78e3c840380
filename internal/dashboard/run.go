package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/plumbing"
	"github.com/breakerchain/breakerchain/internal/wire"
)

// Running is a dashboard serving HTTP.
type Running struct {
	Addr     string // where it listens
	Controls bool   // whether it may change faults and send orders
	srv      *Server
	http     *plumbing.Listening
	conns    []*nats.Conn
}

// Start connects to NATS as cfg says and serves the dashboard on cfg.Host:cfg.Port.
func Start(cfg config.Dashboard, log *slog.Logger) (_ *Running, err error) {
	r := &Running{}
	defer func() {
		if err != nil {
			r.Stop(context.Background())
		}
	}()
	dc := Config{OrderURL: cfg.OrderURL, OrderBody: cfg.OrderBody, Log: log}
	if dc.Watch, err = plumbing.ConnectNATS(cfg.Watch, log); err != nil {
		return nil, err
	}
	r.conns = append(r.conns, dc.Watch)
	if cfg.Control != nil {
		if dc.Control, err = plumbing.ConnectNATS(*cfg.Control, log); err != nil {
			return nil, err
		}
		r.conns = append(r.conns, dc.Control)
	}
	if r.srv, err = New(dc); err != nil {
		return nil, err
	}
	// No write timeout: the event stream stays open as long as the page does.
	if r.http, err = plumbing.Listen(cfg.Host, cfg.Port,
		&http.Server{Handler: r.srv.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
			MaxHeaderBytes: 4 * wire.MaxHeaderBytes}); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	r.Addr, r.Controls = r.http.Addr, cfg.Control != nil
	log.Info("📊 dashboard listening", "addr", r.Addr, "controls", r.Controls)
	return r, nil
}

// Wait blocks until ctx ends or the HTTP server fails.
func (r *Running) Wait(ctx context.Context) error {
	if err := r.http.Wait(ctx); err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	return nil
}

// Stop ends the event streams, then the HTTP server and the NATS connections, within ctx.
func (r *Running) Stop(ctx context.Context) error {
	var errs []error
	if r.srv != nil {
		r.srv.hub.close() // ends the streams, so Shutdown does not wait for them
	}
	if r.http != nil {
		errs = append(errs, r.http.Shutdown(ctx))
	}
	if r.srv != nil {
		r.srv.Close()
	}
	for _, nc := range r.conns {
		nc.Close()
	}
	return errors.Join(errs...)
}
