package embedded

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breakerchain/breakerchain/internal/mongowire"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The gate's turns, seen from both sides of it: the store's side is a socket this test answers by
// hand, so it decides when each reply comes. A write into a database waits while another write
// into it has no reply yet; reads, deletes and writes into another database go by; the turn
// passes when the reply comes, even when its client left before; a write that asks for no reply
// holds no turn; a client that does not read its replies holds up no one else; a request id used
// twice loses no turn.
func TestWriteGateTakesTurns(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "s.sock")
	store, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g, err := startWriteGate("127.0.0.1:0", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer g.stop()
	type pair struct{ client, store net.Conn }
	connect := func() pair {
		c, err := net.Dial("tcp", g.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := store.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
		return pair{c, s}
	}
	send := func(p pair, id int32, flags uint32, cmd ...bson.E) {
		t.Helper()
		if _, err := p.client.Write(opMsg(t, id, flags, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	arrives := func(p pair, id int32) {
		t.Helper()
		_ = p.store.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := mongowire.Read(p.store)
		if err != nil || m.RequestID() != id {
			t.Fatalf("request %d did not reach the store: %v", id, err)
		}
	}
	waits := func(p pair, what string) {
		t.Helper()
		_ = p.store.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if m, err := mongowire.Read(p.store); err == nil {
			t.Fatalf("%s reached the store (request %d): it should have waited", what, m.RequestID())
		}
	}
	reply := func(p pair, id int32) {
		t.Helper()
		if _, err := p.store.Write(mongowire.Reply(id, bsonDoc(t, bson.D{{Key: "ok", Value: 1}}))); err != nil {
			t.Fatal(err)
		}
		_ = p.client.SetReadDeadline(time.Now().Add(10 * time.Second))
		if m, err := mongowire.Read(p.client); err != nil || m.ResponseTo() != id {
			t.Fatalf("the reply to %d did not reach the client: %v", id, err)
		}
	}
	insert := func(db string) []bson.E {
		return []bson.E{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{}}, {Key: "$db", Value: db}}
	}

	a, b, c, d, e := connect(), connect(), connect(), connect(), connect()
	send(a, 1, 0, insert("shop")...)
	arrives(a, 1)
	send(b, 2, 0, []bson.E{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{}}, {Key: "$db", Value: "shop"}}...)
	waits(b, "an update into the same database")
	send(c, 3, 0, bson.E{Key: "find", Value: "c"}, bson.E{Key: "$db", Value: "shop"})
	arrives(c, 3)
	send(c, 4, 0, bson.E{Key: "delete", Value: "c"}, bson.E{Key: "deletes", Value: bson.A{}}, bson.E{Key: "$db", Value: "shop"})
	arrives(c, 4)
	send(e, 5, 0, insert("other")...)
	arrives(e, 5)
	reply(e, 5)
	send(d, 6, 1<<1, insert("shop")...) // moreToCome: no reply will come
	arrives(d, 6)

	reply(a, 1)
	arrives(b, 2)
	send(a, 7, 0, []bson.E{{Key: "findAndModify", Value: "c"}, {Key: "$db", Value: "shop"}}...)
	waits(a, "a findAndModify into the same database")
	// b leaves before its update is answered: the turn is the update's until the store answers.
	_ = b.client.Close()
	waits(a, "a findAndModify while the update of a client that left was still in the store")
	if _, err := b.store.Write(mongowire.Reply(2, bsonDoc(t, bson.D{{Key: "ok", Value: 1}}))); err != nil {
		t.Fatal(err)
	}
	arrives(a, 7)
	reply(a, 7)

	// A client that does not read its replies holds up only itself: its next write waits for
	// it to read, without a turn, and the others write.
	f, h := connect(), connect()
	// A small receive buffer turns off Linux's growing it, so the reply below cannot all fit in
	// the sockets' buffers (the sender's is at most net.core.wmem_max, 4 MiB by default).
	if err := f.client.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	send(f, 8, 0, bson.E{Key: "find", Value: "c"}, bson.E{Key: "$db", Value: "shop"})
	arrives(f, 8)
	big := mongowire.Reply(8, bsonDoc(t, bson.D{{Key: "ok", Value: 1}, {Key: "pad", Value: strings.Repeat("x", 8<<20)}}))
	go func() { _, _ = f.store.Write(big) }() // more than the sockets buffer: the relay is stuck writing it
	send(f, 9, 0, insert("shop")...)
	waits(f, "an insert from a client that has not read its last reply")
	send(h, 10, 0, insert("shop")...)
	arrives(h, 10)
	reply(h, 10)

	// The same request id twice on one connection, into two databases: each turn comes back.
	send(e, 11, 0, insert("shop")...)
	arrives(e, 11)
	send(e, 11, 0, insert("other")...)
	waits(e, "a second write sent before the first was answered")
	reply(e, 11)
	arrives(e, 11)
	reply(e, 11)
	send(h, 12, 0, insert("shop")...)
	arrives(h, 12)
	send(c, 13, 0, insert("other")...)
	waits(c, "an insert from a client still owed the replies to its find and delete")
	reply(c, 3)
	reply(c, 4)
	arrives(c, 13)
}

// The gate in front of the real store: inserts and updates from writers on many connections all
// land. (Unacknowledged writes are not tried here: FerretDB answers them anyway, which puts the
// next reply on their connection out of step, with or without the gate.)
func TestWriteGateInFrontOfTheStore(t *testing.T) {
	s, err := StartStore("127.0.0.1:0", t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(ctx) }()
	coll := c.Database("shop").Collection("orders")

	const writers, each = 8, 25
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			var err error
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
					break
				}
				if i%2 == 0 {
					if _, err = coll.UpdateByID(ctx, id, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: i}}}}); err != nil {
						break
					}
				}
			}
			errs <- err
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != writers*each {
		t.Fatalf("%d documents (%v), want %d", n, err, writers*each)
	}
	updated := bson.D{{Key: "n", Value: bson.D{{Key: "$exists", Value: true}}}}
	if n, err := coll.CountDocuments(ctx, updated); err != nil || n != writers*(each+1)/2 {
		t.Fatalf("%d documents updated (%v), want %d", n, err, writers*(each+1)/2)
	}
}

// opMsg is an OP_MSG with request id, flags and one body section holding cmd.
func opMsg(t *testing.T, id int32, flags uint32, cmd bson.D) []byte {
	doc := bsonDoc(t, cmd)
	m := make([]byte, 21, 21+len(doc))
	binary.LittleEndian.PutUint32(m[0:], uint32(21+len(doc)))
	binary.LittleEndian.PutUint32(m[4:], uint32(id))
	binary.LittleEndian.PutUint32(m[12:], 2013)
	binary.LittleEndian.PutUint32(m[16:], flags)
	return append(m, doc...)
}

func bsonDoc(t *testing.T, d bson.D) []byte {
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
