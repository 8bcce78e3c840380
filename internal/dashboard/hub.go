package dashboard

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/breakerchain/breakerchain/internal/chaos"
	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/messaging"
)

// Poll is how often the hub asks every service for its circuits (micro discovery) and reads
// order's queue; breaker events and chaos changes are passed on as they arrive.
const Poll = time.Second

// historyLength is how many polls of latency a circuit keeps: a minute's.
const historyLength = int(time.Minute / Poll)

// timelineLength is how many breaker events a new page gets.
const timelineLength = 100

// Message is one message of the event stream, as JSON: Type says which fields are set.
type Message struct {
	Type string `json:"type"` // "state", "breaker" or "chaos"

	// state: everything running, polled every second.
	*State `json:",omitempty"`
	// breaker: an event of one circuit, as published on breaker.<service>.<target>.
	Breaker *messaging.BreakerEvent `json:"breaker,omitempty"`
	// chaos: a change of one service's faults, as published on chaos.<service>.changed.
	Chaos *chaos.Changed `json:"chaos,omitempty"`
}

// State is the whole system as the dashboard draws it.
type State struct {
	Time     time.Time     `json:"time"`
	Services []ServiceView `json:"services"`
	Circuits []CircuitView `json:"circuits"`
	Pending  *PendingView  `json:"pending,omitempty"` // nil when order's queue cannot be read
	Controls bool          `json:"controls"`          // the page may change faults and send orders
}

// ServiceView is one service: how many instances answer discovery, and their faults (the first
// instance's: a change reaches them all).
type ServiceView struct {
	Name      string        `json:"name"`
	Instances int           `json:"instances"`
	Chaos     chaos.State   `json:"chaos"`
	Limiters  []LimiterView `json:"limiters,omitempty"`
}

// LimiterView is one of a service's limits on the work it takes (order's admission), summed
// over its instances.
type LimiterView struct {
	Name      string `json:"name"`
	Limit     int    `json:"limit"`
	Max       int    `json:"max"`
	Inflight  int    `json:"inflight"`
	Queued    int    `json:"queued"`
	Redriving int    `json:"redriving"`
	// RefusedPerSecond is the work refused since the last poll, by reason, per second.
	RefusedPerSecond map[string]float64 `json:"refused_per_second"`
}

// CircuitView is one caller → target circuit, over every instance of the caller.
type CircuitView struct {
	Caller string `json:"caller"`
	Target string `json:"target"`
	// State is the worst of the instances' (open, then half-open, then closed); States counts
	// the instances in each.
	State          messaging.State         `json:"state"`
	States         map[messaging.State]int `json:"states"`
	FailureRate    float64                 `json:"failure_rate"` // the worst instance's, 0–1, over the window
	Threshold      uint                    `json:"threshold"`    // percent
	MinCalls       uint                    `json:"min_calls"`
	Executions     uint                    `json:"executions"` // calls in the window (the worst instance's)
	Window         string                  `json:"window"`
	Delay          string                  `json:"delay"`
	RemainingDelay string                  `json:"remaining_delay,omitempty"`
	// PerSecond is the calls of the last poll by kind, per second, over every instance.
	PerSecond map[messaging.CallKind]float64 `json:"per_second"`
	// P50 and P99 are the last minute's latency in milliseconds (the slowest instance's);
	// History is their values at each poll of the last minute, oldest first.
	P50     float64         `json:"p50_ms"`
	P99     float64         `json:"p99_ms"`
	History []LatencyMoment `json:"history"`
}

// LatencyMoment is a circuit's p50 and p99 at one poll.
type LatencyMoment struct {
	Time time.Time `json:"t"`
	P50  float64   `json:"p50"`
	P99  float64   `json:"p99"`
}

// PendingView is order's queue: orders that may be saved and are not final yet.
type PendingView struct {
	Orders        uint64  `json:"orders"`
	OldestSeconds float64 `json:"oldest_seconds"`
}

// hub watches the bus and hands every message to the clients.
type hub struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	controls bool
	log      *slog.Logger

	mu       sync.Mutex
	closed   bool
	clients  map[chan []byte]struct{}
	streams  sync.WaitGroup // the clients subscribed: Add under mu while open, Done on unsubscribe
	state    *State
	timeline [][]byte                       // the last breaker events, as sent
	refused  map[string]map[string]uint64   // each instance's refusals by reason, per limiter, at the last poll
	calls    map[string]messaging.CallStats // each instance's calls, per circuit, at the last poll
	polled   time.Time                      // when the last poll was
	history  map[string][]LatencyMoment

	subs []*nats.Subscription
	stop chan struct{}
	done chan struct{}
}

// startHub subscribes and starts polling.
func startHub(nc *nats.Conn, controls bool, log *slog.Logger) (*hub, error) {
	h := &hub{nc: nc, controls: controls, log: log, clients: map[chan []byte]struct{}{},
		refused: map[string]map[string]uint64{}, calls: map[string]messaging.CallStats{}, history: map[string][]LatencyMoment{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if js, err := jetstream.New(nc); err == nil {
		h.js = js
	}
	for subject, handle := range map[string]nats.MsgHandler{
		messaging.BreakerSubject("*", "*"): h.onBreaker,
		messaging.ChaosChangedSubject("*"): h.onChaos,
	} {
		sub, err := nc.Subscribe(subject, handle)
		if err != nil {
			h.close()
			return nil, err
		}
		h.subs = append(h.subs, sub)
	}
	go h.run()
	return h, nil
}

func (h *hub) onBreaker(m *nats.Msg) {
	var ev messaging.BreakerEvent
	// Only an event of the circuit its subject names (breaker.<service>.<target>): anything
	// else there is not one — an answer people had published there, say, naming it as a reply.
	if json.Unmarshal(m.Data, &ev) != nil || m.Subject != messaging.BreakerSubject(ev.Service, ev.Target) {
		return
	}
	b := encode(Message{Type: "breaker", Breaker: &ev})
	h.mu.Lock()
	h.timeline = append(h.timeline, b)
	if len(h.timeline) > timelineLength {
		h.timeline = slices.Delete(h.timeline, 0, len(h.timeline)-timelineLength)
	}
	h.mu.Unlock()
	h.broadcast(b)
}

func (h *hub) onChaos(m *nats.Msg) {
	var ch chaos.Changed
	if json.Unmarshal(m.Data, &ch) != nil || m.Subject != messaging.ChaosChangedSubject(ch.Service) {
		return // not a change its subject's service announced (see onBreaker)
	}
	h.broadcast(encode(Message{Type: "chaos", Chaos: &ch}))
}

func (h *hub) run() {
	defer close(h.done)
	t := time.NewTicker(Poll)
	defer t.Stop()
	for {
		h.poll()
		select {
		case <-t.C:
		case <-h.stop:
			return
		}
	}
}

// poll asks every instance of every service for its circuits and reads order's queue.
func (h *hub) poll() {
	ctx, cancel := context.WithTimeout(context.Background(), Poll/2)
	defer cancel()
	st := &State{Time: time.Now().UTC(), Controls: h.controls, Services: []ServiceView{}, Circuits: []CircuitView{}}
	if h.js != nil {
		if n, oldest, err := observe.Pending(ctx, h.js); err == nil {
			st.Pending = &PendingView{Orders: n, OldestSeconds: oldest.Seconds()}
		}
	}
	h.build(st, h.discover(ctx))
	b := encode(Message{Type: "state", State: st})
	h.mu.Lock()
	h.state = st
	h.mu.Unlock()
	h.broadcast(b)
}

// instance is what one instance of a service reported.
type instance struct {
	id string // micro's instance id
	observe.Breakers
}

// discover collects the circuits every instance reports in `nats micro stats`. A name that is
// not a service's name (a reply from something that is not one of ours) is left out: names end
// up in the page.
func (h *hub) discover(ctx context.Context) []instance {
	inbox := nats.NewInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := h.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return nil
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := h.nc.PublishRequest("$SRV.STATS", inbox, nil); err != nil {
		return nil
	}
	var out []instance
	// Every instance answers at once on a healthy bus: the poll ends once none has answered for
	// a short while (or at ctx's end); one that answers later counts at the next poll.
	const quietFor = 200 * time.Millisecond
	quiet := time.NewTimer(quietFor)
	defer quiet.Stop()
	for {
		select {
		case m := <-replies:
			quiet.Reset(quietFor)
			var stats micro.Stats
			if json.Unmarshal(m.Data, &stats) != nil || !serviceName.MatchString(stats.Name) {
				continue
			}
			for _, e := range stats.Endpoints {
				if e.Subject != messaging.CircuitsSubject(stats.Name) {
					continue
				}
				var b observe.Breakers
				if err := json.Unmarshal(e.Data, &b); err != nil {
					// An instance of another version (a state this one does not know) is left
					// out of the page, not shown wrong; say so once a poll, for an operator.
					h.log.Debug("an instance's circuits are not readable: left out", "service", stats.Name, "instance", stats.ID, "err", err)
				} else {
					b.Service = stats.Name
					b.Circuits = slices.DeleteFunc(b.Circuits, func(c observe.Circuit) bool { return !serviceName.MatchString(c.Target) })
					out = append(out, instance{id: stats.ID, Breakers: b})
				}
			}
		case <-quiet.C:
			return out
		case <-ctx.Done():
			return out
		}
	}
}

// severity orders the states from best to worst, for a circuit's worst instance.
var severity = map[messaging.State]int{messaging.StateClosed: 0, messaging.StateHalfOpen: 1, messaging.StateOpen: 2}

// build sums the instances of each service and circuit into st. Calls per second are each
// instance's calls since the last poll, for the instances seen at both: one that missed a poll,
// or restarted, adds nothing until the next.
func (h *hub) build(st *State, found []instance) {
	services := map[string]*ServiceView{}
	circuits := map[string]*CircuitView{}
	worst := map[string]int{}
	refused := map[string]map[string]uint64{}
	calls := map[string]messaging.CallStats{}
	h.mu.Lock()
	defer h.mu.Unlock()
	dt := st.Time.Sub(h.polled).Seconds()
	for _, b := range found {
		sv := services[b.Service]
		if sv == nil {
			sv = &ServiceView{Name: b.Service, Chaos: b.Chaos}
			services[b.Service] = sv
		}
		sv.Instances++
		for _, l := range b.Limiters {
			i := slices.IndexFunc(sv.Limiters, func(v LimiterView) bool { return v.Name == l.Name })
			if i < 0 {
				sv.Limiters = append(sv.Limiters, LimiterView{Name: l.Name, RefusedPerSecond: map[string]float64{}})
				i = len(sv.Limiters) - 1
			}
			lv := &sv.Limiters[i]
			lv.Limit, lv.Max, lv.Inflight, lv.Queued, lv.Redriving = lv.Limit+l.Limit, lv.Max+l.Max, lv.Inflight+l.Inflight, lv.Queued+l.Queued, lv.Redriving+l.Redriving
			id := b.id + "/" + b.Service + "/" + l.Name
			refused[id] = l.Refused
			prev := h.refused[id]
			for reason, n := range l.Refused {
				if _, seen := lv.RefusedPerSecond[reason]; !seen {
					lv.RefusedPerSecond[reason] = 0 // every reason shown, at 0 when nothing was refused for it
				}
				if prev != nil && dt > 0 && n >= prev[reason] {
					lv.RefusedPerSecond[reason] += float64(n-prev[reason]) / dt
				}
			}
		}
		for _, c := range b.Circuits {
			key := b.Service + "→" + c.Target
			cv := circuits[key]
			if cv == nil {
				cv = &CircuitView{Caller: b.Service, Target: c.Target, States: map[messaging.State]int{}, PerSecond: map[messaging.CallKind]float64{},
					Threshold: c.Threshold, MinCalls: c.MinCalls, Window: c.Window, Delay: c.Delay, State: c.State}
				circuits[key], worst[key] = cv, -1
				for _, kind := range messaging.CallKinds {
					cv.PerSecond[kind] = 0
				}
			}
			cv.States[c.State]++
			if s := severity[c.State]; s > worst[key] || (s == worst[key] && c.FailureRate > cv.FailureRate) {
				worst[key] = s
				cv.State, cv.FailureRate, cv.Executions, cv.RemainingDelay = c.State, c.FailureRate, c.Executions, c.RemainingDelay
			}
			cv.P50, cv.P99 = max(cv.P50, c.Calls.P50), max(cv.P99, c.Calls.P99)
			id := b.id + "/" + key
			calls[id] = c.Calls
			if prev, seen := h.calls[id]; seen && dt > 0 {
				for _, kind := range messaging.CallKinds {
					if n, was := c.Calls.Count(kind), prev.Count(kind); n >= was {
						cv.PerSecond[kind] += float64(n-was) / dt
					}
				}
			}
		}
	}
	h.refused, h.calls, h.polled = refused, calls, st.Time
	for key, cv := range circuits {
		hist := append(h.history[key], LatencyMoment{Time: st.Time, P50: cv.P50, P99: cv.P99})
		if len(hist) > historyLength {
			hist = hist[len(hist)-historyLength:]
		}
		h.history[key] = hist
		cv.History = slices.Clone(hist)
		st.Circuits = append(st.Circuits, *cv)
	}
	for _, sv := range services {
		st.Services = append(st.Services, *sv)
	}
	sort.Slice(st.Services, func(i, j int) bool { return st.Services[i].Name < st.Services[j].Name })
	sort.Slice(st.Circuits, func(i, j int) bool {
		a, b := st.Circuits[i], st.Circuits[j]
		return a.Caller+"→"+a.Target < b.Caller+"→"+b.Target
	})
}

// subscribe registers a client: it gets the last state and the timeline at once, then every
// message. A client too slow to keep up is dropped (its channel closed), never waited for. It
// reports false once the hub is closed; otherwise the client must unsubscribe.
func (h *hub) subscribe() (chan []byte, bool) {
	c := make(chan []byte, 256)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false
	}
	h.streams.Add(1)
	if h.state != nil {
		c <- encode(Message{Type: "state", State: h.state})
	}
	for _, b := range h.timeline {
		select {
		case c <- b:
		default:
		}
	}
	h.clients[c] = struct{}{}
	return c, true
}

func (h *hub) unsubscribe(c chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c)
	}
	h.streams.Done()
}

func (h *hub) broadcast(b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		select {
		case c <- b:
		default:
			delete(h.clients, c)
			close(c)
		}
	}
}

// close stops watching and ends every client's stream.
func (h *hub) close() {
	for _, s := range h.subs {
		_ = s.Unsubscribe()
	}
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	h.mu.Lock()
	h.closed = true
	for c := range h.clients {
		delete(h.clients, c)
		close(c)
	}
	h.mu.Unlock()
}

func encode(m Message) []byte {
	b, _ := json.Marshal(m)
	return b
}
