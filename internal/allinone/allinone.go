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
	"os"
	"path/filepath"
	"regexp"
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
	sv, err := readServers(lookup, len(services))
	cfgs, cerr := Configs(services, lookup)
	ps := plan(sv, cfgs, withServices)
	if err := config.Merge(err, cerr, ps.clash(), sv.replicas(cfgs, lookup)); err != nil {
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

// servers is how the all-in-one's own servers are configured.
type servers struct {
	natsURL, mongoURL   string // given: that server is not embedded
	natsPort, mongoPort int
	dataDir, natsConfig string
	natsOpts            *server.Options // loaded from natsConfig
	dashboardPort       int
}

// withDashboard tells whether the all-in-one runs the dashboard (with its services): it watches
// the embedded NATS, which has no users; with NATS_CONFIG or a NATS of its own it is
// `breakerchain dashboard`'s job, with the observer's credentials.
func (sv servers) withDashboard() bool { return sv.natsURL == "" && sv.natsConfig == "" }

// readServers reads NATS_URL, MONGO_URL, NATS_PORT, MONGO_PORT, DATA_DIR, NATS_CONFIG and
// DASHBOARD_PORT, beside a chain of n services.
func readServers(lookup config.Lookup, n int) (servers, error) {
	env := config.NewSource("", lookup)
	sv := servers{
		natsURL:    env.Servers("NATS_URL", "", "nats", "tls", "ws", "wss"),
		mongoURL:   env.MongoURL("MONGO_URL"),
		natsPort:   env.Int("NATS_PORT", config.DefaultNATSPort, 0, 65535),
		mongoPort:  env.Int("MONGO_PORT", config.DefaultMongoPort, 0, 65535),
		dataDir:    env.String("DATA_DIR", DefaultDataDir),
		natsConfig: env.String("NATS_CONFIG", ""),
		// Only the prefixed name: an unprefixed PORT is the services'. By default the port
		// after theirs, so it is none of theirs however long the chain.
		dashboardPort: env.Int("DASHBOARD_PORT", config.DashboardPort(basePort(env, n), n), 0, 65535),
	}
	var fileErr error
	switch {
	case sv.natsConfig != "" && sv.natsURL != "":
		fileErr = fmt.Errorf("NATS_CONFIG=%q: want it without NATS_URL (it configures the embedded server)", sv.natsConfig)
	case sv.natsConfig != "":
		if sv.natsOpts, fileErr = embedded.LoadNATSConfig(sv.natsConfig); fileErr != nil {
			fileErr = fmt.Errorf("NATS_CONFIG=%q: want a nats-server configuration file that loads (%v)", sv.natsConfig, fileErr)
		}
		// The variables the file names ($CHAOS_NATS_PASSWORD…) are read, by nats-server.
		if b, err := os.ReadFile(sv.natsConfig); err == nil {
			for _, m := range configVariable.FindAllStringSubmatch(string(b), -1) {
				env.String(m[1], "")
			}
		}
	}
	return sv, config.Merge(env.Err(), fileErr)
}

// configVariable is a variable a nats-server configuration file reads: $NAME.
var configVariable = regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`)

// Check reads the whole configuration of an all-in-one of services (withServices: run them too),
// starting nothing.
func Check(services service.Chain, withServices bool, lookup config.Lookup) error {
	sv, err := readServers(lookup, len(services))
	cfgs, cerr := Configs(services, lookup)
	return config.Merge(err, cerr, plan(sv, cfgs, withServices).clash(), sv.replicas(cfgs, lookup))
}

// replicas refuses more than one copy of order's queue on the embedded NATS, a single server:
// JetStream would refuse the stream only once order asked for it, after half a minute of
// waiting, in its own words.
func (sv servers) replicas(cfgs []config.Settings, lookup config.Lookup) error {
	if sv.natsURL != "" {
		return nil
	}
	for _, c := range cfgs {
		if c.JetStreamReplicas > 1 {
			name := strings.ToUpper(c.Name) + "_JETSTREAM_REPLICAS"
			if v, _ := lookup(name); v == "" {
				name = "JETSTREAM_REPLICAS"
			}
			return &config.Error{Problems: []string{fmt.Sprintf("%s=%d: want 1 with the embedded NATS, a single server (more copies need a cluster, given in NATS_URL)",
				name, c.JetStreamReplicas)}}
		}
	}
	return nil
}

// basePort reads the unprefixed PORT: the first of the n services' consecutive ports.
func basePort(env *config.Source, n int) int { return env.Int("PORT", config.DefaultPort, 0, 65535-n) }

// Configs reads and checks every service's configuration, before anything starts. An unprefixed
// PORT is the first of consecutive ports in the chain's order (order PORT, payment PORT+1, …;
// 0 picks free ones: config.ServicePort); a prefixed one (PAYMENT_PORT) sets that service's
// port. With NATS_CONFIG, a service
// with no NATS_USER or NATS_CREDS of its own connects as the user named after it (see ownUser).
func Configs(services service.Chain, lookup config.Lookup) ([]config.Settings, error) {
	env := config.NewSource("", lookup)
	base := basePort(env, len(services))
	natsConfig := env.String("NATS_CONFIG", "")
	var fileUsers map[string]bool
	if _, err := os.Stat(natsConfig); natsConfig != "" && err != nil {
		natsConfig = "" // no file: readServers says so, and no user of it is asked for a password
	}
	if natsConfig != "" {
		// A file that does not load is readServers' error to report.
		if opts, err := embedded.LoadNATSConfig(natsConfig); err == nil {
			fileUsers = map[string]bool{}
			for _, u := range opts.Users {
				fileUsers[u.Username] = true
			}
		}
	}
	errs := []error{env.Err()}
	withoutPort := func(name string) (string, bool) {
		if name == "PORT" {
			return "", false
		}
		return lookup(name)
	}
	cfgs := make([]config.Settings, len(services))
	for i, svc := range services {
		l := withoutPort
		if natsConfig != "" {
			l = ownUser(svc.Name, fileUsers, withoutPort)
		}
		c, err := config.Load(svc.Name, host, config.ServicePort(base, i), l)
		errs = append(errs, err)
		cfgs[i] = c
	}
	return cfgs, config.Merge(errs...)
}

// ownUser makes service's NATS_USER default to its own name, unless a user or a credentials
// file is set for it; and, when the file has a user <service>-queue, its NATS_QUEUE_USER default
// to that one, with the service's own password (deploy/nats.conf gives order-queue order's),
// unless a queue user or credentials file is set for it.
func ownUser(service string, fileUsers map[string]bool, lookup config.Lookup) config.Lookup {
	prefix := strings.ToUpper(service) + "_"
	get := func(name string) (string, bool) {
		v, ok := lookup(prefix + name)
		if !ok || v == "" {
			v, ok = lookup(name)
		}
		return v, ok && v != ""
	}
	set := func(name string) bool { _, ok := get(name); return ok }
	queueUser := service + "-queue"
	ownQueue := fileUsers[queueUser] && !set("NATS_QUEUE_USER") && !set("NATS_QUEUE_CREDS")
	return func(name string) (string, bool) {
		switch {
		case name == prefix+"NATS_USER" && !set("NATS_USER") && !set("NATS_CREDS"):
			return service, true
		case name == prefix+"NATS_QUEUE_USER" && ownQueue:
			return queueUser, true
		case name == prefix+"NATS_QUEUE_PASSWORD" && ownQueue && !set("NATS_QUEUE_PASSWORD"):
			return get("NATS_PASSWORD")
		}
		return lookup(name)
	}
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
