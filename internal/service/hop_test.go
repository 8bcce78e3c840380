package service_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/shipment"
)

// A request the injected error fails is saved and then fails, and its log says so in that
// order: "🍀 saving", then "💥 injected error", and never "👌 success" first. A request it
// spares says "🍀 saving", then "👌 success".
func TestInjectedErrorIsNeverLoggedAfterSuccess(t *testing.T) {
	for _, row := range []struct {
		rate string
		want []string // the lines of the request, in order
	}{
		{"1", []string{"🍀 saving shipment...", "💥 injected error"}},
		{"0", []string{"🍀 saving shipment...", "👌 success shipment..."}},
	} {
		t.Run("INJECT_ERR_RATE="+row.rate, func(t *testing.T) {
			uri, db := testkit.Database(t)
			ns := testkit.NATS(t)
			var log testkit.SyncBuffer
			testkit.StartLogged(t, service.Chain{shipment.Service}, ns.URL(), uri, db,
				testkit.Env{"INJECT_ERR": "1", "INJECT_ERR_RATE": row.rate}, slog.New(slog.NewTextHandler(&log, nil)))
			nc, err := nats.Connect(ns.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Request(messaging.Subject("shipment"), []byte(`{"id":"s1","directions":"home"}`), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(log.String(), "\n") {
				for _, msg := range []string{"🍀 saving", "💥 injected error", "👌 success"} {
					if strings.Contains(line, `msg="`+msg) {
						_, rest, _ := strings.Cut(line, `msg="`)
						msg, _, _ := strings.Cut(rest, `"`)
						got = append(got, msg)
					}
				}
			}
			if strings.Join(got, " | ") != strings.Join(row.want, " | ") {
				t.Errorf("the request logged %q, want %q", got, row.want)
			}
		})
	}
}
