package allinone

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// four is the product's chain with the recipe's line added.
var four = service.Chain{order.Service, payment.Service, shipment.Service, testkit.Inventory}

// freeRun finds n consecutive free ports of 127.0.0.1 and returns the first.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		free := base+n <= 65535
		for p := base; free && p < base+n; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if free = err == nil; free {
				_ = l.Close()
			}
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(addr, "http://"))
	n, _ := strconv.Atoi(p)
	if err != nil || n == 0 {
		t.Fatalf("no port in %q", addr)
	}
	return n
}

// Given the recipe's fourth service added to the chain's list, when the all-in-one runs it with
// the dashboard on its default port, then the four services take PORT…PORT+3 in the chain's
// order and the dashboard the port after them; the banner's curl example is accepted (201) and
// its reply has all four hops; and the dashboard's order button sends orders the chain accepts.
func TestFourthServiceInTheAllInOne(t *testing.T) {
	base := freeRun(t, len(four)+1)
	env := testkit.Env{"NATS_PORT": "0", "MONGO_PORT": "0", "PORT": strconv.Itoa(base), "DATA_DIR": t.TempDir(),
		"BREAKER_TIMEOUT": "5s", "RETRY_MAX": "0"} // not a timing test: no timeout from a slow -race store write
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Start(ctx, four, true, env.Lookup, testkit.Logger(t), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })

	for i, r := range s.Services {
		if got := port(t, r.Addr); got != base+i {
			t.Errorf("%s on port %d, want %d (PORT+%d: the chain's order)", four[i].Name, got, base+i, i)
		}
	}
	if s.Dashboard == nil || port(t, s.Dashboard.Addr) != base+len(four) {
		t.Fatalf("dashboard %+v, want it on %d: the port after the four services'", s.Dashboard, base+len(four))
	}

	banner := s.Banner()
	m := regexp.MustCompile(`-d '([^']*)' (http://\S+/create)`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("no curl example in the banner:\n%s", banner)
	}
	res, err := http.Post(m[2], "application/json", strings.NewReader(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	var v struct{ Reply *messaging.Reply }
	_ = json.Unmarshal(body, &v)
	var hops []string
	for h := v.Reply; h != nil; h = h.Next {
		hops = append(hops, h.Service+":"+string(h.Outcome))
	}
	if want := "order:ok payment:ok shipment:ok inventory:ok"; res.StatusCode != http.StatusCreated || strings.Join(hops, " ") != want {
		t.Errorf("the banner's example %s: %d %s, want 201 with %s", m[1], res.StatusCode, body, want)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Dashboard.Addr+"/api/orders", strings.NewReader(`{"count":2}`))
	req.Header.Set("Content-Type", "application/json")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	_ = res.Body.Close()
	var burst struct{ Statuses map[string]int }
	if err := json.Unmarshal(body, &burst); err != nil || burst.Statuses["201"] != 2 {
		t.Errorf("the dashboard's order button: %d %s, want both orders 201", res.StatusCode, body)
	}
}

// However long the chain, with nothing set the services take 3000, 3001, … in the chain's order
// and the dashboard the first port after theirs: none is taken twice.
func TestDefaultPortsNeverClash(t *testing.T) {
	for n := 1; n <= 6; n++ {
		chain := make(service.Chain, n)
		for i := range chain {
			chain[i] = service.Service{Name: fmt.Sprintf("s%d", i)}
		}
		sv, err := readServers(testkit.Env{}.Lookup, n)
		cfgs, cerr := Configs(chain, testkit.Env{}.Lookup)
		if err := config.Merge(err, cerr, Check(chain, true, testkit.Env{}.Lookup)); err != nil {
			t.Fatalf("%d services: %v", n, err)
		}
		for i, c := range cfgs {
			if c.Port != config.DefaultPort+i {
				t.Errorf("%d services: the %d-th on %d, want %d", n, i, c.Port, config.DefaultPort+i)
			}
		}
		if want := config.DefaultPort + n; sv.dashboardPort != want {
			t.Errorf("%d services: dashboard on %d, want %d (after theirs)", n, sv.dashboardPort, want)
		}
	}
}

// Two ports are given twice: refused at start, naming both variables of each.
func TestPortGivenTwiceIsRefused(t *testing.T) {
	err := Check(four, true, testkit.Env{"PORT": "3100", "INVENTORY_PORT": "3200", "DASHBOARD_PORT": "3200", "MONGO_PORT": "3101"}.Lookup)
	for _, want := range []string{
		"INVENTORY_PORT and DASHBOARD_PORT are both 3200: want a port each",
		"MONGO_PORT and PAYMENT_PORT are both 3101: want a port each",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v, want %q", err, want)
		}
	}
}

// A second copy finds ports taken (two here, held by listeners): the all-in-one names every busy
// one with its variable, in one message, and starts nothing: no data dir is written (the lock
// and both embedded servers would write there first).
func TestBusyPortsNamedAtOnce(t *testing.T) {
	hold := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		return ln.Addr().(*net.TCPAddr).Port
	}
	natsPort, paymentPort := hold(), hold()
	data := filepath.Join(t.TempDir(), "data")
	env := testkit.Env{"NATS_PORT": strconv.Itoa(natsPort), "MONGO_PORT": "0", "PORT": "0", "PAYMENT_PORT": strconv.Itoa(paymentPort),
		"DASHBOARD_PORT": "0", "DATA_DIR": data}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, four, true, env.Lookup, testkit.Logger(t), false)
	if err == nil {
		_ = s.Stop(context.Background())
		t.Fatal("started with two ports in use")
	}
	for _, want := range []string{fmt.Sprintf("%d (NATS_PORT)", natsPort), fmt.Sprintf("%d (PAYMENT_PORT)", paymentPort), "set them to free ports"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q, want it to name %q", err, want)
		}
	}
	if _, serr := os.Stat(data); serr == nil {
		t.Errorf("DATA_DIR was written: something started before the ports were checked")
	}
}

// A HOST that is no address of this machine is named as such, not as ports in use.
func TestForeignHostIsNotPortsInUse(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	env := testkit.Env{"NATS_PORT": "0", "MONGO_PORT": "0", "PORT": "3999", "HOST": "192.0.2.1", "DASHBOARD_PORT": "0", "DATA_DIR": data}
	s, err := Start(t.Context(), four, true, env.Lookup, testkit.Logger(t), false)
	if err == nil {
		_ = s.Stop(context.Background())
		t.Fatal("started on an address of another machine")
	}
	if want := `want HOST="192.0.2.1" to be an address of this machine`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want %q", err, want)
	}
	if _, serr := os.Stat(data); serr == nil {
		t.Errorf("DATA_DIR was written: something started before the ports were checked")
	}
}
