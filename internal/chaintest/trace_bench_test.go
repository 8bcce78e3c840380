package chaintest

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/breakerchain/breakerchain/internal/testkit"
)

// BenchmarkTracingCost is the healthy chain at 16 clients with tracing off (no endpoint: the
// no-op provider) and on (every trace sampled, batched and exported to an OTLP/HTTP receiver in
// this process, which decodes every export as a collector would, and reports spans/order).
// -count repeats each of the two in turn (all the offs, then all the ons), so compare medians
// over several runs, on a quiet machine:
//
//	go test -run '^$' -bench TracingCost -benchtime 3000x -count 6 ./internal/chaintest
//
// docs/BENCHMARKS.md has the results.
func BenchmarkTracingCost(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run("tracing="+map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			env, r := testkit.Env{}, testkit.OTLPSink(b)
			if on {
				env = testkit.Env{"OTEL_EXPORTER_OTLP_ENDPOINT": r.URL, "OTEL_TRACES_SAMPLER": "always_on"}
			}
			_, o, services := benchChain(b, env)
			prefix := runPrefix("traced")
			drive(b, 16, "orders", func(i int) error {
				return createOrder(o, prefix+strconv.Itoa(i), http.StatusCreated)
			})
			for _, s := range services {
				s.Stop() // flushes what is still batched
			}
			b.ReportMetric(float64(r.SpanCount())/float64(b.N), "spans/order")
		})
	}
}
