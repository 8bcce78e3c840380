package mongowire

import (
	"bytes"
	"encoding/binary"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// An OP_MSG's command is found whichever section comes first; a message flagged moreToCome
// expects no reply; a length outside the protocol's bounds is refused, not allocated.
func TestCommand(t *testing.T) {
	body, _ := bson.Marshal(bson.D{{Key: "insert", Value: "orders"}, {Key: "$db", Value: "shop"}})
	doc, _ := bson.Marshal(bson.D{{Key: "_id", Value: "a"}})
	seq := append(binary.LittleEndian.AppendUint32(nil, uint32(4+len("documents\x00")+len(doc))), "documents\x00"...)
	seq = append(seq, doc...)
	msg := func(flags uint32, sections ...[]byte) Message {
		m := binary.LittleEndian.AppendUint32(make([]byte, 16), flags)
		for _, s := range sections {
			m = append(m, s...)
		}
		binary.LittleEndian.PutUint32(m[0:], uint32(len(m)))
		binary.LittleEndian.PutUint32(m[4:], 7)
		binary.LittleEndian.PutUint32(m[12:], opMsg)
		return m
	}
	kind0, kind1 := append([]byte{0}, body...), append([]byte{1}, seq...)

	for _, m := range []Message{msg(0, kind0, kind1), msg(0, kind1, kind0)} {
		b, name, ok := m.Command()
		if !ok || name != "insert" || b.Lookup("$db").StringValue() != "shop" {
			t.Fatalf("Command() = %v %q %v, want the insert into shop", b, name, ok)
		}
		if !m.ExpectsReply() {
			t.Fatal("a message without moreToCome expects a reply")
		}
	}
	if msg(moreToCome, kind0).ExpectsReply() {
		t.Fatal("a message flagged moreToCome expects no reply")
	}
	if _, _, ok := msg(0, kind1).Command(); ok {
		t.Fatal("a message without a body section has no command")
	}

	read, err := Read(bytes.NewReader(msg(0, kind0)))
	if err != nil {
		t.Fatal(err)
	}
	if read.RequestID() != 7 {
		t.Fatalf("request id %d, want 7", read.RequestID())
	}
	huge := binary.LittleEndian.AppendUint32(nil, MaxSize+1)
	if _, err := Read(bytes.NewReader(append(huge, make([]byte, 12)...))); err == nil {
		t.Fatal("Read took a message longer than MaxSize")
	}
}
