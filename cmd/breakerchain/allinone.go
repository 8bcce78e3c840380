//go:build !noembed

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/breakerchain/breakerchain/internal/allinone"
	"github.com/breakerchain/breakerchain/internal/config"
)

// checkConfig reads the configuration the arguments would use, starting nothing.
func checkConfig(args []string, lookup config.Lookup) error {
	if len(args) == 0 || args[0] == "servers" {
		return allinone.Check(services, len(args) == 0, lookup)
	}
	for _, svc := range services {
		if args[0] == svc.Name {
			_, err := config.Load(svc.Name, "", config.DefaultPort, lookup)
			return err
		}
	}
	return nil
}

// allInOne runs the embedded servers, and the services withServices, until ctx ends.
func allInOne(ctx context.Context, withServices bool, lookup config.Lookup, log *slog.Logger, debug bool, stdout io.Writer) error {
	s, err := allinone.Start(ctx, services, withServices, lookup, log, debug)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, s.Banner())
	werr := s.Wait(ctx)
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := s.Stop(sctx); err != nil {
		return err
	}
	return werr
}
