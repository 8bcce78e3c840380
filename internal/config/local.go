package config

import (
	"net"
	"strconv"
)

// The local addresses, written once: where the all-in-one listens unless told otherwise, and so
// where a service or the dashboard run alone looks for the servers and the chain by default.
const (
	LocalHost        = "127.0.0.1"
	DefaultNATSPort  = 4222
	DefaultMongoPort = 27017
	// DefaultPort is a service's HTTP port. In the all-in-one it is the first service's, and
	// the others follow it in the chain's order (ServicePort).
	DefaultPort = 3000
)

// LocalURL is scheme://127.0.0.1:port.
func LocalURL(scheme string, port int) string {
	return scheme + "://" + net.JoinHostPort(LocalHost, strconv.Itoa(port))
}

// The servers a service run alone uses unless NATS_URL and MONGO_URL say otherwise: the
// all-in-one's (`breakerchain servers`).
var (
	DefaultNATSURL  = LocalURL("nats", DefaultNATSPort)
	DefaultMongoURL = LocalURL("mongodb", DefaultMongoPort)
)

// ServicePort is the HTTP port of the i-th service (from 0, upstream first) of a chain whose
// first service has port base: base+i, so order 3000, payment 3001, shipment 3002; 0 (a free
// one each) when base is 0.
func ServicePort(base, i int) int {
	if base == 0 {
		return 0
	}
	return base + i
}

// DashboardPort is the dashboard's default port beside a chain of n services whose first has
// port base: the first port after theirs (3003 beside three, 3004 beside four), so it is never
// one of theirs, however long the chain; 0 (a free one) when base is 0.
func DashboardPort(base, n int) int { return ServicePort(base, n) }
