package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/allinone"
	"github.com/breakerchain/breakerchain/internal/embedded"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/testkit"
)

// TestMain doubles as the real program when BREAKERCHAIN_MAIN=1, so tests can watch its exit.
func TestMain(m *testing.M) {
	if os.Getenv("BREAKERCHAIN_MAIN") == "1" {
		os.Args = append([]string{"breakerchain"}, strings.Fields(os.Getenv("BREAKERCHAIN_ARGS"))...)
		main()
		os.Exit(0)
	}
	testkit.Main(m)
}

// A bad value stops the program at start with one clear line naming the variable and what it
// accepts, a non-zero exit, no panic, and nothing started.
func TestBadConfigurationExits(t *testing.T) {
	rows := []struct {
		env, args string
		want      string
		not       string // a complaint the line must not make
	}{
		{env: "JUMPS=abc", want: `JUMPS="abc": want an integer from 1 to 1000`},
		{env: "BREAKER_TIMEOUT=-1s", want: `BREAKER_TIMEOUT="-1s": want a duration`},
		{env: "PAYMENT_INJECT_ERR_RATE=2", want: `PAYMENT_INJECT_ERR_RATE="2": want a number from 0 to 1`},
		{env: "SHIPMENT_INJECT_ERR=maybe", want: `SHIPMENT_INJECT_ERR="maybe": want 1, true, yes or on; or 0, false, no or off`},
		{env: "BREAKER_FAILURE_RATE=150", want: `BREAKER_FAILURE_RATE="150": want an integer from 1 to 100`},
		{env: "MONGO_URL=localhost:27017", want: `MONGO_URL="localhost:27017": want a URL like mongodb://host:port`},
		{env: "NATS_PORT=99999", want: `NATS_PORT="99999"`},
		{env: "LOG_LEVEL=loud", want: `LOG_LEVEL="loud": want one of debug, info, warn, error`},
		{env: "RETRY_MAX=11 BULKHEAD_MAX=0", want: `RETRY_MAX="11": want an integer from 0 to 10; BULKHEAD_MAX="0": want an integer from 1 to 100000`},
		{env: "SHIPMENT_CHAOS=maybe ORDER_REDRIVE_RATE=-1", want: `ORDER_REDRIVE_RATE="-1": want an integer from 0 to 10000; SHIPMENT_CHAOS="maybe": want 1, true, yes or on; or 0, false, no or off`},
		{env: "JUMPS=abc", args: "payment", want: `JUMPS="abc"`},
		{env: "LOG_FORMAT=xml JUMPS=abc", want: `LOG_FORMAT="xml": want one of text, json; JUMPS="abc"`},
		{args: "refund", want: `unknown arguments ["refund"]`},
		{env: "NATS_CREDS=/nonexistent/order.creds", want: `NATS_CREDS="/nonexistent/order.creds": want a readable NATS credentials file`},
		{env: "PAYMENT_NATS_CA=/nonexistent/ca.pem", args: "payment", want: `PAYMENT_NATS_CA="/nonexistent/ca.pem": want a readable PEM file of CA certificates (no such file or directory)`},
		{env: "NATS_USER=order", args: "order", want: `NATS_USER="order": want ORDER_NATS_PASSWORD or NATS_PASSWORD set with it`},
		{env: "CORS_ORIGINS=shop.example.com", want: `CORS_ORIGINS="shop.example.com": want "*" or comma-separated origins`},
		{env: "NATS_CONFIG=/nonexistent/nats.conf", want: `NATS_CONFIG="/nonexistent/nats.conf": want a nats-server configuration file that loads (no such file or directory)`,
			not: "NATS_USER"}, // no file, no users of it to ask passwords for
		{env: "MONGO_DB=shop#1", want: `MONGO_DB="shop#1": want a database name of 1 to 63 letters, digits, '-' or '_'`},
		{env: "HOST=not_a_host", want: `HOST="not_a_host": want an IP address or a host name to listen on`, not: "ports in use"},
		{env: "HOST=[::1]", want: `HOST="[::1]": want an IP address or a host name to listen on`}, // ::1, unbracketed
		{env: "PAYMENT_ID=x>y", want: `PAYMENT_ID="x>y": want a name of 1 to 64 letters, digits, '-', '_' or '.'`},
		{env: "JETSTREAM_REPLICAS=3", want: `JETSTREAM_REPLICAS=3: want 1 with the embedded NATS, a single server (more copies need a cluster, given in NATS_URL)`},
		{env: "NATS_CONFIG=../../deploy/nats.conf", want: `ORDER_NATS_USER="order": want ORDER_NATS_PASSWORD or NATS_PASSWORD set with it`},
		{env: "NATS_CONFIG=../../deploy/nats.conf NATS_URL=nats://127.0.0.1:4222", want: `NATS_CONFIG="../../deploy/nats.conf": want it without NATS_URL`},
		{env: "MONGO_URL=mongodb://app:s3cret@db:notaport/x", want: `MONGO_URL="mongodb://app:xxxxx@db:notaport/x": want a URL`},
		{env: "PORT=3100 DASHBOARD_PORT=3100", want: `DASHBOARD_PORT=3100: want a port other than order's public one`},
		{env: "SHIPMENT_PORT=3200 DASHBOARD_PORT=3200", want: `SHIPMENT_PORT and DASHBOARD_PORT are both 3200: want a port each`},
		{env: "DASHBOARD_PORT=3000 ORDER_URL=http://127.0.0.1:3000", args: "dashboard", want: `DASHBOARD_PORT=3000: want a port other than order's public one`},
		{env: "DASHBOARD_PORT=web", args: "dashboard", want: `DASHBOARD_PORT="web": want an integer`},
		{env: "CHAOS_NATS_USER=chaos", args: "dashboard", want: `CHAOS_NATS_USER="chaos": want CHAOS_NATS_PASSWORD set with it`},
	}
	for _, row := range rows {
		t.Run(row.env+" "+row.args, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "BREAKERCHAIN_MAIN=1", "BREAKERCHAIN_ARGS="+row.args,
				"DATA_DIR="+data, "NATS_PORT=0", "MONGO_PORT=0", "PORT=0", "DASHBOARD_PORT=0")
			cmd.Env = append(cmd.Env, strings.Fields(row.env)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; stderr %q", err, stderr.String())
			}
			first := strings.SplitN(stderr.String(), "\n", 2)[0]
			if !strings.HasPrefix(first, "breakerchain: ") || !strings.Contains(first, row.want) {
				t.Errorf("stderr %q, want one line with %q", stderr.String(), row.want)
			}
			if row.not != "" && strings.Contains(first, row.not) {
				t.Errorf("stderr %q, want nothing of %q", stderr.String(), row.not)
			}
			if strings.Contains(stderr.String(), "panic") || strings.Contains(stderr.String(), "goroutine") {
				t.Errorf("stderr shows a panic: %q", stderr.String())
			}
			if strings.Contains(stderr.String(), "s3cret") {
				t.Errorf("stderr shows a password: %q", stderr.String())
			}
			if _, err := os.Stat(data); err == nil {
				t.Errorf("DATA_DIR was created: something started before the configuration was checked")
			}
		})
	}
}

// syncBuffer is a log destination the tests read while the program writes to it.
type syncBuffer = testkit.SyncBuffer

// The all-in-one, in-process: it prints where everything listens, serves the seed's request
// through the embedded servers, logs the request's whole path with its request id, and shuts
// down cleanly when its context ends.
func TestAllInOneServesTheSeedRequest(t *testing.T) {
	env := testkit.Env{"NATS_PORT": "0", "MONGO_PORT": "0", "PORT": "0", "DASHBOARD_PORT": "0", "DATA_DIR": t.TempDir(), "LOG_FORMAT": "json",
		"BREAKER_TIMEOUT": "5s"} // not a timing test: no timeout from a slow -race store write
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env.Environ(), &stdout, &stderr) }()

	orderURL := regexp.MustCompile(`order\s+(http://\S+)`)
	var url string
	testkit.Eventually(t, 30*time.Second, "the banner", func() bool {
		if m := orderURL.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
			return true
		}
		return false
	})
	for _, want := range []string{"payment", "shipment", "NATS       nats://127.0.0.1:", "dashboard  http://127.0.0.1:", "(embedded", "curl -s"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, stdout.String())
		}
	}
	if code := postSeed(t, url, "trace-me"); code != http.StatusCreated {
		t.Fatalf("POST /create: %d, want 201", code)
	}
	// The dashboard, on a port of its own named in the banner, shows both circuits.
	m := regexp.MustCompile(`dashboard\s+(http://127\.0\.0\.1:\d+)`).FindStringSubmatch(stdout.String())
	if m == nil || m[1] == url {
		t.Fatalf("banner names no dashboard of its own:\n%s", stdout.String())
	}
	if page := get(t, m[1]+"/"); !strings.Contains(page, "<title>breakerchain · circuits</title>") {
		t.Errorf("dashboard page: %.200q", page)
	}
	testkit.Eventually(t, 10*time.Second, "the dashboard's state to show both circuits", func() bool {
		st := get(t, m[1]+"/api/state")
		return strings.Contains(st, `"caller":"order","target":"payment"`) && strings.Contains(st, `"caller":"payment","target":"shipment"`)
	})
	cancel()
	stopped(t, done, "the all-in-one")
	// Every line of the request's path, in all three services, carries its id.
	path := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec struct{ Level, Msg, Service, Request_ID string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
		if rec.Level == "ERROR" {
			t.Errorf("error logged: %s", line)
		}
		if strings.Contains(rec.Msg, "saving") || strings.Contains(rec.Msg, "success") || strings.Contains(rec.Msg, "status::") {
			if rec.Request_ID != "trace-me" {
				t.Errorf("line of the request's path without its id: %s", line)
			}
			path[rec.Service] = true
		}
	}
	if !path["order"] || !path["payment"] || !path["shipment"] {
		t.Errorf("the request's path was logged by %v, want all three services", path)
	}
}

// SIGTERM stops the all-in-one cleanly: exit status 0, every service logged as stopped, upstream
// first.
func TestSIGTERMStopsCleanly(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "BREAKERCHAIN_MAIN=1", "DATA_DIR="+t.TempDir(),
		"NATS_PORT=0", "MONGO_PORT=0", "PORT=0", "DASHBOARD_PORT=0")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the banner", func() bool { return strings.Contains(stdout.String(), "Try it") })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still running 20s after SIGTERM\n%s", stderr.String())
	}
	logs := stderr.String()
	order, payment, shipment := strings.Index(logs, "msg=stopped service=order"),
		strings.Index(logs, "msg=stopped service=payment"), strings.Index(logs, "msg=stopped service=shipment")
	if order < 0 || payment < order || shipment < payment {
		t.Errorf("want order, payment, shipment stopped in that order:\n%s", logs)
	}
}

// In the all-in-one an unprefixed PORT is the first of three consecutive ports; a prefixed one
// sets one service's port; PORT=0 picks free ones.
func TestAllInOnePorts(t *testing.T) {
	for _, row := range []struct {
		env  testkit.Env
		want [3]int
	}{
		{env: testkit.Env{}, want: [3]int{3000, 3001, 3002}},
		{env: testkit.Env{"PORT": "8080"}, want: [3]int{8080, 8081, 8082}},
		{env: testkit.Env{"PORT": "8080", "PAYMENT_PORT": "9000"}, want: [3]int{8080, 9000, 8082}},
		{env: testkit.Env{"PORT": "0"}, want: [3]int{0, 0, 0}},
	} {
		cfgs, err := allinone.Configs(services, row.env.Lookup)
		if err != nil {
			t.Fatal(err)
		}
		if got := [3]int{cfgs[0].Port, cfgs[1].Port, cfgs[2].Port}; got != row.want {
			t.Errorf("%v: ports %v, want %v", row.env, got, row.want)
		}
	}
}

// `breakerchain servers` runs only the embedded NATS and store, says how to run a service against
// them, and stops when asked.
func TestServersAlone(t *testing.T) {
	env := testkit.Env{"NATS_PORT": "0", "MONGO_PORT": "0", "DATA_DIR": t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"servers"}, env.Environ(), &stdout, &stderr) }()
	hint := regexp.MustCompile(`NATS_URL=(nats://\S+) MONGO_URL='(mongodb://\S+)' breakerchain payment`)
	var m []string
	testkit.Eventually(t, 30*time.Second, "the banner", func() bool { m = hint.FindStringSubmatch(stdout.String()); return m != nil })
	if strings.Contains(stdout.String(), "order ") || strings.Contains(stdout.String(), "Try it") {
		t.Errorf("servers started services:\n%s", stdout.String())
	}
	nc, err := nats.Connect(m[1])
	if err != nil {
		t.Fatalf("the NATS it printed: %v", err)
	}
	nc.Close()
	if err := store.Ping(ctx, testkit.Client(t, m[2]), 5*time.Second); err != nil {
		t.Fatalf("the store it printed: %v", err)
	}
	// Every collection the services will use has its _id index already (TestIDIndex shows what
	// it does), in the database MONGO_DB names.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(env["DATA_DIR"], "breakerchain.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var indexed int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'breakerchain_id_%'`).Scan(&indexed); err != nil || indexed != 5 {
		t.Errorf("%d _id indexes (%v), want one for each of orders, order_outcomes, orders_open, payments, shipments", indexed, err)
	}
	cancel()
	stopped(t, done, "servers")
}

// breakerchain apply-queue sets the shared queue to this configuration and says what changed:
// first it creates it (nothing to change), then, with another ack wait, it changes that one.
func TestApplyQueue(t *testing.T) {
	ns := testkit.NATS(t)
	apply := func(env testkit.Env) string {
		t.Helper()
		env["NATS_URL"] = ns.URL()
		var stdout, stderr syncBuffer
		if err := run(t.Context(), []string{"apply-queue"}, env.Environ(), &stdout, &stderr); err != nil {
			t.Fatalf("apply-queue: %v\n%s", err, stderr.String())
		}
		return stdout.String()
	}
	if out := apply(testkit.Env{"REDRIVE_ACK_WAIT": "30s"}); out != "the queue already has these settings\n" {
		t.Errorf("apply-queue on a NATS without the queue printed %q, want that it has these settings", out)
	}
	if out := apply(testkit.Env{"REDRIVE_ACK_WAIT": "40s"}); out != "ORDERS/redriver ack_wait: 30s → 40s\n" {
		t.Errorf("apply-queue with another ack wait printed %q, want the change from 30s to 40s", out)
	}
}

// A password in a URL or in NATS_PASSWORD is never printed: not in the configuration line at
// start, not in the error that stops the service when NATS refuses it.
func TestSecretsNeverPrinted(t *testing.T) {
	ns, err := embedded.StartNATS("127.0.0.1", -1, &server.Options{NoLog: true,
		Users: []*server.User{{Username: "payment", Password: "the-right-one"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	natsHost := strings.TrimPrefix(ns.URL(), "nats://")
	deadStore := freeAddr(t)
	for _, row := range []struct {
		name string
		env  []string
		want []string
	}{
		{name: "in URLs", env: []string{"NATS_URL=nats://payment:s3cret-nats@" + natsHost, "MONGO_URL=mongodb://app:s3cret-mongo@" + deadStore + "/"},
			want: []string{"mongo=mongodb://app:xxxxx@" + deadStore, "breakerchain: nats nats://payment:xxxxx@" + natsHost + ": nats: authorization violation (check NATS_USER and NATS_PASSWORD"}},
		{name: "in NATS_PASSWORD", env: []string{"NATS_URL=" + ns.URL(), "NATS_USER=payment", "NATS_PASSWORD=s3cret-nats", "MONGO_URL=mongodb://" + deadStore},
			want: []string{"nats_auth.user=payment", "nats_auth.password=xxxxx", "nats: authorization violation"}},
	} {
		t.Run(row.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "BREAKERCHAIN_MAIN=1", "BREAKERCHAIN_ARGS=payment", "PORT=0")
			cmd.Env = append(cmd.Env, row.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1 (NATS refused the password); stderr %q", err, stderr.String())
			}
			out := stdout.String() + stderr.String()
			if strings.Contains(out, "s3cret") {
				t.Errorf("a password was printed:\n%s", out)
			}
			for _, want := range row.want {
				if !strings.Contains(strings.ToLower(out), strings.ToLower(want)) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// freeAddr returns an address of 127.0.0.1 where nothing listens.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// The all-in-one with NATS_CONFIG=deploy/nats.conf: the embedded NATS has compose's users and
// permissions (still on 127.0.0.1), each service connects as its own user, the seed's request
// completes, the chaos user changes shipment's faults (CHAOS=1 on all three), an anonymous
// client is refused, and no service was refused anything.
func TestAllInOneWithNATSConfig(t *testing.T) {
	env := testkit.Env{"NATS_PORT": "0", "MONGO_PORT": "0", "PORT": "0", "DASHBOARD_PORT": "0", "DATA_DIR": t.TempDir(), "CHAOS": "1",
		"BREAKER_TIMEOUT": "5s", "NATS_CONFIG": filepath.Join(testkit.Root(t), "deploy", "nats.conf")}
	for _, user := range []string{"ORDER", "PAYMENT", "SHIPMENT", "OBSERVER", "CHAOS"} {
		// The file reads the process's environment, the services their configuration: the same
		// variables, as in a shell.
		t.Setenv(user+"_NATS_PASSWORD", strings.ToLower(user)+"-pw")
		env[user+"_NATS_PASSWORD"] = strings.ToLower(user) + "-pw"
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env.Environ(), &stdout, &stderr) }()

	banner := regexp.MustCompile(`(?s)order\s+(http://\S+).*NATS\s+(nats://\S+)`)
	var orderURL, natsURL string
	testkit.Eventually(t, 30*time.Second, "the banner", func() bool {
		if m := banner.FindStringSubmatch(stdout.String()); m != nil {
			orderURL, natsURL = m[1], m[2]
			return true
		}
		select {
		case err := <-done:
			t.Fatalf("run: %v\n%s", err, stderr.String())
		default:
		}
		return false
	})
	if !strings.Contains(stdout.String(), "NATS users from") || !strings.HasPrefix(natsURL, "nats://127.0.0.1:") {
		t.Errorf("banner:\n%s\nwant NATS users from the file, on 127.0.0.1", stdout.String())
	}
	// Its nats commands log in (there is no anonymous user), on its server (not the CLI's default).
	for _, want := range []string{`nats --user observer --password "$OBSERVER_NATS_PASSWORD" -s ` + natsURL + ` sub 'chaos.>'`,
		`nats --user chaos --password "$CHAOS_NATS_PASSWORD" -s ` + natsURL + ` req chaos.shipment`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, stdout.String())
		}
	}
	if code := postSeed(t, orderURL, ""); code != http.StatusCreated {
		t.Errorf("POST /create: %d, want 201\n%s", code, stderr.String())
	}
	// order's queue connects as the file's order-queue, with order's password, unasked.
	if !strings.Contains(stderr.String(), "config.nats_queue_auth.user=order-queue config.nats_queue_auth.password=xxxxx") {
		t.Errorf("order's start line names no queue user order-queue:\n%s", stderr.String())
	}
	if nc, err := nats.Connect(natsURL); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("anonymous: %v, want %v", err, nats.ErrAuthorization)
	}
	nc, err := nats.Connect(natsURL, nats.UserInfo("observer", "observer-pw"))
	if err != nil {
		t.Errorf("observer: %v", err)
	} else {
		nc.Close()
	}
	if nc, err := nats.Connect(natsURL, nats.UserInfo("chaos", "chaos-pw")); err != nil {
		t.Errorf("chaos: %v", err)
	} else {
		m, err := nc.Request("chaos.shipment", []byte(`{"latency":"0s"}`), 5*time.Second)
		if err != nil || !strings.Contains(string(m.Data), `"enabled":true`) {
			t.Errorf("chaos.shipment as chaos: %v %v", m, err)
		}
		nc.Close()
	}
	cancel()
	stopped(t, done, "the all-in-one")
	if strings.Contains(stderr.String(), "NATS error") {
		t.Errorf("a service was refused something:\n%s", stderr.String())
	}
}

// The all-in-one's banner shows external servers' URLs without their passwords.
func TestBannerMasksPasswords(t *testing.T) {
	s := &allinone.Running{NATSURL: "nats://u:s3cret-n@nats:4222", MongoURL: "mongodb://app:s3cret-m@mongo:27017/"}
	b := s.Banner()
	if strings.Contains(b, "s3cret") || !strings.Contains(b, "nats://u:xxxxx@nats:4222") || !strings.Contains(b, "mongodb://app:xxxxx@mongo") {
		t.Errorf("banner:\n%s", b)
	}
}

// postSeed posts the seed's order to order at url, with requestID as X-Request-Id unless empty,
// and returns the status code.
func postSeed(t *testing.T, url, requestID string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/create", strings.NewReader(testkit.SeedOrder("1")))
	req.Header.Set("Content-Type", "application/json")
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// stopped waits for run to return after its context ended: nil, within 15s.
func stopped(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not stop within 15s of its context ending", what)
	}
}

// get returns the body of GET url.
func get(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}
