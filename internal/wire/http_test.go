package wire_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/wire"
)

// TestReadBody is every JSON route's reading of its body (order's /create, PUT /chaos, the
// dashboard's controls): the content type, then the size, each refused with its own status.
func TestReadBody(t *testing.T) {
	rows := []struct {
		name, contentType, body string
		want                    int // 0: read
		wantText                string
	}{
		{"JSON", "application/json", `{"id":"1"}`, 0, ""},
		{"JSON with a charset", "application/json; charset=utf-8", `{}`, 0, ""},
		{"a +json type", "application/merge-patch+json", `{}`, 0, ""},
		{"no content type", "", `{}`, http.StatusUnsupportedMediaType, "Content-Type must be application/json"},
		{"text", "text/plain", `{}`, http.StatusUnsupportedMediaType, "Content-Type must be application/json"},
		{"over the limit", "application/json", `{"id":"123456789"}`, http.StatusRequestEntityTooLarge, "body is larger than 16 bytes"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(row.body))
			if row.contentType != "" {
				req.Header.Set("Content-Type", row.contentType)
			}
			body, err := wire.ReadBody(httptest.NewRecorder(), req, 16)
			if row.want == 0 {
				if err != nil || string(body) != row.body {
					t.Fatalf("%q %v, want the body", body, err)
				}
				return
			}
			if se := problem.From(err); err == nil || se.Code != row.want || se.Description != row.wantText {
				t.Fatalf("%v, want %d %q", err, row.want, row.wantText)
			}
		})
	}
}

// A number JSON allows but the field cannot hold is said to be out of range, a fraction or an
// exponent where a whole number is wanted, never to be no number.
func TestDecodeNumberOutOfRange(t *testing.T) {
	var v struct {
		Amount float64 `json:"amount"`
		Count  int     `json:"count"`
		Small  uint8   `json:"small"`
	}
	for body, want := range map[string]string{
		`{"amount":1e400}`:  "amount: 1e400 is out of range for a number",
		`{"count":1e40}`:    "count: 1e40 is out of range for a number",
		`{"count":1.5}`:     "count: must be a whole number, not 1.5",
		`{"count":1e2}`:     "count: must be a whole number in digits (100), not 1e2",
		`{"small":256}`:     "small: 256 is out of range for a number",
		`{"small":-1}`:      "small: -1 is out of range for a number",
		`{"count":"three"}`: "count: must be a number, not string",
	} {
		err := wire.Decode([]byte(body), &v)
		if p := problem.From(err); p.Code != http.StatusUnprocessableEntity || p.Description != want {
			t.Errorf("%s: %v, want 422 %q", body, err, want)
		}
	}
}
