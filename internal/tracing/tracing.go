// Package tracing builds a service's OpenTelemetry TracerProvider from its configuration: the
// standard OTEL_* variables (config.Tracing). With no endpoint it is the no-op provider, so
// tracing off costs nothing but the propagation of a trace context a client sent. With one,
// spans are batched and exported by OTLP (HTTP/protobuf or gRPC), each service with a provider
// and a resource of its own: in the all-in-one each service of the chain is a service.name of
// its own, as it is in a process of its own.
//
// It builds, and does not decide what is traced: the spans are opened where the work is
// (messaging's calls and handlers, the HTTP middleware in service, the store's command monitor,
// order's re-drives), each from the provider passed in.
package tracing

import (
	"context"
	"fmt"
	"net/url"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/breakerchain/breakerchain/internal/config"
)

// Provider is a service's TracerProvider and what ends it.
type Provider struct {
	trace.TracerProvider
	sdk *sdktrace.TracerProvider // nil when off
}

// Service names what the spans of a provider come from.
type Service struct {
	Instance string // service.instance.id: the service's ID
	Version  string // service.version
}

// Start returns the provider t asks for: the no-op one when t has no endpoint. The exporter
// connects lazily: a collector that is not there yet costs dropped spans, never a failed start.
func Start(ctx context.Context, t config.Tracing, svc Service) (*Provider, error) {
	if !t.On() {
		return &Provider{TracerProvider: noop.NewTracerProvider()}, nil
	}
	exp, err := exporter(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("traces: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(t.ServiceName),
		semconv.ServiceInstanceID(svc.Instance), semconv.ServiceVersion(svc.Version))
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp), // queue, batch size and delay: OTEL_BSP_*, read by the SDK
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler(t)),
	)
	return &Provider{TracerProvider: sdk, sdk: sdk}, nil
}

// exporter is the OTLP exporter of t's protocol, sending to its endpoint.
func exporter(ctx context.Context, t config.Tracing) (sdktrace.SpanExporter, error) {
	if t.Protocol == "grpc" {
		// The URL's scheme says whether to use TLS (http: none), as the specification says.
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(t.Endpoint))
	}
	endpoint := t.Endpoint
	if !t.Signal {
		var err error
		if endpoint, err = url.JoinPath(endpoint, "v1/traces"); err != nil {
			return nil, err
		}
	}
	return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
}

// sampler is OTEL_TRACES_SAMPLER's sampler.
func sampler(t config.Tracing) sdktrace.Sampler {
	switch t.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(t.SamplerArg)
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(t.SamplerArg))
	}
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

// Shutdown exports what is still queued and stops the exporter, within ctx.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.sdk == nil {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}
