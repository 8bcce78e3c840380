// Package deploy_test runs the compose files on a real Docker Engine, with the images
// `deploy/offline images` builds (no registry is needed), and breaks them as an operator meets
// faults: containers killed, paused, restarted and cut off their network. It needs a Docker
// Engine and the Compose v2 plugin; without them the tests are skipped, saying so, unless
// BREAKERCHAIN_REQUIRE_DOCKER is set (.ci/run sets it, after installing both).
package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// The single-node file, up with the dashboard profile and payment scaled to three: every
// container healthy, the seed's order completed through order's published port, the nats CLI of
// the tools profile watching, the dashboard in a browser, the work shared, the hardening real.
// Then, payment back to one instance, the faults an operator meets, each under a load of orders:
// every order taken completes exactly once.
func TestCompose(t *testing.T) {
	s := newStack(t)
	s.env = append(s.env, "COMPOSE_PROFILES=dashboard,tracing", "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318")
	s.up("--scale", "payment=3")

	t.Run("every container healthy", func(t *testing.T) { s.allHealthy(t) })
	// shipment is the seed's flaky one (INJECT_ERR=1): turned off, as an operator would, through
	// nats-chaos (the tools profile), so that what follows completes at once.
	s.chaos(t, "shipment", `{"error_rate":0}`)

	t.Run("the seed's order through 127.0.0.1:3000", func(t *testing.T) {
		if code := post(t, testkit.SeedOrder("1")); code != http.StatusCreated {
			t.Errorf("the seed's order: %d, want 201", code)
		}
	})
	t.Run("an order is one trace in Jaeger", func(t *testing.T) { orderTraced(t) })
	t.Run("nats-box sees circuit events and the services", func(t *testing.T) { s.natsBoxWatches(t) })
	t.Run("the dashboard renders in Chromium", func(t *testing.T) { dashboardRenders(t) })
	t.Run("three payments share the work", func(t *testing.T) { s.paymentsShare(t, 3) })
	t.Run("hardening holds inside the containers", func(t *testing.T) { s.hardened(t) })

	s.up("--scale", "payment=1")
	store := s.store(t)
	t.Run("payment killed mid-load", func(t *testing.T) {
		l := s.underLoad(t, store, "kill", 2*time.Second, func() { s.killAndStart(t, "payment") })
		l.wantSome(t, http.StatusAccepted, "while payment was dead")
	})
	t.Run("shipment paused past the breaker's delay", func(t *testing.T) {
		l := s.underLoad(t, store, "pause", 5*time.Second, func() {
			s.docker(t, "pause", s.container("shipment"))
			time.Sleep(15 * time.Second) // BREAKER_DELAY is 10s: the circuit opens, tries again, fails again
			s.docker(t, "unpause", s.container("shipment"))
		})
		l.wantSome(t, http.StatusAccepted, "while shipment was paused")
	})
	t.Run("nats restarted", func(t *testing.T) {
		s.underLoad(t, store, "restart", 3*time.Second, func() {
			s.docker(t, "restart", s.container("nats"))
			s.waitHealthy(t, "order")
		})
	})
}

// The cluster variant (three NATS nodes, order's queue replicated on all three), under load: one
// node killed, then, back, another cut off both its networks. Every order taken completes
// exactly once. (Offline, the store is one FerretDB: deploy/compose.cluster.offline.yaml.)
func TestComposeCluster(t *testing.T) {
	s := newStack(t, "-f", "deploy/compose.cluster.yaml")
	s.up()
	s.allHealthy(t)
	s.chaos(t, "shipment", `{"error_rate":0}`)
	store := s.store(t)

	t.Run("a NATS node killed", func(t *testing.T) {
		s.underLoad(t, store, "node-killed", 2*time.Second, func() { s.killAndStart(t, "nats-2") })
	})
	t.Run("a NATS node cut off", func(t *testing.T) {
		node := s.container("nats-3")
		nets := s.networksOf(t, node)
		s.underLoad(t, store, "node-cut", 3*time.Second, func() {
			for name := range nets {
				s.docker(t, "network", "disconnect", name, node)
			}
			time.Sleep(10 * time.Second)
			for name, aliases := range nets {
				args := []string{"network", "connect"}
				for _, a := range aliases {
					args = append(args, "--alias", a)
				}
				s.docker(t, append(args, name, node)...)
			}
			s.waitHealthy(t, "nats-3")
		})
	})
}

// underLoad starts a load of orders, meets it with fault two seconds in, lets it run after
// more, then checks that every order completed exactly once. It returns the load's answers.
func (s *stack) underLoad(t *testing.T, store storeView, prefix string, after time.Duration, fault func()) *load {
	t.Helper()
	l := startLoad(t, prefix)
	time.Sleep(2 * time.Second)
	fault()
	l.stopAfter(after)
	store.allCompletedOnce(t, l)
	return l
}

// killAndStart kills a service's container, and starts it again five seconds later, as an
// operator would: for Docker's restart policy, docker kill is a stop.
func (s *stack) killAndStart(t *testing.T, service string) {
	t.Helper()
	s.docker(t, "kill", s.container(service))
	time.Sleep(5 * time.Second)
	s.docker(t, "start", s.container(service))
	s.waitHealthy(t, service)
}

// stack is one compose project, run through deploy/offline with secrets of its own, taken down
// (volumes too) when the test ends.
type stack struct {
	t       *testing.T
	root    string
	project string
	files   []string // -f options before the offline overrides
	env     []string
}

// newStack builds the images (once per test binary) and prepares a project for this test, with
// over the files given a test's own file that publishes the store on 127.0.0.1, so the test can
// count what the services wrote.
func newStack(t *testing.T, files ...string) *stack {
	t.Helper()
	requireDocker(t)
	root := testkit.Root(t)
	buildImages(t, root)
	published := filepath.Join(t.TempDir(), "store-port.yaml")
	if err := os.WriteFile(published, []byte("services:\n  mongo:\n    ports: [\"127.0.0.1::27017\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, root: root, project: "bc-" + strings.ToLower(t.Name()), files: append(files, "-f", published)}
	s.env = append(os.Environ(), secrets(t, root)...)
	// Three payments need three ops ports on this host.
	s.env = append(s.env, "PAYMENT_PORTS=3101-3103")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.compose("logs", "--no-color", "--tail", "40")
			t.Logf("logs:\n%s", out)
		}
		if out, err := s.compose("--profile", "dashboard", "--profile", "tools", "--profile", "tracing", "down", "-v", "--remove-orphans"); err != nil {
			t.Errorf("down: %v\n%s", err, out)
		}
	})
	return s
}

// requireDocker skips the test where no Docker Engine or Compose v2 answers, unless
// BREAKERCHAIN_REQUIRE_DOCKER is set.
func requireDocker(t *testing.T) {
	t.Helper()
	if raceDetector {
		// The race detector sees nothing of the containers these tests drive; the test command
		// runs them in a plain build of their own.
		t.Skip("the compose tests run without -race (the test command's third part)")
	}
	for _, args := range [][]string{{"info", "--format", "{{.ServerVersion}}"}, {"compose", "version"}} {
		if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
			why := fmt.Sprintf("docker %s: %v %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
			if os.Getenv("BREAKERCHAIN_REQUIRE_DOCKER") != "" {
				t.Fatalf("no Docker Engine with Compose v2 (%s), and BREAKERCHAIN_REQUIRE_DOCKER is set", why)
			}
			t.Skipf("no Docker Engine with Compose v2 (%s): .ci/run installs both and runs these tests", why)
		}
	}
}

var images struct {
	once sync.Once
	err  error
	out  []byte
}

// buildImages runs `deploy/offline images` once per test binary: every image the compose files
// name, built here (a build already made is reused from Docker's cache).
func buildImages(t *testing.T, root string) {
	t.Helper()
	images.once.Do(func() {
		start := time.Now()
		images.out, images.err = exec.Command(filepath.Join(root, "deploy", "offline"), "images").CombinedOutput()
		t.Logf("deploy/offline images: %s", time.Since(start).Round(time.Second))
	})
	if images.err != nil {
		t.Fatalf("deploy/offline images: %v\n%s", images.err, images.out)
	}
}

// secrets fills every variable of .env.example with a random value, as a user's .env would.
func secrets(t *testing.T, root string) []string {
	t.Helper()
	vars, err := dotenv.Read(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for name := range vars {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		env = append(env, name+"="+hex.EncodeToString(b))
	}
	return env
}

// compose runs `deploy/offline compose` on this stack's project.
func (s *stack) compose(args ...string) (string, error) {
	all := append([]string{"compose"}, s.files...)
	all = append(all, append([]string{"-p", s.project}, args...)...)
	cmd := exec.Command(filepath.Join(s.root, "deploy", "offline"), all...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// up starts the stack and waits until every container is healthy (compose's --wait).
func (s *stack) up(args ...string) {
	s.t.Helper()
	out, err := s.compose(append([]string{"up", "-d", "--wait", "--wait-timeout", "150"}, args...)...)
	if err != nil {
		ps, _ := s.compose("ps", "-a")
		s.t.Fatalf("up %v: %v\n%s\n%s", args, err, lastLines(out, 15), ps)
	}
}

// docker runs a docker command, for the faults.
func (s *stack) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// container is the name of a service's first container.
func (s *stack) container(service string) string { return s.project + "-" + service + "-1" }

// psEntry is a line of `docker compose ps --format json`.
type psEntry struct {
	Name, Service, State, Health string
	ExitCode                     int
}

func (s *stack) ps(t *testing.T) []psEntry {
	t.Helper()
	out, err := s.compose("ps", "-a", "--format", "json")
	if err != nil {
		t.Fatalf("ps: %v\n%s", err, out)
	}
	var all []psEntry
	for line := range strings.Lines(out) {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e psEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("ps: %v in %s", err, line)
		}
		all = append(all, e)
	}
	return all
}

// allHealthy checks that every long-running container is running and healthy, and that the
// one-shot ones (nats-data, mongo-key, mongo-rs) exited 0.
func (s *stack) allHealthy(t *testing.T) {
	t.Helper()
	all := s.ps(t)
	if len(all) == 0 {
		t.Fatal("no containers")
	}
	oneShot := map[string]bool{"nats-data": true, "mongo-key": true, "mongo-rs": true}
	for _, c := range all {
		if oneShot[c.Service] {
			if c.State != "exited" || c.ExitCode != 0 {
				t.Errorf("%s: %s (exit %d); want it to have done its work and exited 0", c.Name, c.State, c.ExitCode)
			}
			continue
		}
		if c.State != "running" || c.Health != "healthy" {
			t.Errorf("%s: %s, %q (exit %d); want running and healthy", c.Name, c.State, c.Health, c.ExitCode)
		}
	}
	t.Logf("%d containers", len(all))
}

// waitHealthy waits until every container of service is running and healthy again.
func (s *stack) waitHealthy(t *testing.T, service string) {
	t.Helper()
	testkit.Eventually(t, 90*time.Second, service+" healthy again", func() bool {
		for _, c := range s.ps(t) {
			if c.Service == service && (c.State != "running" || c.Health != "healthy") {
				time.Sleep(time.Second)
				return false
			}
		}
		return true
	})
}

// nats runs the nats CLI of the tools profile: nats-box (the observer) or nats-chaos.
func (s *stack) nats(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := s.compose(append([]string{"--profile", "tools", "run", "--rm", "--no-deps", tool, "nats"}, args...)...)
	if err != nil {
		t.Fatalf("%s nats %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return out
}

// chaos changes a service's faults through nats-chaos, as docs/chaos.md shows.
func (s *stack) chaos(t *testing.T, service, faults string) {
	t.Helper()
	if out := s.nats(t, "nats-chaos", "req", "chaos."+service, faults); !strings.Contains(out, "Received") {
		t.Fatalf("chaos.%s %s: no answer\n%s", service, faults, out)
	}
}

// natsBoxWatches: nats-box, as the observer, lists the micro services and sees the circuits'
// events while orders go through.
func (s *stack) natsBoxWatches(t *testing.T) {
	ls := s.nats(t, "nats-box", "micro", "ls")
	for _, svc := range []string{"order", "payment", "shipment"} {
		if !strings.Contains(ls, "│ "+svc+" ") {
			t.Errorf("nats micro ls does not list %s:\n%s", svc, ls)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var sub bytes.Buffer
	done := make(chan error, 1)
	go func() {
		out, err := s.compose("--profile", "tools", "run", "--rm", "--no-deps", "nats-box", "nats", "sub", "breaker.>", "--count", "2")
		sub.WriteString(out)
		done <- err
	}()
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil || !strings.Contains(sub.String(), `Received on "breaker.`) {
				t.Errorf("nats sub 'breaker.>': %v\n%s", err, sub.String())
			}
			return
		case <-ctx.Done():
			t.Fatal("nats sub 'breaker.>' saw no event within a minute of orders")
		case <-time.After(500 * time.Millisecond):
			post(t, orderBody(fmt.Sprintf("watched-%d", i)))
		}
	}
}

// paymentsShare sends orders and checks, in micro's stats of every payment instance, that each
// answered some.
func (s *stack) paymentsShare(t *testing.T, instances int) {
	for i := range 30 {
		if code := post(t, orderBody(fmt.Sprintf("shared-%d", i))); code != http.StatusCreated {
			t.Errorf("order shared-%d: %d, want 201", i, code)
		}
	}
	var stats []struct {
		ID        string `json:"id"`
		Endpoints []struct {
			Name        string `json:"name"`
			NumRequests int    `json:"num_requests"`
		} `json:"endpoints"`
	}
	out := s.nats(t, "nats-box", "micro", "stats", "payment", "--json")
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &stats); err != nil {
		t.Fatalf("nats micro stats payment: %v\n%s", err, out)
	}
	answered := map[string]int{}
	for _, st := range stats {
		for _, e := range st.Endpoints {
			if e.Name == "create" {
				answered[st.ID] = e.NumRequests
			}
		}
	}
	t.Logf("payment.create answered per instance: %v", answered)
	if len(answered) != instances {
		t.Fatalf("%d payment instances answered stats, want %d", len(answered), instances)
	}
	for id, n := range answered {
		if n == 0 {
			t.Errorf("payment %s answered no request", id)
		}
	}
}

// hardened checks every running container as the kernel runs it: not root, no capability in
// effect, the root filesystem mounted read-only. Where the image has a shell (the stand-ins of
// nats and the store; the services' distroless image has none), the same is checked from inside,
// with a write to / that must fail.
func (s *stack) hardened(t *testing.T) {
	for _, c := range s.ps(t) {
		if c.State != "running" {
			continue
		}
		pid := s.docker(t, "inspect", "--format", "{{.State.Pid}}", c.Name)
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		mounts, err := os.ReadFile("/proc/" + pid + "/mountinfo")
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if uid := field(string(status), "Uid:"); uid == "" || uid == "0" {
			t.Errorf("%s: runs as uid %q, want a user that is not root", c.Name, uid)
		}
		if caps := field(string(status), "CapEff:"); caps != "0000000000000000" {
			t.Errorf("%s: capabilities in effect %q, want none", c.Name, caps)
		}
		if !rootReadOnly(string(mounts)) {
			t.Errorf("%s: / is not mounted read-only", c.Name)
		}
		if _, err := exec.Command("docker", "exec", c.Name, "sh", "-c", "true").CombinedOutput(); err != nil {
			continue // no shell in the image
		}
		out, err := exec.Command("docker", "exec", c.Name, "sh", "-c",
			"id -u; grep CapEff /proc/self/status; touch /hardening-probe && echo wrote").CombinedOutput()
		inside := string(out)
		if err == nil || strings.Contains(inside, "wrote") || !strings.Contains(inside, "Read-only file system") ||
			!strings.Contains(inside, "CapEff:\t0000000000000000") || strings.HasPrefix(inside, "0\n") {
			t.Errorf("%s, from inside: %v\n%s\nwant a user that is not root, no capabilities, and the write refused", c.Name, err, inside)
		}
	}
}

// field returns the first value of a /proc status line.
func field(status, name string) string {
	for line := range strings.Lines(status) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == name {
			return f[1]
		}
	}
	return ""
}

// rootReadOnly says whether the mount of / in a mountinfo has the ro option.
func rootReadOnly(mountinfo string) bool {
	for line := range strings.Lines(mountinfo) {
		if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
			return strings.HasPrefix(f[5], "ro,") || f[5] == "ro"
		}
	}
	return false
}

// networksOf returns a container's networks, each with its aliases there (to connect it again
// as it was).
func (s *stack) networksOf(t *testing.T, container string) map[string][]string {
	t.Helper()
	var nets map[string]struct{ Aliases []string }
	if err := json.Unmarshal([]byte(s.docker(t, "inspect", "--format", "{{json .NetworkSettings.Networks}}", container)), &nets); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for name, n := range nets {
		out[name] = n.Aliases
	}
	return out
}

// dashboardRenders opens the dashboard the profile publishes on 127.0.0.1:3003 in headless
// Chromium: both circuits shown, fed through NATS.
func dashboardRenders(t *testing.T) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(testkit.Chromium(t)), chromedp.NoSandbox)
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	err := chromedp.Do(ctx,
		chromedp.Navigate("http://127.0.0.1:3003/"),
		chromedp.WaitVisible(chromedp.CSS(`article.tile[data-circuit="order→payment"]`)),
		chromedp.WaitVisible(chromedp.CSS(`article.tile[data-circuit="payment→shipment"]`)),
	)
	if err != nil {
		t.Fatalf("the dashboard on 127.0.0.1:3003: %v", err)
	}
}

// post sends an order to order's published port and returns the status (0 if none came).
func post(t *testing.T, body string) int {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	res, err := client.Post("http://127.0.0.1:3000/create", "application/json", strings.NewReader(body))
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// orderTraced sends an order with a client's traceparent and finds its trace in Jaeger's query
// API (the tracing profile publishes it on 127.0.0.1:16686): the client's trace id, with spans
// from order, payment and shipment.
func orderTraced(t *testing.T) {
	const traceID = "5b8efff798038103d269b633813fc60c"
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:3000/create", strings.NewReader(orderBody("traced-1")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-eee19b7ec3c1b174-01")
	client := http.Client{Timeout: 10 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("order traced-1: %d, want 201", res.StatusCode)
	}
	var services []string
	// The services batch their spans for up to 5 s (OTEL_BSP_SCHEDULE_DELAY) before exporting.
	testkit.Eventually(t, 30*time.Second, "trace "+traceID+" in Jaeger with spans from order, payment and shipment", func() bool {
		res, err := client.Get("http://127.0.0.1:16686/api/traces/" + traceID)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var got struct {
			Data []struct {
				Spans     []struct{ OperationName string }
				Processes map[string]struct{ ServiceName string }
			}
		}
		if json.NewDecoder(res.Body).Decode(&got) != nil || len(got.Data) != 1 {
			return false
		}
		services = services[:0]
		for _, p := range got.Data[0].Processes {
			services = append(services, p.ServiceName)
		}
		slices.Sort(services)
		return slices.Equal(slices.Compact(services), []string{"order", "payment", "shipment"})
	})
	t.Logf("trace %s in Jaeger: services %v", traceID, services)
}

// orderBody is an order, its payment and its shipment, all with id id: the seed's.
var orderBody = testkit.SeedOrder

// load is a bounded stream of orders from two clients, about ten a second, until stopped (at
// most two minutes): enough for every fault to meet orders in flight, few enough for the pending
// ones to drain within a minute.
type load struct {
	mu       sync.Mutex
	answered map[string]int // order id → status
	stop     chan struct{}
	done     sync.WaitGroup
}

func startLoad(t *testing.T, prefix string) *load {
	l := &load{answered: map[string]int{}, stop: make(chan struct{})}
	deadline := time.Now().Add(2 * time.Minute)
	for w := range 2 {
		l.done.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				case <-time.After(150 * time.Millisecond):
				}
				id := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				code := post(t, orderBody(id))
				l.mu.Lock()
				l.answered[id] = code
				l.mu.Unlock()
			}
		})
	}
	return l
}

// stopAfter lets the load run d more, then stops it and waits for the last answers.
func (l *load) stopAfter(d time.Duration) {
	time.Sleep(d)
	close(l.stop)
	l.done.Wait()
}

// counts are the answers by status (0: none came).
func (l *load) counts() map[int]int {
	c := map[int]int{}
	for _, code := range l.answered {
		c[code]++
	}
	return c
}

// wantSome fails the test if no order was answered code: the fault did not bite.
func (l *load) wantSome(t *testing.T, code int, when string) {
	t.Helper()
	if l.counts()[code] == 0 {
		t.Errorf("no order answered %d %s (answers by status: %v): the fault did not bite", code, when, l.counts())
	}
}

// storeView counts documents in the stack's store, through the port the test's file publishes.
type storeView struct {
	count func(coll string, filter bson.D) int64
}

func (s *stack) store(t *testing.T) storeView {
	t.Helper()
	addr, err := s.compose("port", "mongo", "27017")
	if err != nil {
		t.Fatalf("port mongo 27017: %v %s", err, addr)
	}
	password := ""
	for _, kv := range s.env {
		if v, ok := strings.CutPrefix(kv, "MONGO_APP_PASSWORD="); ok {
			password = v
		}
	}
	uri := "mongodb://breakerchain:" + password + "@" + strings.TrimSpace(lastLines(addr, 1)) + "/breakerchain"
	client := testkit.Client(t, uri)
	return storeView{count: func(coll string, filter bson.D) int64 { return testkit.Count(t, client, "breakerchain", coll, filter) }}
}

// allCompletedOnce waits until every order in the store is completed, then checks that each has
// one payment and one shipment, and that every order the load was answered 201 or 202 for is
// among them, completed. The counts are the whole store's: every order of the test so far.
func (v storeView) allCompletedOnce(t *testing.T, l *load) {
	t.Helper()
	completed := bson.D{{Key: "status", Value: order.StatusCompleted}}
	var saved int64
	testkit.Eventually(t, 2*time.Minute, "every order saved to complete", func() bool {
		saved = v.count(order.Collection, nil)
		done := v.count(order.ResultsCollection, completed) == saved
		if !done {
			time.Sleep(time.Second)
		}
		return done
	})
	p, sh := v.count(payment.Collection, nil), v.count(shipment.Collection, nil)
	if p != saved || sh != saved {
		t.Errorf("%d orders saved and completed, %d payments, %d shipments: want one each, exactly once", saved, p, sh)
	}
	var acked, missing int
	for id, code := range l.answered {
		if code != http.StatusCreated && code != http.StatusAccepted {
			continue
		}
		acked++
		f := bson.D{{Key: "_id", Value: id}, {Key: "status", Value: order.StatusCompleted}}
		if v.count(order.ResultsCollection, f) != 1 {
			missing++
			t.Errorf("order %s was answered %d but is not completed", id, code)
		}
	}
	t.Logf("answers by status %v; %d acknowledged, %d of them not completed; store: %d orders, %d completed, %d payments, %d shipments",
		l.counts(), acked, missing, saved, saved, p, sh)
}

// lastLines returns the last n lines of out.
func lastLines(out string, n int) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
