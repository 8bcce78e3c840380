package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/messaging"
)

// The queue of orders not final yet, in JetStream (see the package doc for why and how): the
// streams observe.OrdersStream (ORDERS) and observe.OrdersSinceStream (ORDERS_SINCE), named
// there so the dashboard reads them without importing order.
const (
	// ConsumerName is the durable pull consumer every order instance takes due orders from.
	ConsumerName = "redriver"
	// TimerSubjects are the timers: message schedules (@at) whose target is the due subject.
	TimerSubjects = "orders.timer.>"
	// DueSubjects are the orders whose timer fired: what the re-driver takes.
	DueSubjects = "orders.due.>"
	// SinceSubjects are those messages, one per pending order.
	SinceSubjects = "orders.since.>"
)

// dueIn is the time d from now as a timer can say it: schedules are to the second, so rounded
// up, never early.
func dueIn(d time.Duration) time.Time {
	t := time.Now().UTC().Add(d)
	if r := t.Truncate(time.Second); r.Before(t) {
		return r.Add(time.Second)
	}
	return t
}

// subjectKey is an order id as a subject token: ids may hold '.', which separates tokens, and
// never '~', so the mapping cannot make two ids one.
func subjectKey(id string) string { return strings.ReplaceAll(id, ".", "~") }

// orderKey is order id of database db as two subject tokens. Ids are per database, and
// instances on different databases may share one NATS: keyed by the id alone, an order of one
// database replaced, then deleted, the timer of another's with the same id. (A database name
// holds no '.': MONGO_DB is checked at start.)
func orderKey(db, id string) string {
	if db == "" {
		db = "~" // never a database's name (MONGO_DB is checked at start); schedule fills it in
	}
	return subjectKey(db) + "." + subjectKey(id)
}

// TimerSubject is where order id of database db has its timer, while it has one.
func TimerSubject(db, id string) string { return "orders.timer." + orderKey(db, id) }

// DueSubject is where order id of database db waits for the re-driver once its timer fired.
func DueSubject(db, id string) string { return "orders.due." + orderKey(db, id) }

// SinceSubject is where order id of database db has its pending mark, while it has one.
func SinceSubject(db, id string) string { return "orders.since." + orderKey(db, id) }

// legacyEntries are where order id's timer and due message were before subjects named the
// database (orders.timer.<id>, one token fewer): read by pending, so that an order queued by an
// older version still shows its state until its timer fires, which the re-driver takes as any.
func legacyEntries(id string) []string {
	return []string{"orders.timer." + subjectKey(id), "orders.due." + subjectKey(id)}
}

// entry is an order's message in the queue: what its timer carries to the re-driver, and what
// GET /orders/{id} reads of an order that is not final. It is a contract with the entries
// already in a stream and with other versions of order reading them, so it keeps its own JSON;
// a state goes in and comes out only here (state.entry, entry.state). It carries a pending
// state — none in a first timer (Attempts 0), set by POST /create or the reconciler — and what
// the re-driver needs beside it: whose order it is (DB), since when (Since), and when it is
// due. It has no updated_at (the order shows its saved time until it is final) and no
// compensation (only a final, rejected order has one).
type entry struct {
	ID        string           `json:"id"`
	DB        string           `json:"db,omitempty"`         // the database the order is in (MONGO_DB); none before it was kept
	Attempts  int              `json:"attempts"`             // runs of the chain that answered; 0: none yet (a first timer)
	Reason    string           `json:"reason,omitempty"`     // why the last run did not complete
	Reply     *messaging.Reply `json:"reply,omitempty"`      // what the last run answered
	LastError string           `json:"last_error,omitempty"` // = Reason; the run that completes the order keeps it
	Since     time.Time        `json:"since"`                // when the order was first queued
	Due       time.Time        `json:"due"`                  // when its timer fires
}

// entry is order id's timer while it is pending in st, due at due. db and since are as in entry.
func (st *state) entry(id, db string, since, due time.Time) entry {
	return entry{ID: id, DB: db, Attempts: st.Attempts, Reason: st.Reason, Reply: st.Hops.reply(),
		LastError: st.LastError, Since: since, Due: due}
}

// state is the pending state e carries, its next attempt when e is due. e does not say when its
// run was: the state says updated, the time the order was last known to change.
func (e *entry) state(updated time.Time) state {
	due := e.Due
	return state{Status: StatusPending, Reason: e.Reason, Hops: toHops(e.Reply), UpdatedAt: updated,
		Attempts: e.Attempts, LastError: e.LastError, NextAttempt: &due}
}

// ErrQueueUnavailable is JetStream not answering: an order that cannot be queued is not taken.
var ErrQueueUnavailable = errors.New("order queue unavailable")

// QueueTimeout bounds each queue operation. It outlasts a JetStream leader election on a
// cluster (a few seconds), during which a publish is retried.
const QueueTimeout = 5 * time.Second

// queue is the ORDERS and ORDERS_SINCE streams as order uses them.
type queue struct {
	db       string // whose orders this instance keeps (MONGO_DB): its subjects' key
	nc       *nats.Conn
	js       jetstream.JetStream
	replicas int
	stream   jetstream.Stream // ORDERS
	since    jetstream.Stream // ORDERS_SINCE
	differ   []Difference     // the settings the queue kept that differ from this instance's
}

// streamConfig is the ORDERS stream: a work queue (a due message leaves once acknowledged) that
// may hold message schedules, on file, replicated replicas times.
func streamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              observe.OrdersStream,
		Description:       "breakerchain: orders not final yet, one timer or due re-drive each",
		Subjects:          []string{TimerSubjects, DueSubjects},
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		AllowMsgSchedules: true,
		AllowRollup:       true, // a schedule replaces the last one on its subject
		AllowDirect:       true, // GET /orders/{id} reads an order's entry by subject
	}
}

// sinceConfig is the ORDERS_SINCE stream: at most one message per order, removed when the order
// is final, on file, replicated replicas times.
func sinceConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              observe.OrdersSinceStream,
		Description:       "breakerchain: orders a re-drive left pending and not final yet, one message each, from the first such re-drive",
		Subjects:          []string{SinceSubjects},
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxMsgsPerSubject: 1,
	}
}

// openQueue opens the streams, creating those that do not exist. Their settings are shared by
// every instance, so an existing stream keeps its own (see ensureStream).
func openQueue(ctx context.Context, nc *nats.Conn, replicas int, db string) (*queue, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	q := &queue{db: db, nc: nc, js: js, replicas: replicas}
	for _, s := range []struct {
		cfg jetstream.StreamConfig
		to  *jetstream.Stream
	}{{streamConfig(replicas), &q.stream}, {sinceConfig(replicas), &q.since}} {
		err = whileStarting(ctx, func(ctx context.Context) (err error) {
			var differ []Difference
			*s.to, differ, err = ensureStream(ctx, js, s.cfg)
			if err == nil {
				q.differ = append(q.differ, differ...)
			}
			return err
		})
		if tooManyReplicas(err) {
			return nil, fmt.Errorf("JetStream stream %s with JETSTREAM_REPLICAS (or ORDER_JETSTREAM_REPLICAS)=%d: want 1 on a single NATS server, more only on a cluster: %w", s.cfg.Name, replicas, err)
		}
		if err != nil {
			return nil, fmt.Errorf("JetStream stream %s (order keeps its pending orders there; is the server run with JetStream, -js, and may this NATS user use its API? see deploy/nats.conf): %w", s.cfg.Name, err)
		}
	}
	return q, nil
}

// heal creates again, as at start, a stream that is gone: NATS restarted without its files, or
// someone deleted it. What it held is lost; without it no order would be taken again until order
// restarts. It is created as it was when this instance last saw it (its replicas and limits
// are shared settings: see ensureStream), or as this instance would have it if it never did.
// The handles in q stay good: they name the stream. It takes at most within.
func (q *queue) heal(ctx context.Context, within time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for _, s := range []jetstream.Stream{q.stream, q.since} {
		cfg := s.CachedInfo().Config
		if _, err := q.js.Stream(ctx, cfg.Name); errors.Is(err, jetstream.ErrStreamNotFound) {
			_, _ = q.js.CreateStream(ctx, cfg) // another instance may create it first: that one stays
		}
	}
}

// whileStarting runs op until it succeeds, each attempt bounded by QueueTimeout, for up to
// startWait: while a cluster forms or elects, JetStream is not there for a moment. It answers
// some requests with errors that a moment later it would not ("no suitable peers"), and leaves
// others unanswered (a request reaching a server that does not yet know the leader; a new
// stream's group still electing its own), so a request is sent again rather than waited on
// (harmless: every attempt asks for the same configuration). Only JetStream being off ends it at
// once. The error is the last answer, not the deadline that ended the wait for it.
func whileStarting(ctx context.Context, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startWait)
	defer cancel()
	var last error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, QueueTimeout)
		err := op(attempt)
		cancelAttempt()
		if err == nil || last == nil || !errors.Is(err, context.DeadlineExceeded) {
			last = err
		}
		off := errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount)
		if err == nil || off || tooManyReplicas(err) || ctx.Err() != nil {
			return last
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// tooManyReplicas tells whether JetStream refused a stream's replicas: more than one on a server
// not clustered, which no wait will change.
func tooManyReplicas(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jsErrReplicasNotSupported
}

// jsErrReplicasNotSupported is nats-server's "replicas > 1 not supported in non-clustered mode".
const jsErrReplicasNotSupported jetstream.ErrorCode = 10074

// startWait is how long a starting order instance waits for its stream and consumer: several
// elections (a raft group that misses its first vote waits 4–9 s for the next) on a busy machine.
const startWait = 6 * QueueTimeout

// opContext bounds a queue operation, and fails it at once while NATS is disconnected (nats.go
// would buffer it and wait out the timeout).
func (q *queue) opContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if !q.nc.IsConnected() {
		return nil, nil, fmt.Errorf("%w: %w", ErrQueueUnavailable, nats.ErrConnectionReconnecting)
	}
	ctx, cancel := context.WithTimeout(ctx, QueueTimeout)
	return ctx, cancel, nil
}

// entriesOf is the filter of the entries of order id of database db: its timer and its due
// message.
func entriesOf(db, id string) string { return "orders.*." + orderKey(db, id) }

// schedule sets e's timer to fire at e.Due, replacing any earlier one of the order, and returns
// its sequence in the stream. With onlyIfNone it sets none when the order already has an entry
// (a timer, or a due message once one fired) and reports false.
func (q *queue) schedule(ctx context.Context, e entry, onlyIfNone bool) (seq uint64, set bool, err error) {
	if e.DB == "" {
		e.DB = q.db // an entry that says no database is this instance's (see redriver.readDue)
	}
	ctx, cancel, err := q.opContext(ctx)
	if err != nil {
		return 0, false, err
	}
	defer cancel()
	data, err := json.Marshal(e)
	if err != nil {
		return 0, false, err
	}
	opts := []jetstream.PublishOpt{
		jetstream.WithScheduleAt(e.Due), jetstream.WithScheduleTarget(DueSubject(e.DB, e.ID)),
		jetstream.WithExpectStream(observe.OrdersStream),
		jetstream.WithRetryAttempts(int(QueueTimeout / (250 * time.Millisecond))), jetstream.WithRetryWait(250 * time.Millisecond),
	}
	if onlyIfNone {
		opts = append(opts, jetstream.WithExpectLastSequenceForSubject(0, entriesOf(e.DB, e.ID)))
	}
	ack, err := q.js.Publish(ctx, TimerSubject(e.DB, e.ID), data, opts...)
	if onlyIfNone && wrongLastSequence(err) {
		return 0, false, nil // the order has an entry already: it stays
	}
	if err != nil {
		// In case the stream is gone, so that the next request finds it again: with a time of
		// its own (this one may be spent), and briefly, as a client waits for this answer.
		q.heal(context.WithoutCancel(ctx), time.Second)
		return 0, false, fmt.Errorf("%w: %w", ErrQueueUnavailable, err)
	}
	return ack.Sequence, true, nil
}

// wrongLastSequence is a publish refused because its subject already has a message.
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// markPending notes that order id, left pending by a re-drive, has been so since since, unless
// it was noted before: the first note stays until unmarkPending.
func (q *queue) markPending(ctx context.Context, id string, since time.Time) error {
	ctx, cancel, err := q.opContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = q.js.Publish(ctx, SinceSubject(q.db, id), []byte(since.UTC().Format(time.RFC3339Nano)),
		jetstream.WithExpectStream(observe.OrdersSinceStream), jetstream.WithExpectLastSequencePerSubject(0))
	if err != nil && !wrongLastSequence(err) {
		return err
	}
	return nil
}

// unmarkPending removes order id's pending mark, if it has one: the order is final.
func (q *queue) unmarkPending(ctx context.Context, id string) error {
	ctx, cancel, err := q.opContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	err = q.since.Purge(ctx, jetstream.WithPurgeSubject(SinceSubject(q.db, id)))
	if err == nil {
		// And a mark from before subjects named the database, which would otherwise age for good.
		err = q.since.Purge(ctx, jetstream.WithPurgeSubject("orders.since."+subjectKey(id)))
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		q.heal(context.WithoutCancel(ctx), QueueTimeout) // no stream, no mark: nothing to purge
		return nil
	}
	return err
}

// deleteTimer removes the timer that schedule set at seq, and only that one: once the order's
// outcome is final and recorded, or when it was refused. A timer replaced since (its sequence is
// gone) is someone else's, and stays. Best effort: a timer left behind fires, finds the order
// final or never saved, and is dropped.
func (q *queue) deleteTimer(ctx context.Context, seq uint64) error {
	if seq == 0 {
		return nil
	}
	ctx, cancel, err := q.opContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := q.stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		return err
	}
	return nil // deleted, or the server answered it is not there any more: it fired, or was replaced
}

// pending returns the order's entry (its timer, or its due message once the timer fired) and
// whether it has one. A message on its timer subject without a schedule is no timer (storing one
// there cancelled the timer): not an entry.
func (q *queue) pending(ctx context.Context, id string) (entry, bool, error) {
	ctx, cancel, err := q.opContext(ctx)
	if err != nil {
		return entry{}, false, err
	}
	defer cancel()
	timer := TimerSubject(q.db, id)
	for _, subject := range append([]string{timer, DueSubject(q.db, id)}, legacyEntries(id)...) {
		m, err := q.stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return entry{}, false, fmt.Errorf("%w: %w", ErrQueueUnavailable, err)
		}
		if strings.HasPrefix(subject, "orders.timer.") && m.Header.Get(jetstream.ScheduleHeader) == "" {
			continue
		}
		var e entry
		if err := json.Unmarshal(m.Data, &e); err != nil {
			return entry{}, false, fmt.Errorf("order %s: unreadable queue entry: %w", id, err)
		}
		if e.DB != "" && e.DB != q.db {
			continue // a legacy entry of another database's order with this id
		}
		return e, true, nil
	}
	return entry{}, false, nil
}

// ready reports whether JetStream answers for the ORDERS stream, for /readyz.
func (q *queue) ready(ctx context.Context) error {
	ctx, cancel, err := q.opContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = q.stream.Info(ctx)
	return err
}

// state is the queue's size and the age of its oldest order, for /metrics.
func (q *queue) state(ctx context.Context) (entries uint64, oldest time.Duration, err error) {
	ctx, cancel, err := q.opContext(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer cancel()
	return observe.Pending(ctx, q.js)
}
