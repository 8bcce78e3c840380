package main

import (
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	natsserver "github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/logging"
	"github.com/breakerchain/breakerchain/internal/testkit"
)

// The compose file as compose itself reads it (the compose-spec loader, with schema validation
// and interpolation), checked against the code in seconds and without a Docker Engine
// (deploy/compose_test.go runs it on one):
// commands are real subcommands, every environment variable is one the service reads, the
// healthchecks probe a real route with the binary itself, and the image is built as CI builds.
// The secrets come from .env.example with every value filled in, as a user's .env would be.
func TestComposeFile(t *testing.T) {
	root, secrets, p := composeProject(t)

	wantPort := map[string]string{"order": "3000", "payment": "3001", "shipment": "3002"}
	for _, svc := range services {
		t.Run(svc.Name, func(t *testing.T) {
			s, err := p.GetService(svc.Name)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal([]string(s.Command), []string{svc.Name}) || s.Build == nil || s.Image != "breakerchain:local" {
				t.Errorf("command %v build %v image %q: want the one image running %q", s.Command, s.Build, s.Image, svc.Name)
			}
			if len(s.Ports) != 1 || s.Ports[0].Target != 3000 || s.Ports[0].Published != wantPort[svc.Name] {
				t.Errorf("ports %+v, want host %s → 3000", s.Ports, wantPort[svc.Name])
			}
			// Only order's API is for clients; the other ops ports are for this host.
			if wantIP := map[bool]string{true: "", false: "127.0.0.1"}[svc.Name == "order"]; len(s.Ports) == 1 && s.Ports[0].HostIP != wantIP {
				t.Errorf("port bound to %q, want %q", s.Ports[0].HostIP, wantIP)
			}
			// Each service logs in to NATS as its own user and to the store as the application's.
			if u, pw := s.Environment["NATS_USER"], s.Environment["NATS_PASSWORD"]; u == nil || *u != svc.Name ||
				pw == nil || *pw != secrets[strings.ToUpper(svc.Name)+"_NATS_PASSWORD"] {
				t.Errorf("NATS_USER %v NATS_PASSWORD %v, want %s with %s_NATS_PASSWORD from .env", u, pw, svc.Name, strings.ToUpper(svc.Name))
			}
			if u := s.Environment["MONGO_URL"]; u == nil || !strings.Contains(*u, "breakerchain:"+secrets["MONGO_APP_PASSWORD"]+"@mongo:") ||
				strings.Contains(config.Mask(*u), secrets["MONGO_APP_PASSWORD"]) {
				t.Errorf("MONGO_URL %v, want the breakerchain user with MONGO_APP_PASSWORD from .env, masked in logs", u)
			}
			if svc.Name != "order" && s.ContainerName != "" {
				t.Errorf("container_name %q stops --scale", s.ContainerName)
			}
			if s.Restart == "" {
				t.Error("no restart policy")
			}
			read := variablesRead(t, svc.Name)
			for name, v := range s.Environment {
				if !read[name] {
					t.Errorf("environment %s is not a variable %s reads", name, svc.Name)
				}
				if v == nil {
					t.Errorf("environment %s has no value", name)
				}
			}
			// The service's whole environment is a good configuration.
			env := envMap{}
			for name, val := range s.Environment {
				if val != nil { // nil is reported above
					env[name] = *val
				}
			}
			if _, err := config.Load(svc.Name, "", 3000, env.lookup); err != nil {
				t.Errorf("environment: %v", err)
			}
			if j := s.Environment["JUMPS"]; j == nil || *j != "4" {
				t.Errorf("JUMPS=%v, want the seed's 4", j)
			}
			wantHealth := []string{"CMD", "/breakerchain", "probe", "http://127.0.0.1:3000/readyz"}
			if s.HealthCheck == nil || !slices.Equal([]string(s.HealthCheck.Test), wantHealth) {
				t.Errorf("healthcheck %v, want %v", s.HealthCheck, wantHealth)
			}
			for dep, d := range s.DependsOn {
				if d.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on %s: %q, want service_healthy", dep, d.Condition)
				}
			}
		})
	}
	if s, _ := p.GetService("shipment"); s.Environment["INJECT_ERR"] == nil || *s.Environment["INJECT_ERR"] != "1" {
		t.Error("shipment should be the seed's flaky one (INJECT_ERR=1)")
	}
	// The demo changes faults at runtime on payment and shipment, whose ops ports only this host
	// reaches; never on order, whose port is the public one.
	for name, want := range map[string]bool{"order": false, "payment": true, "shipment": true} {
		s, _ := p.GetService(name)
		if on := s.Environment["CHAOS"] != nil && *s.Environment["CHAOS"] == "1"; on != want {
			t.Errorf("%s: CHAOS=1 is %v, want %v", name, on, want)
		}
	}
	for name, dep := range map[string]string{"order": "payment", "payment": "shipment"} {
		if s, _ := p.GetService(name); s.DependsOn[dep].Condition != types.ServiceConditionHealthy {
			t.Errorf("%s does not wait for a healthy %s", name, dep)
		}
	}

	// Every container is hardened: read-only root filesystem, no capabilities, no privilege
	// escalation, not root (ours: the image's USER, checked below).
	for _, name := range []string{"order", "payment", "shipment", "nats", "mongo", "nats-box", "nats-chaos", "dashboard", "jaeger"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		if !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: read_only %v cap_drop %v security_opt %v; want true, [ALL], no-new-privileges:true", name, s.ReadOnly, s.CapDrop, s.SecurityOpt)
		}
		if s.Build == nil && (s.User == "" || s.User == "root" || strings.HasPrefix(s.User, "0:") || s.User == "0") {
			t.Errorf("%s: user %q, want a user that is not root", name, s.User)
		}
	}
	// The one exception: nats-data gives JetStream's new volume to nats's user, as root with
	// CHOWN alone, and exits before nats starts.
	if s, err := p.GetService("nats-data"); err != nil || !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) ||
		!slices.Equal(s.CapAdd, []string{"CHOWN"}) || !slices.Equal([]string(s.Entrypoint), []string{"chown", "65534:65534", "/data"}) ||
		len(s.Ports) != 0 || s.NetworkMode != "none" {
		t.Errorf("nats-data: %v %+v; want a read-only, network-less chown of /data with CHOWN only", err, s)
	}

	nats, err := p.GetService("nats")
	if err != nil {
		t.Fatal(err)
	}
	var natsPorts []uint32
	for _, port := range nats.Ports {
		natsPorts = append(natsPorts, port.Target)
		if port.HostIP != "127.0.0.1" {
			t.Errorf("nats: port %d published on %q, want 127.0.0.1 only", port.Target, port.HostIP)
		}
	}
	// The server the tests embed is the one compose runs: permissions differ between versions
	// (which messages of a wildcard subscription a deny filters changed in 2.11.16).
	if want := "nats:" + natsserver.VERSION + "-alpine"; nats.Image != want {
		t.Errorf("nats: image %s, want %s, the nats-server the tests embed", nats.Image, want)
	}
	if !strings.HasPrefix(nats.Image, "nats:") || !slices.Contains(natsPorts, 4222) || !slices.Contains(natsPorts, 8222) ||
		nats.HealthCheck == nil || !strings.Contains(strings.Join(nats.HealthCheck.Test, " "), ":8222/healthz") {
		t.Errorf("nats: image %s ports %v health %v; want the official image, 4222, 8222 and /healthz", nats.Image, natsPorts, nats.HealthCheck)
	}
	// The server runs the committed deploy/nats.conf, mounted read-only where --config points.
	conf := mountOf(nats, filepath.Join(root, "deploy", "nats.conf"))
	if conf == nil || !conf.ReadOnly || !slices.Equal([]string(nats.Command), []string{"--config", conf.Target}) {
		t.Errorf("nats: command %v volumes %+v; want deploy/nats.conf mounted read-only and loaded with --config", nats.Command, nats.Volumes)
	}
	// JetStream keeps order's queue in a named volume, where the file says, owned by nats's user.
	jsDir := regexp.MustCompile(`(?m)^\s*store_dir:\s*"?([^"\s]+)"?`).FindStringSubmatch(readFile(t, filepath.Join(root, "deploy", "nats.conf")))
	var jsVolume string
	for _, v := range nats.Volumes {
		if jsDir != nil && v.Type == types.VolumeTypeVolume && v.Target == jsDir[1] {
			jsVolume = v.Source
		}
	}
	owner, _ := p.GetService("nats-data")
	if jsVolume == "" || nats.User != "65534:65534" || nats.DependsOn["nats-data"].Condition != types.ServiceConditionCompletedSuccessfully ||
		len(owner.Volumes) != 1 || owner.Volumes[0].Source != jsVolume || owner.Volumes[0].Target != "/data" {
		t.Errorf("nats: store_dir %v, volumes %+v; want JetStream's store_dir on a named volume that nats-data gives to 65534 first", jsDir, nats.Volumes)
	}
	for _, user := range []string{"ORDER", "PAYMENT", "SHIPMENT", "OBSERVER", "CHAOS"} {
		if v := nats.Environment[user+"_NATS_PASSWORD"]; v == nil || *v != secrets[user+"_NATS_PASSWORD"] {
			t.Errorf("nats: %s_NATS_PASSWORD %v, want it from .env", user, v)
		}
	}

	mongo, err := p.GetService("mongo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(mongo.Image, "mongo:") || mongo.HealthCheck == nil || !strings.Contains(strings.Join(mongo.HealthCheck.Test, " "), "ping") {
		t.Errorf("mongo: image %s health %v; want the official image and a ping", mongo.Image, mongo.HealthCheck)
	}
	if len(mongo.Ports) != 0 {
		t.Errorf("mongo: ports %+v; want none: only the compose network reaches the store", mongo.Ports)
	}
	var data bool
	for _, v := range mongo.Volumes {
		data = data || (v.Type == types.VolumeTypeVolume && v.Target == "/data/db")
	}
	init := mountOf(mongo, filepath.Join(root, "deploy", "mongo-init.js"))
	if !data || init == nil || !init.ReadOnly || !strings.HasPrefix(init.Target, "/docker-entrypoint-initdb.d/") {
		t.Errorf("mongo: volumes %+v; want a named volume for /data/db and deploy/mongo-init.js read-only in /docker-entrypoint-initdb.d", mongo.Volumes)
	}
	if pw := mongo.Environment["MONGO_INITDB_ROOT_PASSWORD"]; mongo.Environment["MONGO_INITDB_ROOT_USERNAME"] == nil || pw == nil ||
		*pw != secrets["MONGO_ROOT_PASSWORD"] || mongo.Environment["MONGO_APP_PASSWORD"] == nil ||
		*mongo.Environment["MONGO_APP_PASSWORD"] != secrets["MONGO_APP_PASSWORD"] {
		t.Errorf("mongo: want the root user's and the application's passwords from .env")
	}
	if b, err := os.ReadFile(filepath.Join(root, "deploy", "mongo-init.js")); err != nil ||
		!strings.Contains(string(b), "process.env.MONGO_APP_PASSWORD") || !strings.Contains(string(b), "role: 'readWrite', db: 'breakerchain'") {
		t.Errorf("deploy/mongo-init.js should create the breakerchain user, readWrite on breakerchain only, from MONGO_APP_PASSWORD (%v)", err)
	}

	// The nats CLI: nats-box watches as observer, nats-chaos changes faults as chaos.
	for name, user := range map[string]string{"nats-box": "observer", "nats-chaos": "chaos"} {
		box, err := p.GetService(name)
		if u := box.Environment["NATS_URL"]; err != nil || !slices.Equal(box.Profiles, []string{"tools"}) || u == nil || *u != "nats://nats:4222" {
			t.Errorf("%s: %v %+v; want it under the tools profile with NATS_URL", name, err, box.Profiles)
		}
		secret := strings.ToUpper(user) + "_NATS_PASSWORD"
		if u, pw := box.Environment["NATS_USER"], box.Environment["NATS_PASSWORD"]; u == nil || *u != user || pw == nil || *pw != secrets[secret] {
			t.Errorf("%s: NATS_USER %v, want %s with %s", name, u, user, secret)
		}
	}

	// The image builds the binary exactly as .ci/run does.
	build := regexp.MustCompile(`CGO_ENABLED=0 go build -tags noembed -trimpath -ldflags="-s -w" -o \S+ ./cmd/breakerchain`)
	for _, f := range []string{"Dockerfile", ".ci/run"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if !build.Match(b) {
			t.Errorf("%s does not build with %s", f, build)
		}
	}
	// The final image: distroless static (no shell, no package manager), run as nonroot, and
	// nothing in its stage that would need a shell.
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := strings.Split(string(dockerfile), "\nFROM ")
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") || !strings.Contains(final, ":nonroot") ||
		!strings.Contains(final, "\nUSER nonroot") || strings.Contains(final, "\nRUN ") || strings.Contains(final, "/bin/sh") {
		t.Errorf("final stage:\nFROM %s\nwant distroless static, nonroot, no RUN", final)
	}
	// .env holds the secrets: never committed, never sent to the image build.
	for _, f := range []string{".gitignore", ".dockerignore"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || !regexp.MustCompile(`(?m)^/?\.env$`).Match(b) {
			t.Errorf("%s does not ignore .env (%v)", f, err)
		}
	}
}

// Without .env, compose refuses to start and names each missing secret: no service ever runs
// with an empty password. (The cluster variant uses every secret; the single-node file all but
// MONGO_REPLICA_KEY.)
func TestComposeNeedsEverySecret(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	secrets := dotEnv(t, root)
	for name := range secrets {
		without := types.Mapping{}
		for k, v := range secrets {
			if k != name {
				without[k] = v
			}
		}
		_, err := loadCompose(t, root, without, clusterFile)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: %v, want an error naming it", name, err)
		}
	}
}

// The passwords compose hands the services open the server compose runs: deploy/nats.conf,
// loaded with the nats container's environment, lets each service in as the user its
// environment names (order twice: its queue as NATS_QUEUE_USER), and the nats CLI's users
// (nats-box's observer, nats-chaos's chaos) too.
func TestComposeCredentialsOpenTheNATSConfig(t *testing.T) {
	root, _, p := composeProject(t)
	natsSvc, err := p.GetService("nats")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range natsSvc.Environment {
		t.Setenv(k, *v)
	}
	conf := mountOf(natsSvc, filepath.Join(root, "deploy", "nats.conf"))
	if conf == nil {
		t.Fatal("nats does not mount deploy/nats.conf")
	}
	url := testkit.NATSWithConfig(t, conf.Source).URL()
	for _, name := range []string{"order", "order's queue", "payment", "shipment", "nats-box", "nats-chaos", "dashboard", "dashboard's controls"} {
		s, err := p.GetService(strings.TrimSuffix(strings.TrimSuffix(name, "'s controls"), "'s queue"))
		if err != nil {
			t.Fatal(err)
		}
		user, pw := s.Environment["NATS_USER"], s.Environment["NATS_PASSWORD"]
		switch {
		case strings.HasSuffix(name, "controls"):
			user, pw = s.Environment["CHAOS_NATS_USER"], s.Environment["CHAOS_NATS_PASSWORD"]
		case strings.HasSuffix(name, "queue"):
			user, pw = s.Environment["NATS_QUEUE_USER"], s.Environment["NATS_QUEUE_PASSWORD"]
		}
		if user == nil || pw == nil {
			t.Errorf("%s: no user or password in its environment", name)
			continue
		}
		nc, err := natsgo.Connect(url, natsgo.UserInfo(*user, *pw))
		if err != nil {
			t.Errorf("%s as %s: %v", name, *user, err)
			continue
		}
		nc.Close()
	}
}

// dotEnv reads .env.example and gives every empty value one, as a user filling it in would.
func dotEnv(t *testing.T, root string) types.Mapping {
	t.Helper()
	vars, err := dotenv.Read(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	out := types.Mapping{}
	for k, v := range vars {
		if v != "" {
			t.Errorf(".env.example: %s has a value; want every secret left for the user to choose", k)
		}
		out[k] = strings.ToLower(k) + "0123456789abcdef"
	}
	if len(out) == 0 {
		t.Fatal(".env.example names no variable")
	}
	return out
}

// The dashboard runs under its own profile, on this host only, from the one image: as
// `breakerchain dashboard`, watching as the observer and controlling as the chaos user, with an
// environment that is all read and all good, never on order's port.
func TestComposeDashboard(t *testing.T) {
	_, secrets, p := composeProject(t)
	s, err := p.GetService("dashboard")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Profiles, []string{"dashboard"}) || !slices.Equal([]string(s.Command), []string{"dashboard"}) || s.Image != "breakerchain:local" {
		t.Errorf("profiles %v command %v image %q: want the one image running `dashboard` under the dashboard profile", s.Profiles, s.Command, s.Image)
	}
	if len(s.Ports) != 1 || s.Ports[0].HostIP != "127.0.0.1" || s.Ports[0].Published != "3003" || s.Ports[0].Target != 3003 {
		t.Errorf("ports %+v, want 127.0.0.1:3003 → 3003 only", s.Ports)
	}
	env := envMap{}
	for name, v := range s.Environment {
		if v == nil {
			t.Fatalf("environment %s has no value", name)
		}
		env[name] = *v
	}
	if env["NATS_USER"] != "observer" || env["NATS_PASSWORD"] != secrets["OBSERVER_NATS_PASSWORD"] ||
		env["CHAOS_NATS_USER"] != "chaos" || env["CHAOS_NATS_PASSWORD"] != secrets["CHAOS_NATS_PASSWORD"] {
		t.Errorf("environment %v: want the observer to watch and the chaos user to control, with their passwords from .env", env)
	}
	// Its controls are reachable on a network of its own, shared with NATS and order only.
	if _, ok := s.Networks["dashboard"]; len(s.Networks) != 1 || !ok {
		t.Errorf("networks %v, want the dashboard network alone", s.Networks)
	}
	for _, other := range p.Services {
		if _, on := other.Networks["dashboard"]; on && !slices.Contains([]string{"dashboard", "nats", "order"}, other.Name) {
			t.Errorf("%s is on the dashboard's network: it could use the dashboard's controls", other.Name)
		}
	}
	read := map[string]bool{}
	cfg, err := config.LoadDashboard(func(name string) (string, bool) { read[name] = true; return env.lookup(name) }, len(services))
	if err != nil || cfg.Control == nil || cfg.Host != "0.0.0.0" || cfg.OrderURL != "http://order:3000" {
		t.Errorf("LoadDashboard: %+v, %v", cfg, err)
	}
	for name := range env {
		if !read[name] {
			t.Errorf("environment %s is not a variable the dashboard reads", name)
		}
	}
}

// Jaeger runs under the tracing profile, its UI on this host only, on the services' network; the
// services export to it once OTEL_EXPORTER_OTLP_ENDPOINT names it, and not before (empty: off).
func TestComposeTracing(t *testing.T) {
	root, secrets, p := composeProject(t)
	s, err := p.GetService("jaeger")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Profiles, []string{"tracing"}) || !strings.HasPrefix(s.Image, "jaegertracing/jaeger:2.") {
		t.Errorf("profiles %v image %q: want Jaeger v2 under the tracing profile", s.Profiles, s.Image)
	}
	if len(s.Ports) != 1 || s.Ports[0].HostIP != "127.0.0.1" || s.Ports[0].Target != 16686 {
		t.Errorf("ports %+v, want its UI on 127.0.0.1 only", s.Ports)
	}
	if _, ok := s.Networks["circuitbreaker"]; len(s.Networks) != 1 || !ok {
		t.Errorf("networks %v, want the services' network alone", s.Networks)
	}
	withEndpoint := maps.Clone(secrets)
	withEndpoint["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://jaeger:4318"
	on, err := loadCompose(t, root, withEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		off, _ := p.GetService(svc.Name)
		traced, _ := on.GetService(svc.Name)
		if v := off.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]; v == nil || *v != "" {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT is %q unset, want empty (tracing off)", svc.Name, deref(v))
		}
		if v := traced.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]; v == nil || *v != "http://jaeger:4318" {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT is %q with it set, want http://jaeger:4318", svc.Name, deref(v))
		}
	}
}

// deref is *v, "<none>" for nil.
func deref(v *string) string {
	if v == nil {
		return "<none>"
	}
	return *v
}

// composeProject loads docker-compose.yaml as compose would with .env.example filled in, and
// returns the repository's root and those secrets with it.
func composeProject(t *testing.T) (string, types.Mapping, *types.Project) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	secrets := dotEnv(t, root)
	p, err := loadCompose(t, root, secrets)
	if err != nil {
		t.Fatalf("compose file does not load: %v", err)
	}
	return root, secrets, p
}

// loadCompose loads docker-compose.yaml, and over it the files given (relative to root), as
// `docker compose -f docker-compose.yaml -f …` does.
func loadCompose(t *testing.T, root string, env types.Mapping, over ...string) (*types.Project, error) {
	t.Helper()
	files := []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yaml")}}
	for _, f := range over {
		files = append(files, types.ConfigFile{Filename: filepath.Join(root, f)})
	}
	return loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: files,
		Environment: env,
	}, func(o *loader.Options) {
		o.SetProjectName("breakerchain", true)
		o.Profiles = []string{"tools", "dashboard", "tracing"}
	})
}

// mountOf returns the bind mount of source in s, or nil.
func mountOf(s types.ServiceConfig, source string) *types.ServiceVolumeConfig {
	for i, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Source == source {
			return &s.Volumes[i]
		}
	}
	return nil
}

// variablesRead lists every environment variable the service's configuration and logging read.
func variablesRead(t *testing.T, service string) map[string]bool {
	read := map[string]bool{}
	record := func(name string) (string, bool) { read[name] = true; return "", false }
	if _, err := config.Load(service, "", 3000, record); err != nil {
		t.Fatal(err)
	}
	if _, _, err := logging.New(io.Discard, record); err != nil {
		t.Fatal(err)
	}
	return read
}

type envMap map[string]string

func (e envMap) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
