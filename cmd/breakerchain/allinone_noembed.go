//go:build noembed

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/breakerchain/breakerchain/internal/config"
)

// A build with -tags noembed (the container image's) has no embedded nats-server or store: it
// runs one service against NATS_URL and MONGO_URL. Leaving them out halves each service
// process's resident memory (docs/BENCHMARKS.md): most of it is the code of servers a service
// never runs.
var errNoEmbed = errors.New("this build has no embedded servers (-tags noembed): run a service (breakerchain order|payment|shipment) against NATS_URL and MONGO_URL, or build without the tag")

func allInOne(context.Context, bool, config.Lookup, *slog.Logger, bool, io.Writer) error {
	return errNoEmbed
}

// checkConfig reads the configuration the arguments would use, starting nothing.
func checkConfig(args []string, lookup config.Lookup) error {
	for _, svc := range services {
		if len(args) > 0 && args[0] == svc.Name {
			_, err := config.Load(svc.Name, "", config.DefaultPort, lookup)
			return err
		}
	}
	return nil
}
