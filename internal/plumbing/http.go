package plumbing

import (
	"context"
	"net"
	"net/http"
	"strconv"
)

// Listening is an HTTP server serving in a goroutine of its own.
type Listening struct {
	Addr   string // the listener's address
	srv    *http.Server
	served chan error
}

// Listen serves srv on host:port (port 0 picks a free one).
func Listen(host string, port int, srv *http.Server) (*Listening, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	l := &Listening{Addr: ln.Addr().String(), srv: srv, served: make(chan error, 1)}
	go func() { l.served <- srv.Serve(ln) }()
	return l, nil
}

// Wait blocks until ctx ends or the server fails.
func (l *Listening) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-l.served:
		return err
	}
}

// Shutdown stops the server, letting requests in flight finish within ctx.
func (l *Listening) Shutdown(ctx context.Context) error { return l.srv.Shutdown(ctx) }
