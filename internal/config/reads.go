package config

import (
	"slices"
	"strings"
	"sync"
)

// Reads is a Lookup that remembers every name it was asked for, so that once the configuration
// is read, a variable that was set but never read can be pointed out: SHIPMNT_INJECT_ERR=1 or
// SHIPMENT_INJECT_ERROR=1 would otherwise be silently ignored.
type Reads struct {
	lookup Lookup
	mu     sync.Mutex
	names  map[string]bool
}

// Record returns a Reads over lookup.
func Record(lookup Lookup) *Reads { return &Reads{lookup: lookup, names: map[string]bool{}} }

// Lookup looks name up and remembers it was asked for.
func (r *Reads) Lookup(name string) (string, bool) {
	r.mu.Lock()
	r.names[name] = true
	r.mu.Unlock()
	return r.lookup(name)
}

// Names returns every name asked for so far, sorted.
func (r *Reads) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.names))
	for n := range r.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Families are prefixes of variables only this program uses: one set that starts with them and
// is not read is a mistake, not another program's setting.
var Families = []string{"BREAKER_", "RETRY_", "REDRIVE_", "INJECT_", "CHAOS", "BULKHEAD_", "JETSTREAM_", "RECONCILE_"}

// Unread is a variable that was set, looks like one of ours, and was never read.
type Unread struct {
	Name    string
	Closest string // the variable read whose name is closest; "" when none is close
}

// Unread returns the variables among set (names from the environment) that start with the
// prefix of one of services or with one of Families, or are within two typos of a name that was
// read (names of six characters or more: HOME is not a typo of HOST), and were not read
// themselves.
func (r *Reads) Unread(set []string, services []string) []Unread {
	read := r.Names()
	var out []Unread
	for _, name := range set {
		if r.names[name] {
			continue
		}
		closest, dist := nearest(name, read)
		ours := dist <= 2 && len(name) >= 6
		for _, p := range Families {
			ours = ours || strings.HasPrefix(name, p)
		}
		for _, s := range services {
			ours = ours || strings.HasPrefix(name, strings.ToUpper(s)+"_")
		}
		if !ours {
			continue
		}
		if dist > max(3, len(name)/3) {
			closest = ""
		}
		out = append(out, Unread{Name: name, Closest: closest})
	}
	return out
}

// nearest returns the name in names closest to s, and its edit distance.
func nearest(s string, names []string) (string, int) {
	best, dist := "", len(s)+1
	for _, n := range names {
		if d := editDistance(s, n); d < dist {
			best, dist = n, d
		}
	}
	return best, dist
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
