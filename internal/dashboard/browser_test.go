package dashboard_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/dashboard"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/order"
	"github.com/breakerchain/breakerchain/payment"
	"github.com/breakerchain/breakerchain/shipment"
)

// The dashboard in a real headless Chromium, on a running chain: both circuits shown closed, the
// tour's button enabled (shipment has chaos on); shipment's error rate set to 100 % with the page's
// own control and orders sent with its button open payment → shipment, and the timeline says
// "opened"; the tiles give calls per second with their unit and the latency of calls sent; the
// fault cleared, the tile goes half-open then closed after the (short) delay; then the guided
// tour plays the seed's eight cases to the end, each reaching its state. Screenshots go to
// $DASHBOARD_SCREENSHOTS (docs/ has one).
func TestDashboardInABrowser(t *testing.T) {
	addr := startChain(t, true)
	b := openBrowser(t)
	const payShip = `article.tile[data-circuit="payment→shipment"]`

	b.run("open the dashboard: both circuits closed, no calls yet",
		chromedp.Navigate("http://"+addr+"/"),
		chromedp.WaitVisible(b.tile("order→payment", "closed")),
		chromedp.WaitVisible(b.tile("payment→shipment", "closed")),
		chromedp.WaitVisible(chromedp.CSS("#chaos-shipment-apply")),
		// Order's admission limit, with its refusals per second.
		b.poll(`/^admission: limit \d+ of 64 · \d+ in flight.* · refused 0\/s \(backlog\), 0\/s \(limit\)$/.test(document.querySelector('.service[data-service="order"] .limiters').textContent)`),
		// No call yet: the latency says so, the calls are per second, both fault boxes show what is in force.
		b.poll(`document.querySelector('`+payShip+` .lat').textContent === "no calls sent"`),
		b.poll(`document.querySelector('`+payShip+` .calls').textContent === "success0/sfailure0/stimeout0/srejected0/s"`),
		b.poll(`document.querySelector("#chaos-shipment-rate").placeholder === "0" && document.querySelector("#chaos-shipment-latency").placeholder === "0s"`),
		b.poll(`!document.querySelector("#tour-start").disabled && document.querySelector("#tour-needs").hidden`),
	)
	b.run("shipment's error rate to 100 % with the page's control",
		chromedp.SetValue(chromedp.CSS("#chaos-shipment-rate"), "100"),
		chromedp.Click(chromedp.CSS("#chaos-shipment-apply")),
		b.poll(`document.querySelector("#chaos-shipment-msg").textContent.startsWith("applied")`),
		b.poll(`document.querySelector("#chaos-shipment-rate").placeholder === "100"`),
	)
	if msg := b.text("#chaos-shipment-msg"); !strings.Contains(msg, "error rate 100%") {
		t.Errorf("after applying: %q", msg)
	}
	b.run("orders from the page's button open payment → shipment; the timeline says opened",
		chromedp.SetValue(chromedp.CSS("#burst-count"), "8"),
		chromedp.Click(chromedp.CSS("#burst")),
		chromedp.WaitVisible(b.tile("payment→shipment", "open")),
		b.poll(`[...document.querySelectorAll("#timeline li")].some(li => li.textContent.includes("payment → shipment status:: opened"))`),
		b.poll(`document.querySelector("#burst-msg").textContent.includes("202")`),
		// The calls sent have a latency (a sub-millisecond one is "<1 ms", never 0).
		b.poll(`/^p50 (<1|[\d.]+) ms · p99 (<1|[\d.]+) ms$/.test(document.querySelector('`+payShip+` .lat').textContent)`),
		b.screenshot("dashboard-open.png"),
	)
	if lat := b.text(payShip + " .lat"); strings.Contains(lat, " 0 ms") {
		t.Errorf("latency after calls: %q", lat)
	}
	b.run("the fault cleared: after the delay the tile goes half-open, then closed",
		chromedp.SetValue(chromedp.CSS("#chaos-shipment-rate"), "0"),
		chromedp.Click(chromedp.CSS("#chaos-shipment-apply")),
		b.poll(`document.querySelector("#chaos-shipment-msg").textContent.includes("error rate 0%")`),
		// The open delay (BREAKER_DELAY) has passed when the circuit shows none left.
		b.poll(`document.querySelector('`+payShip+` .delay').textContent.startsWith("open: 0s left")`),
		chromedp.SetValue(chromedp.CSS("#burst-count"), "3"),
		chromedp.Click(chromedp.CSS("#burst")),
		chromedp.WaitVisible(b.tile("payment→shipment", "closed")),
	)
	history, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS(payShip), "data-history"))
	if err != nil || !strings.HasSuffix(history.Value, "closed open half-open closed") {
		t.Errorf("payment → shipment went %q (%v), want closed, open, half-open, closed", history.Value, err)
	}

	b.run("the guided tour plays the eight cases to their end",
		chromedp.Click(chromedp.CSS("#tour-start")),
		chromedp.WaitVisible(chromedp.CSS(`#tour[data-done="true"]`)),
		b.screenshot("dashboard-tour.png"),
	)
	reached, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll('#tour-results li[data-reached="true"]').length`))
	if err != nil || reached != 8 {
		t.Errorf("the tour reached %d of the eight cases (%v); last status %q", reached, err, b.text("#tour-status"))
	}
	t.Logf("screenshots in %s", b.shots)
}

// startChain starts order, payment and shipment (shipment with CHAOS=1 when chaos) with short
// breaker settings, and the dashboard with controls, and returns the dashboard's address.
func startChain(t *testing.T, chaos bool) string {
	t.Helper()
	uri, db := testkit.Database(t)
	ns := testkit.NATS(t)
	chain := service.Chain{order.Service, payment.Service, shipment.Service}
	env := testkit.Env{"BREAKER_TIMEOUT": "5s", "BREAKER_WINDOW": "3s", "BREAKER_DELAY": "1500ms", "BREAKER_MIN_CALLS": "4",
		"RETRY_MAX": "0", "REDRIVE_RATE": "0", "LOG_LEVEL": "warn"}
	for i := len(chain) - 1; i >= 0; i-- {
		e := testkit.Env{}
		for k, v := range env {
			e[k] = v
		}
		if chain[i].Name == "shipment" && chaos {
			e["CHAOS"] = "1"
		}
		s := testkit.Start(t, chain[i:], ns.URL(), uri, db, e)
		if i == 0 {
			env["ORDER_URL"] = s.URL()
		}
	}
	local := config.Settings{Name: "dashboard", ID: "dashboard", NatsURL: ns.URL()}
	d, err := dashboard.Start(config.Dashboard{Host: "127.0.0.1", Port: 0, OrderURL: env["ORDER_URL"], OrderBody: chain.Example, Watch: local, Control: &local},
		testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	return d.Addr
}

// browser is a headless Chromium and the test's ways of driving it.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string // where screenshots go
}

// openBrowser starts Chromium for the test.
func openBrowser(t *testing.T) *browser {
	exe := testkit.Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first run starts the browser, bound to ctx: the steps' shorter contexts must not own it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("DASHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	return &browser{t: t, ctx: ctx, shots: shots}
}

func (b *browser) screenshot(name string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		png, err := chromedp.FullScreenshot(100)(ctx, tg) // 100: a PNG
		if err != nil {
			return chromedp.Void{}, err
		}
		return chromedp.Void{}, os.WriteFile(filepath.Join(b.shots, name), png, 0o644)
	}
}

// poll waits until a JavaScript expression is true.
func (b *browser) poll(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))(ctx, tg)
		return chromedp.Void{}, err
	}
}

func (b *browser) tile(circuit, state string) chromedp.CSS {
	return chromedp.CSS(`article.tile[data-circuit="` + circuit + `"][data-state="` + state + `"]`)
}

func (b *browser) text(sel string) string {
	tctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
	return s
}

// run runs a step of the test within a minute (the tour within three).
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	limit := time.Minute
	if strings.Contains(what, "tour") {
		limit = 3 * time.Minute
	}
	sctx, cancel := context.WithTimeout(b.ctx, limit)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		_ = chromedp.Do(b.ctx, b.screenshot("failed.png"))
		b.t.Fatalf("%s: %v\ntour: %s %s\nburst: %s\nshipment: %s\ncircuits:\n%s\ntimeline:\n%.3000s", what, err, b.text("#tour-needs"),
			b.text("#tour-status"), b.text("#burst-msg"), b.text("#chaos-shipment-msg"), b.text("#circuits"), b.text("#timeline"))
	}
}

// Without chaos on shipment the tour cannot set its faults: on the dashboard of such a chain
// (a plain `go run ./cmd/breakerchain`) its button is shown disabled, and the page says beside
// it what it needs.
func TestDashboardInABrowserWithoutChaos(t *testing.T) {
	addr := startChain(t, false)
	b := openBrowser(t)
	b.run("open the dashboard of a chain without chaos: the tour's button disabled, saying why",
		chromedp.Navigate("http://"+addr+"/"),
		chromedp.WaitVisible(b.tile("payment→shipment", "closed")),
		chromedp.WaitVisible(chromedp.CSS("#tour-start")),
		b.poll(`document.querySelector("#tour-start").disabled`),
		chromedp.WaitVisible(chromedp.CSS("#tour-needs")),
		b.screenshot("dashboard-needs-chaos.png"),
	)
	if needs := b.text("#tour-needs"); !strings.Contains(needs, "needs chaos on shipment: restart with CHAOS=1 go run ./cmd/breakerchain") {
		t.Errorf("beside the tour's button: %q, want what it needs", needs)
	}
	if form := b.text(`.service[data-service="shipment"] .faults`); !strings.Contains(form, "chaos off") {
		t.Errorf("shipment's faults: %q, want chaos off", form)
	}
}
