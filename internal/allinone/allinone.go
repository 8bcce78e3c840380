// Package allinone is `breakerchain` with no argument: an embedded nats-server and an embedded
// MongoDB-compatible store (FerretDB on SQLite) with every service of the chain in one process,
// or, as `breakerchain servers`, the servers alone. It is a local mode: everything listens on
// 127.0.0.1, NATS has no authentication and the store none either. A NATS_URL or MONGO_URL in the
// environment replaces the embedded server with that one. It must not know what the services do:
// it starts the Chain it is given, and what it shows of them follows that list: their ports
// (PORT+i in the chain's order, the dashboard on the first port after theirs), the banner's
// example (Chain.Example) and the dashboard's order button. Before it starts anything it tries
// every port it will take and names all the busy ones, with their variables, in one error.
//
// NATS_CONFIG=deploy/nats.conf gives the embedded NATS the users and permissions compose runs
// with (the file's listen address and monitoring port are not used: it still listens on
// 127.0.0.1:NATS_PORT only), and each service connects as the user named after it, with the
// password in <SERVICE>_NATS_PASSWORD — the variable the file itself reads. When the file has a
// user <service>-queue (order-queue, in an account of its own), the service's queue connects as
// that user, with the same password, as the file gives it.
package allinone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/dashboard"
	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/messaging"
)

// DefaultDataDir is where the embedded servers keep their files unless DATA_DIR says otherwise.
// Their addresses are config's (config.LocalHost and the default ports).
const DefaultDataDir = "./data"

// host is where everything of the all-in-one listens: it is a local mode.
const host = config.LocalHost

// Running is a running all-in-one.
type Running struct {
	NATSURL  string
	MongoURL string
	DataDir  string             // where the embedded servers keep their files; "" when none is embedded
	Services []*service.Running // in the order of the services given to Start; none with the servers alone
	// Dashboard is the live circuits dashboard, on its own port of 127.0.0.1; nil when NATS is
	// not embedded without users (see Start).
	Dashboard *dashboard.Running
	Configs   []config.Settings // the services', whether they run here or not
	// NATSConfig is the configuration file the embedded NATS loaded; "" for none (no auth).
	NATSConfig string
	chain      service.Chain
	nats       *embedded.NATS
	store      *embedded.Store
	unlock     func() // gives up DATA_DIR; nil when nothing embedded uses it
}

// Start starts the all-in-one. services are the chain, upstream first (order, payment, shipment);
// withServices, each is started and gets port config.ServicePort(PORT, i) unless its own
// <SERVICE>_PORT says otherwise; without, only the servers start (`breakerchain servers`). Every
// port it will take is checked free before anything starts. debug un-silences the embedded
// servers.
func Start(ctx context.Context, services service.Chain, withServices bool, lookup config.Lookup, log *slog.Logger, debug bool) (_ *Running, err error) {
	sv, cfgs, ps, err := load(services, withServices, lookup)
	if err != nil {
		return nil, err
	}
	if err := ps.free(); err != nil {
		return nil, err
	}
	s := &Running{NATSURL: sv.natsURL, MongoURL: sv.mongoURL, Configs: cfgs, NATSConfig: sv.natsConfig, chain: services}
	defer func() {
		if err != nil {
			s.Stop(context.Background())
		}
	}()
	if s.NATSURL == "" || s.MongoURL == "" {
		// The embedded servers keep their files there: one process at a time.
		if s.unlock, err = embedded.Lock(sv.dataDir); err != nil {
			return nil, fmt.Errorf("DATA_DIR: %w", err)
		}
		s.DataDir = sv.dataDir
	}
	if s.NATSURL == "" {
		if err := s.startNATS(sv, debug); err != nil {
			return nil, err
		}
	}
	if s.MongoURL == "" {
		if err := s.startStore(ctx, sv, log, debug); err != nil {
			return nil, err
		}
	}
	if !withServices {
		return s, nil
	}
	if err := s.startServices(ctx, log); err != nil {
		return nil, err
	}
	if sv.withDashboard() {
		local := config.Settings{Name: "dashboard", ID: "dashboard", NatsURL: s.NATSURL}
		s.Dashboard, err = dashboard.Start(config.Dashboard{Host: host, Port: sv.dashboardPort,
			OrderURL: "http://" + s.Services[0].Addr, OrderBody: services.Example, Watch: local, Control: &local},
			log.With("service", "dashboard"))
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// startNATS starts the embedded nats-server as sv says, with JetStream in DATA_DIR.
func (s *Running) startNATS(sv servers, debug bool) error {
	port := sv.natsPort
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := sv.natsOpts
	if opts == nil {
		opts = &server.Options{}
	}
	opts.NoLog, opts.Debug = !debug, debug
	// JetStream holds order's queue, in DATA_DIR/jetstream (nats-server adds the last part).
	// Synced every second: a crash loses nothing, a power loss at most that last second.
	opts.JetStream, opts.StoreDir = true, sv.dataDir
	if opts.SyncInterval == 0 {
		opts.SyncInterval = time.Second
	}
	var err error
	if s.nats, err = embedded.StartNATS(host, port, opts); err != nil {
		return err
	}
	if debug {
		s.nats.ConfigureLogger()
	}
	s.NATSURL = s.nats.URL()
	return nil
}

// startStore starts the embedded store as sv says, and indexes by _id the collections of every
// service that uses it.
func (s *Running) startStore(ctx context.Context, sv servers, log *slog.Logger, debug bool) error {
	storeLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	if debug {
		storeLog = log.With("service", "ferretdb")
	}
	addr := net.JoinHostPort(host, strconv.Itoa(sv.mongoPort))
	var err error
	if s.store, err = embedded.StartStore(addr, sv.dataDir, storeLog); err != nil {
		return err
	}
	s.MongoURL = s.store.URI()
	// Lookups by _id use an index, whether the services run here or as processes (not for a
	// service given a store of its own).
	for i, svc := range s.chain {
		if s.Configs[i].MongoURL != "" {
			continue
		}
		if err := s.store.IndexIDs(ctx, s.Configs[i].MongoDB, svc.Collections...); err != nil {
			return err
		}
	}
	return nil
}

// startServices starts the chain's services on the servers, downstream first, so each service
// finds the next one already serving.
func (s *Running) startServices(ctx context.Context, log *slog.Logger) error {
	s.Services = make([]*service.Running, len(s.chain))
	for i := len(s.chain) - 1; i >= 0; i-- {
		c := &s.Configs[i]
		if c.NatsURL == "" {
			c.NatsURL = s.NATSURL
		}
		if c.MongoURL == "" {
			c.MongoURL = s.MongoURL
		}
		r, err := service.Start(ctx, s.chain[i:], *c, log.With("service", c.ID))
		if err != nil {
			return fmt.Errorf("%s: %w", s.chain[i].Name, err)
		}
		s.Services[i] = r
	}
	return nil
}

// Wait blocks until ctx ends or a service's HTTP server fails.
func (s *Running) Wait(ctx context.Context) error {
	errc := make(chan error, len(s.Services)+1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, r := range s.Services {
		go func() { errc <- r.Wait(ctx) }()
	}
	if s.Dashboard != nil {
		go func() { errc <- s.Dashboard.Wait(ctx) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil // with no services (breakerchain servers), nothing else ends the wait
	}
}

// Stop stops the services upstream first (no new work enters while the rest finish), then the
// embedded store and NATS, within ctx.
func (s *Running) Stop(ctx context.Context) error {
	var errs []error
	if s.Dashboard != nil {
		errs = append(errs, s.Dashboard.Stop(ctx))
	}
	for _, r := range s.Services {
		if r != nil {
			errs = append(errs, r.Stop(ctx))
		}
	}
	if s.store != nil {
		s.store.Stop()
	}
	if s.nats != nil {
		s.nats.Stop()
	}
	if s.unlock != nil {
		s.unlock()
	}
	return errors.Join(errs...)
}

// Banner tells where everything listens and how to try it.
func (s *Running) Banner() string {
	var b strings.Builder
	what, nats := "breakerchain all-in-one", "NATS without auth"
	if len(s.Services) == 0 {
		what = "breakerchain servers"
	}
	if s.NATSConfig != "" {
		nats = "NATS users from " + s.NATSConfig
	}
	b.WriteString(what + " (local mode: 127.0.0.1 only, " + nats + ")\n")
	for i, r := range s.Services {
		c := s.Configs[i]
		what := "NATS " + messaging.Subject(c.Name)
		if api := s.chain[i].API; api != "" {
			what = api
		}
		fmt.Fprintf(&b, "  %-10s http://%-21s %s · /breakers /readyz\n", c.ID, r.Addr, what)
	}
	// With NATS users (NATS_CONFIG=deploy/nats.conf) the nats CLI logs in: as observer to watch,
	// as chaos to change faults.
	watcher, changer := "nats", "nats"
	if s.NATSConfig != "" {
		watcher = `nats --user observer --password "$OBSERVER_NATS_PASSWORD"`
		changer = `nats --user chaos --password "$CHAOS_NATS_PASSWORD"`
	}
	if s.NATSURL != config.DefaultNATSURL { // the CLI's own default: elsewhere, it must be told
		watcher += " -s " + config.Mask(s.NATSURL)
		changer += " -s " + config.Mask(s.NATSURL)
	}
	natsNote, storeNote := "(external)", "(external)"
	if s.nats != nil {
		natsNote = "(embedded, JetStream in " + filepath.Join(s.DataDir, "jetstream") + ") watch it: " + watcher + " sub 'breaker.>'"
		if len(s.Services) > 0 && slices.ContainsFunc(s.Configs, func(c config.Settings) bool { return c.Chaos }) {
			natsNote += " · " + watcher + " sub 'chaos.>'"
		}
	}
	if s.store != nil {
		storeNote = "(embedded FerretDB, data in " + s.DataDir + ")"
	}
	if s.Dashboard != nil {
		fmt.Fprintf(&b, "  %-10s http://%-21s the circuits, live (operators only: never on order's port)\n", "dashboard", s.Dashboard.Addr)
	}
	fmt.Fprintf(&b, "  %-10s %-28s %s\n", "NATS", config.Mask(s.NATSURL), natsNote)
	fmt.Fprintf(&b, "  %-10s %-28s %s\n", "MongoDB", config.Mask(s.MongoURL), storeNote)
	if len(s.Services) == 0 {
		fmt.Fprintf(&b, "Run a service against them:\n  NATS_URL=%s MONGO_URL='%s' breakerchain payment\n",
			config.Mask(s.NATSURL), config.Mask(s.MongoURL))
	} else {
		fmt.Fprintf(&b, "Try it:\n  curl -s -H 'Content-Type: application/json' -H 'Accept: text/plain' -d '%s' http://%s/create\n",
			s.chain.Example("1"), s.Services[0].Addr)
	}
	for i := len(s.Services) - 1; i >= 0; i-- { // the last hop with chaos on: shipment, as in the seed
		if c := s.Configs[i]; c.Chaos {
			fmt.Fprintf(&b, "Chaos is on (CHAOS=1): change %s's faults while it runs:\n"+
				"  %s req chaos.%s '{\"error_rate\":0.5,\"latency\":\"400ms\"}'   or   curl -X PUT … http://%s/chaos\n",
				c.ID, changer, c.Name, s.Services[i].Addr)
			break
		}
	}
	return b.String()
}
