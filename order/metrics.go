package order

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// redriveMetrics are the queue's series on order's /metrics.
type redriveMetrics struct {
	recovered   prometheus.Counter
	attempts    *prometheus.CounterVec
	redelivered prometheus.Counter
	sweeps      prometheus.Counter
	rearmed     prometheus.Counter
	foreign     prometheus.Counter
}

// newRedriveMetrics registers the queue's series. Its size and age are read from the stream when
// /metrics is scraped.
func newRedriveMetrics(reg prometheus.Registerer, q *queue, ackWait time.Duration) *redriveMetrics {
	labels := prometheus.Labels{"service": "order"}
	reg.MustRegister(pendingGauges{q: q,
		size: prometheus.NewDesc("breakerchain_orders_pending",
			"Orders not final yet (their chain running, or queued for a re-drive): the entries of the ORDERS stream, shared by every instance. It also counts, until they fire and are dropped, the timers of orders whose insert never landed; -1 when JetStream did not answer.",
			nil, labels),
		age: prometheus.NewDesc("breakerchain_orders_pending_oldest_seconds",
			"How long the oldest order not final yet has been so: the first mark in ORDERS_SINCE (set when a re-drive first left an order pending) or the first entry of ORDERS (an order not re-driven yet), whichever is older; short by at most the wait before an order's first re-drive; 0 when none; -1 when JetStream did not answer.",
			nil, labels),
	})
	reg.MustRegister(differGauge{q: q, ackWait: ackWait, desc: prometheus.NewDesc("breakerchain_queue_setting_differs",
		"A setting of the shared queue (a JetStream stream or the re-driver's consumer) that differs from what this instance's configuration says: the queue keeps what it has (have); changing it is an operator's step (breakerchain apply-queue).",
		[]string{"object", "setting", "have", "want"}, labels)})
	m := &redriveMetrics{
		recovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "breakerchain_orders_recovered_total", ConstLabels: labels,
			Help: "Pending orders this instance's re-driver completed: each once, by the instance that recorded it.",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerchain_redrive_attempts_total", ConstLabels: labels,
			Help: "Re-drives of pending orders by this instance, by the order's status after it: completed, pending, rejected.",
		}, []string{"status"}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "breakerchain_redeliveries_total", ConstLabels: labels,
			Help: "Due orders JetStream delivered to this instance again: a re-drive before was not acknowledged (an instance died mid-run, or gave the order back).",
		}),
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "breakerchain_reconcile_sweeps_total", ConstLabels: labels,
			Help: "Sweeps of this instance's reconciler: looks in the store for open orders whose time to be checked has come.",
		}),
		rearmed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "breakerchain_orders_rearmed_total", ConstLabels: labels,
			Help: "Orders not final that this instance's reconciler found with nothing in the queue (their timer lost, cancelled or never written) and gave a timer again.",
		}),
		foreign: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "breakerchain_redrive_foreign_total", ConstLabels: labels,
			Help: "Due orders of another database (MONGO_DB) this instance took and put back in the queue: instances on different databases share this NATS. Anything but 0 is a setup to fix.",
		}),
	}
	reg.MustRegister(m.recovered, m.attempts, m.redelivered, m.sweeps, m.rearmed, m.foreign)
	return m
}

// pendingGauges shows the queue's size and age, read once per scrape.
type pendingGauges struct {
	q         *queue
	size, age *prometheus.Desc
}

func (g pendingGauges) Describe(ch chan<- *prometheus.Desc) { ch <- g.size; ch <- g.age }

func (g pendingGauges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	size, age := -1.0, -1.0
	if n, oldest, err := g.q.state(ctx); err == nil {
		size, age = float64(n), oldest.Seconds()
	}
	ch <- prometheus.MustNewConstMetric(g.size, prometheus.GaugeValue, size)
	ch <- prometheus.MustNewConstMetric(g.age, prometheus.GaugeValue, age)
}
