package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/testkit"
)

// loadClient keeps a connection per client: a closed-loop load of 1,024 clients must not spend
// itself opening connections (the default transport keeps two idle per host).
var loadClient = &http.Client{Timeout: 30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 2048, MaxIdleConns: 2048, DisableCompression: true}}

// loadResult is what a closed-loop load got back, by status code.
type loadResult struct {
	took  time.Duration
	codes map[int][]time.Duration // status → latency of each answer; 0 for a failed request
}

func (r loadResult) count(code int) int { return len(r.codes[code]) }

func (r loadResult) total() int {
	n := 0
	for _, l := range r.codes {
		n += len(l)
	}
	return n
}

// p99 of the answers with code, in milliseconds (0 without any).
func (r loadResult) p99(code int) float64 {
	l := slices.Clone(r.codes[code])
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	return float64(l[min(len(l)-1, len(l)*99/100)].Microseconds()) / 1000
}

func (r loadResult) perSecond(code int) float64 { return float64(r.count(code)) / r.took.Seconds() }

// postLoad posts orders with new ids from clients goroutines, each sending its next as soon as it
// has an answer (or, with politely, once a 503's Retry-After has passed), until done says stop.
func postLoad(b *testing.B, url string, clients int, politely bool, done func() bool) loadResult {
	b.Helper()
	var stop atomic.Bool
	var mu sync.Mutex
	res := loadResult{codes: map[int][]time.Duration{}}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			mine := map[int][]time.Duration{}
			for !stop.Load() {
				id := run + "-" + strconv.FormatInt(next.Add(1), 10)
				body := testkit.SeedOrder(id)
				t0 := time.Now()
				r, err := loadClient.Post(url+"/create", "application/json", strings.NewReader(body))
				code := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, r.Body)
					r.Body.Close()
					code = r.StatusCode
				}
				mine[code] = append(mine[code], time.Since(t0))
				if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); politely && code == http.StatusServiceUnavailable && err == nil {
					pause := time.NewTimer(time.Duration(secs) * time.Second)
					for !stop.Load() && len(pause.C) == 0 {
						time.Sleep(50 * time.Millisecond)
					}
					pause.Stop()
				}
			}
			mu.Lock()
			for code, l := range mine {
				res.codes[code] = append(res.codes[code], l...)
			}
			mu.Unlock()
		})
	}
	for !done() {
		time.Sleep(100 * time.Millisecond)
	}
	stop.Store(true)
	res.took = time.Since(start)
	wg.Wait()
	return res
}

// loadFor is postLoad for d, with clients that do not wait for Retry-After (as wrk).
func loadFor(b *testing.B, url string, clients int, d time.Duration) loadResult {
	return politeLoadFor(b, url, clients, false, d)
}

func politeLoadFor(b *testing.B, url string, clients int, politely bool, d time.Duration) loadResult {
	end := time.Now().Add(d)
	return postLoad(b, url, clients, politely, func() bool { return time.Now().After(end) })
}

// BenchmarkOverload drives the chain as compose runs it (three service processes, the servers in
// a fourth; see BenchmarkProcesses) with 64, 256 and 1,024 clients, each posting a new order as
// soon as its last is answered, for b.N × 10 ms per level (-benchtime 1500x: 15 s), every
// service healthy; then 256 and 1,024 clients that wait a refusal's Retry-After before their
// next order (as a browser or an SDK with backoff would; wrk does not). BENCH_ENV adds settings
// to every service's ("ADMIT_MAX=0" compares without the admission limit); BENCH_LOAD_NICE=1
// runs the load at the lowest CPU priority, the nearest these two cores come to clients on
// other machines (one benchmark per process then: -bench 'Overload$' -count 1). It reports what
// was completed (201), deferred (202) and refused (503) per second, and the p99 of the completed
// and of the refusals. Then, with payment failing half its requests (chaos), the requests
// payment.create saw per order sent: what retries cost.
//
//	go test -run '^$' -bench Overload -benchtime 1500x ./cmd/breakerchain
func BenchmarkOverload(b *testing.B) {
	c := startProcesses(b, append([]string{"CHAOS=1", "LOG_LEVEL=warn"}, strings.Fields(os.Getenv("BENCH_ENV"))...)...)
	levels := []struct {
		clients  int
		politely bool
	}{{64, false}, {256, false}, {1024, false}, {256, true}, {1024, true}}
	if os.Getenv("BENCH_LOAD_NICE") == "1" {
		lowerLoadPriority(b)
	}
	for _, l := range levels {
		name := fmt.Sprintf("clients=%d", l.clients)
		if l.politely {
			name += ",retry-after"
		}
		b.Run(name, func(b *testing.B) {
			before := testkit.Metrics(b, c.orderURL)
			cpu := c.cpu(b)
			r := politeLoadFor(b, c.orderURL, l.clients, l.politely, time.Duration(b.N)*10*time.Millisecond)
			for name, used := range c.cpu(b) {
				b.ReportMetric((used-cpu[name]).Seconds()/r.took.Seconds(), name+"-cores")
			}
			after := testkit.Metrics(b, c.orderURL)
			b.ReportMetric(serverP99(after, before, http.StatusServiceUnavailable), "refused-server-p99-ms")
			b.ReportMetric(after[`breakerchain_admission_limit{service="order"}`], "limit-at-end")
			b.ReportMetric(r.perSecond(http.StatusCreated), "completed/s")
			b.ReportMetric(float64(r.count(http.StatusAccepted)), "answered-202")
			b.ReportMetric(r.perSecond(http.StatusServiceUnavailable), "refused/s")
			b.ReportMetric(r.p99(http.StatusCreated), "completed-p99-ms")
			b.ReportMetric(r.p99(http.StatusServiceUnavailable), "refused-p99-ms")
			other := r.total() - r.count(http.StatusCreated) - r.count(http.StatusAccepted) - r.count(http.StatusServiceUnavailable)
			b.ReportMetric(float64(other), "other-answers")
			b.ReportMetric(0, "ns/op")
		})
	}
	b.Run("payment-fails=50%", func(b *testing.B) {
		nc, err := natsgo.Connect(c.natsURL)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		// Every request on payment.create, retries included; re-drives (request id "….r2") apart.
		var seen, redrives atomic.Int64
		sub, err := nc.Subscribe("payment.create", func(m *natsgo.Msg) {
			if redrive.MatchString(m.Header.Get("Request-Id")) {
				redrives.Add(1)
			} else {
				seen.Add(1)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
		setChaos(b, "http://127.0.0.1:"+c.ports["payment"], `{"error_rate":0.5}`)
		defer setChaos(b, "http://127.0.0.1:"+c.ports["payment"], `{"error_rate":0}`)
		r := loadFor(b, c.orderURL, 16, time.Duration(b.N)*10*time.Millisecond)
		sent := r.total()
		b.ReportMetric(float64(seen.Load())/float64(sent), "payment-calls/order")
		b.ReportMetric(float64(redrives.Load())/float64(sent), "redrive-calls/order")
		b.ReportMetric(float64(r.count(http.StatusCreated))/float64(sent), "completed/order")
		b.ReportMetric(0, "ns/op")
	})
}

// redrive is a re-drive's request id: the order's first one and the attempt.
var redrive = regexp.MustCompile(`\.r\d+$`)

// cpu is the CPU time each process has used so far: the services, the servers, and this one
// (the load).
func (c *chainProcs) cpu(b *testing.B) map[string]time.Duration {
	out := map[string]time.Duration{"servers": c.servers.cpu(b), "load": selfCPU(b)}
	for name, p := range c.procs {
		out[name] = p.cpu(b)
	}
	return out
}

// loadNiced is set once this process's threads are at nice 19: there is no going back without
// privileges, and processes started from here on would run at 19 too (startProcesses refuses).
var loadNiced atomic.Bool

// lowerLoadPriority sets every thread of this process, the load, to nice 19. On Linux a nice is
// a thread's, and a thread inherits its creator's: a second pass catches threads started during
// the first. The services, started before, keep theirs.
func lowerLoadPriority(b *testing.B) {
	loadNiced.Store(true)
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range tasks {
			tid, _ := strconv.Atoi(t.Name())
			err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, 19)
			if err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: the thread has ended
				b.Fatalf("nice 19 for thread %d: %v", tid, err)
			}
		}
	}
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func setChaos(b *testing.B, url, body string) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPut, url+"/chaos", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b.Fatalf("PUT /chaos %s: %d", body, res.StatusCode)
	}
}

// BenchmarkOverloadDrain measures how fast a backlog of b.N pending orders drains (-benchtime
// 10000x: 10,000), against the healthy chain's pace. In the three-process set-up it measures the
// chain at 64 clients (the healthy pace) and at 16 (the live load's p99 on its own), each for a
// phase of b.N ms (1 to 10 s); then stops payment, posts b.N orders (each must be 202, pending),
// starts payment again, and once the first pending order has completed, keeps 16 clients
// posting while the rest drains, for at most a minute. It reports the drain's orders/s and its
// ratio to the healthy pace, and the live load's p99 during the drain and its ratio to the p99
// without it.
//
//	go test -run '^$' -bench OverloadDrain -benchtime 10000x ./cmd/breakerchain
func BenchmarkOverloadDrain(b *testing.B) {
	// A short open delay: payment back, the circuit's trial comes soon.
	c := startProcesses(b, append([]string{"BREAKER_DELAY=2s", "LOG_LEVEL=warn"}, strings.Fields(os.Getenv("BENCH_ENV"))...)...)
	phase := min(max(time.Duration(b.N)*time.Millisecond, time.Second), 10*time.Second)
	healthy := loadFor(b, c.orderURL, 64, phase).perSecond(http.StatusCreated)
	alone := loadFor(b, c.orderURL, 16, phase)
	quiet := alone.p99(http.StatusCreated)

	c.stop(b, "payment")
	pending := func() float64 { return testkit.Metrics(b, c.orderURL)[`breakerchain_orders_pending{service="order"}`] }
	backlog := postLoad(b, c.orderURL, 64, false, func() bool { return pending() >= float64(b.N) })
	// Refused (503) is fair while payment's absence makes orders slow; completed is not.
	if n := backlog.count(http.StatusAccepted) + backlog.count(http.StatusServiceUnavailable); n != backlog.total() {
		codes := map[int]int{}
		for code, l := range backlog.codes {
			codes[code] = len(l)
		}
		b.Fatalf("with payment away: %d of %d orders answered 202 or 503, want all (answers by status: %v)", n, backlog.total(), codes)
	}
	size := pending()
	b.Logf("backlog: %.0f pending orders", size)

	c.start(b, "payment")
	testkit.Eventually(b, time.Minute, "the drain to start", func() bool { return pending() < size })
	start, left := time.Now(), pending()
	end := start.Add(2 * time.Minute)
	var polls, limits, redrives float64 // the admission limit and the re-drives in flight, summed over the polls
	live := postLoad(b, c.orderURL, 16, false, func() bool {
		m := testkit.Metrics(b, c.orderURL)
		left = m[`breakerchain_orders_pending{service="order"}`]
		polls, limits, redrives = polls+1, limits+m[`breakerchain_admission_limit{service="order"}`], redrives+m[`breakerchain_admission_redriving{service="order"}`]
		return left <= 0 || time.Now().After(end)
	})
	took := time.Since(start)
	drained := size - max(left, 0)
	// The same live load once the drain is done, on a store as large as during it: how much of
	// the p99 during the drain is the drain's, and how much the store's size.
	after := 0.0
	if left <= 0 {
		after = loadFor(b, c.orderURL, 16, phase).p99(http.StatusCreated)
	}
	b.ReportMetric(healthy, "healthy-completed/s")
	b.ReportMetric(drained/took.Seconds(), "drained/s")
	b.ReportMetric(drained/took.Seconds()/healthy, "drain/healthy")
	b.ReportMetric(quiet, "live-p99-alone-ms")
	b.ReportMetric(alone.perSecond(http.StatusCreated), "live-completed/s-alone")
	b.ReportMetric(live.perSecond(http.StatusCreated), "live-completed/s-drain")
	b.ReportMetric(live.p99(http.StatusCreated), "live-p99-drain-ms")
	b.ReportMetric(live.p99(http.StatusCreated)/quiet, "live-p99-ratio")
	b.ReportMetric(after, "live-p99-after-ms")
	b.ReportMetric(float64(live.count(http.StatusAccepted)), "live-answered-202")
	b.ReportMetric(max(left, 0), "left-pending")
	b.ReportMetric(limits/polls, "drain-mean-limit")
	b.ReportMetric(redrives/polls, "drain-mean-redriving")
	b.ReportMetric(0, "ns/op")
}

// serverP99 is the p99 of order's POST /create answered code, as order timed them (its
// histogram, so the upper bound of a bucket), in milliseconds, over what was added since before.
func serverP99(after, before map[string]float64, code int) float64 {
	prefix := `breakerchain_http_request_duration_seconds_bucket{code="` + strconv.Itoa(code) + `",method="POST",route="/create",service="order",le="`
	type bucket struct{ le, n float64 }
	var bs []bucket
	for series, v := range after {
		if le, ok := strings.CutPrefix(series, prefix); ok {
			bound, _ := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64) // +Inf parses too
			bs = append(bs, bucket{bound, v - before[series]})
		}
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0
	}
	for _, x := range bs {
		if x.n >= 0.99*bs[len(bs)-1].n {
			return x.le * 1000
		}
	}
	return 0
}
