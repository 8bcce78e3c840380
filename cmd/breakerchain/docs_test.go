package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/logging"
	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/order"
)

// repo is the repository's root, from this package's directory.
const repo = "../.."

// allVariablesRead runs everything that reads the configuration, on an empty environment, and
// returns the names it asked for, without the service prefixes (ORDER_JUMPS is JUMPS).
func allVariablesRead(t *testing.T) []string {
	t.Helper()
	reads := config.Record(func(string) (string, bool) { return "", false })
	if _, _, err := logging.New(io.Discard, reads.Lookup); err != nil {
		t.Fatal(err)
	}
	// The all-in-one reads every service's configuration and its own servers'; a service alone
	// reads its own.
	for _, args := range [][]string{nil, {"servers"}, {"order"}, {"payment"}, {"shipment"}, {"dashboard"}} {
		if err := checkArgs(args, reads.Lookup); err != nil {
			t.Fatal(err)
		}
	}
	read := map[string]bool{}
	for _, n := range reads.Names() {
		read[n] = true
	}
	// A prefixed name (ORDER_JUMPS) is the prefixed form of one read unprefixed too (JUMPS);
	// ORDER_URL is a name of its own.
	set := map[string]bool{}
	for n := range read {
		base := n
		for _, svc := range services {
			if rest, ok := strings.CutPrefix(n, strings.ToUpper(svc.Name)+"_"); ok && read[rest] {
				base = rest
			}
		}
		set[base] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// The configuration reference, docs/configuration.md, is the code's: every variable the program
// reads has its row, and every row is a variable the program reads.
func TestConfigurationReference(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\|").FindAllStringSubmatch(string(b), -1) {
		if documented[m[1]] {
			t.Errorf("docs/configuration.md has two rows for %s", m[1])
		}
		documented[m[1]] = true
	}
	read := allVariablesRead(t)
	for _, n := range read {
		if !documented[n] {
			t.Errorf("%s is read by the program but has no row in docs/configuration.md", n)
		}
		delete(documented, n)
	}
	for n := range documented {
		t.Errorf("docs/configuration.md documents %s, which the program does not read", n)
	}
	if len(read) < 30 {
		t.Errorf("only %d variables read: %v", len(read), read)
	}
}

// A variable that looks like one of ours and is not read is named at start, with the closest one
// that is: a typo in a prefix, a name that does not exist, a family's misspelt member. Others
// (PATH, HOME, _, HOSTNAME, NATS_CONTEXT) are left alone.
func TestUnreadVariablesAreNamed(t *testing.T) {
	var stderr bytes.Buffer
	environ := []string{"SHIPMNT_INJECT_ERR=1", "SHIPMENT_INJECT_ERROR=1", "BREAKER_TIMOUT=1s", "RETRY_BACKOF=1s",
		"PAYMENT_INJECT_ERR=1", "PATH=/bin", "HOSTNAME=box", "HOME=/root", "_=/usr/bin/go", "NATS_CONTEXT=dev", "LOG_LEVEL=warn"}
	if _, _, _, err := configure(nil, environ, &stderr); err != nil {
		t.Fatal(err)
	}
	out := stderr.String()
	for name, closest := range map[string]string{
		"SHIPMNT_INJECT_ERR": "SHIPMENT_INJECT_ERR", "SHIPMENT_INJECT_ERROR": "SHIPMENT_INJECT_ERR",
		"BREAKER_TIMOUT": "BREAKER_TIMEOUT", "RETRY_BACKOF": "RETRY_BACKOFF",
	} {
		if !strings.Contains(out, name+" is not a variable breakerchain reads here: ignored; did you mean "+closest+"?") {
			t.Errorf("no warning naming %s and %s in:\n%s", name, closest, out)
		}
	}
	for _, name := range []string{"PAYMENT_INJECT_ERR", "PATH", "HOSTNAME", "HOME", "_", "NATS_CONTEXT", "LOG_LEVEL"} {
		if strings.Contains(out, name+" is not") {
			t.Errorf("%s was warned of:\n%s", name, out)
		}
	}

	// A variable of another command is named as that command's, not taken for a typo.
	stderr.Reset()
	if _, _, _, err := configure(nil, []string{"ORDER_URL=http://127.0.0.1:3000", "LOG_LEVEL=warn"}, &stderr); err != nil {
		t.Fatal(err)
	}
	if want := "ORDER_URL is not a variable breakerchain reads here: ignored; `breakerchain dashboard` reads it"; !strings.Contains(stderr.String(), want) {
		t.Errorf("want %q in:\n%s", want, stderr.String())
	}

	// With NATS_CONFIG, the variables its file reads are read (by the embedded nats-server).
	stderr.Reset()
	environ = []string{"NATS_CONFIG=../../deploy/nats.conf", "ORDER_NATS_PASSWORD=a", "PAYMENT_NATS_PASSWORD=b",
		"SHIPMENT_NATS_PASSWORD=c", "OBSERVER_NATS_PASSWORD=d", "CHAOS_NATS_PASSWORD=e", "LOG_LEVEL=warn"}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // nats-server reads the file's variables from the process's environment
	}
	if _, _, _, err := configure(nil, environ, &stderr); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stderr.String(), "is not a variable") {
		t.Errorf("a variable of deploy/nats.conf was warned of:\n%s", stderr.String())
	}
}

// Every relative link in the README and docs/ resolves: to a file of the repository, and an
// anchor to a heading of it.
func TestDocLinks(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(repo, "README.md"))
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(withoutCode(string(b)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
			}
			rel, _ := filepath.Rel(repo, dest)
			if strings.HasPrefix(rel, "..") {
				t.Errorf("%s: link %s leaves the repository", f, target)
				continue
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s: link %s: no such file", f, target)
				continue
			}
			checked++
			if anchor != "" && !slices.Contains(anchors(t, dest), anchor) {
				t.Errorf("%s: link %s: no heading with that anchor in %s", f, target, rel)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d links checked: is the pattern right?", checked)
	}
}

var fence = regexp.MustCompile("(?s)```.*?```")

// withoutCode drops fenced code blocks, whose brackets are not links.
func withoutCode(md string) string { return fence.ReplaceAllString(md, "") }

// anchors returns the GitHub anchors of the headings of a markdown file: lower case, punctuation
// dropped, spaces as hyphens, a repeated one numbered.
func anchors(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	seen := map[string]int{}
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	for _, line := range strings.Split(withoutCode(string(b)), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		a := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")
		if n := seen[a]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", a, n))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}

// documentedDefaults returns the default of each variable of docs/configuration.md as a value:
// the value it says a setting has "as shipped" when it derives it, else the first number in the
// default's cell (`BULKHEAD_MAX` (64) is 64).
func documentedDefaults(t *testing.T) map[string]string {
	b, err := os.ReadFile(filepath.Join(repo, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	shipped := regexp.MustCompile(`\((\S+) as shipped\)`)
	value := regexp.MustCompile(`\b\d[\d.]*(ms|s|m|h)?\b`)
	out := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\|.*\\| ([^|]*) \\|$").FindAllStringSubmatch(string(b), -1) {
		if s := shipped.FindStringSubmatch(m[2]); s != nil {
			out[m[1]] = s[1]
		} else if v := value.FindString(m[2]); v != "" {
			out[m[1]] = v
		}
	}
	return out
}

// The start log shows the settings as they will be used, and with nothing set they are the
// defaults docs/configuration.md gives: order's re-drive timers, which order derives from the
// breaker's settings, included (REDRIVE_AFTER, REDRIVE_ACK_WAIT "as shipped", not 0s).
func TestStartLogShowsTheDocumentedDefaults(t *testing.T) {
	uri, db := testkit.Database(t)
	ns := testkit.NATS(t)
	var log syncBuffer
	testkit.StartLogged(t, from(order.Service), ns.URL(), uri, db, testkit.Env{}, slog.New(slog.NewJSONHandler(&log, nil)))
	var start struct {
		Config struct {
			Jumps             json.Number `json:"jumps"`
			MaxConcurrent     json.Number `json:"max_concurrent"`
			BacklogMax        json.Number `json:"backlog_max"`
			JetStreamReplicas json.Number `json:"jetstream_replicas"`
			InjectErrRate     json.Number `json:"inject_err_rate"`
			Breaker           string      `json:"breaker"`
			Redrive           string      `json:"redrive"`
			Admission         string      `json:"admission"`
		}
	}
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, `"msg":"starting"`) {
			if err := json.Unmarshal([]byte(line), &start); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			break
		}
	}
	c := start.Config
	if c.Breaker == "" || c.Redrive == "" {
		t.Fatalf("no start line with the breaker's and the re-driver's settings in:\n%s", log.String())
	}
	used := map[string]string{"JUMPS": c.Jumps.String(), "MAX_CONCURRENT": c.MaxConcurrent.String(),
		"BACKLOG_MAX": c.BacklogMax.String(), "JETSTREAM_REPLICAS": c.JetStreamReplicas.String(), "INJECT_ERR_RATE": c.InjectErrRate.String()}
	// The log's names within each setting (timeout=300ms) and the variables that set them.
	for line, names := range map[string]map[string]string{
		c.Breaker: {"timeout": "BREAKER_TIMEOUT", "rate": "BREAKER_FAILURE_RATE", "min_calls": "BREAKER_MIN_CALLS",
			"window": "BREAKER_WINDOW", "delay": "BREAKER_DELAY", "retries": "RETRY_MAX", "backoff": "RETRY_BACKOFF",
			"retry_budget": "RETRY_BUDGET", "bulkhead": "BULKHEAD_MAX"},
		c.Redrive: {"rate": "REDRIVE_RATE", "backoff": "REDRIVE_BACKOFF", "after": "REDRIVE_AFTER",
			"ack_wait": "REDRIVE_ACK_WAIT", "reconcile_every": "RECONCILE_EVERY"},
		c.Admission: {"max": "ADMIT_MAX", "max_wait": "ADMIT_MAX_WAIT"},
	} {
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			if name, ok := names[k]; ok {
				used[name] = strings.TrimSuffix(strings.TrimSuffix(v, "%"), "/s")
			}
		}
	}
	documented := documentedDefaults(t)
	if len(used) != 21 {
		t.Errorf("%d settings read from the start log, want 21: %v", len(used), used)
	}
	for name, v := range used {
		if documented[name] != v {
			t.Errorf("the start log says %s is %s; docs/configuration.md says %q", name, v, documented[name])
		}
	}
}

// The user docs (README.md, docs/*.md) speak to a reader of the code as it is: no "issue 14",
// "issues 2–7", "session 5", "the issue's targets" — the project's history means nothing there.
func TestDocsNameNoIssueOrSession(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	word := regexp.MustCompile(`(?i)\b(issues?|sessions?)\b`)
	for _, f := range append(files, filepath.Join(repo, "README.md")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := word.FindString(line); m != "" {
				rel, _ := filepath.Rel(repo, f)
				t.Errorf("%s:%d says %q: say what is meant (the change, the measurement) instead: %s", rel, i+1, m, line)
			}
		}
	}
}

// Every metric of ours that /metrics may serve is in operations.md's table: each series the
// code names (breakerchain_…, in a Name or a NewDesc) has a row there.
func TestMetricsReference(t *testing.T) {
	table, err := os.ReadFile(filepath.Join(repo, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*)"(breakerchain_[a-z0-9_]+)"`)
	seen := 0
	err = filepath.WalkDir(repo, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range named.FindAllStringSubmatch(string(src), -1) {
			seen++
			if !regexp.MustCompile("(?m)^\\| [^\n]*`" + m[1] + "`").Match(table) {
				t.Errorf("%s: %s has no row in docs/operations.md", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 10 {
		t.Fatalf("found %d metrics named in the code: the pattern no longer matches how they are named", seen)
	}
}
