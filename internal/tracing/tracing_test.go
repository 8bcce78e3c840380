package tracing_test

import (
	"context"
	"testing"
	"time"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/internal/tracing"
)

// Without an endpoint the provider is a no-op: its spans record nothing, so tracing off costs a
// no-op span per traced step and nothing more.
func TestOffWithoutEndpoint(t *testing.T) {
	cfg, err := config.Load("order", "127.0.0.1", 0, testkit.Env{"OTEL_TRACES_SAMPLER": "always_on"}.Lookup)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tracing.Start(t.Context(), cfg.Tracing, tracing.Service{Instance: "order"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.Tracer("t").Start(t.Context(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("with no endpoint a span records (%v) or has a context (%v)", span.IsRecording(), span.SpanContext())
	}
}

// OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL, to which OTLP/HTTP adds /v1/traces;
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is; OTEL_SERVICE_NAME, prefixed in the
// all-in-one, names the service, else its role does.
func TestEndpointsAndServiceName(t *testing.T) {
	r := testkit.OTLP(t)
	for _, row := range []struct {
		name, want string
		env        testkit.Env
	}{
		{"base endpoint", "payment", testkit.Env{"OTEL_EXPORTER_OTLP_ENDPOINT": r.URL}},
		{"traces endpoint", "payment", testkit.Env{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": r.URL + "/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{"prefixed name", "pay-eu", testkit.Env{"OTEL_EXPORTER_OTLP_ENDPOINT": r.URL, "PAYMENT_OTEL_SERVICE_NAME": "pay-eu"}},
	} {
		t.Run(row.name, func(t *testing.T) {
			cfg, err := config.Load("payment", "127.0.0.1", 0, row.env.Lookup)
			if err != nil {
				t.Fatal(err)
			}
			p, err := tracing.Start(t.Context(), cfg.Tracing, tracing.Service{Instance: "p1"})
			if err != nil {
				t.Fatal(err)
			}
			_, span := p.Tracer("t").Start(t.Context(), row.name)
			span.End()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := p.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			for _, s := range r.Spans() {
				if s.Name == row.name {
					if s.Service != row.want {
						t.Errorf("service.name %q, want %q", s.Service, row.want)
					}
					return
				}
			}
			t.Errorf("span %q not received", row.name)
		})
	}
}
