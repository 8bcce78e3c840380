package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/breakerchain/breakerchain/internal/stack"
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
	}{
		{env: "JUMPS=abc", want: `JUMPS="abc": want an integer from 1 to 1000`},
		{env: "BREAKER_TIMEOUT=-1s", want: `BREAKER_TIMEOUT="-1s": want a duration`},
		{env: "PAYMENT_INJECT_ERR_RATE=2", want: `PAYMENT_INJECT_ERR_RATE="2": want a number from 0 to 1`},
		{env: "SHIPMENT_INJECT_ERR=maybe", want: `SHIPMENT_INJECT_ERR="maybe": want 1 or 0`},
		{env: "BREAKER_FAILURE_RATE=150", want: `BREAKER_FAILURE_RATE="150": want an integer from 1 to 100`},
		{env: "MONGO_URL=localhost:27017", want: `MONGO_URL="localhost:27017": want a URL like mongodb://host:port`},
		{env: "NATS_PORT=99999", want: `NATS_PORT="99999"`},
		{env: "LOG_LEVEL=loud", want: `LOG_LEVEL="loud": want one of debug, info, warn, error`},
		{env: "RETRY_MAX=11 BULKHEAD_MAX=0", want: `RETRY_MAX="11": want an integer from 0 to 10; BULKHEAD_MAX="0": want an integer from 1 to 100000`},
		{env: "SHIPMENT_CHAOS=maybe ORDER_REDRIVE_RATE=-1", want: `ORDER_REDRIVE_RATE="-1": want an integer from 0 to 10000; SHIPMENT_CHAOS="maybe": want 1 or 0`},
		{env: "JUMPS=abc", args: "payment", want: `JUMPS="abc"`},
		{env: "LOG_FORMAT=xml JUMPS=abc", want: `LOG_FORMAT="xml": want one of text, json; JUMPS="abc"`},
		{args: "refund", want: `unknown arguments ["refund"]`},
	}
	for _, row := range rows {
		t.Run(row.env+" "+row.args, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "BREAKERCHAIN_MAIN=1", "BREAKERCHAIN_ARGS="+row.args,
				"DATA_DIR="+data, "NATS_PORT=0", "MONGO_PORT=0", "PORT=0")
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
			if strings.Contains(stderr.String(), "panic") || strings.Contains(stderr.String(), "goroutine") {
				t.Errorf("stderr shows a panic: %q", stderr.String())
			}
			if _, err := os.Stat(data); err == nil {
				t.Errorf("DATA_DIR was created: something started before the configuration was checked")
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe to write from one goroutine and read from another.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The all-in-one, in-process: it prints where everything listens, serves the seed's request
// through the embedded servers, logs the request's whole path with its request id, and shuts
// down cleanly when its context ends.
func TestAllInOneServesTheSeedRequest(t *testing.T) {
	env := testkit.Env{"NATS_PORT": "0", "MONGO_PORT": "0", "PORT": "0", "DATA_DIR": t.TempDir(), "LOG_FORMAT": "json",
		"BREAKER_TIMEOUT": "5s"} // not a timing test: no timeout from a slow -race store write
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, env.Lookup, &stdout, &stderr) }()

	orderURL := regexp.MustCompile(`order\s+(http://\S+)`)
	var url string
	testkit.Eventually(t, 30*time.Second, "the banner", func() bool {
		if m := orderURL.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
			return true
		}
		return false
	})
	for _, want := range []string{"payment", "shipment", "NATS      nats://127.0.0.1:", "(embedded", "curl -s"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, stdout.String())
		}
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/create", strings.NewReader(stack.SeedOrder))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "trace-me")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /create: %d, want 201", res.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the all-in-one did not stop within 15s of its context ending")
	}
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
		"NATS_PORT=0", "MONGO_PORT=0", "PORT=0")
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
		cfgs, err := stack.Configs(services, row.env.Lookup)
		if err != nil {
			t.Fatal(err)
		}
		if got := [3]int{cfgs[0].Port, cfgs[1].Port, cfgs[2].Port}; got != row.want {
			t.Errorf("%v: ports %v, want %v", row.env, got, row.want)
		}
	}
}
