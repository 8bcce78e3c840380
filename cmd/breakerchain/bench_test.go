package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breakerchain/breakerchain/internal/testkit"
)

// process is the program run as a child process.
type process struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer
}

// startProcess runs bin with args; bin "" is this test binary as the program.
func startProcess(b *testing.B, bin, name, args string, env ...string) *process {
	b.Helper()
	p := &process{name: name}
	if bin == "" {
		p.cmd = exec.Command(os.Args[0])
		env = append(env, "BREAKERCHAIN_MAIN=1", "BREAKERCHAIN_ARGS="+args)
	} else {
		p.cmd = exec.Command(bin, strings.Fields(args)...)
	}
	p.cmd.Env = append(os.Environ(), env...)
	// Its logs are written as in production (info, to a pipe) and read by nobody.
	p.cmd.Stdout, p.cmd.Stderr = &p.out, io.Discard
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			b.Errorf("%s did not stop within 15s of SIGTERM", name)
		}
	})
	return p
}

// cpu is the CPU time (user and system) the process has used so far.
func (p *process) cpu(b *testing.B) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "stat"))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: utime and stime are 14 and 15.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ, 100 on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}

// rss is the process's resident memory in MB.
func (p *process) rss(b *testing.B) float64 {
	b.Helper()
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "status"))
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		b.Fatalf("no VmRSS in /proc/%d/status", p.cmd.Process.Pid)
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024
}

// benchClient bounds every request: a service that hangs fails the run instead of stalling it.
var benchClient = &http.Client{Timeout: 30 * time.Second}

func freePort(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// BenchmarkProcesses runs the chain as compose does, one process per service, against NATS and a
// store in a process of their own (`breakerchain servers`), so that the CPU and memory the three
// services use can be read from /proc without the servers'. It reports CPU per order (the sum
// over the three processes, and each one's) and each process's resident memory at the end.
//
//	go test -run '^$' -bench Processes -benchtime 10000x ./cmd/breakerchain
func BenchmarkProcesses(b *testing.B) {
	c := startProcesses(b)
	for _, clients := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			driveProcesses(b, clients, c.orderURL, c.services(), c.servers)
		})
	}
}

// chainProcs is the chain run as compose runs it: the servers (NATS and the store) in one process,
// each service in its own, built like the image.
type chainProcs struct {
	bin      string
	env      []string // every service's: where NATS and the store are, and the caller's own
	servers  *process
	procs    map[string]*process // by service
	ports    map[string]string
	natsURL  string
	orderURL string
}

// startProcesses builds the services as the image does (without the embedded servers, see
// allinone_noembed.go), starts the servers from this test binary, then shipment, payment and
// order, each with env, and waits until each is ready.
func startProcesses(b *testing.B, env ...string) *chainProcs {
	b.Helper()
	if loadNiced.Load() {
		b.Fatal("this process runs at nice 19 (BENCH_LOAD_NICE=1) and so would the chain: run one benchmark per process")
	}
	c := &chainProcs{bin: filepath.Join(b.TempDir(), "breakerchain"), procs: map[string]*process{}, ports: map[string]string{}}
	build := exec.Command("go", "build", "-tags", "noembed", "-o", c.bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build -tags noembed: %v\n%s", err, out)
	}
	c.servers = startProcess(b, "", "servers", "servers", "NATS_PORT=0", "MONGO_PORT=0", "DATA_DIR="+b.TempDir())
	urls := regexp.MustCompile(`NATS\s+(nats://\S+)[\s\S]*MongoDB\s+(mongodb://\S+)`)
	var mongoURL string
	testkit.Eventually(b, 60*time.Second, "the servers' banner", func() bool {
		m := urls.FindStringSubmatch(c.servers.out.String())
		if m != nil {
			c.natsURL, mongoURL = m[1], m[2]
		}
		return m != nil
	})
	c.env = append([]string{"NATS_URL=" + c.natsURL, "MONGO_URL=" + mongoURL}, env...)
	for _, name := range []string{"shipment", "payment", "order"} {
		c.ports[name] = freePort(b)
		c.start(b, name)
	}
	c.orderURL = "http://127.0.0.1:" + c.ports["order"]
	return c
}

// start starts service name on its port, with the chain's env and env, and waits until it is ready.
func (c *chainProcs) start(b *testing.B, name string, env ...string) {
	b.Helper()
	c.procs[name] = startProcess(b, c.bin, name, name, slices.Concat(c.env, []string{"PORT=" + c.ports[name]}, env)...)
	url := "http://127.0.0.1:" + c.ports[name]
	testkit.Eventually(b, 30*time.Second, name+" to be ready", func() bool {
		res, err := benchClient.Get(url + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

// stop stops service name (SIGTERM) and waits for it to exit.
func (c *chainProcs) stop(b *testing.B, name string) {
	b.Helper()
	p := c.procs[name]
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
}

func (c *chainProcs) services() []*process {
	return []*process{c.procs["shipment"], c.procs["payment"], c.procs["order"]}
}

// driveProcesses posts b.N orders to order at orderURL from clients goroutines, each must be 201,
// and reports throughput, latency, and the CPU and memory of the service processes, and the CPU
// of the servers' (NATS with JetStream, and the store), which the services' figures leave out.
func driveProcesses(b *testing.B, clients int, orderURL string, services []*process, servers *process) {
	before := make([]time.Duration, len(services))
	for i, p := range services {
		before[i] = p.cpu(b)
	}
	serversBefore := servers.cpu(b)
	var next atomic.Int64
	var failed atomic.Value
	lat := make([][]time.Duration, clients)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				id := run + "-" + strconv.FormatInt(i, 10)
				body := testkit.SeedOrder(id)
				t0 := time.Now()
				res, err := benchClient.Post(orderURL+"/create", "application/json", strings.NewReader(body))
				if err != nil {
					failed.Store(err.Error())
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				lat[c] = append(lat[c], time.Since(t0))
				if res.StatusCode != http.StatusCreated {
					failed.Store(fmt.Sprintf("order %s: %d, want 201", id, res.StatusCode))
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	if msg := failed.Load(); msg != nil {
		b.Fatal(msg)
	}
	var total time.Duration
	for i, p := range services {
		used := p.cpu(b) - before[i]
		total += used
		b.ReportMetric(float64(used.Microseconds())/1000/float64(b.N), p.name+"-cpu-ms/order")
		b.ReportMetric(p.rss(b), p.name+"-rss-MB")
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(p int) float64 { return float64(all[min(len(all)-1, len(all)*p/100)].Microseconds()) / 1000 }
	b.ReportMetric(q(50), "p50-ms")
	b.ReportMetric(q(99), "p99-ms")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "cpu-ms/order")
	b.ReportMetric(float64((servers.cpu(b)-serversBefore).Microseconds())/1000/float64(b.N), "servers-cpu-ms/order")
	b.ReportMetric(float64(b.N)/took.Seconds(), "orders/s")
	b.ReportMetric(0, "ns/op")
}
