package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/embedded"
)

const clusterFile = "deploy/compose.cluster.yaml"

// The cluster variant, loaded over the single-node file as compose does: three NATS nodes
// running deploy/nats-cluster.conf (deploy/nats.conf plus routes), each with a volume of its
// own; a three-member MongoDB replica set sharing a key, made a set once by mongo-rs; every
// service given all three of each, order's queue replicated three times and writes acknowledged
// by a majority; every new container hardened.
func TestComposeClusterFile(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	secrets := dotEnv(t, root)
	p, err := loadCompose(t, root, secrets, clusterFile)
	if err != nil {
		t.Fatalf("cluster variant does not load: %v", err)
	}
	get := func(name string) types.ServiceConfig {
		t.Helper()
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := get("nats")

	// NATS: three nodes of one cluster, each its own name and volume.
	nodeConf := filepath.Join(root, "deploy", "nats-cluster.conf")
	names, volumes := map[string]bool{}, map[string]bool{}
	for _, name := range []string{"nats", "nats-2", "nats-3"} {
		n := get(name)
		conf := mountOf(n, nodeConf)
		// nats.conf beside it, where its include looks.
		shared := conf != nil && slices.ContainsFunc(n.Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Source == filepath.Join(root, "deploy", "nats.conf") && v.ReadOnly && v.Target == filepath.Join(filepath.Dir(conf.Target), "nats.conf")
		})
		if n.Image != base.Image || n.User != "65534:65534" || !shared || !conf.ReadOnly ||
			!slices.Equal([]string(n.Command), []string{"--config", conf.Target}) {
			t.Errorf("%s: image %s user %s command %v volumes %+v; want the same server running nats-cluster.conf beside nats.conf (its include)",
				name, n.Image, n.User, n.Command, n.Volumes)
		}
		if v := n.Environment["NATS_SERVER_NAME"]; v == nil || names[*v] {
			t.Errorf("%s: NATS_SERVER_NAME %v, want a name of its own", name, v)
		} else {
			names[*v] = true
		}
		for _, v := range n.Volumes {
			if v.Type == types.VolumeTypeVolume && v.Target == "/data" {
				if volumes[v.Source] {
					t.Errorf("%s: volume %s shared with another node", name, v.Source)
				}
				volumes[v.Source] = true
			}
		}
		// The node's file loads, with the node's environment: deploy/nats.conf's accounts and
		// users, JetStream, its own name and the routes to all three.
		for k, v := range n.Environment {
			t.Setenv(k, *v)
		}
		opts, err := embedded.LoadNATSConfig(conf.Source)
		if err != nil {
			t.Fatalf("%s: %s does not load: %v", name, conf.Source, err)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		slices.Sort(routes)
		var accounts []string
		for _, a := range opts.Accounts {
			accounts = append(accounts, a.Name)
		}
		slices.Sort(accounts)
		if !slices.Equal(accounts, []string{"APP", "PEOPLE", "QUEUE"}) {
			t.Errorf("%s: accounts %v, want nats.conf's APP, PEOPLE and QUEUE", name, accounts)
		}
		if opts.ServerName != *n.Environment["NATS_SERVER_NAME"] || opts.Cluster.Name != "breakerchain" || opts.Cluster.Port != 6222 ||
			!slices.Equal(routes, []string{"nats-1-route:6222", "nats-2-route:6222", "nats-3-route:6222"}) || !opts.JetStream || opts.StoreDir != "/data" || len(opts.Users) != 6 {
			t.Errorf("%s: server %q cluster %q:%d routes %v JetStream %v in %q, %d users; want its name, cluster breakerchain on 6222 routed to all three, JetStream in /data, nats.conf's 6 users",
				name, opts.ServerName, opts.Cluster.Name, opts.Cluster.Port, routes, opts.JetStream, opts.StoreDir, len(opts.Users))
		}
		// Routes are unauthenticated: they listen only on the node's name on nats-routes, a
		// network no service joins.
		routeNet := n.Networks["nats-routes"]
		if routeNet == nil || !slices.Contains(routeNet.Aliases, opts.Cluster.Host) || !slices.Contains(routes, opts.Cluster.Host+":6222") {
			t.Errorf("%s: cluster listens on %q, networks %+v; want its own alias on nats-routes, one of the routes", name, opts.Cluster.Host, n.Networks)
		}
	}
	if len(volumes) != 3 {
		t.Errorf("JetStream volumes %v, want one per node", volumes)
	}
	owner := get("nats-data")
	for v := range volumes {
		if !slices.ContainsFunc(owner.Volumes, func(m types.ServiceVolumeConfig) bool {
			return m.Source == v && slices.Contains([]string(owner.Entrypoint), m.Target)
		}) {
			t.Errorf("nats-data does not give volume %s to nats's user: %v %+v", v, owner.Entrypoint, owner.Volumes)
		}
	}

	if nw := p.Networks["nats-routes"]; !nw.Internal {
		t.Errorf("nats-routes: %+v, want an internal network", nw)
	}
	for _, s := range p.Services {
		if _, on := s.Networks["nats-routes"]; on && !slices.Contains([]string{"nats", "nats-2", "nats-3"}, s.Name) {
			t.Errorf("%s joins nats-routes: only the NATS nodes may reach the routes", s.Name)
		}
	}

	// MongoDB: three members of rs0 with the shared key, made a set by mongo-rs.
	key := get("mongo-key")
	if !slices.Equal(key.CapAdd, []string{"CHOWN"}) || key.NetworkMode != "none" || key.Environment["MONGO_REPLICA_KEY"] == nil ||
		!strings.Contains(strings.Join(key.Entrypoint, " "), "chmod 400") || !strings.Contains(strings.Join(key.Entrypoint, " "), "chown 999:999") {
		t.Errorf("mongo-key: %+v; want the key from .env, mode 400, owned by mongod's user, CHOWN only, no network", key)
	}
	hosts := []string{}
	for _, name := range []string{"mongo", "mongo-2", "mongo-3"} {
		m := get(name)
		cmd := strings.Join(m.Command, " ")
		var keyMount, data bool
		for _, v := range m.Volumes {
			keyMount = keyMount || (v.Source == "mongo-key" && v.ReadOnly && strings.Contains(cmd, "--keyFile "+v.Target+"/key"))
			data = data || (v.Type == types.VolumeTypeVolume && v.Target == "/data/db")
		}
		if !strings.Contains(cmd, "--replSet rs0") || !keyMount || !data || m.User != "999:999" ||
			m.DependsOn["mongo-key"].Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s: command %q volumes %+v; want rs0, the shared key read-only, its own data volume, after mongo-key", name, cmd, m.Volumes)
		}
		hosts = append(hosts, name+":27017")
	}
	rs := get("mongo-rs")
	initiate := strings.Join(rs.Entrypoint, " ")
	for _, h := range hosts {
		if !strings.Contains(initiate, `host: "`+h+`"`) {
			t.Errorf("mongo-rs does not make %s a member: %s", h, initiate)
		}
	}
	if !strings.Contains(initiate, "rs.initiate") || !strings.Contains(initiate, "rs.status()") || rs.DependsOn["mongo-3"].Condition != types.ServiceConditionHealthy {
		t.Errorf("mongo-rs: %s; want rs.initiate once (unless rs.status() answers), after the members are up", initiate)
	}

	// Every service: all three NATS nodes, all three members with w=majority; order's queue R3.
	for _, svc := range services {
		s := get(svc.Name)
		env := envMap{}
		for k, v := range s.Environment {
			env[k] = *v
		}
		c, err := config.Load(svc.Name, "", 3000, env.lookup)
		if err != nil {
			t.Errorf("%s: %v", svc.Name, err)
			continue
		}
		if c.NatsURL != "nats://nats:4222,nats://nats-2:4222,nats://nats-3:4222" {
			t.Errorf("%s: NATS_URL %s, want the three nodes", svc.Name, c.NatsURL)
		}
		for _, want := range append(hosts, "replicaSet=rs0", "w=majority", "retryWrites=true", "breakerchain:"+secrets["MONGO_APP_PASSWORD"]+"@") {
			if !strings.Contains(c.MongoURL, want) {
				t.Errorf("%s: MONGO_URL %s lacks %s", svc.Name, config.Mask(c.MongoURL), want)
			}
		}
		if want := map[bool]int{true: 3, false: 1}[svc.Name == "order"]; c.JetStreamReplicas != want {
			t.Errorf("%s: JETSTREAM_REPLICAS %d, want %d", svc.Name, c.JetStreamReplicas, want)
		}
		// order's queue keeps its own user, in its own account, on the cluster too.
		if want := map[bool]string{true: "order-queue"}[svc.Name == "order"]; c.NATSQueue.User != want {
			t.Errorf("%s: NATS_QUEUE_USER %q, want %q", svc.Name, c.NATSQueue.User, want)
		}
		if s.DependsOn["mongo-rs"].Condition != types.ServiceConditionCompletedSuccessfully || s.DependsOn["nats-3"].Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: depends_on %v; want the replica set made and every node healthy", svc.Name, s.DependsOn)
		}
	}

	// Hardened, as in the single-node file; root only to hand a volume or a key to its user.
	for _, name := range []string{"nats-2", "nats-3", "mongo-2", "mongo-3", "mongo-rs", "mongo-key", "nats-data"} {
		s := get(name)
		if !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: read_only %v cap_drop %v security_opt %v", name, s.ReadOnly, s.CapDrop, s.SecurityOpt)
		}
		root := s.User == "" || s.User == "root" || strings.HasPrefix(s.User, "0:") || s.User == "0"
		if root != (name == "mongo-key" || name == "nats-data") {
			t.Errorf("%s: user %q", name, s.User)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s: ports %+v, want none published", name, s.Ports)
		}
	}
}
