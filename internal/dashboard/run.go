package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/service"
)

// Running is a dashboard serving HTTP.
type Running struct {
	Addr     string // where it listens
	Controls bool   // whether it may change faults and send orders
	srv      *Server
	http     *http.Server
	conns    []*nats.Conn
	served   chan error
}

// Start connects to NATS as cfg says and serves the dashboard on cfg.Host:cfg.Port.
func Start(cfg config.Dashboard, log *slog.Logger) (_ *Running, err error) {
	r := &Running{served: make(chan error, 1)}
	defer func() {
		if err != nil {
			r.Stop(context.Background())
		}
	}()
	dc := Config{OrderURL: cfg.OrderURL, Log: log}
	if dc.Watch, err = service.ConnectNATS(cfg.Watch, log); err != nil {
		return nil, err
	}
	r.conns = append(r.conns, dc.Watch)
	if cfg.Control != nil {
		if dc.Control, err = service.ConnectNATS(*cfg.Control, log); err != nil {
			return nil, err
		}
		r.conns = append(r.conns, dc.Control)
	}
	if r.srv, err = New(dc); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	r.Addr, r.Controls = ln.Addr().String(), cfg.Control != nil
	// No write timeout: the event stream stays open as long as the page does.
	r.http = &http.Server{Handler: r.srv.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() { r.served <- r.http.Serve(ln) }()
	log.Info("📊 dashboard listening", "addr", r.Addr, "controls", r.Controls)
	return r, nil
}

// Wait blocks until ctx ends or the HTTP server fails.
func (r *Running) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-r.served:
		return fmt.Errorf("dashboard: %w", err)
	}
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
