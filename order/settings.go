package order

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/observe"
)

// The queue's shared settings. The streams and the re-driver's consumer are shared by every
// order instance on one NATS, so their replicas, limits and ack wait are not one instance's to
// set: the first instance creates them, the others keep what they find and say where they
// differ, and an operator changes them (breakerchain apply-queue, docs/operations.md).

// Difference is a setting of the shared queue that differs from what this instance's
// configuration would give it: the queue keeps Have (see ensureStream).
type Difference struct {
	Object  string // ORDERS, ORDERS_SINCE, or ORDERS/redriver (the consumer)
	Setting string // replicas, ack_wait, …
	Have    string // what the queue has, and keeps
	Want    string // what this instance's configuration says
	From    string // the variable that says it
}

// ensureStream returns the stream want describes, creating it if it does not exist. An existing
// one keeps the settings every instance shares — its replicas, and any limits an operator set:
// an instance started with another JETSTREAM_REPLICAS (unset on one of three) must not lower
// them for all, and the last one started would win. A difference is returned, for the instance
// to say so; changing it is an operator's step (breakerchain apply-queue, docs/operations.md).
// What this version of order needs of the stream (its subjects and features) is set if missing.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, []Difference, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, want)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return s, nil, err // created (or not), with want's settings
		}
		s, err = js.Stream(ctx, want.Name) // another instance created it meanwhile
	}
	if err != nil {
		return nil, nil, err
	}
	have := s.CachedInfo().Config
	need := have
	need.Description, need.Subjects, need.MaxMsgsPerSubject = want.Description, want.Subjects, want.MaxMsgsPerSubject
	need.AllowMsgSchedules, need.AllowRollup, need.AllowDirect = want.AllowMsgSchedules, want.AllowRollup, want.AllowDirect
	if !reflect.DeepEqual(need, have) {
		if s, err = js.UpdateStream(ctx, need); err != nil {
			return nil, nil, err
		}
	}
	return s, streamDiff(have, want), nil
}

// streamDiff is where stream have differs from want in what every instance shares.
func streamDiff(have, want jetstream.StreamConfig) []Difference {
	if have.Replicas == want.Replicas {
		return nil
	}
	return []Difference{{Object: want.Name, Setting: "replicas", Have: fmt.Sprint(have.Replicas), Want: fmt.Sprint(want.Replicas), From: "JETSTREAM_REPLICAS"}}
}

// differences reads the queue's shared settings now and returns where they differ from this
// instance's (ackWait 0: it runs no re-driver, and has no say on the consumer's).
func (q *queue) differences(ctx context.Context, ackWait time.Duration) ([]Difference, error) {
	var out []Difference
	for _, want := range []jetstream.StreamConfig{streamConfig(q.replicas), sinceConfig(q.replicas)} {
		s, err := q.js.Stream(ctx, want.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, streamDiff(s.CachedInfo().Config, want)...)
	}
	if ackWait == 0 {
		return out, nil
	}
	c, err := q.stream.Consumer(ctx, ConsumerName)
	if err != nil {
		return nil, err
	}
	return append(out, consumerDiff(c.CachedInfo().Config, consumerConfig(ackWait))...), nil
}

// ApplyQueue is the operator's step that changes the shared queue's settings: through nc, it
// sets the streams' replicas to JETSTREAM_REPLICAS and, when REDRIVE_ACK_WAIT is set, the
// re-driver's ack wait to it, keeping everything else they have; it returns what it changed.
func ApplyQueue(ctx context.Context, nc *nats.Conn, cfg config.Settings) ([]Difference, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var changed []Difference
	for _, want := range []jetstream.StreamConfig{streamConfig(cfg.JetStreamReplicas), sinceConfig(cfg.JetStreamReplicas)} {
		s, differ, err := ensureStream(ctx, js, want)
		if err != nil {
			return changed, err
		}
		if len(differ) > 0 {
			set := s.CachedInfo().Config
			set.Replicas = want.Replicas
			if _, err := js.UpdateStream(ctx, set); err != nil {
				return changed, fmt.Errorf("stream %s: %w", want.Name, err)
			}
			changed = append(changed, differ...)
		}
	}
	s, err := js.Stream(ctx, observe.OrdersStream)
	if err != nil {
		return changed, err
	}
	want := consumerConfig(ackWait(cfg.Breaker, cfg.Redrive.AckWait))
	c, differ, err := ensureConsumer(ctx, s, want)
	if err != nil || cfg.Redrive.AckWait == 0 || len(differ) == 0 {
		return changed, err
	}
	set := c.CachedInfo().Config
	set.AckWait = want.AckWait
	if _, err := s.UpdateConsumer(ctx, set); err != nil {
		return changed, fmt.Errorf("consumer %s: %w", ConsumerName, err)
	}
	return append(changed, differ...), nil
}

// ensureConsumer returns the re-driver's consumer, creating it if it does not exist. As with the
// streams (ensureStream), an existing one keeps the settings every instance shares — its ack
// wait, and how many due orders may be held at once — and a difference is returned; what this
// version needs of it (its filter, explicit acks, no delivery limit) is set if missing.
func ensureConsumer(ctx context.Context, s jetstream.Stream, want jetstream.ConsumerConfig) (jetstream.Consumer, []Difference, error) {
	c, err := s.Consumer(ctx, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = s.CreateConsumer(ctx, want)
		if !errors.Is(err, jetstream.ErrConsumerExists) {
			return c, nil, err
		}
		c, err = s.Consumer(ctx, want.Durable)
	}
	if err != nil {
		return nil, nil, err
	}
	have := c.CachedInfo().Config
	need := have
	need.Description, need.FilterSubject, need.AckPolicy, need.MaxDeliver = want.Description, want.FilterSubject, want.AckPolicy, want.MaxDeliver
	if !reflect.DeepEqual(need, have) {
		if c, err = s.UpdateConsumer(ctx, need); err != nil {
			return nil, nil, err
		}
	}
	return c, consumerDiff(have, want), nil
}

// consumerDiff is where consumer have differs from want in what every instance shares: the ack
// wait (how many due orders may be held at once is the operator's, once created).
func consumerDiff(have, want jetstream.ConsumerConfig) []Difference {
	if have.AckWait == want.AckWait {
		return nil
	}
	return []Difference{{Object: observe.OrdersStream + "/" + want.Durable, Setting: "ack_wait", Have: have.AckWait.String(), Want: want.AckWait.String(), From: "REDRIVE_ACK_WAIT"}}
}

// differGauge shows each setting of the shared queue that differs from this instance's
// configuration (see ensureStream), read at every scrape: 1 per setting, none when all agree.
type differGauge struct {
	q       *queue
	ackWait time.Duration // 0: this instance runs no re-driver
	desc    *prometheus.Desc
}

func (g differGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g differGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	differ, err := g.q.differences(ctx, g.ackWait)
	if err != nil {
		return // JetStream did not answer: the pending gauges say -1
	}
	for _, d := range differ {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, 1, d.Object, d.Setting, d.Have, d.Want)
	}
}
