// Package mongowire reads MongoDB wire-protocol messages as far as a relay in front of a store
// needs: whole messages, their ids, and an OP_MSG's command. The embedded store's write gate and
// the tests' fault-injecting proxy both relay this way.
package mongowire

import (
	"encoding/binary"
	"errors"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Message is one whole wire message, its 16-byte header included.
type Message []byte

const (
	opMsg = 2013
	// MaxSize is MongoDB's maxMessageSizeBytes, which FerretDB announces too.
	MaxSize = 48_000_000
	// moreToCome is the OP_MSG flag saying no reply will come to this message.
	moreToCome = 1 << 1
)

// Read reads one message from r.
func Read(r io.Reader) (Message, error) {
	var header [16]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return nil, err
	}
	n := int32(binary.LittleEndian.Uint32(header[:4]))
	if n < 16 || n > MaxSize {
		return nil, errors.New("wire message length out of range")
	}
	m := make(Message, n)
	copy(m, header[:])
	if _, err := io.ReadFull(r, m[16:]); err != nil {
		return nil, err
	}
	return m, nil
}

// RequestID is the sender's id of the message.
func (m Message) RequestID() int32 { return int32(binary.LittleEndian.Uint32(m[4:8])) }

// ResponseTo is the id of the request the message answers.
func (m Message) ResponseTo() int32 { return int32(binary.LittleEndian.Uint32(m[8:12])) }

// ExpectsReply is false for an OP_MSG its sender flagged moreToCome (an unacknowledged write):
// no reply will come to it.
func (m Message) ExpectsReply() bool {
	return !(m.isOpMsg() && binary.LittleEndian.Uint32(m[16:20])&moreToCome != 0)
}

func (m Message) isOpMsg() bool {
	return len(m) >= 21 && binary.LittleEndian.Uint32(m[12:16]) == opMsg
}

// Command is an OP_MSG's command document, its body section: the command is its first key (the
// collection is that key's value for most), and "$db" names the database. ok is false for any
// other message.
func (m Message) Command() (body bson.Raw, name string, ok bool) {
	if !m.isOpMsg() {
		return nil, "", false
	}
	// flags(4), then sections: kind 0 is one document; kind 1 is a size counting itself, a name
	// and documents. Either may come first.
	for rest := m[20:]; len(rest) > 5; {
		kind, size := rest[0], int(binary.LittleEndian.Uint32(rest[1:5]))
		if size < 5 || size > len(rest)-1 {
			return nil, "", false
		}
		if kind == 0 {
			body := bson.Raw(rest[1 : 1+size])
			first, err := body.IndexErr(0)
			if err != nil {
				return nil, "", false
			}
			return body, first.Key(), true
		}
		rest = rest[1+size:]
	}
	return nil, "", false
}

// Reply is an OP_MSG answering request responseTo with the BSON document doc.
func Reply(responseTo int32, doc []byte) Message {
	m := make(Message, 21, 21+len(doc))
	binary.LittleEndian.PutUint32(m[0:], uint32(21+len(doc)))
	binary.LittleEndian.PutUint32(m[4:], uint32(responseTo)+1<<30) // any id of ours
	binary.LittleEndian.PutUint32(m[8:], uint32(responseTo))
	binary.LittleEndian.PutUint32(m[12:], opMsg) // flags 0; section kind 0 (body)
	return append(m, doc...)
}
