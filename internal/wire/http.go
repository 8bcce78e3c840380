package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/breakerchain/breakerchain/internal/problem"
)

// WriteJSON writes v as the JSON body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // the seed's "->" stays readable
	_ = enc.Encode(v)
}

// ErrorBody is every error answer: what is wrong and, for invalid input, which field.
type ErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// WriteError writes an ErrorBody. msg must be safe to show: never internal error text.
func WriteError(w http.ResponseWriter, status int, msg, field string) {
	WriteJSON(w, status, ErrorBody{Error: msg, Field: field})
}

// WriteProblem writes err as an ErrorBody: a *problem.Error with its code, anything else as 500
// "internal error".
func WriteProblem(w http.ResponseWriter, err error) {
	p := problem.From(err)
	WriteError(w, p.Code, p.Description, p.Field)
}

// ReadBody reads a request's JSON body of at most limit bytes, as every route that takes one
// does: a Content-Type other than application/json (or a +json type) is a 415, a body over limit
// a 413, one that cannot be read a 400. The error is a *problem.Error, for the caller to answer
// as it answers any other.
func ReadBody(w http.ResponseWriter, req *http.Request, limit int64) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, problem.Errorf(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, limit))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return nil, problem.Errorf(http.StatusRequestEntityTooLarge, "body is larger than %d bytes", limit)
		}
		return nil, Malformed("body could not be read")
	}
	return body, nil
}

// JSONErrors makes r answer an unknown path with a JSON 404, and a method a route does not
// serve with a JSON 405 whose Allow names the methods it does (chi's own are plain text).
func JSONErrors(r chi.Router) {
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) { WriteError(w, http.StatusNotFound, "not found", "") })
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", strings.Join(allowed(r, req), ", "))
		WriteError(w, http.StatusMethodNotAllowed, "method not allowed", "")
	})
}

// allowed are the methods routes serves req's path with, which a 405 must name in Allow (RFC
// 9110; chi's own 405 does, but answers no JSON). The path is read as chi routes it. Under a
// mounted router's bare prefix (/debug with PPROF=1) chi's stubs take every method: the list is
// theirs, less the method refused. HEAD is served wherever GET is: the routers use chi's GetHead.
func allowed(routes chi.Routes, req *http.Request) []string {
	path := req.URL.Path
	if req.URL.RawPath != "" {
		path = req.URL.RawPath
	}
	var methods []string
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		served := routes.Match(chi.NewRouteContext(), method, path) ||
			method == http.MethodHead && routes.Match(chi.NewRouteContext(), http.MethodGet, path)
		if method != req.Method && served {
			methods = append(methods, method)
		}
	}
	return methods
}

// MaxHeaderBytes bounds a request's headers on every HTTP server here (HeaderLimit).
const MaxHeaderBytes = 64 << 10

// HeaderLimit answers a request whose headers are over MaxHeaderBytes with a JSON 431. (A server
// that reads more than its http.Server.MaxHeaderBytes answers 431 itself, in text.)
func HeaderLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		size := len(req.Method) + len(req.RequestURI) + len(req.Proto) + 4
		for name, values := range req.Header {
			for _, v := range values {
				size += len(name) + len(v) + 4 // ": " and CRLF
			}
		}
		if size > MaxHeaderBytes {
			WriteError(w, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request headers are larger than %d bytes", MaxHeaderBytes), "")
			return
		}
		next.ServeHTTP(w, req)
	})
}
