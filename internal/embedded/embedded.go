// Package embedded starts the servers the all-in-one and the tests run in-process: a nats-server
// and a MongoDB-compatible store (FerretDB with its SQLite backend, behind a gate that gives its
// writers turns: gate.go), the lock on their data directory, and the store's _id index
// (index.go pins what it relies on in FerretDB). It must not know the services: it starts
// servers and indexes the collections it is told.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/nats-io/nats-server/v2/server"
)

// NATS is a running embedded nats-server.
type NATS struct {
	*server.Server
	opts server.Options
}

// StartNATS starts a nats-server on host:port (port -1 picks a free one) and waits until it
// accepts connections. opts may be nil; host and port override what it says. With JetStream on,
// opts must say where its files go (StoreDir).
func StartNATS(host string, port int, opts *server.Options) (*NATS, error) {
	if opts == nil {
		opts = &server.Options{}
	}
	o := *opts
	o.Host, o.Port = host, port
	if o.JetStream && o.StoreDir == "" {
		return nil, errors.New("embedded nats: JetStream needs a directory for its files")
	}
	o.NoSigs = true
	if o.MaxPayload == 0 {
		o.MaxPayload = 1 << 20
	}
	if port > 0 {
		// nats-server only logs a failed bind and then never becomes ready: say it plainly.
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w (set NATS_PORT, or NATS_URL to use a running server)", err)
		}
		_ = ln.Close()
	}
	ns, err := server.NewServer(&o)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on %s", net.JoinHostPort(host, strconv.Itoa(port)))
	}
	return &NATS{Server: ns, opts: o}, nil
}

// Options are the options the server was started with, its port included: start another with
// them to restart it in place, with the same JetStream files.
func (n *NATS) Options() server.Options { return n.opts }

// LoadNATSConfig reads a nats-server configuration file, as `nats-server --config` does, for an
// embedded server: its $VARIABLES are taken from the environment, and one that is not set is an
// error naming it. A user whose password came out empty is refused too: with an empty password,
// anyone who knows the user's name would get in. The file's monitoring port is turned off (the
// embedded server serves clients only) and StartNATS sets where it listens.
func LoadNATSConfig(path string) (*server.Options, error) {
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	for _, u := range opts.Users {
		if u.Password == "" {
			return nil, fmt.Errorf("user %q has an empty password (is the variable it names set?)", u.Username)
		}
	}
	if opts.Username != "" && opts.Password == "" {
		return nil, fmt.Errorf("user %q has an empty password", opts.Username)
	}
	opts.HTTPHost, opts.HTTPPort, opts.HTTPSPort = "", 0, 0
	return opts, nil
}

// URL is the client URL of the server.
func (n *NATS) URL() string { return n.ClientURL() }

// Stop shuts the server down and waits for it.
func (n *NATS) Stop() {
	n.Shutdown()
	n.WaitForShutdown()
}

// Store is a running embedded FerretDB, behind its write gate (gate.go).
type Store struct {
	uri    string
	dir    string // where its SQLite files are
	gate   *writeGate
	socket string // the directory of FerretDB's own Unix socket, which only the gate uses
	cancel context.CancelFunc
	done   chan struct{}
}

// StartStore starts FerretDB, with clients reaching it on addr ("127.0.0.1:0" picks a free port)
// through the write gate, keeping its SQLite files in dir. log may be nil: FerretDB is chatty,
// so it is silenced unless given one.
func StartStore(addr, dir string, log *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded store: data dir: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded store: data dir: %w", err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// A socket's path must be short (about 100 bytes), so not in dir, which may be deep.
	socket, err := os.MkdirTemp("", "breakerchain-store-")
	if err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	s := &Store{dir: abs, socket: socket, done: make(chan struct{})}
	if s.gate, err = startWriteGate(addr, filepath.Join(socket, "ferretdb.sock")); err != nil {
		_ = os.RemoveAll(socket)
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{Unix: s.gate.store},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    log,
	})
	if err != nil {
		s.gate.stop()
		_ = os.RemoveAll(socket)
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	// ferretdb.New has bound its socket (FerretDB 1.24): the gate can reach it from now on.
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(s.done)
		_ = f.Run(ctx)
	}()
	s.uri = "mongodb://" + s.gate.ln.Addr().String() + "/?maxPoolSize=4"
	return s, nil
}

// URI is the mongodb:// address of the store. It asks clients for a pool of four connections.
// SQLite has one writer, so more connections than one only take turns at writing (inserts and
// deletes leave in batches anyway: internal/store/batch.go); but its WAL lets readers in while
// one writes, and a re-drive reads its order and its outcome before it runs: with one
// connection those reads queued behind the batches, and a backlog drained at 164–170 orders/s
// against 238–245 with four, side by side (docs/BENCHMARKS.md).
func (s *Store) URI() string { return s.uri }

// Stop closes the gate, its connections and the SQLite backend, and waits for them.
func (s *Store) Stop() {
	s.gate.stop()
	s.cancel()
	<-s.done
	_ = os.RemoveAll(s.socket)
}
