package allinone

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/breakerchain/breakerchain/internal/config"
)

// listener is a port the all-in-one will listen on, and the variable that sets it.
type listener struct {
	host     string
	port     int
	variable string
	entry    string // the service whose public API it serves: the chain's entry; "" for the others
}

// listeners is every port the all-in-one will take, as configured, in the order it takes them.
type listeners []listener

// plan lists the ports of what Start will run: the embedded servers (unless NATS_URL or
// MONGO_URL replaces one), and withServices each service and the dashboard. A port 0 is a free
// one, picked at start: not listed.
func plan(sv servers, cfgs []config.Settings, withServices bool) listeners {
	var ls listeners
	add := func(h string, port int, variable, entry string) {
		if port != 0 {
			ls = append(ls, listener{h, port, variable, entry})
		}
	}
	if sv.natsURL == "" {
		add(host, sv.natsPort, "NATS_PORT", "")
	}
	if sv.mongoURL == "" {
		add(host, sv.mongoPort, "MONGO_PORT", "")
	}
	if !withServices {
		return ls
	}
	for i, c := range cfgs {
		entry := ""
		if i == 0 { // the chain's first service is the one clients call
			entry = c.Name
		}
		add(c.Host, c.Port, strings.ToUpper(c.Name)+"_PORT", entry)
	}
	if sv.withDashboard() {
		add(host, sv.dashboardPort, "DASHBOARD_PORT", "")
	}
	return ls
}

// clash refuses one port given to two listeners, naming both variables. The dashboard on the
// entry's port gets its own reason: it is for operators, never on the public API's port.
func (ls listeners) clash() error {
	var problems []string
	for i, a := range ls {
		for _, b := range ls[i+1:] {
			switch {
			case a.port != b.port:
			case b.variable == "DASHBOARD_PORT" && a.entry != "":
				problems = append(problems, fmt.Sprintf("DASHBOARD_PORT=%d: want a port other than %s's public one: the dashboard is for operators, never on the public API's port",
					b.port, a.entry))
			default:
				problems = append(problems, fmt.Sprintf("%s and %s are both %d: want a port each", a.variable, b.variable, a.port))
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &config.Error{Problems: problems}
}

// free tries each port, so that a busy one stops the all-in-one before anything starts, with
// every busy port named in one message with its variable (not one per try, in a server's words).
func (ls listeners) free() error {
	var busy []string
	servers := false
	for _, l := range ls {
		ln, err := net.Listen("tcp", net.JoinHostPort(l.host, strconv.Itoa(l.port)))
		switch {
		case err == nil, errors.Is(err, syscall.EADDRINUSE):
		case errors.Is(err, syscall.EACCES):
			return fmt.Errorf("%s=%d: want a port this user may listen on (%v)", l.variable, l.port, err)
		default:
			msg := fmt.Sprintf("%s=%d: cannot listen on %s (%v)", l.variable, l.port, net.JoinHostPort(l.host, strconv.Itoa(l.port)), err)
			if dns := new(net.DNSError); errors.Is(err, syscall.EADDRNOTAVAIL) || errors.As(err, &dns) {
				msg += fmt.Sprintf(": want HOST=%q to be an address of this machine", l.host)
			}
			return errors.New(msg)
		}
		if err != nil {
			busy = append(busy, fmt.Sprintf("%d (%s)", l.port, l.variable))
			servers = servers || l.variable == "NATS_PORT" || l.variable == "MONGO_PORT"
			continue
		}
		_ = ln.Close()
	}
	if len(busy) == 0 {
		return nil
	}
	hint := ""
	if servers {
		hint = ", or NATS_URL and MONGO_URL to use servers already running"
	}
	return fmt.Errorf("ports in use: %s — set them to free ports (0 picks one)%s", strings.Join(busy, ", "), hint)
}
