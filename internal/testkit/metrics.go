package testkit

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

var metricsClient = &http.Client{Timeout: 10 * time.Second}

// Metrics reads a service's /metrics at base into series → value: a series is its name with
// its labels, as written (`breakerchain_orders_pending{service="order"}`).
func Metrics(t testing.TB, base string) map[string]float64 {
	t.Helper()
	res, err := metricsClient.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", res.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// MetricsByName is Metrics with each name's series summed over their labels.
func MetricsByName(t testing.TB, base string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for series, v := range Metrics(t, base) {
		name, _, _ := strings.Cut(series, "{")
		out[name] += v
	}
	return out
}
