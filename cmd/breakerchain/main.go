// Command breakerchain runs the chain. With no argument it is the all-in-one: an embedded
// nats-server and store with every service of the chain (order, payment, shipment) in one
// process. With one argument, a service's name, it runs that service against NATS_URL and
// MONGO_URL, which is what each container of the compose file does. The chain is the list
// below: the usage text, the all-in-one's ports, its banner's example and the dashboard's order
// button follow it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/dashboard"
	"github.com/breakerchain/breakerchain/internal/logging"
	"github.com/breakerchain/breakerchain/internal/plumbing"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// services is the chain, upstream first: each service calls the one after it. This list is the
// one place the order is written; a new service is a line here (and its NATS user).
var services = service.Chain{order.Service, payment.Service, shipment.Service}

// stopTimeout bounds the whole shutdown.
const stopTimeout = 10 * time.Second

// usage is the help text, the services named from the chain.
var usage = usageOf(services)

func usageOf(c service.Chain) string {
	names := make([]string, len(c))
	for i, svc := range c {
		names[i] = svc.Name
	}
	return `usage: breakerchain [` + strings.Join(names, "|") + `|servers|dashboard|apply-queue]
       breakerchain probe URL
  no argument: the all-in-one (embedded NATS and store, the chain ` + strings.Join(names, " → ") + `)
  a service:   that service alone, against NATS_URL and MONGO_URL
  servers:     only the embedded NATS and store, for services run as separate processes
  dashboard:   the live circuits dashboard alone, against NATS_URL (as the observer; controls as the chaos user)
  apply-queue: set order's shared queue in JetStream (streams, re-driver) to this configuration's
               JETSTREAM_REPLICAS and REDRIVE_ACK_WAIT: an instance never changes them by itself
  probe URL:   exit 0 if GET URL answers 2xx within 2s (container healthchecks: the image has no shell)
Configuration is read from the environment; see docs/configuration.md.`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "breakerchain:", err)
		os.Exit(1)
	}
}

// run runs the command args with the environment environ ("NAME=value" entries).
func run(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) == 2 && args[0] == "probe":
		return probe(ctx, args[1])
	case len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help"):
		fmt.Fprintln(stdout, usage)
		return nil
	case len(args) > 1 || (len(args) == 1 && args[0] != "servers" && args[0] != "dashboard" && args[0] != "apply-queue" &&
		!slices.ContainsFunc(services, func(s service.Service) bool { return s.Name == args[0] })):
		return fmt.Errorf("unknown arguments %q\n%s", args, usage)
	}
	log, level, lookup, err := configure(args, environ, stderr)
	if err != nil {
		return err
	}
	switch {
	case len(args) == 0:
		return allInOne(ctx, true, lookup, log, level == slog.LevelDebug, stdout)
	case args[0] == "servers":
		return allInOne(ctx, false, lookup, log, level == slog.LevelDebug, stdout)
	case args[0] == "dashboard":
		return runDashboard(ctx, lookup, log, stdout)
	case args[0] == "apply-queue":
		return applyQueue(ctx, lookup, log, stdout)
	}
	for i, svc := range services {
		if args[0] == svc.Name {
			return single(ctx, services[i:], lookup, log)
		}
	}
	return nil // not reached: the arguments were checked above
}

// configure reads the whole configuration the command args would use, before anything starts:
// every bad value at once (not one per try), and a warning for each variable set that looks like
// one of ours but is not read. It returns the logger and the lookup to start with.
func configure(args []string, environ []string, stderr io.Writer) (*slog.Logger, slog.Level, config.Lookup, error) {
	env, set := config.FromEnviron(environ)
	reads := config.Record(env)
	log, level, err := logging.New(stderr, reads.Lookup)
	if err := config.Merge(err, checkArgs(args, reads.Lookup)); err != nil {
		return nil, level, nil, err
	}
	warnUnread(log, reads, set, args)
	return log, level, env, nil
}

// checkArgs reads the configuration the command args would use, starting nothing.
func checkArgs(args []string, lookup config.Lookup) error {
	if len(args) == 1 && args[0] == "dashboard" {
		_, err := config.LoadDashboard(lookup, len(services))
		return err
	}
	return checkConfig(args, lookup)
}

// warnUnread warns of each variable that looks like one of ours but was not read: a typo
// (SHIPMNT_INJECT_ERR) or a name that does not exist (SHIPMENT_INJECT_ERROR) would otherwise be
// silently ignored.
func warnUnread(log *slog.Logger, reads *config.Reads, set []string, args []string) {
	names := make([]string, len(services))
	for i, svc := range services {
		names[i] = svc.Name
	}
	for _, u := range reads.Unread(set, names) {
		msg := "⚠️  " + u.Name + " is not a variable breakerchain reads here: ignored"
		switch other := readBy(u.Name, args); {
		case other != "":
			msg += "; " + other + " reads it"
		case u.Closest != "":
			msg += "; did you mean " + u.Closest + "?"
		}
		log.Warn(msg, "variable", u.Name, "closest", u.Closest)
	}
}

// readBy names the command, other than args, that reads variable name (ORDER_URL is
// `breakerchain dashboard`'s), or "" when none does.
func readBy(name string, args []string) string {
	commands := [][]string{nil, {"servers"}, {"dashboard"}}
	for _, svc := range services {
		commands = append(commands, []string{svc.Name})
	}
	for _, other := range commands {
		if slices.Equal(other, args) {
			continue
		}
		reads := config.Record(func(string) (string, bool) { return "", false })
		_ = checkArgs(other, reads.Lookup)
		if slices.Contains(reads.Names(), name) {
			return "`" + strings.TrimSpace("breakerchain "+strings.Join(other, " ")) + "`"
		}
	}
	return ""
}

// runDashboard serves the dashboard alone, against NATS_URL, until ctx ends.
func runDashboard(ctx context.Context, lookup config.Lookup, log *slog.Logger, stdout io.Writer) error {
	cfg, err := config.LoadDashboard(lookup, len(services))
	if err != nil {
		return err
	}
	cfg.OrderBody = services.Example
	log = log.With("service", "dashboard")
	d, err := dashboard.Start(cfg, log)
	if err != nil {
		return err
	}
	controls := "watch only (set CHAOS_NATS_USER and CHAOS_NATS_PASSWORD for the controls)"
	if d.Controls {
		controls = "with controls"
	}
	fmt.Fprintf(stdout, "breakerchain dashboard  http://%s  watching %s, %s\n", d.Addr, config.Mask(cfg.Watch.NatsURL), controls)
	werr := d.Wait(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	return errors.Join(werr, d.Stop(sctx))
}

// applyQueue sets order's shared queue to order's configuration, and says what it changed.
func applyQueue(ctx context.Context, lookup config.Lookup, log *slog.Logger, stdout io.Writer) error {
	cfg, err := serviceConfig(order.Service.Name, lookup)
	if err != nil {
		return err
	}
	nc, err := plumbing.ConnectQueue(cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	changed, err := order.ApplyQueue(ctx, nc, cfg)
	for _, c := range changed {
		fmt.Fprintf(stdout, "%s %s: %s → %s\n", c.Object, c.Setting, c.Have, c.Want)
	}
	if err == nil && len(changed) == 0 {
		fmt.Fprintln(stdout, "the queue already has these settings")
	}
	return err
}

// probe is a healthcheck: GET url must answer 2xx within 2 seconds.
func probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("probe: %s answered %s", url, res.Status)
	}
	return nil
}

func single(ctx context.Context, c service.Chain, lookup config.Lookup, log *slog.Logger) error {
	cfg, err := serviceConfig(c[0].Name, lookup)
	if err != nil {
		return err
	}
	return service.Run(ctx, c, cfg, log.With("service", cfg.ID), stopTimeout)
}

// serviceConfig is the configuration of the service name run alone: the servers on this host
// unless NATS_URL and MONGO_URL say otherwise.
func serviceConfig(name string, lookup config.Lookup) (config.Settings, error) {
	cfg, err := config.Load(name, "", config.DefaultPort, lookup)
	if cfg.NatsURL == "" {
		cfg.NatsURL = config.DefaultNATSURL
	}
	if cfg.MongoURL == "" {
		cfg.MongoURL = config.DefaultMongoURL
	}
	return cfg, err
}
