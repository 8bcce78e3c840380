package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/logging"
)

// There is no Docker engine here, so the compose file is checked the way compose itself reads
// it (the compose-spec loader, with schema validation and interpolation) and against the code:
// commands are real subcommands, every environment variable is one the service reads, the
// healthchecks probe a real route with the binary itself, and the image is built as CI builds.
func TestComposeFile(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yaml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("breakerchain", true); o.Profiles = []string{"tools"} })
	if err != nil {
		t.Fatalf("compose file does not load: %v", err)
	}

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
			for name, val := range s.Environment {
				if val == nil {
					continue // reported above
				}
				env := envMap{name: *val}
				if _, err := config.Load(svc.Name, "", 3000, env.lookup); err != nil {
					t.Errorf("%s=%s: %v", name, *val, err)
				}
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
	for name, dep := range map[string]string{"order": "payment", "payment": "shipment"} {
		if s, _ := p.GetService(name); s.DependsOn[dep].Condition != types.ServiceConditionHealthy {
			t.Errorf("%s does not wait for a healthy %s", name, dep)
		}
	}

	nats, err := p.GetService("nats")
	if err != nil {
		t.Fatal(err)
	}
	var natsPorts []uint32
	for _, port := range nats.Ports {
		natsPorts = append(natsPorts, port.Target)
	}
	if !strings.HasPrefix(nats.Image, "nats:") || !slices.Contains(natsPorts, 4222) || !slices.Contains(natsPorts, 8222) ||
		nats.HealthCheck == nil || !strings.Contains(strings.Join(nats.HealthCheck.Test, " "), ":8222/healthz") {
		t.Errorf("nats: image %s ports %v health %v; want the official image, 4222, 8222 and /healthz", nats.Image, natsPorts, nats.HealthCheck)
	}
	mongo, err := p.GetService("mongo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(mongo.Image, "mongo:") || len(mongo.Volumes) != 1 || mongo.Volumes[0].Type != types.VolumeTypeVolume ||
		mongo.HealthCheck == nil || !strings.Contains(strings.Join(mongo.HealthCheck.Test, " "), "ping") {
		t.Errorf("mongo: image %s volumes %+v health %v; want the official image, a named volume, a ping", mongo.Image, mongo.Volumes, mongo.HealthCheck)
	}
	box, err := p.GetService("nats-box")
	if u := box.Environment["NATS_URL"]; err != nil || !slices.Equal(box.Profiles, []string{"tools"}) || u == nil || *u != "nats://nats:4222" {
		t.Errorf("nats-box: %v %+v; want it under the tools profile with NATS_URL", err, box.Profiles)
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
	if b, _ := os.ReadFile(filepath.Join(root, "Dockerfile")); !strings.Contains(string(b), "USER nonroot") {
		t.Error("the image does not run as a non-root user")
	}
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
