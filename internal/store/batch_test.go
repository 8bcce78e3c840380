package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// One batch with a duplicate id, a document the store refuses, one whose caller gave up while it
// was queued and good ones side by side, against the real embedded store: each caller gets its
// own answer, the one that gave up is not sent, and only the good ones are stored.
func TestBatchAnswersEachDocument(t *testing.T) {
	uri, db := testkit.Database(t)
	c := testkit.Client(t, uri).Database(db).Collection("batch")
	if _, err := c.InsertOne(t.Context(), bson.D{{Key: "_id", Value: "taken"}}); err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	// The one that gave up comes first: the others' answers must follow the documents sent.
	errs := store.WriteBatch(c, []context.Context{gone, bg, bg, bg, bg}, []any{
		bson.D{{Key: "_id", Value: "gave-up"}},
		bson.D{{Key: "_id", Value: "good-1"}},
		bson.D{{Key: "_id", Value: "taken"}},
		bson.D{{Key: "_id", Value: "refused"}, {Key: "$bad", Value: 1}},
		bson.D{{Key: "_id", Value: "good-2"}},
	})
	want := []error{store.ErrUnavailable, nil, store.ErrDuplicate, store.ErrRefused, nil}
	for i, err := range errs {
		if (want[i] == nil) != (err == nil) || !errors.Is(err, want[i]) {
			t.Errorf("document %d: %v, want %v", i, err, want[i])
		}
	}
	ids := testkit.IDs(t, c)
	if len(ids) != 3 || !ids["taken"] || !ids["good-1"] || !ids["good-2"] {
		t.Errorf("stored %v, want taken, good-1 and good-2", ids)
	}
}

type doc struct {
	store.Meta `bson:",inline"`
}

// 64 concurrent InsertOnce calls into one collection, with the reply to the first insert command
// lost (the connection cut): every document lands exactly once, every caller is told it created
// its document (the resend finds its own), and those queued behind the first batch left as one.
func TestConcurrentInsertsLeaveTogether(t *testing.T) {
	uri, db := testkit.Database(t)
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	px := testkit.StartProxy(t, u.Host)
	const n = 64
	var commands, held atomic.Int64
	var coll *store.Collection[doc]
	c, err := store.Connect("mongodb://"+px.Addr()+"/?maxPoolSize=1", &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if e.CommandName != "insert" || commands.Add(1) != 1 {
				return
			}
			// Hold the first insert in flight until the others are queued behind it, so the
			// test does not depend on how the goroutines happen to be scheduled.
			docs, _ := e.Command.Lookup("documents").Array().Values()
			held.Store(int64(len(docs)))
			for deadline := time.Now().Add(10 * time.Second); store.Queued(coll) < n-len(docs) && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	coll = store.NewCollection[doc](c.Database(db), "together")
	px.DropNextInsertReply("")

	var wg sync.WaitGroup
	created := make(chan bool, n)
	for i := range n {
		wg.Go(func() {
			d := &doc{Meta: store.Meta{ID: fmt.Sprintf("d%d", i), Fingerprint: "p"}}
			_, ok, err := store.InsertOnce(context.Background(), coll, d)
			if err != nil {
				t.Errorf("d%d: %v", i, err)
			}
			created <- ok
		})
	}
	wg.Wait()
	close(created)
	for ok := range created {
		if !ok {
			t.Error("a caller was told its new document was not created")
		}
	}
	if px.Dropped() != 1 {
		t.Errorf("%d replies dropped, want 1", px.Dropped())
	}
	if got := testkit.Count(t, testkit.Client(t, uri), db, "together", nil); got != n {
		t.Errorf("%d documents stored, want %d: each exactly once", got, n)
	}
	// The held batch, the rest gathered behind it (if any were left), and each of the held ones
	// resent alone.
	want := 1 + held.Load()
	if held.Load() < n {
		want++
	}
	if got := commands.Load(); got != want {
		t.Errorf("%d insert commands for %d concurrent inserts, %d of them resent, want %d: the queued ones did not leave together", got, n, held.Load(), want)
	}
	t.Logf("%d documents in %d insert commands, the reply to the first (%d documents) lost", n, commands.Load(), held.Load())
}

// What a bulk write's error says of each document, for answers the embedded store never gives:
// a write concern not met makes every document without an error of its own "unknown" (it was
// written, it may not stay), whatever the others' errors; a command error on a batch of several
// is "unavailable" (some may have landed: a resend lets the _id decide); on a batch of one it is
// that document's error, as for a single insert.
// Concurrent deletes by _id leave together too: 64 of them while one is in flight go as one more
// delete command (one DeleteMany, being many), and each document is gone, the others left.
func TestConcurrentDeletesLeaveTogether(t *testing.T) {
	uri, db := testkit.Database(t)
	const n = 64
	var commands, held atomic.Int64
	var coll *store.Collection[doc]
	c, err := store.Connect(uri, &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if e.CommandName != "delete" || commands.Add(1) != 1 {
				return
			}
			// Hold the first delete until the others are queued behind it.
			// Ids held: a statement each, or one statement of many.
			stmts, _ := e.Command.Lookup("deletes").Array().Values()
			held.Store(int64(len(stmts)))
			if in, ok := stmts[0].Document().Lookup("q", "_id", "$in").ArrayOK(); ok {
				ids, _ := in.Values()
				held.Store(int64(len(ids)))
			}
			for deadline := time.Now().Add(3 * time.Second); int64(store.QueuedDeletes(coll)) < n-held.Load() && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	coll = store.NewCollection[doc](c.Database(db), "gone")
	for i := range n + 1 {
		if err := coll.Insert(context.Background(), &doc{Meta: store.Meta{ID: fmt.Sprintf("d%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := coll.Delete(context.Background(), fmt.Sprintf("d%d", i)); err != nil {
				t.Errorf("delete d%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	want := int64(1) // the held batch, and the rest together behind it if any were left
	if held.Load() < n {
		want++
	}
	if got := commands.Load(); got != want {
		t.Errorf("%d delete commands for %d concurrent deletes, the first of %d, want %d: the queued ones did not leave together", got, n, held.Load(), want)
	}
	if ids := testkit.IDs(t, testkit.Client(t, uri).Database(db).Collection("gone")); len(ids) != 1 || !ids[fmt.Sprintf("d%d", n)] {
		t.Errorf("left %v, want only d%d", ids, n)
	}
}

func TestDocumentError(t *testing.T) {
	wce := mongo.BulkWriteException{
		WriteConcernError: &mongo.WriteConcernError{Code: 64, Message: "waiting for replication timed out"},
		WriteErrors:       []mongo.BulkWriteError{{WriteError: mongo.WriteError{Index: 1, Code: 11000, Message: "E11000 duplicate key"}}},
	}
	for i, want := range []error{store.ErrUnknown, store.ErrDuplicate, store.ErrUnknown} {
		if err := store.DocumentError(wce, i, 3); !errors.Is(err, want) {
			t.Errorf("document %d of a batch whose write concern failed: %v, want %v", i, err, want)
		}
	}
	cmd := mongo.CommandError{Code: 2, Message: "BadValue"}
	if err := store.DocumentError(cmd, 0, 3); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a command error on a batch of 3: %v, want unavailable", err)
	}
	if err := store.DocumentError(cmd, 0, 1); errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrUnknown) {
		t.Errorf("a command error on a batch of 1: %v, want the plain error, as for a single insert", err)
	}
}

// Writes ask a majority to acknowledge them, whatever the URI leaves out: on a replica set an
// insert acknowledged by the primary alone can be rolled back by an election (see the package
// doc). The insert command as it leaves the driver carries w: "majority".
func TestWritesAskAMajority(t *testing.T) {
	uri, db := testkit.Database(t)
	var concern atomic.Value
	c, err := store.Connect(uri, &event.CommandMonitor{
		Started: func(_ context.Context, e *event.CommandStartedEvent) {
			if e.CommandName == "insert" {
				concern.Store(e.Command.Lookup("writeConcern").String())
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	coll := store.NewCollection[doc](c.Database(db), "majority")
	if err := coll.Insert(t.Context(), &doc{Meta: store.Meta{ID: "m", Fingerprint: "p"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := concern.Load().(string); got != `{"w": "majority"}` {
		t.Errorf("insert sent with writeConcern %s, want {\"w\": \"majority\"}", got)
	}
}
