package allinone

// What the all-in-one reads before it starts anything: its own servers' settings and every
// service's, checked together.

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/internal/service"
)

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
	_, _, _, err := load(services, withServices, lookup)
	return err
}

// load reads and checks everything Check does, and plans the ports Start will take: every
// problem in one error.
func load(services service.Chain, withServices bool, lookup config.Lookup) (servers, []config.Settings, listeners, error) {
	sv, err := readServers(lookup, len(services))
	cfgs, cerr := Configs(services, lookup)
	ps := plan(sv, cfgs, withServices)
	return sv, cfgs, ps, config.Merge(err, cerr, ps.clash(), sv.replicas(cfgs, lookup))
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
