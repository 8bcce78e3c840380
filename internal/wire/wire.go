// Package wire decodes request bodies, on HTTP and NATS alike, and states what is wrong with
// them in errors that name the field. Its rules:
//   - exactly one JSON value: trailing data after it is malformed (400);
//   - a JSON syntax error or invalid UTF-8 is malformed (400);
//   - unknown fields are refused (422, naming the field): in a payment chain a silently
//     dropped field is worse than a refused request;
//   - a wrong type is invalid (422, naming the field);
//   - duplicate keys follow encoding/json: the last one wins.
package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/breakerchain/breakerchain/messaging"
)

// MaxBody is the largest body accepted (413 beyond it on HTTP; NATS caps payloads at 1 MiB too).
const MaxBody = 1 << 20

// Malformed is a 400: the body is not the one JSON value it should be.
func Malformed(format string, args ...any) *messaging.ServiceError {
	return &messaging.ServiceError{Code: 400, Description: fmt.Sprintf(format, args...)}
}

// Invalid is a 422 naming the field that is wrong.
func Invalid(field, format string, args ...any) *messaging.ServiceError {
	return &messaging.ServiceError{Code: 422, Field: field, Description: field + ": " + fmt.Sprintf(format, args...)}
}

var unknownField = regexp.MustCompile(`unknown field "(.*)"`)

// Decode reads exactly one JSON value from data into v under the package's rules.
func Decode(data []byte, v any) error {
	if !utf8.Valid(data) {
		return Malformed("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Malformed("unexpected data after the JSON value")
	}
	return nil
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var own *messaging.ServiceError
	switch {
	case errors.As(err, &own):
		return own // from a field's own UnmarshalJSON
	case errors.Is(err, io.EOF):
		return Malformed("body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Malformed("body ends in the middle of a JSON value")
	case errors.As(err, &syn):
		return Malformed("malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return Malformed("body must be a JSON object")
		}
		return Invalid(field, "must be %s, not %s", kind(typ.Type.Kind().String()), typ.Value)
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		return Invalid(m[1], "unknown field")
	}
	return Malformed("malformed JSON: %s", err.Error())
}

func kind(k string) string {
	switch {
	case strings.HasPrefix(k, "float"), strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"):
		return "a number"
	case k == "slice", k == "array":
		return "an array"
	case k == "struct", k == "map", k == "ptr":
		return "an object"
	}
	return "a " + k
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)

// ID checks a business id: 1 to 64 letters, digits, '.', '_', ':' or '-', starting with a
// letter or digit (it becomes a document _id and a log field).
func ID(field, id string) error {
	if id == "" {
		return Invalid(field, "is required")
	}
	if !idPattern.MatchString(id) {
		return Invalid(field, "must be 1 to 64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
	}
	return nil
}

// Text checks a required free-text field of at most n bytes.
func Text(field, s string, n int) error {
	switch {
	case strings.TrimSpace(s) == "":
		return Invalid(field, "is required")
	case len(s) > n:
		return Invalid(field, "must be at most %d bytes", n)
	}
	return nil
}

// Fingerprint identifies a validated request by its content: the SHA-256 of its canonical JSON
// (struct fields in order, map keys sorted), so whitespace and key order do not matter.
func Fingerprint(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
