package config

import "log/slog"

// Tracing is where a service sends its traces: OpenTelemetry's standard variables, read like
// every other (so in the all-in-one ORDER_OTEL_SERVICE_NAME names only order). With no endpoint
// nothing is exported, and tracing costs nothing. What else the OpenTelemetry SDK reads for
// itself (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _CERTIFICATE, _COMPRESSION, OTEL_BSP_*) it reads
// from the process's environment: docs/configuration.md lists them.
type Tracing struct {
	// Endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, used as is, or OTEL_EXPORTER_OTLP_ENDPOINT,
	// the collector's base URL) is where spans go; "" = tracing off.
	Endpoint string
	// Signal tells whether Endpoint came from the traces-only variable: it is then the whole
	// URL, and the base one gets /v1/traces appended (OTLP/HTTP), as the specification says.
	Signal bool
	// Protocol (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL) is
	// "http/protobuf" or "grpc".
	Protocol string
	// ServiceName (OTEL_SERVICE_NAME) is the service.name of every span; the service's role
	// (order, payment, shipment) unless set.
	ServiceName string
	// Sampler and SamplerArg are OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
	Sampler    string
	SamplerArg float64
}

// Samplers are the values OTEL_TRACES_SAMPLER takes here (the specification's, less the
// Jaeger and X-Ray remote ones).
var Samplers = []string{"parentbased_always_on", "always_on", "always_off", "traceidratio",
	"parentbased_always_off", "parentbased_traceidratio"}

// On reports whether spans are exported.
func (t Tracing) On() bool { return t.Endpoint != "" }

func (s *Source) tracing(name string) Tracing {
	t := Tracing{
		Endpoint: s.URL("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "http", "https"),
		Protocol: s.OneOf("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "http/protobuf", "grpc"),
		Sampler:  s.OneOf("OTEL_TRACES_SAMPLER", Samplers[0], Samplers...),
		// The specification's default for the ratio samplers: every trace.
		SamplerArg:  s.Float("OTEL_TRACES_SAMPLER_ARG", 1, 0, 1),
		ServiceName: s.String("OTEL_SERVICE_NAME", name),
	}
	t.Signal = t.Endpoint != ""
	if !t.Signal {
		t.Endpoint = s.URL("OTEL_EXPORTER_OTLP_ENDPOINT", "", "http", "https")
	}
	t.Protocol = s.OneOf("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", t.Protocol, "http/protobuf", "grpc")
	if s.Bool("OTEL_SDK_DISABLED", false) {
		t.Endpoint = ""
	}
	return t
}

// LogValue shows where traces go, once at start.
func (t Tracing) LogValue() slog.Value {
	if !t.On() {
		return slog.StringValue("off")
	}
	return slog.GroupValue(slog.String("endpoint", Mask(t.Endpoint)), slog.String("protocol", t.Protocol),
		slog.String("service_name", t.ServiceName), slog.String("sampler", t.Sampler))
}
