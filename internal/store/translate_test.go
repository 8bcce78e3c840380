package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Every driver error a caller acts on becomes one of this package's: in particular a store that
// answers "not now" (a step-down, an election, a shutdown) is unavailable, never an internal
// error.
func TestTranslate(t *testing.T) {
	writeErr := func(code int) error {
		return mongo.WriteException{WriteErrors: mongo.WriteErrors{{Code: code, Message: "m"}}}
	}
	for _, row := range []struct {
		name string
		err  error
		want error // nil: passed through as a plain (internal) error
	}{
		{"no document", mongo.ErrNoDocuments, ErrNotFound},
		{"duplicate key", writeErr(11000), ErrDuplicate},
		{"NotWritablePrimary", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary"}, ErrUnavailable},
		{"PrimarySteppedDown", mongo.CommandError{Code: 189, Name: "PrimarySteppedDown"}, ErrUnavailable},
		{"InterruptedDueToReplStateChange", mongo.CommandError{Code: 11602}, ErrUnavailable},
		{"ShutdownInProgress", mongo.CommandError{Code: 91}, ErrUnavailable},
		{"NotPrimaryNoSecondaryOk", mongo.CommandError{Code: 13435}, ErrUnavailable},
		{"RetryableWriteError label", mongo.CommandError{Code: 1, Labels: []string{"RetryableWriteError"}}, ErrUnavailable},
		{"TransientTransactionError label", mongo.CommandError{Code: 1, Labels: []string{"TransientTransactionError"}}, ErrUnavailable},
		{"a write error with a step-down code", writeErr(11602), ErrUnavailable},
		{"a write concern error with a step-down code: the write was done, may not stay", mongo.WriteException{
			WriteConcernError: &mongo.WriteConcernError{Code: 189, Message: "stepped down"}}, ErrUnknown},
		{"write concern not satisfied", mongo.WriteException{
			WriteConcernError: &mongo.WriteConcernError{Code: 64, Message: "waiting for replication timed out"}}, ErrUnknown},
		{"a document the store refuses", writeErr(2), ErrRefused},
		{"a document failing validation", writeErr(121), ErrRefused},
		{"a write error that is not the document's: not refused for good", writeErr(1), ErrUnavailable},
		{"deadline", fmt.Errorf("op: %w", context.DeadlineExceeded), ErrUnavailable},
		{"another command error", mongo.CommandError{Code: 2, Name: "BadValue"}, nil},
	} {
		t.Run(row.name, func(t *testing.T) {
			got := translate(row.err)
			known := []error{ErrNotFound, ErrDuplicate, ErrUnavailable, ErrUnknown, ErrRefused}
			if row.want == nil {
				for _, k := range known {
					if errors.Is(got, k) {
						t.Fatalf("translate(%v) = %v, want a plain error, not %v", row.err, got, k)
					}
				}
				return
			}
			if !errors.Is(got, row.want) {
				t.Fatalf("translate(%v) = %v, want %v", row.err, got, row.want)
			}
		})
	}
}
