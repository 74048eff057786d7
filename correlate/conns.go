package correlate

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// ConnEvent is a TCP connection of a traced process opening or closing.
type ConnEvent struct {
	PID    uint32
	Sock   uint64 // pairs the open and the close
	Time   time.Time
	Open   bool // false: closed
	Server bool // the process accepted it (else it connected)
	Local  netip.AddrPort
	Remote netip.AddrPort
	// BytesReceived and BytesSent (acknowledged) are known at the close.
	BytesReceived, BytesSent uint64
	// Before: an open found in /proc at attach time, for a connection
	// established before the agent (Time is the attach time); its close
	// comes with a Sock of its own and is matched by endpoints.
	Before bool
}

// ProcessID implements Event.
func (e *ConnEvent) ProcessID() uint32 { return e.PID }

// ConnBytes is the byte counts of an open connection, read on demand.
// Local and Remote are set for a connection from before the agent, which
// the table knows by its endpoints; the others are known by Sock.
type ConnBytes struct {
	PID                      uint32
	Sock                     uint64
	Local, Remote            netip.AddrPort
	BytesReceived, BytesSent uint64
}

// Conn is one connection in the table.
type Conn struct {
	PID     uint32    `json:"pid"`
	Service string    `json:"service"`
	Role    string    `json:"role"` // "client" or "server"
	Local   string    `json:"local"`
	Remote  string    `json:"remote"`
	Opened  time.Time `json:"opened"`
	// OpenedBefore: the connection was established before the agent
	// attached; Opened is the attach time.
	OpenedBefore bool       `json:"opened_before_attach,omitempty"`
	Closed       *time.Time `json:"closed,omitempty"`
	// BytesReceived and BytesSent (acknowledged): final once closed, as
	// of the last look while open (0 when none could be had).
	BytesReceived uint64 `json:"bytes_received"`
	BytesSent     uint64 `json:"bytes_sent"`
	// Protocol is what the kernel path recognised on a connection of a
	// program traced from the kernel: "http", "postgresql", "redis",
	// "tls", or "tcp" while nothing was; "" for Go programs (their
	// protocols come from uprobes). ServerName is a TLS client's SNI.
	Protocol   string `json:"protocol,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	// PeerPID and PeerService name the process at the other end when it is
	// traced on this host (0 and "" otherwise).
	PeerPID     uint32 `json:"peer_pid,omitempty"`
	PeerService string `json:"peer_service,omitempty"`

	sock uint64
}

// maxClosed bounds the closed connections the table keeps, newest last.
const maxClosed = 1000

// maxOpen bounds the open connections: a close the kernel side could not
// report (its owner table is an LRU of the same size) would otherwise keep
// an entry forever.
const maxOpen = 65536

// ConnTable holds the open connections of traced processes and the last
// closed ones. Safe for concurrent use.
type ConnTable struct {
	mu   sync.Mutex
	open map[uint64]*Conn
	// adopted holds the open connections from before the agent, by
	// their endpoints.
	adopted map[[2]string]*Conn
	closed  []*Conn
	// live reads the byte counts of the open connections; lastLive is
	// when it last did.
	live     func() ([]ConnBytes, error)
	lastLive time.Time
	// Dropped counts connections not recorded because maxOpen were open.
	Dropped atomic.Uint64
	// LiveFailed counts failed reads of the open connections' byte
	// counts; those counts then keep their last value.
	LiveFailed atomic.Uint64
}

func newConnTable() *ConnTable {
	return &ConnTable{open: map[uint64]*Conn{}, adopted: map[[2]string]*Conn{}}
}

func (t *ConnTable) add(e *ConnEvent, p *model.Process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ends := [2]string{e.Local.String(), e.Remote.String()}
	if e.Open {
		_, known := t.open[e.Sock]
		if !known && len(t.open)+len(t.adopted) >= maxOpen {
			t.Dropped.Add(1)
			return
		}
		role := "client"
		if e.Server {
			role = "server"
		}
		c := &Conn{
			PID: e.PID, Service: p.ServiceName, Role: role,
			Local: ends[0], Remote: ends[1], Opened: e.Time, OpenedBefore: e.Before, sock: e.Sock,
		}
		if p.RuntimeVersion == "" {
			c.Protocol = "tcp" // until the kernel path recognises it
		}
		if prev := t.open[e.Sock]; prev != nil && prev.Protocol != "" {
			// The acceptor corrects a connection reported by port.
			c.Protocol, c.ServerName = prev.Protocol, prev.ServerName
		}
		if e.Before {
			t.adopted[ends] = c
		} else {
			t.open[e.Sock] = c
		}
		return
	}
	c := t.open[e.Sock]
	if c != nil {
		delete(t.open, e.Sock)
	} else if c = t.adopted[ends]; c != nil {
		delete(t.adopted, ends)
	} else {
		return // opened before the agent attached, and not found then
	}
	at := e.Time
	c.Closed = &at
	c.BytesReceived, c.BytesSent = e.BytesReceived, e.BytesSent
	t.closed = append(t.closed, c)
	if len(t.closed) > maxClosed {
		t.closed = slices.Delete(t.closed, 0, len(t.closed)-maxClosed)
	}
}

// recognised records the protocol the kernel path saw on the socket of a
// data record, and a TLS client's server name.
func (t *ConnTable) recognised(d *SockData, serverName string) {
	if !d.Local.IsValid() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.open[d.Sock] // a forked child shares its parent's socket
	if c == nil {
		c = t.adopted[[2]string{d.Local.String(), d.Remote.String()}]
	}
	if c == nil {
		return
	}
	c.Protocol = d.Proto.String()
	if serverName != "" {
		c.ServerName = serverName
	}
}

// SetLive gives the table a way to read the byte counts of its open
// connections, which Snapshot uses at most once a second.
func (t *ConnTable) SetLive(f func() ([]ConnBytes, error)) {
	t.mu.Lock()
	t.live = f
	t.mu.Unlock()
}

// liveInterval is the least time between two reads of the byte counts:
// each walks every TCP socket of the host.
const liveInterval = time.Second

// refresh updates the byte counts of the open connections, if due.
func (t *ConnTable) refresh() {
	t.mu.Lock()
	live := t.live
	due := live != nil && time.Since(t.lastLive) >= liveInterval
	if due {
		t.lastLive = time.Now()
	}
	t.mu.Unlock()
	if !due {
		return
	}
	counts, err := live()
	if err != nil {
		t.LiveFailed.Add(1)
		return // the counts stay as they were
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range counts {
		c := t.open[b.Sock]
		if b.Local.IsValid() {
			c = t.adopted[[2]string{b.Local.String(), b.Remote.String()}]
		}
		if c != nil && c.PID == b.PID {
			c.BytesReceived, c.BytesSent = b.BytesReceived, b.BytesSent
		}
	}
}

// Snapshot returns the open connections and the last closed ones, each with
// its peer process when both ends are traced here.
func (t *ConnTable) Snapshot() []Conn {
	t.refresh()
	t.mu.Lock()
	defer t.mu.Unlock()
	all := make([]*Conn, 0, len(t.open)+len(t.adopted)+len(t.closed))
	for _, c := range t.open {
		all = append(all, c)
	}
	for _, c := range t.adopted {
		all = append(all, c)
	}
	all = append(all, t.closed...)
	// The other end of local→remote is a connection whose local is our
	// remote and whose remote is our local.
	byEnds := make(map[[2]string]*Conn, len(all))
	for _, c := range all {
		byEnds[[2]string{c.Local, c.Remote}] = c
	}
	out := make([]Conn, 0, len(all))
	for _, c := range all {
		cc := *c
		if peer := byEnds[[2]string{c.Remote, c.Local}]; peer != nil {
			cc.PeerPID, cc.PeerService = peer.PID, peer.Service
		}
		out = append(out, cc)
	}
	slices.SortFunc(out, func(a, b Conn) int { return a.Opened.Compare(b.Opened) })
	return out
}
