package messaging_test

import (
	"net/http"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/breakerchain/breakerchain/messaging"
)

// TestServiceError reads micro's error headers as every caller does: a 4xx is the target
// refusing, a 5xx the target failing, and a code no service of ours sends is a target failing,
// never a refusal that would keep its circuit closed.
func TestServiceError(t *testing.T) {
	rows := []struct {
		name, code string
		want       int // 0: no service error
		failure    bool
	}{
		{"no error", "", 0, false},
		{"a 4xx", "422", http.StatusUnprocessableEntity, false},
		{"a 5xx", "503", http.StatusServiceUnavailable, true},
		{"not a number", "oops", http.StatusBadGateway, true},
		{"not an error code", "200", http.StatusBadGateway, true},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			m := nats.NewMsg("reply")
			if row.code != "" {
				m.Header.Set(micro.ErrorCodeHeader, row.code)
				m.Header.Set(micro.ErrorHeader, "what went wrong")
			}
			se := messaging.ServiceError(m)
			if row.want == 0 {
				if se != nil {
					t.Fatalf("%v, want none", se)
				}
				return
			}
			if se == nil || se.Code != row.want || se.Description != "what went wrong" || messaging.IsFailure(se) != row.failure {
				t.Fatalf("%v, want %d \"what went wrong\" (a failure: %v)", se, row.want, row.failure)
			}
		})
	}
}
