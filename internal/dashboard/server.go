package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
)

//go:embed web
var web embed.FS

// Config is what a dashboard watches and controls.
type Config struct {
	// Watch is a connection that may watch every subject, ask for discovery and read order's
	// queue (the observer in deploy/nats.conf).
	Watch *nats.Conn
	// Control, when set, may send chaos changes (the chaos user): the page then shows the
	// controls. nil: the dashboard only watches.
	Control *nats.Conn
	// OrderURL is order's public HTTP API, where the page's button sends orders; "" for none.
	OrderURL string
	// OrderBody is the body the button sends for a new order with id: the chain's example, so
	// it names every service's fields; nil for no orders.
	OrderBody func(id string) []byte
	Log       *slog.Logger
}

// Server is a running dashboard: its Handler serves the page, the event stream and the controls.
type Server struct {
	cfg    Config
	hub    *hub
	client *http.Client
}

// New starts watching the bus.
func New(cfg Config) (*Server, error) {
	h, err := startHub(cfg.Watch, cfg.Control != nil, cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return &Server{cfg: cfg, hub: h, client: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Close stops watching, ends every event stream and waits for their handlers.
func (s *Server) Close() {
	s.hub.close()
	<-s.hub.done
	s.hub.streams.Wait()
}

// Handler serves the page (GET /), the event stream (GET /events), the last state (GET
// /api/state), and, with controls, PUT /api/chaos/{service} and POST /api/orders.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer, wire.HeaderLimit, addressedByIP, middleware.GetHead)
	static, _ := fs.Sub(web, "web")
	files := http.FileServer(http.FS(static))
	r.Get("/", files.ServeHTTP)
	_ = fs.WalkDir(static, ".", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			r.Get("/"+name, files.ServeHTTP)
		}
		return err
	})
	r.Get("/events", s.events)
	r.Get("/api/state", func(w http.ResponseWriter, _ *http.Request) {
		s.hub.mu.Lock()
		st := s.hub.state
		s.hub.mu.Unlock()
		if st == nil {
			wire.WriteError(w, http.StatusServiceUnavailable, "no state yet: the first poll has not ended", "")
			return
		}
		wire.WriteJSON(w, http.StatusOK, st)
	})
	r.Put("/api/chaos/{service}", s.chaos)
	r.Post("/api/orders", s.orders)
	wire.JSONErrors(r)
	return r
}

// addressedByIP refuses a request addressed to a host name other than localhost: a web page on
// another site cannot rebind its own name to this address and reach the controls (DNS
// rebinding). An IP address, the way the dashboard is opened (127.0.0.1:3003, or a LAN address
// from a phone), cannot be rebound.
func addressedByIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		host := req.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host != "localhost" && net.ParseIP(strings.Trim(host, "[]")) == nil {
			wire.WriteError(w, http.StatusForbidden, fmt.Sprintf("the dashboard answers requests to an IP address or localhost, not to %q", host), "")
			return
		}
		next.ServeHTTP(w, req)
	})
}

// events is the Server-Sent Events stream: one `data:` line of JSON (a Message) per event.
func (s *Server) events(w http.ResponseWriter, req *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		wire.WriteError(w, http.StatusInternalServerError, "streaming unsupported", "")
		return
	}
	c, ok := s.hub.subscribe()
	if !ok {
		wire.WriteError(w, http.StatusServiceUnavailable, "the dashboard is stopping", "")
		return
	}
	defer s.hub.unsubscribe(c)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case b, ok := <-c:
			if !ok {
				return // too slow, or the dashboard is closing
			}
			if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
				return
			}
			flusher.Flush()
		case <-keepAlive.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case <-req.Context().Done():
			return
		}
	}
}

// serviceName is what a service's name may be: the dashboard only asks services discovery found.
var serviceName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// maxControlBody bounds a control's body: a change or a count is a few short fields.
const maxControlBody = 4 << 10

// chaos sends a change of faults to every instance of a service through its chaos API
// (chaos.<service>: validated, applied, logged and published by the service itself) and answers
// what the service answered.
func (s *Server) chaos(w http.ResponseWriter, req *http.Request) {
	if s.cfg.Control == nil {
		wire.WriteError(w, http.StatusForbidden, "this dashboard only watches: it has no connection allowed to change faults", "")
		return
	}
	name := chi.URLParam(req, "service")
	if !serviceName.MatchString(name) || !s.known(name) {
		wire.WriteError(w, http.StatusNotFound, fmt.Sprintf("no service %q is running", name), "")
		return
	}
	body, ok := readJSON(w, req)
	if !ok {
		return
	}
	rid := req.Header.Get(middleware.RequestIDHeader)
	if !messaging.ValidRequestID(rid) {
		rid = nuid.Next()
	}
	m, err := s.cfg.Control.RequestMsg(&nats.Msg{Subject: messaging.ChaosSubject(name), Data: body,
		Header: nats.Header{messaging.HeaderRequestID: []string{rid}}}, 2*time.Second)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		// As the service itself answers PUT /chaos when chaos is off: nothing listens on chaos.<name>.
		wire.WriteError(w, http.StatusForbidden, fmt.Sprintf("chaos is off for %s (or it is not running): start it with CHAOS=1 to change its faults at runtime", name), "")
		return
	case err != nil:
		wire.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s did not answer: %v", name, err), "")
		return
	}
	if se := messaging.ServiceError(m); se != nil {
		field := ""
		if f, _, found := strings.Cut(se.Description, ": "); found && se.Code == http.StatusUnprocessableEntity {
			field = f // wire.Invalid's "field: what is wrong"
		}
		wire.WriteError(w, se.Code, se.Description, field)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(m.Data)
}

// known reports whether discovery found service at the last poll.
func (s *Server) known(service string) bool {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	if s.hub.state == nil {
		return false
	}
	for _, sv := range s.hub.state.Services {
		if sv.Name == service {
			return true
		}
	}
	return false
}

// MaxBurst is the most orders one press of the button sends.
const MaxBurst = 100

// Burst is the body of POST /api/orders: how many orders to send.
type Burst struct {
	Count int `json:"count"`
}

func (b *Burst) Validate() error {
	if b.Count < 1 || b.Count > MaxBurst {
		return wire.Invalid("count", "must be from 1 to %d", MaxBurst)
	}
	return nil
}

// BurstResult is what POST /api/orders answers: how many orders got each status.
type BurstResult struct {
	Sent     int            `json:"sent"`
	Statuses map[string]int `json:"statuses"` // "201": 3, "202": 2, or "error": 1 when order did not answer
}

// orders sends a burst of new orders to order's public API, four at a time, each with a fresh
// id and the chain's example body, as a client would.
func (s *Server) orders(w http.ResponseWriter, req *http.Request) {
	if s.cfg.Control == nil || s.cfg.OrderURL == "" || s.cfg.OrderBody == nil {
		wire.WriteError(w, http.StatusForbidden, "this dashboard sends no orders: it has no order URL, no order body or no controls", "")
		return
	}
	body, ok := readJSON(w, req)
	if !ok {
		return
	}
	b, err := wire.DecodeValid[Burst](body)
	if err != nil {
		wire.WriteProblem(w, err)
		return
	}
	res := BurstResult{Sent: b.Count, Statuses: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, 4)
	prefix := "dash-" + nuid.Next() // a fresh id per burst: the same ids again would be replays
	for i := range b.Count {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			status := s.sendOrder(req.Context(), fmt.Sprintf("%s-%d", prefix, i))
			mu.Lock()
			res.Statuses[status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	wire.WriteJSON(w, http.StatusOK, res)
}

func (s *Server) sendOrder(ctx context.Context, id string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.cfg.OrderURL, "/")+"/create", bytes.NewReader(s.cfg.OrderBody(id)))
	if err != nil {
		return "error"
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := s.client.Do(req)
	if err != nil {
		return "error"
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return strconv.Itoa(res.StatusCode)
}

// readJSON reads a control's body: JSON, bounded. It answers the error itself.
func readJSON(w http.ResponseWriter, req *http.Request) ([]byte, bool) {
	body, err := wire.ReadBody(w, req, maxControlBody)
	if err != nil {
		wire.WriteProblem(w, err)
		return nil, false
	}
	if !json.Valid(body) {
		wire.WriteError(w, http.StatusBadRequest, "body is not JSON", "")
		return nil, false
	}
	return body, true
}
