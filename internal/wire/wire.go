// Package wire decodes request bodies, on HTTP and NATS alike, states what is wrong with them in
// errors that name the field, and writes JSON answers. It must not know who sent a body (HTTP or
// NATS) or where it goes next.
//
// Its rules:
//   - exactly one JSON value: trailing data after it is malformed (400);
//   - a JSON syntax error or invalid UTF-8 is malformed (400);
//   - unknown fields are refused (422, naming the field): in a payment chain a silently
//     dropped field is worse than a refused request;
//   - a wrong type is invalid (422, naming the field);
//   - keys match field names case-insensitively and duplicate keys follow encoding/json: the
//     last one wins;
//   - free-form values (order items) nest at most MaxDepth deep and use object keys a MongoDB
//     store accepts.
package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/breakerchain/breakerchain/internal/problem"
)

// MaxBody is the largest body accepted (413 beyond it on HTTP; NATS caps payloads at 1 MiB too).
const MaxBody = 1 << 20

// Malformed is a 400: the body is not the one JSON value it should be.
func Malformed(format string, args ...any) *problem.Error {
	return &problem.Error{Code: 400, Description: fmt.Sprintf(format, args...)}
}

// Invalid is a 422 naming the field that is wrong.
func Invalid(field, format string, args ...any) *problem.Error {
	return &problem.Error{Code: 422, Field: field, Description: field + ": " + fmt.Sprintf(format, args...)}
}

var unknownField = regexp.MustCompile(`unknown field "(.*)"`)

// Decode reads exactly one JSON value from data into v under the package's rules.
func Decode(data []byte, v any) error {
	if !utf8.Valid(data) {
		return Malformed("body is not valid UTF-8")
	}
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		// JSON's null decodes into any value as nothing at all: no field, not a body.
		return Malformed("body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return withPath(decodeError(err), data, v)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Malformed("unexpected data after the JSON value")
	}
	return nil
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var own *problem.Error
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
		if n, ok := strings.CutPrefix(typ.Value, "number "); ok && kind(typ.Type.Kind().String()) == "a number" {
			return Invalid(field, "%s", numberProblem(n, typ.Type))
		}
		return Invalid(field, "must be %s, not %s", kind(typ.Type.Kind().String()), typ.Value)
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		if m[1] == "" {
			return Invalid(`""`, "unknown field (an empty key)")
		}
		return Invalid(m[1], "unknown field")
	}
	return Malformed("malformed JSON: %s", err.Error())
}

// Validator is a request type that checks its own fields.
type Validator interface {
	Validate() error
}

// DecodeValid decodes data into a T and validates it: the one way every service reads a body.
func DecodeValid[T any, P interface {
	*T
	Validator
}](data []byte) (T, error) {
	var v T
	if err := Decode(data, &v); err != nil {
		return v, err
	}
	return v, P(&v).Validate()
}

// withPath names an unknown field by its full path ("payment.shipment.colour"): encoding/json
// gives only the key. It walks the body alongside the struct type v decodes into.
func withPath(err error, data []byte, v any) error {
	se, ok := err.(*problem.Error)
	if !ok || se.Description != se.Field+": unknown field" || se.Field == `""` {
		return err
	}
	var body any
	if json.Unmarshal(data, &body) != nil {
		return err
	}
	if path := findUnknown(body, reflect.TypeOf(v), "", se.Field); path != "" {
		return Invalid(path, "unknown field")
	}
	return err
}

func findUnknown(body any, t reflect.Type, prefix, key string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	obj, ok := body.(map[string]any)
	if !ok || t.Kind() != reflect.Struct {
		return ""
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ft, known := fieldType(t, k)
		if !known && k == key {
			return prefix + k
		}
		if known {
			if p := findUnknown(obj[k], ft, prefix+k+".", key); p != "" {
				return p
			}
		}
	}
	return ""
}

// fieldType finds the field of struct t that JSON key k decodes into, as encoding/json matches.
func fieldType(t reflect.Type, k string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		if f.IsExported() && name != "-" && strings.EqualFold(name, k) {
			return f.Type, true
		}
	}
	return nil, false
}

// MaxDepth is how deeply a free-form value may nest.
const MaxDepth = 10

// FreeForm checks a free-form JSON array (order items) that will be stored as is: it nests at most
// MaxDepth deep, holds no array directly inside an array (the embedded store refuses those),
// and its object keys are ones a MongoDB store accepts (not empty, no leading '$', no '.', no
// NUL). field names it in errors. It writes each -0 in it as 0 (see Zeroed).
func FreeForm(field string, items []any) error { return free(field, items, 0) }

func free(field string, v any, depth int) error {
	if depth > MaxDepth {
		return Invalid(field, "nests deeper than %d levels", MaxDepth)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "" || k[0] == '$' || strings.ContainsAny(k, ".\x00") {
				return Invalid(field, "key %q: keys must not be empty, start with '$' or contain '.'", k)
			}
			if f, ok := e.(float64); ok {
				x[k] = Zeroed(f)
			}
			if err := free(field+"."+k, e, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range x {
			if f, ok := e.(float64); ok {
				x[i] = Zeroed(f)
			}
			at := fmt.Sprintf("%s[%d]", field, i)
			if _, nested := e.([]any); nested {
				return Invalid(at, "an array directly inside an array is not supported")
			}
			if err := free(at, e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// Zeroed is f with -0 as 0: JSON tells them apart ("-0"), a body's meaning does not, so one
// canonical body (and fingerprint) has 0.
func Zeroed(f float64) float64 {
	if f == 0 {
		return 0
	}
	return f
}

// numberProblem says what is wrong with number n, which JSON allows, for a field of numeric type
// t: out of the type's range, a fraction for a whole number, or a whole one not in digits (1e2).
func numberProblem(n string, t reflect.Type) string {
	f, err := strconv.ParseFloat(n, 64)
	k := t.Kind()
	switch {
	case err != nil, k == reflect.Float32, k == reflect.Float64:
		return n + " is out of range for a number"
	case f != math.Trunc(f):
		return "must be a whole number, not " + n
	case k >= reflect.Int && k <= reflect.Int64 && (math.Abs(f) >= 1<<63 || reflect.Zero(t).OverflowInt(int64(f))),
		k >= reflect.Uint && k <= reflect.Uintptr && (f < 0 || f >= 1<<64 || reflect.Zero(t).OverflowUint(uint64(f))):
		return n + " is out of range for a number"
	}
	return fmt.Sprintf("must be a whole number in digits (%.0f), not %s", f, n)
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
