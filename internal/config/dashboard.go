package config

import (
	"fmt"
	"net/url"
	"strconv"
)

// Dashboard is the configuration of `breakerchain dashboard`: where it listens, where order's
// public API is, and how it connects to NATS — as an observer to watch, and as the chaos user for
// the controls.
type Dashboard struct {
	Host     string
	Port     int
	OrderURL string
	Watch    Settings  // NATS_URL with NATS_USER and NATS_PASSWORD (or NATS_CREDS), NATS_CA
	Control  *Settings // CHAOS_NATS_USER and CHAOS_NATS_PASSWORD; nil: the dashboard only watches
	// OrderBody is the body of a new order with id, the one the order button sends: the chain's
	// example, from the chain (not the environment). nil: the dashboard sends no orders.
	OrderBody func(id string) []byte
}

// LoadDashboard reads the dashboard's configuration beside a chain of that many services (its
// default port is the one after theirs: DashboardPort). Without NATS credentials (a local server)
// the controls use the same anonymous connection; with them, only CHAOS_NATS_USER gives controls.
func LoadDashboard(lookup Lookup, services int) (Dashboard, error) {
	s := NewSource("", lookup)
	d := Dashboard{
		Host:     s.String("HOST", LocalHost),
		Port:     s.Int("DASHBOARD_PORT", DashboardPort(DefaultPort, services), 0, 65535),
		OrderURL: s.URL("ORDER_URL", LocalURL("http", DefaultPort), "http", "https"),
		Watch: Settings{Name: "dashboard", ID: "dashboard",
			NatsURL: s.Servers("NATS_URL", DefaultNATSURL, "nats", "tls", "ws", "wss"), NATS: s.natsAuth("NATS_")},
	}
	chaosUser, chaosPassword := s.String("CHAOS_NATS_USER", ""), s.String("CHAOS_NATS_PASSWORD", "")
	switch {
	case chaosUser != "" && chaosPassword == "":
		s.errs = append(s.errs, fmt.Sprintf("CHAOS_NATS_USER=%q: want CHAOS_NATS_PASSWORD set with it", chaosUser))
	case chaosUser == "" && chaosPassword != "":
		s.errs = append(s.errs, "CHAOS_NATS_PASSWORD is set: want CHAOS_NATS_USER with it")
	case chaosUser != "":
		c := d.Watch
		c.NATS = NATSAuth{User: chaosUser, Password: chaosPassword, CA: d.Watch.NATS.CA}
		d.Control = &c
	case d.Watch.NATS.User == "" && d.Watch.NATS.Creds == "":
		c := d.Watch
		d.Control = &c
	}
	if u, err := url.Parse(d.OrderURL); err == nil && d.Port != 0 && u.Port() == strconv.Itoa(d.Port) {
		s.errs = append(s.errs, fmt.Sprintf("DASHBOARD_PORT=%d: want a port other than order's public one (ORDER_URL=%s): the dashboard is for operators, never on the public API's port", d.Port, d.OrderURL))
	}
	return d, s.Err()
}
