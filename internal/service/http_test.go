package service_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/internal/wire"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// probe is a service with routes of its own: one that panics, one that reads its body, one that
// takes a parameter.
var probe = service.Service{
	Name: "probe",
	Build: func(context.Context, service.Deps) (service.Parts, error) {
		return service.Parts{Routes: func(r chi.Router) {
			r.Get("/panic", func(http.ResponseWriter, *http.Request) {
				var items []string
				_ = items[3] // a bug: index out of range
			})
			r.Get("/things/{id}", func(w http.ResponseWriter, req *http.Request) {
				wire.WriteJSON(w, http.StatusOK, map[string]string{"id": chi.URLParam(req, "id")})
			})
			r.Post("/echo", func(w http.ResponseWriter, req *http.Request) {
				b, err := io.ReadAll(req.Body)
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					wire.WriteError(w, http.StatusRequestEntityTooLarge, "too large", "")
					return
				}
				wire.WriteJSON(w, http.StatusOK, map[string]int{"bytes": len(b)})
			})
		}}, nil
	},
}

func startProbe(t *testing.T, env testkit.Env) *testkit.Instance {
	uri, db := testkit.Database(t)
	return testkit.Start(t, service.Chain{probe}, testkit.NATS(t).URL(), uri, db, env)
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// A panic in a handler answers a JSON 500 that tells nothing of it, logs the panic with its
// stack, and the server goes on serving.
func TestPanicIsAJSON500(t *testing.T) {
	s := startProbe(t, nil)
	res, body := do(t, newRequest(t, http.MethodGet, s.URL()+"/panic", nil))
	if res.StatusCode != http.StatusInternalServerError || res.Header.Get("Content-Type") != "application/json" ||
		body != `{"error":"internal error"}`+"\n" {
		t.Errorf("GET /panic: %d %s %q, want a JSON 500 saying only internal error", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	logged := strings.Join(s.LoggedErrors(), "\n")
	if !strings.Contains(logged, "panic serving request") || !strings.Contains(logged, "index out of range") ||
		!strings.Contains(logged, "goroutine") {
		t.Errorf("logged %q, want the panic and its stack", logged)
	}
	if res, _ := do(t, newRequest(t, http.MethodGet, s.URL()+"/", nil)); res.StatusCode != http.StatusOK {
		t.Errorf("GET / after the panic: %d", res.StatusCode)
	}
}

// A method a route does not serve is a JSON 405 whose Allow names the methods it does.
func TestMethodNotAllowedSaysWhatIs(t *testing.T) {
	s := startProbe(t, nil)
	for _, row := range []struct{ method, path, allow string }{
		{http.MethodPost, "/healthz", "GET, HEAD"},
		{http.MethodGet, "/echo", "POST"},
		{http.MethodDelete, "/chaos", "GET, HEAD, PUT"},
		// chi routes an escaped path as sent: a%2Fb is one segment, so this is /things/{id}.
		{http.MethodDelete, "/things/a%2Fb", "GET, HEAD"},
	} {
		res, body := do(t, newRequest(t, row.method, s.URL()+row.path, nil))
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != row.allow ||
			body != `{"error":"method not allowed"}`+"\n" {
			t.Errorf("%s %s: %d, Allow %q, %q; want 405, Allow %q, a JSON error", row.method, row.path,
				res.StatusCode, res.Header.Get("Allow"), body, row.allow)
		}
	}
}

// CORS: unset, no CORS headers at all (browsers keep other origins out); set, the listed origins
// (or any, with "*") may call, with the request id readable.
func TestCORS(t *testing.T) {
	const shop = "https://shop.example.com"
	for _, row := range []struct {
		name, origins, origin string
		want                  string // Access-Control-Allow-Origin
	}{
		{name: "unset", origin: shop, want: ""},
		{name: "listed", origins: "http://localhost:8080," + shop, origin: shop, want: shop},
		{name: "not listed", origins: shop, origin: "https://evil.example.net", want: ""},
		{name: "wildcard host", origins: "https://*.example.com", origin: shop, want: shop},
		{name: "any", origins: "*", origin: "https://evil.example.net", want: "*"},
	} {
		t.Run(row.name, func(t *testing.T) {
			env := testkit.Env{}
			if row.origins != "" {
				env["CORS_ORIGINS"] = row.origins
			}
			s := startProbe(t, env)

			pre := newRequest(t, http.MethodOptions, s.URL()+"/echo", nil)
			pre.Header.Set("Origin", row.origin)
			pre.Header.Set("Access-Control-Request-Method", http.MethodPost)
			pre.Header.Set("Access-Control-Request-Headers", "content-type,x-request-id")
			res, _ := do(t, pre)
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != row.want {
				t.Errorf("preflight: Access-Control-Allow-Origin %q, want %q", got, row.want)
			}
			if row.want != "" && (!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), http.MethodPost) ||
				!strings.Contains(strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), "x-request-id")) {
				t.Errorf("preflight: methods %q headers %q, want POST and X-Request-Id allowed",
					res.Header.Get("Access-Control-Allow-Methods"), res.Header.Get("Access-Control-Allow-Headers"))
			}

			get := newRequest(t, http.MethodGet, s.URL()+"/healthz", nil)
			get.Header.Set("Origin", row.origin)
			res, _ = do(t, get)
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != row.want {
				t.Errorf("GET: Access-Control-Allow-Origin %q, want %q", got, row.want)
			}
			if row.want != "" && !strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
				t.Errorf("GET: Access-Control-Expose-Headers %q, want X-Request-Id", res.Header.Get("Access-Control-Expose-Headers"))
			}
			if row.want == "" && res.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials allowed to an origin that is not")
			}
		})
	}
}

// pprof is served only when PPROF is on.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, row := range []struct {
		env  testkit.Env
		want int
	}{
		{env: nil, want: http.StatusNotFound},
		{env: testkit.Env{"PPROF": "0"}, want: http.StatusNotFound},
		{env: testkit.Env{"PPROF": "1"}, want: http.StatusOK},
	} {
		s := startProbe(t, row.env)
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
			if res, _ := do(t, newRequest(t, http.MethodGet, s.URL()+path, nil)); res.StatusCode != row.want {
				t.Errorf("%v GET %s: %d, want %d", row.env, path, res.StatusCode, row.want)
			}
		}
	}
}

// Every body is bounded (a route that reads it gets an error past service.MaxBody) and so are the
// headers (a JSON 431 past service.MaxHeaderBytes; the server's own, in text, far past it).
func TestLimits(t *testing.T) {
	s := startProbe(t, nil)
	for _, row := range []struct {
		size int64
		want int
	}{
		{service.MaxBody, http.StatusOK},
		{service.MaxBody + 1, http.StatusRequestEntityTooLarge},
	} {
		req := newRequest(t, http.MethodPost, s.URL()+"/echo", strings.NewReader(strings.Repeat("x", int(row.size))))
		if res, body := do(t, req); res.StatusCode != row.want {
			t.Errorf("POST %d bytes: %d %s, want %d", row.size, res.StatusCode, body, row.want)
		}
	}
	for _, row := range []struct {
		size int
		body string // "": not ours, the server's own (no handler runs)
	}{
		{service.MaxHeaderBytes, `{"error":"request headers are larger than 65536 bytes"}` + "\n"},
		{8 * service.MaxHeaderBytes, ""},
	} {
		req := newRequest(t, http.MethodGet, s.URL()+"/", nil)
		req.Header.Set("X-Padding", strings.Repeat("x", row.size))
		res, body := do(t, req)
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge || row.body != "" && body != row.body {
			t.Errorf("%d bytes of headers: %d %q, want 431 %q", row.size, res.StatusCode, body, row.body)
		}
	}
}

// HEAD is answered wherever GET is, with GET's status and headers and no body.
func TestHeadIsGet(t *testing.T) {
	s := startProbe(t, nil)
	for _, path := range []string{"/", "/healthz", "/things/1"} {
		res, body := do(t, newRequest(t, http.MethodHead, s.URL()+path, nil))
		if res.StatusCode != http.StatusOK || body != "" {
			t.Errorf("HEAD %s: %d %q, want 200 and no body", path, res.StatusCode, body)
		}
	}
}
