package order

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/messaging"
)

// The documents and answers below are as the version before the one shape of an order wrote
// them (its record, result, entry and Detail, each a struct of its own): contracts with what is
// already in a store or a stream, and with clients.
const (
	savedOrder   = `{"_id":"o1","fingerprint":"4ebe62f8f12cf97e1e232db0be6393e54eb6eb3d4ffa62d91e6374f9ea1d3208","origin":"o1","request_id":"req-1","trace":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","created_at":{"$date":"2024-05-06T07:08:09.123Z"},"date":{"$date":"2023-01-18T20:23:47Z"},"items":["tea","cup"],"payment_body":"{\"id\":\"p1\",\"amount\":5,\"shipment\":{\"id\":\"s1\",\"directions\":\"home\"}}","status":"pending","reason":"in progress: payment has not answered yet","updated_at":{"$date":"2024-05-06T07:08:09.123Z"}}`
	savedOpen    = `{"_id":"o1","fingerprint":"4ebe62f8f12cf97e1e232db0be6393e54eb6eb3d4ffa62d91e6374f9ea1d3208","origin":"o1","request_id":"req-1","trace":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","created_at":{"$date":"2024-05-06T07:08:09.123Z"},"date":{"$date":"2023-01-18T20:23:47Z"},"items":["tea","cup"],"payment_body":"{\"id\":\"p1\",\"amount\":5,\"shipment\":{\"id\":\"s1\",\"directions\":\"home\"}}","status":"pending","reason":"in progress: payment has not answered yet","updated_at":{"$date":"2024-05-06T07:08:09.123Z"},"check_at":{"$date":"2024-05-06T07:09:09.123Z"}}`
	savedResult  = `{"_id":"o1","status":"rejected","reason":"shipment refused it: bad directions","hops":{"service":"order","time":{"$date":"2024-05-06T07:08:09.123Z"},"outcome":"ok","line":"This is order @08:09 -> Next","next":{"service":"payment","time":{"$date":"2024-05-06T07:08:09.123Z"},"outcome":"ok","line":"This is payment @08:09 -> Next","next":{"service":"shipment","time":{"$date":"2024-05-06T07:08:09.123Z"},"outcome":"refused","reason":"bad directions","line":"shipment @08:09 -> refused (bad directions)"}}},"updated_at":{"$date":"2024-05-06T07:08:09.123Z"},"attempts":2,"last_error":"shipment refused it: bad directions","compensation":{"payment":"voided"}}`
	queuedEntry  = `{"id":"o1","db":"db1","attempts":3,"reason":"shipment unavailable: no responders","reply":{"service":"order","time":"2024-05-06T07:08:09.123Z","outcome":"ok","line":"This is order @08:09 -\u003e Next","next":{"service":"payment","time":"2024-05-06T07:08:09.123Z","outcome":"ok","line":"This is payment @08:09 -\u003e Next","next":{"service":"shipment","time":"2024-05-06T07:08:09.123Z","outcome":"unavailable","reason":"no responders","line":"shipment @08:09 -\u003e unavailable (no responders)"}}},"last_error":"shipment unavailable: no responders","since":"2024-05-06T07:08:09.123Z","due":"2024-05-06T07:09:09.123Z"}`
	answerFinal  = `{"id":"o1","status":"rejected","reason":"shipment refused it: bad directions","reply":{"service":"order","time":"2024-05-06T07:08:09.123Z","outcome":"ok","line":"This is order @08:09 -\u003e Next","next":{"service":"payment","time":"2024-05-06T07:08:09.123Z","outcome":"ok","line":"This is payment @08:09 -\u003e Next","next":{"service":"shipment","time":"2024-05-06T07:08:09.123Z","outcome":"refused","reason":"bad directions","line":"shipment @08:09 -\u003e refused (bad directions)"}}},"compensation":{"payment":"voided"},"items":["tea","cup"],"payment":{"id":"p1","amount":5,"shipment":{"id":"s1","directions":"home"}},"created_at":"2024-05-06T07:08:09.123Z","updated_at":"2024-05-06T07:08:09.123Z","attempts":2,"last_error":"shipment refused it: bad directions","trace_id":"0af7651916cd43dd8448eb211c80319c"}`
	answerQueued = `{"id":"o1","status":"pending","reason":"shipment unavailable: no responders","reply":{"service":"order","time":"2024-05-06T07:08:09.123Z","outcome":"ok","line":"This is order @08:09 -\u003e Next","next":{"service":"payment","time":"2024-05-06T07:08:09.123Z","outcome":"ok","line":"This is payment @08:09 -\u003e Next","next":{"service":"shipment","time":"2024-05-06T07:08:09.123Z","outcome":"unavailable","reason":"no responders","line":"shipment @08:09 -\u003e unavailable (no responders)"}}},"items":["tea","cup"],"payment":{"id":"p1","amount":5,"shipment":{"id":"s1","directions":"home"}},"created_at":"2024-05-06T07:08:09.123Z","updated_at":"2024-05-06T07:08:09.123Z","attempts":3,"last_error":"shipment unavailable: no responders","next_attempt":"2024-05-06T07:09:09.123Z","trace_id":"0af7651916cd43dd8448eb211c80319c"}`
	answerSaved  = `{"id":"o1","status":"pending","reason":"in progress: payment has not answered yet","items":[],"payment":{"id":"p1","amount":5,"shipment":{"id":"s1","directions":"home"}},"created_at":"2024-05-06T07:08:09.123Z","updated_at":"2024-05-06T07:08:09.123Z","attempts":0,"trace_id":"0af7651916cd43dd8448eb211c80319c"}`
)

// shapeFixture is order o1 as POST /create saves it (at at), a final state that rejected it,
// and a pending one.
func shapeFixture(t *testing.T) (rec *record, final, pending *state, at time.Time) {
	t.Helper()
	b, err := service.Split(downstream, []byte(`{"id":"o1","date":"2023-01-18T20:23:47Z","items":["tea","cup"],"payment":{"amount":5,"id":"p1","shipment":{"id":"s1","directions":"home"}}}`), Decode)
	if err != nil {
		t.Fatal(err)
	}
	ctx := messaging.WithCall(context.Background(), messaging.Call{Hop: 1, RequestID: "req-1", Origin: "o1"})
	rec = newRecord(ctx, b)
	at = time.Date(2024, 5, 6, 7, 8, 9, 123000000, time.UTC)
	rec.CreatedAt, rec.State.UpdatedAt = at, at
	rec.Trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ship := messaging.ReplyFailed("shipment", at, messaging.OutcomeRefused, "bad directions")
	pay := messaging.ReplyDone("payment", at, false, &ship)
	reply := messaging.ReplyDone("order", at, false, &pay)
	final = stateAfter(2, "payment unavailable: x", &reply, nil)
	final.UpdatedAt = at
	final.Compensation = map[string]messaging.Outcome{"payment": messaging.OutcomeVoided}
	down := messaging.ReplyFailed("shipment", at, messaging.OutcomeUnavailable, "no responders")
	pay2 := messaging.ReplyDone("payment", at, false, &down)
	reply2 := messaging.ReplyDone("order", at, false, &pay2)
	pending = stateAfter(3, "", &reply2, nil)
	return rec, final, pending, at
}

// The store's documents are written as before — the order as saved, its open copy, its final
// result — and read back to the same document, so documents already in a store read as they did.
func TestStoreDocumentsAsBefore(t *testing.T) {
	rec, final, _, at := shapeFixture(t)
	for _, row := range []struct {
		name string
		doc  any
		want string
		into func() any
	}{
		{"order", rec, savedOrder, func() any { return new(record) }},
		{"open copy", &openOrder{Order: *rec, CheckAt: at.Add(time.Minute)}, savedOpen, func() any { return new(openOrder) }},
		{"result", &result{ID: rec.ID, State: *final}, savedResult, func() any { return new(result) }},
	} {
		t.Run(row.name, func(t *testing.T) {
			if got := extJSON(t, row.doc); got != row.want {
				t.Errorf("written\n%s\nwant\n%s", got, row.want)
			}
			read := row.into()
			if err := bson.UnmarshalExtJSON([]byte(row.want), false, read); err != nil {
				t.Fatal(err)
			}
			if got := extJSON(t, read); got != row.want {
				t.Errorf("read and written again\n%s\nwant\n%s", got, row.want)
			}
		})
	}
}

// An order saved before payment_body, with its payment flattened under "payment", reads with
// that payment and sends it as that version did.
func TestLegacyOrderDocument(t *testing.T) {
	doc := `{"_id":"old","fingerprint":"f","created_at":{"$date":"2023-01-18T20:23:47Z"},"items":[],` +
		`"payment":{"id":"p","amount":5.0,"shipment_id":"s","directions":"home"},` +
		`"status":"pending","reason":"in progress: payment has not answered yet","updated_at":{"$date":"2023-01-18T20:23:47Z"}}`
	var rec record
	if err := bson.UnmarshalExtJSON([]byte(doc), false, &rec); err != nil {
		t.Fatal(err)
	}
	if want := `{"amount":5,"id":"p","shipment":{"directions":"home","id":"s"}}`; string(rec.paymentBody()) != want {
		t.Errorf("payment body %s, want %s", rec.paymentBody(), want)
	}
	if rec.State.Status != StatusPending || rec.State.Reason != ReasonInProgress || rec.CreatedAt.Year() != 2023 {
		t.Errorf("read %+v", rec)
	}
}

// A pending order's entry is written as before, and one already in a stream reads back to the
// same message and state.
func TestQueueEntryAsBefore(t *testing.T) {
	_, _, pending, at := shapeFixture(t)
	e := pending.entry("o1", "db1", at, at.Add(time.Minute))
	if got, _ := json.Marshal(e); string(got) != queuedEntry {
		t.Errorf("written\n%s\nwant\n%s", got, queuedEntry)
	}
	var read entry
	if err := json.Unmarshal([]byte(queuedEntry), &read); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(read, e) {
		t.Errorf("read %+v\nwant %+v", read, e)
	}
	st := read.state(at)
	pending.NextAttempt = &read.Due
	pending.UpdatedAt = at
	if !reflect.DeepEqual(&st, pending) {
		t.Errorf("its state %+v\nwant      %+v", st, pending)
	}
}

// GET /orders/{id} answers as before: for an order as saved, queued pending, and final.
func TestDetailAsBefore(t *testing.T) {
	rec, final, pending, at := shapeFixture(t)
	saved := *rec
	saved.Items = nil // shown as [], never null
	queued := *rec
	e := pending.entry("o1", "db1", at, at.Add(time.Minute))
	queued.State = e.state(queued.State.UpdatedAt) // as ledger.loadState
	done := *rec
	done.State = *final
	for _, row := range []struct {
		name string
		rec  *record
		want string
	}{{"saved", &saved, answerSaved}, {"queued", &queued, answerQueued}, {"final", &done, answerFinal}} {
		t.Run(row.name, func(t *testing.T) {
			if got, _ := json.Marshal(row.rec.detail()); string(got) != row.want {
				t.Errorf("answered\n%s\nwant\n%s", got, row.want)
			}
		})
	}
}

// Every field of an order's state shows in GET /orders/{id}'s answer: the answer is derived from
// the state (record.detail), so a field added to one and not the other fails here.
func TestDetailShowsEveryStateField(t *testing.T) {
	rec, final, _, at := shapeFixture(t)
	rec.State = *final
	rec.State.NextAttempt = &at
	whole, _ := json.Marshal(rec.detail())
	v := reflect.ValueOf(&rec.State).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		saved := reflect.ValueOf(rec.State).Field(i)
		v.Field(i).SetZero()
		without, _ := json.Marshal(rec.detail())
		v.Field(i).Set(saved)
		if string(without) == string(whole) {
			t.Errorf("state's %s does not show in the answer", name)
		}
	}
}

func extJSON(t *testing.T, doc any) string {
	t.Helper()
	b, err := bson.MarshalExtJSON(doc, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
