// Package testkit starts real servers for tests: an embedded nats-server per test on a random
// port, and one embedded FerretDB per test binary (ferretdb.New must not run in parallel under
// -race) with a fresh database per test, dropped when the test ends. Nothing here mocks NATS or
// MongoDB.
// It is for tests only and must not know what a test checks: it starts servers and services.
package testkit

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/goleak"

	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/internal/store"
)

var shared struct {
	once  sync.Once
	store *embedded.Store
	dir   string
	err   error
	dbs   atomic.Int64
}

// Main runs the tests of a package and stops the shared store afterwards. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.store != nil {
		shared.store.Stop()
		_ = os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// StoreURL returns the address of the binary's embedded store, starting it on first use.
func StoreURL(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "breakerchain-store-")
		if shared.err == nil {
			shared.store, shared.err = embedded.StartStore("127.0.0.1:0", shared.dir, nil)
		}
	})
	if shared.err != nil {
		t.Fatalf("embedded store: %v", shared.err)
	}
	return shared.store.URI()
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// Database returns the store's address and the name of a fresh database for this test; it is
// dropped when the test ends.
func Database(t testing.TB) (uri, name string) {
	t.Helper()
	uri = StoreURL(t)
	name = fmt.Sprintf("t%d_%s", shared.dbs.Add(1), unsafeName.ReplaceAllString(t.Name(), "_"))
	if len(name) > 60 {
		name = name[:60]
	}
	t.Cleanup(func() {
		c := Client(t, uri)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Database(name).Drop(ctx)
	})
	return uri, name
}

// Client returns a client of the store at uri, disconnected when the test ends.
func Client(t testing.TB, uri string) *mongo.Client {
	t.Helper()
	c, err := store.Connect(uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// NATS starts a nats-server with JetStream on a random port for this test.
func NATS(t testing.TB) *embedded.NATS {
	t.Helper()
	ns, err := embedded.StartNATS("127.0.0.1", -1, &server.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	return ns
}

// NATSCluster starts n nats-servers with JetStream, clustered on random ports of 127.0.0.1, and
// waits until JetStream has a leader. Each is stopped when the test ends (stopping one earlier is
// the point of such a test).
func NATSCluster(t testing.TB, n int) []*embedded.NATS {
	t.Helper()
	ports := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		routes[i] = &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i]))}
	}
	nodes := make([]*embedded.NATS, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			opts := &server.Options{
				ServerName: fmt.Sprintf("n%d", i+1), JetStream: true, StoreDir: t.TempDir(), NoLog: true,
				Cluster: server.ClusterOpts{Name: "breakerchain", Host: "127.0.0.1", Port: ports[i]},
				Routes:  routes,
			}
			ns, err := embedded.StartNATS("127.0.0.1", -1, opts)
			nodes[i] = ns
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range nodes {
		t.Cleanup(ns.Stop)
	}
	// A leader, and every node caught up with it: a request to a node that does not know the
	// leader yet goes unanswered.
	Eventually(t, 30*time.Second, "the cluster to elect a JetStream leader known to every node", func() bool {
		leaders := 0
		for _, ns := range nodes {
			if !ns.JetStreamIsCurrent() {
				return false
			}
			if ns.JetStreamIsLeader() {
				leaders++
			}
		}
		return leaders == 1
	})
	return nodes
}

// NATSWithConfig starts a nats-server on a random port of 127.0.0.1 for this test, configured by
// the nats-server configuration file at path (relative paths are from the module's root), as
// embedded.LoadNATSConfig reads it: set the variables it names (t.Setenv) first.
func NATSWithConfig(t testing.TB, path string) *embedded.NATS {
	t.Helper()
	if !filepath.IsAbs(path) {
		path = filepath.Join(Root(t), path)
	}
	opts, err := embedded.LoadNATSConfig(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	opts.NoLog = true
	opts.StoreDir = t.TempDir()
	ns, err := embedded.StartNATS("127.0.0.1", -1, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	return ns
}

// Root returns the module's root directory: where go.mod is, above the test's directory.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// RestartNATS starts the nats-server old again, the one the test stopped: on its port, with its
// JetStream files. The port was free a moment ago; something else may hold it for a moment, so
// it retries for a while.
func RestartNATS(t testing.TB, old *embedded.NATS) *embedded.NATS {
	t.Helper()
	return restartNATS(t, old.Options())
}

// RestartNATSWithoutFiles starts the nats-server old again on its port, with an empty JetStream
// directory: as a server whose volume was lost comes back.
func RestartNATSWithoutFiles(t testing.TB, old *embedded.NATS) *embedded.NATS {
	t.Helper()
	opts := old.Options()
	opts.StoreDir = t.TempDir()
	return restartNATS(t, opts)
}

func restartNATS(t testing.TB, opts server.Options) *embedded.NATS {
	t.Helper()
	var ns *embedded.NATS
	Eventually(t, 10*time.Second, "NATS to restart on its port", func() bool {
		var err error
		ns, err = embedded.StartNATS("127.0.0.1", opts.Port, &opts)
		return err == nil
	})
	t.Cleanup(ns.Stop)
	return ns
}

// IDs reads every _id of collection c.
func IDs(t testing.TB, c *mongo.Collection) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := c.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatalf("find %s: %v", c.Name(), err)
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatalf("read %s: %v", c.Name(), err)
	}
	out := make(map[string]bool, len(docs))
	for _, d := range docs {
		out[d.ID] = true
	}
	return out
}

// Count counts the documents of collection coll in db that match filter (nil: all).
func Count(t testing.TB, c *mongo.Client, db, coll string, filter bson.D) int64 {
	t.Helper()
	if filter == nil {
		filter = bson.D{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.Database(db).Collection(coll).CountDocuments(ctx, filter)
	if err != nil {
		t.Fatalf("count %s: %v", coll, err)
	}
	return n
}

// Eventually polls cond every few milliseconds until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// StoreGoroutines are goleak options that leave out the embedded store's own goroutines: the
// server side of connections (the test's own client keeps some open), its write gate's relays
// of them, and the SQLite pool it opens per database. They belong to the server under test, not
// to the services.
func StoreGoroutines() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/FerretDB/FerretDB/internal/clientconn.(*conn).run"),
		goleak.IgnoreAnyFunction("github.com/FerretDB/FerretDB/internal/clientconn.(*conn).run.func2"),
		goleak.IgnoreAnyFunction("github.com/FerretDB/FerretDB/internal/clientconn.acceptLoop.func1"),
		goleak.IgnoreAnyFunction("github.com/FerretDB/FerretDB/internal/util/ctxutil.WithDelay.func1"),
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		goleak.IgnoreAnyFunction("github.com/breakerchain/breakerchain/internal/embedded.(*writeGate).relay"),
		goleak.IgnoreAnyFunction("github.com/breakerchain/breakerchain/internal/embedded.replies"),
	}
}

// SyncBuffer is a bytes.Buffer safe to write from one goroutine and read from another: a log
// destination a test reads while services write to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
