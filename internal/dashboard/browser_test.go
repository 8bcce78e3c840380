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

// The dashboard in a real headless Chromium, on a running chain: both circuits shown closed;
// shipment's error rate set to 100 % with the page's own control and orders sent with its
// button open payment → shipment, and the timeline says "opened"; the fault cleared, the tile goes
// half-open then closed after the (short) delay; then the guided tour plays the seed's eight cases
// to the end, each reaching its state. Screenshots go to $DASHBOARD_SCREENSHOTS (docs/ has one).
func TestDashboardInABrowser(t *testing.T) {
	exe := testkit.Chromium(t)
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
		if chain[i].Name == "shipment" {
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

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first run starts the browser, bound to ctx: the steps' shorter contexts must not own it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("DASHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	screenshot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			png, err := chromedp.FullScreenshot(100)(ctx, tg) // 100: a PNG
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name), png, 0o644)
		}
	}
	// poll waits until a JavaScript expression is true.
	poll := func(expr string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	tile := func(circuit, state string) chromedp.CSS {
		return chromedp.CSS(`article.tile[data-circuit="` + circuit + `"][data-state="` + state + `"]`)
	}
	text := func(sel string) string {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, _ := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		return s
	}
	// run runs a step of the test within a minute (the tour within three).
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		limit := time.Minute
		if strings.Contains(what, "tour") {
			limit = 3 * time.Minute
		}
		sctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			_ = chromedp.Do(ctx, screenshot("failed.png"))
			t.Fatalf("%s: %v\ntour: %s\nburst: %s\nshipment: %s\ncircuits:\n%s\ntimeline:\n%.3000s", what, err, text("#tour-status"),
				text("#burst-msg"), text("#chaos-shipment-msg"), text("#circuits"), text("#timeline"))
		}
	}

	run("open the dashboard: both circuits closed",
		chromedp.Navigate("http://"+d.Addr+"/"),
		chromedp.WaitVisible(tile("order→payment", "closed")),
		chromedp.WaitVisible(tile("payment→shipment", "closed")),
		chromedp.WaitVisible(chromedp.CSS("#chaos-shipment-apply")),
		// Order's admission limit, with its refusals per second.
		poll(`/^admission: limit \d+ of 64 · \d+ in flight.* · refused 0\/s \(backlog\), 0\/s \(limit\)$/.test(document.querySelector('.service[data-service="order"] .limiters').textContent)`),
	)
	msg := ""
	run("shipment's error rate to 100 % with the page's control",
		chromedp.SetValue(chromedp.CSS("#chaos-shipment-rate"), "100"),
		chromedp.Click(chromedp.CSS("#chaos-shipment-apply")),
		poll(`document.querySelector("#chaos-shipment-msg").textContent.startsWith("applied")`),
	)
	if msg = text("#chaos-shipment-msg"); !strings.Contains(msg, "error rate 100%") {
		t.Errorf("after applying: %q", msg)
	}
	run("orders from the page's button open payment → shipment; the timeline says opened",
		chromedp.SetValue(chromedp.CSS("#burst-count"), "8"),
		chromedp.Click(chromedp.CSS("#burst")),
		chromedp.WaitVisible(tile("payment→shipment", "open")),
		poll(`[...document.querySelectorAll("#timeline li")].some(li => li.textContent.includes("payment → shipment status:: opened"))`),
		poll(`document.querySelector("#burst-msg").textContent.includes("202")`),
		screenshot("dashboard-open.png"),
	)
	run("the fault cleared: after the delay the tile goes half-open, then closed",
		chromedp.SetValue(chromedp.CSS("#chaos-shipment-rate"), "0"),
		chromedp.Click(chromedp.CSS("#chaos-shipment-apply")),
		poll(`document.querySelector("#chaos-shipment-msg").textContent.includes("error rate 0%")`),
		// The open delay (BREAKER_DELAY) has passed when the circuit shows none left.
		poll(`document.querySelector('article.tile[data-circuit="payment→shipment"] .delay').textContent.startsWith("open: 0s left")`),
		chromedp.SetValue(chromedp.CSS("#burst-count"), "3"),
		chromedp.Click(chromedp.CSS("#burst")),
		chromedp.WaitVisible(tile("payment→shipment", "closed")),
	)
	history, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`article.tile[data-circuit="payment→shipment"]`), "data-history"))
	if err != nil || !strings.HasSuffix(history.Value, "closed open half-open closed") {
		t.Errorf("payment → shipment went %q (%v), want closed, open, half-open, closed", history.Value, err)
	}

	run("the guided tour plays the eight cases to their end",
		chromedp.Click(chromedp.CSS("#tour-start")),
		chromedp.WaitVisible(chromedp.CSS(`#tour[data-done="true"]`)),
		screenshot("dashboard-tour.png"),
	)
	reached, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#tour-results li[data-reached="true"]').length`))
	if err != nil || reached != 8 {
		t.Errorf("the tour reached %d of the eight cases (%v); last status %q", reached, err, text("#tour-status"))
	}
	t.Logf("screenshots in %s", shots)
}
