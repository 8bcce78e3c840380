package testkit

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/logging"
	"github.com/breakerchain/breakerchain/internal/service"
)

// DiscardLogger formats every line at the products' default level (info) and throws it away:
// benchmarks pay for logging as the product does, without flooding their output.
func DiscardLogger() *slog.Logger {
	return slog.New(logging.WithRequestIDs(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
}

// Logger returns a logger that writes to the test's output (shown with -v or on failure) and
// goes quiet once the test has ended, so late goroutines cannot write to a finished test.
func Logger(t testing.TB) *slog.Logger { return leveledLogger(t, slog.LevelDebug) }

func leveledLogger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(leveledHandler(t, level))
}

func leveledHandler(t testing.TB, level slog.Level) slog.Handler {
	w := &testWriter{w: t.Output()}
	t.Cleanup(w.close)
	return logging.WithRequestIDs(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// errorLog keeps the messages of the records at level ERROR and above that pass through it.
type errorLog struct {
	slog.Handler
	mu   *sync.Mutex
	msgs *[]string
}

func (h errorLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		line := r.Message
		r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
		h.mu.Lock()
		*h.msgs = append(*h.msgs, line)
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h errorLog) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

func (h errorLog) WithGroup(name string) slog.Handler {
	h.Handler = h.Handler.WithGroup(name)
	return h
}

type testWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	return w.w.Write(p)
}

func (w *testWriter) close() { w.mu.Lock(); w.closed = true; w.mu.Unlock() }

// Env is an environment for config.Load.
type Env map[string]string

// Lookup is Env as a config.Lookup.
func (e Env) Lookup(name string) (string, bool) { v, ok := e[name]; return v, ok }

// Environ is Env as os.Environ gives the environment: "NAME=value" entries.
func (e Env) Environ() []string {
	out := make([]string, 0, len(e))
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// Instance is a service started by Start.
type Instance struct {
	*service.Running
	Config config.Settings
	stop   func()
	errMu  sync.Mutex
	errs   []string
}

// LoggedErrors returns what the service logged at level ERROR so far, one line per record (a
// NATS permission violation is one: the connection's error handler logs it).
func (s *Instance) LoggedErrors() []string {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return slices.Clone(s.errs)
}

// Stop stops the service now (it is stopped when the test ends otherwise).
func (s *Instance) Stop() { s.stop() }

// URL is the service's HTTP base URL.
func (s *Instance) URL() string { return "http://" + s.Addr }

// IndexIDs gives collections of db in the binary's embedded store the index its lookups by _id
// use, as the all-in-one does (embedded.Store.IndexIDs).
func IndexIDs(t testing.TB, db string, collections ...string) {
	t.Helper()
	StoreURL(t)
	if err := shared.store.IndexIDs(t.Context(), db, collections...); err != nil {
		t.Fatalf("index %s: %v", collections, err)
	}
}

// Start starts svc with the configuration env gives it (unprefixed or prefixed names), listening
// on 127.0.0.1 on a free port, and stops it when the test ends.
func Start(t testing.TB, c service.Chain, natsURL, mongoURL, db string, env Env) *Instance {
	t.Helper()
	level := slog.LevelDebug
	if env["LOG_LEVEL"] == "warn" { // a load test's services: its own lines would cost more than the work
		level = slog.LevelWarn
	}
	return StartLogged(t, c, natsURL, mongoURL, db, env, leveledLogger(t, level))
}

// StartLogged is Start with the service logging to log.
func StartLogged(t testing.TB, c service.Chain, natsURL, mongoURL, db string, env Env, log *slog.Logger) *Instance {
	t.Helper()
	svc := c[0]
	full := Env{"NATS_URL": natsURL, "MONGO_URL": mongoURL, "MONGO_DB": db, "PORT": "0"}
	for k, v := range env {
		full[k] = v
	}
	cfg, err := config.Load(svc.Name, "127.0.0.1", 0, full.Lookup)
	if err != nil {
		t.Fatal(err)
	}
	if shared.store != nil && mongoURL == shared.store.URI() {
		IndexIDs(t, db, svc.Collections...) // as the all-in-one does
	}
	s := &Instance{Config: cfg}
	h := errorLog{Handler: log.Handler(), mu: &s.errMu, msgs: &s.errs}
	r, err := service.Start(t.Context(), c, cfg, slog.New(h).With("service", cfg.ID))
	if err != nil {
		t.Fatalf("start %s: %v", svc.Name, err)
	}
	s.Running = r
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", svc.Name, err)
		}
	}
	t.Cleanup(stop)
	s.stop = stop
	return s
}
