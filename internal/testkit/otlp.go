package testkit

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Receiver is an OTLP/HTTP trace receiver in the test's process: it decodes the protobuf
// exports the services send to /v1/traces, as a collector would, and keeps their spans. It is
// what the services' real exporter talks to, over HTTP: a test that reads it sees what a Jaeger
// or a collector would be sent.
type Receiver struct {
	URL     string // the base endpoint: OTEL_EXPORTER_OTLP_ENDPOINT
	mu      sync.Mutex
	got     []Span
	exports int  // export requests received, spans or not
	spans   int  // spans received
	discard bool // count spans, keep none (OTLPSink)
}

// Span is a span as received, with the service.name of the resource it came with.
type Span struct {
	Service string
	*tracepb.Span
}

// TraceID is the span's trace id, in hex as W3C writes it.
func (s Span) TraceID() string { return hex.EncodeToString(s.Span.TraceId) }

// SpanID is the span's id, in hex.
func (s Span) SpanID() string { return hex.EncodeToString(s.Span.SpanId) }

// ParentID is the span's parent's id, in hex; "" for a root.
func (s Span) ParentID() string { return hex.EncodeToString(s.Span.ParentSpanId) }

// Attr is the value of the span's attribute key as a string ("" when absent).
func (s Span) Attr(key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return strconv.FormatInt(v.IntValue, 10)
			case *commonpb.AnyValue_BoolValue:
				return strconv.FormatBool(v.BoolValue)
			}
			return kv.Value.String()
		}
	}
	return ""
}

// HasEvent reports whether the span has an event named name.
func (s Span) HasEvent(name string) bool {
	return slices.ContainsFunc(s.Events, func(e *tracepb.Span_Event) bool { return e.Name == name })
}

// OTLP starts a receiver for the test; it stops when the test ends.
func OTLP(t testing.TB) *Receiver { return startReceiver(t, &Receiver{}) }

// OTLPSink starts a receiver that decodes every export, as a collector would, and keeps no span,
// only their count (SpanCount): for a benchmark, whose millions of spans a test would not read.
func OTLPSink(t testing.TB) *Receiver { return startReceiver(t, &Receiver{discard: true}) }

func startReceiver(t testing.TB, r *Receiver) *Receiver {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Method != http.MethodPost {
		http.NotFound(w, req)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var export coltrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &export)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.exports++
	for _, rs := range export.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			r.spans += len(ss.Spans)
			for _, s := range ss.Spans {
				if !r.discard {
					r.got = append(r.got, Span{Service: service, Span: s})
				}
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// SpanCount counts the spans received so far.
func (r *Receiver) SpanCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.spans
}

// Exports counts the export requests received so far.
func (r *Receiver) Exports() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exports
}

// Trace waits, up to 10 s, until the spans of trace id include one for which done is true, and
// returns them all.
func (r *Receiver) Trace(t testing.TB, id string, done func([]Span) bool) []Span {
	t.Helper()
	var spans []Span
	Eventually(t, 10*time.Second, "trace "+id+" exported", func() bool {
		spans = slices.DeleteFunc(r.Spans(), func(s Span) bool { return s.TraceID() != id })
		return done(spans)
	})
	return spans
}

// Waterfall draws spans (one trace's) as a tree, children under their parent in start order,
// each with its service, duration, and the attributes and events that say what happened: what
// docs/operations.md shows of a trace.
func Waterfall(spans []Span) string {
	children := map[string][]Span{}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID()] = true
	}
	for _, s := range spans {
		parent := s.ParentID()
		if !ids[parent] {
			parent = "" // a root here, whatever its remote parent
		}
		children[parent] = append(children[parent], s)
	}
	var b strings.Builder
	var draw func(parent string, depth int)
	draw = func(parent string, depth int) {
		kids := children[parent]
		slices.SortFunc(kids, func(a, b Span) int { return int(a.StartTimeUnixNano - b.StartTimeUnixNano) })
		for _, s := range kids {
			d := time.Duration(s.EndTimeUnixNano - s.StartTimeUnixNano)
			fmt.Fprintf(&b, "%-9s %-44s %8s", s.Service, strings.Repeat("  ", depth)+s.Name, d.Round(10*time.Microsecond))
			for _, key := range []string{"breakerchain.breaker.state", "breakerchain.outcome", "breakerchain.attempts", "breakerchain.order.status", "http.response.status_code"} {
				if v := s.Attr(key); v != "" {
					fmt.Fprintf(&b, " %s=%s", strings.TrimPrefix(key, "breakerchain."), v)
				}
			}
			for _, e := range s.Events {
				fmt.Fprintf(&b, " [event %s]", e.Name)
			}
			for _, l := range s.Links {
				fmt.Fprintf(&b, " [link to trace %s]", hex.EncodeToString(l.TraceId))
			}
			b.WriteString("\n")
			draw(s.SpanID(), depth+1)
		}
	}
	draw("", 0)
	return b.String()
}
