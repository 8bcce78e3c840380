package wire

import (
	"encoding/json"
	"net/http"

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
