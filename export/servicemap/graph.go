// Package servicemap builds the live map of who calls whom from finished
// spans: services (by service.name), databases and external endpoints as
// nodes, calls as edges with request and error counts, latency percentiles
// and bytes, over a sliding window and in total. It is an export.Sink, so
// it sees exactly the spans the other exporters see, after redaction.
package servicemap

import (
	"cmp"
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/semconv"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate"
)

// Node kinds.
const (
	KindService  = "service"
	KindDatabase = "database"
	KindExternal = "external"
)

// Node is one box of the map.
type Node struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Protocol is how it is called: "http" or the database system.
	Protocol string `json:"protocol,omitempty"`
	// GenAI summarises the model calls the node answered: a model
	// endpoint's (KindModel), or a traced model server's.
	GenAI *ModelStats `json:"gen_ai,omitempty"`
	// NameSource says where a traced service's name came from: "config",
	// "env" (its OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES), "flag"
	// (--service-name) or "executable".
	NameSource string `json:"name_source,omitempty"`
}

// Stats summarise the calls of an edge over a period.
type Stats struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P50Ms    float64 `json:"p50_ms"`
	P95Ms    float64 `json:"p95_ms"`
	P99Ms    float64 `json:"p99_ms"`
	Bytes    int64   `json:"bytes"` // request and response bodies, where known
	// Connections counts, for an edge known only from TCP connections
	// (TLS or a protocol not recognised), the connections open now or
	// recently closed; Bytes is then theirs, both ways.
	Connections int64 `json:"connections,omitempty"`
}

// Edge is caller → callee.
type Edge struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Total  Stats  `json:"total"`
	Window Stats  `json:"window"`
	// RecentTraces are the trace IDs of the last calls, newest first.
	RecentTraces []string `json:"recent_traces"`
}

// Map is a snapshot of the graph.
type Map struct {
	GeneratedAt   time.Time `json:"generated_at"`
	WindowSeconds float64   `json:"window_seconds"`
	Nodes         []Node    `json:"nodes"`
	Edges         []Edge    `json:"edges"`
}

// call is one observed call on an edge.
type call struct {
	at      time.Time
	latency time.Duration
	failed  bool
	bytes   int64
	traceID trace.TraceID
}

// maxSamples bounds the samples an edge keeps for its percentiles: the
// newest ones win, so that the map's memory does not grow with traffic.
const maxSamples = 4096

type edge struct {
	total Stats
	// samples are the newest calls (at most maxSamples, a ring from
	// next on once full), for the window and for the total's
	// percentiles.
	samples []call
	next    int
	// recent are the trace IDs of the last calls, a ring whose newest
	// is at recent[(nextRecent+len-1)%len]; formatted when read.
	recent     [maxRecent]trace.TraceID
	nRecent    int
	nextRecent int
}

// maxRecent is how many trace IDs an edge lists.
const maxRecent = 10

// pending is a client span waiting for the server span it caused: what
// the map needs of it, not the span, which its producer reuses once every
// sink has seen it.
type pending struct {
	from     Node
	callee   nodeKey // the external endpoint it called, if no server shows
	call     call
	deadline time.Time
	// gen is the model call it made, when it made one (hasGen).
	gen    genAICall
	hasGen bool
}

// match is how long a client span waits for its server span (same agent:
// both arrive within a batch or two) before its callee counts as external.
const match = 5 * time.Second

// Graph is the service map. Export feeds it; Snapshot reads it; both may
// run concurrently.
type Graph struct {
	mu      sync.Mutex
	window  time.Duration
	now     func() time.Time
	nodes   map[string]Node
	edges   map[[2]string]*edge
	clients map[trace.SpanID]*pending   // HTTP client spans awaiting their server span
	free    []*pending                  // entries of clients to reuse
	servers map[trace.SpanID]serverSide // server spans by parent, awaiting their client span
	// OnCall, when set, is told of every call added to an edge (metrics).
	OnCall func(Call)
	// Connections, when set, lists the traced processes' TCP connections:
	// those a program traced from the kernel made to endpoints no span
	// names (TLS, protocols not recognised) become edges to external
	// endpoints, counted in connections.
	Connections func() []correlate.Conn
	// peers are the endpoints client spans reached (addresses unmapped
	// from IPv6), which connections then need not show again.
	peers map[netip.AddrPort]bool
	// known caches the nodes spans name, so that finding a span's nodes
	// allocates nothing once they have been seen.
	known map[nodeKey]Node
	// models holds the model calls each node answered, by node ID.
	models map[string]*modelNode
}

// nodeKey is what a node is made of: a service's name; a database's
// system, server address and port, and namespace; an external endpoint's
// address and port.
type nodeKey struct {
	kind          string
	name, address string
	port          int
	namespace     string
}

// maxKnown bounds the node cache; past it, it starts again empty.
const maxKnown = 4096

// Call is one call added to an edge, for metrics.
type Call struct {
	Client, Server Node
	// ClientLatency is the caller's view; ServerLatency the callee's, 0
	// when the callee is not traced (databases, external endpoints).
	ClientLatency, ServerLatency time.Duration
	Failed                       bool
	TraceID                      trace.TraceID
}

// serverSide is a server span waiting for its client span.
type serverSide struct {
	node     string
	latency  time.Duration
	deadline time.Time
}

// New returns an empty graph whose window statistics cover window.
func New(window time.Duration) *Graph {
	return &Graph{
		window:  window,
		now:     time.Now,
		nodes:   map[string]Node{},
		edges:   map[[2]string]*edge{},
		clients: map[trace.SpanID]*pending{},
		servers: map[trace.SpanID]serverSide{},
		peers:   map[netip.AddrPort]bool{},
		known:   map[nodeKey]Node{},
		models:  map[string]*modelNode{},
	}
}

// Name implements export.Sink.
func (g *Graph) Name() string { return "servicemap" }

// Shutdown implements export.Sink.
func (g *Graph) Shutdown(context.Context) error { return nil }

// Export implements export.Sink.
func (g *Graph) Export(_ context.Context, spans []*model.Span) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range spans {
		g.add(s)
	}
	g.expire(g.now())
	return nil
}

// node returns the node k names, made and added to the map once.
func (g *Graph) node(k nodeKey) Node {
	if n, ok := g.known[k]; ok {
		return n
	}
	var n Node
	switch k.kind {
	case KindService:
		n = Node{ID: "service:" + k.name, Name: k.name, Kind: KindService, Protocol: "http"}
	case KindDatabase:
		name := k.name
		if where := hostPort(k.address, k.port); where != "" {
			name += " " + where
		} else if k.namespace != "" {
			name += " " + k.namespace
		}
		n = Node{ID: "db:" + name, Name: name, Kind: KindDatabase, Protocol: k.name}
	case KindModel:
		where := hostPort(k.address, k.port)
		if where == "" {
			where = "unknown"
		}
		n = Node{ID: "model:" + where, Name: where, Kind: KindModel, Protocol: "http"}
	default:
		where := hostPort(k.address, k.port)
		if where == "" {
			where = "unknown"
		}
		n = Node{ID: "external:" + where, Name: where, Kind: KindExternal, Protocol: "http"}
	}
	if len(g.known) >= maxKnown {
		clear(g.known)
	}
	g.known[k] = n
	g.nodes[n.ID] = n
	return n
}

func (g *Graph) serviceNode(s *model.Span) Node {
	name := "unknown"
	if s.Process != nil {
		name = s.Process.ServiceName
	}
	k := nodeKey{kind: KindService, name: name}
	n := g.node(k)
	if n.NameSource == "" && s.Process != nil && s.Process.ServiceSource != "" {
		n.NameSource = s.Process.ServiceSource
		g.known[k] = n
		g.nodes[n.ID] = n
	}
	return n
}

// calleeKey names what a client span called when that is not a traced
// service: its database, or the external endpoint its URL names.
func calleeKey(s *model.Span) nodeKey {
	switch {
	case s.DB != nil:
		return nodeKey{kind: KindDatabase, name: s.DB.System, address: s.DB.ServerAddress, port: s.DB.ServerPort, namespace: s.DB.Namespace}
	case s.HTTP != nil:
		host, port := semconv.HTTPServer(s.HTTP, s.Kind)
		kind := KindExternal
		if s.GenAI != nil {
			kind = KindModel
		}
		return nodeKey{kind: kind, address: host, port: port}
	}
	return nodeKey{kind: KindExternal}
}

func hostPort(host string, port int) string {
	if port != 0 {
		return host + ":" + strconv.Itoa(port)
	}
	return host
}

// peer is the other end of a client span's connection, when known.
func peer(s *model.Span) netip.AddrPort {
	var p netip.AddrPort
	switch {
	case s.HTTP != nil:
		p = s.HTTP.Peer
	case s.DB != nil:
		p = s.DB.Peer
	}
	if !p.IsValid() {
		return p
	}
	return netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
}

func (g *Graph) add(s *model.Span) {
	switch s.Kind {
	case trace.SpanKindClient:
		from := g.serviceNode(s)
		if p := peer(s); p.IsValid() && len(g.peers) < maxPeers {
			g.peers[p] = true
		}
		if s.DB != nil {
			g.record(from, g.node(calleeKey(s)), callOf(s), 0)
			return
		}
		if srv, ok := g.servers[s.SpanID]; ok {
			delete(g.servers, s.SpanID)
			g.record(from, g.nodes[srv.node], callOf(s), srv.latency)
			return
		}
		p := g.newPending()
		*p = pending{from: from, callee: calleeKey(s), call: callOf(s), deadline: g.now().Add(match)}
		if isGenAIClient(s) {
			p.gen, p.hasGen = genAICallOf(s), true
		}
		g.clients[s.SpanID] = p
	case trace.SpanKindServer:
		to := g.serviceNode(s)
		if s.GenAI != nil {
			// A traced model server: its own measure of the calls.
			g.addModelCall(to.ID, genAICallOf(s))
		}
		if !s.ParentSpanID.IsValid() {
			return
		}
		if p, ok := g.clients[s.ParentSpanID]; ok {
			delete(g.clients, s.ParentSpanID)
			g.record(p.from, to, p.call, s.End.Sub(s.Start))
			g.free = append(g.free, p)
			return
		}
		g.servers[s.ParentSpanID] = serverSide{node: to.ID, latency: s.End.Sub(s.Start), deadline: g.now().Add(match)}
	}
}

// expire turns client spans whose server never showed into calls to
// external endpoints, and forgets server spans whose caller is not traced.
func (g *Graph) expire(now time.Time) {
	for id, p := range g.clients {
		if now.Before(p.deadline) {
			continue
		}
		delete(g.clients, id)
		to := g.node(p.callee)
		g.record(p.from, to, p.call, 0)
		if p.hasGen && to.Kind == KindModel {
			g.addModelCall(to.ID, p.gen)
		}
		g.free = append(g.free, p)
	}
	for id, srv := range g.servers {
		if now.After(srv.deadline) {
			delete(g.servers, id)
		}
	}
}

// Flush settles every pending client span now, as Snapshot does after its
// wait; for tests and for the final snapshot.
func (g *Graph) Flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire(g.now().Add(match + time.Second))
}

// newPending takes a pending entry from the free list: client spans come
// and go at the rate of requests, and an entry is too large for the map to
// hold in place.
func (g *Graph) newPending() *pending {
	if n := len(g.free); n > 0 {
		p := g.free[n-1]
		g.free = g.free[:n-1]
		return p
	}
	return &pending{}
}

// callOf is what an edge keeps of one call.
func callOf(s *model.Span) call {
	c := call{
		at:      s.End,
		latency: s.End.Sub(s.Start),
		failed:  s.Status == codes.Error,
		traceID: s.TraceID,
	}
	if h := s.HTTP; h != nil {
		if h.RequestBodySize > 0 {
			c.bytes += h.RequestBodySize
		}
		if h.ResponseBodyKnown {
			c.bytes += h.ResponseBodySize
		}
	}
	return c
}

func (g *Graph) record(from, to Node, c call, serverLatency time.Duration) {
	k := [2]string{from.ID, to.ID}
	e := g.edges[k]
	if e == nil {
		e = &edge{}
		g.edges[k] = e
	}
	e.total.Requests++
	if c.failed {
		e.total.Errors++
	}
	e.total.Bytes += c.bytes
	if len(e.samples) < maxSamples {
		e.samples = append(e.samples, c)
	} else {
		e.samples[e.next] = c
		e.next = (e.next + 1) % maxSamples
	}
	e.recent[e.nextRecent] = c.traceID
	e.nextRecent = (e.nextRecent + 1) % maxRecent
	e.nRecent = min(e.nRecent+1, maxRecent)
	if g.OnCall != nil {
		g.OnCall(Call{Client: from, Server: to, ClientLatency: c.latency, ServerLatency: serverLatency, Failed: c.failed, TraceID: c.traceID})
	}
}

func percentiles(lat []time.Duration) (p50, p95, p99 float64) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		i := int(q * float64(len(lat)-1))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.95), at(0.99)
}

// maxPeers bounds the endpoints remembered from client spans.
const maxPeers = 65536

// Snapshot returns the map as it is now.
func (g *Graph) Snapshot() Map {
	var conns []correlate.Conn
	if g.Connections != nil {
		conns = g.Connections() // before the lock: it may walk the host's sockets
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.expire(now)
	m := Map{GeneratedAt: now, WindowSeconds: g.window.Seconds(), Nodes: []Node{}, Edges: []Edge{}}
	for _, n := range g.nodes {
		if mn := g.models[n.ID]; mn != nil {
			n.GenAI = mn.stats(now, g.window)
		}
		m.Nodes = append(m.Nodes, n)
	}
	for k, e := range g.edges {
		out := Edge{Source: k[0], Target: k[1], Total: e.total, RecentTraces: make([]string, 0, e.nRecent)}
		for i := 1; i <= e.nRecent; i++ {
			out.RecentTraces = append(out.RecentTraces, e.recent[(e.nextRecent-i+maxRecent)%maxRecent].String())
		}
		all := make([]time.Duration, 0, len(e.samples))
		var win []time.Duration
		for _, c := range e.samples {
			all = append(all, c.latency)
			if now.Sub(c.at) <= g.window {
				win = append(win, c.latency)
				out.Window.Requests++
				out.Window.Bytes += c.bytes
				if c.failed {
					out.Window.Errors++
				}
			}
		}
		out.Total.P50Ms, out.Total.P95Ms, out.Total.P99Ms = percentiles(all)
		out.Window.P50Ms, out.Window.P95Ms, out.Window.P99Ms = percentiles(win)
		m.Edges = append(m.Edges, out)
	}
	g.addConnections(&m, conns, now)
	slices.SortFunc(m.Nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(m.Edges, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Target, b.Target))
	})
	return m
}

// addConnections adds to m the edges that only connections show: client
// connections of programs traced from the kernel, whose protocol was not
// recognised (tcp) or is TLS, to an endpoint that is not traced on this
// host and that no client span reached. A TLS endpoint is named by the
// server name its client asked for.
func (g *Graph) addConnections(m *Map, conns []correlate.Conn, now time.Time) {
	type key struct{ from, to string }
	edges := map[key]*Edge{}
	var order []key
	added := map[string]bool{}
	addNode := func(n Node) {
		if _, known := g.nodes[n.ID]; !known && !added[n.ID] {
			added[n.ID] = true
			m.Nodes = append(m.Nodes, n)
		}
	}
	for _, c := range conns {
		if c.Role != "client" || c.PeerPID != 0 || (c.Protocol != "tcp" && c.Protocol != "tls") {
			continue
		}
		_, port, err := net.SplitHostPort(c.Remote)
		if err != nil {
			continue
		}
		if ap, err := netip.ParseAddrPort(c.Remote); err == nil && g.peers[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] {
			continue
		}
		name := c.Remote
		if c.ServerName != "" {
			name = net.JoinHostPort(c.ServerName, port)
		}
		from := Node{ID: "service:" + c.Service, Name: c.Service, Kind: KindService, Protocol: "http"}
		to := Node{ID: "external:" + name, Name: name, Kind: KindExternal, Protocol: c.Protocol}
		k := key{from.ID, to.ID}
		e := edges[k]
		if e == nil {
			addNode(from)
			addNode(to)
			e = &Edge{Source: from.ID, Target: to.ID, RecentTraces: []string{}}
			edges[k] = e
			order = append(order, k)
		}
		bytes := int64(c.BytesReceived + c.BytesSent)
		e.Total.Connections++
		e.Total.Bytes += bytes
		if c.Closed == nil || now.Sub(*c.Closed) <= g.window {
			e.Window.Connections++
			e.Window.Bytes += bytes
		}
	}
	for _, k := range order {
		m.Edges = append(m.Edges, *edges[k])
	}
}
