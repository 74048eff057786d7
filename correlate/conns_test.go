package correlate

import (
	"net/netip"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// TestConnTable follows a connection seen opening, one from before the
// agent (matched at its close by endpoints), the byte counts read while
// they are open, and the peer of a connection whose other end is traced.
func TestConnTable(t *testing.T) {
	tbl := newConnTable()
	p := model.NewProcess(10, "/bin/app", "app", "")
	q := model.NewProcess(20, "/bin/db", "db", "")
	at := time.Unix(1000, 0)
	a, b := netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:5432")
	c, d := netip.MustParseAddrPort("10.0.0.1:41000"), netip.MustParseAddrPort("10.0.0.2:6379")
	tbl.add(&ConnEvent{PID: 10, Sock: 1, Time: at, Open: true, Local: a, Remote: b}, p)
	tbl.add(&ConnEvent{PID: 20, Sock: 2, Time: at, Open: true, Server: true, Local: b, Remote: a}, q)
	tbl.add(&ConnEvent{PID: 10, Time: at, Open: true, Before: true, Local: c, Remote: d}, p)

	reads := 0
	tbl.SetLive(func() ([]ConnBytes, error) {
		reads++
		return []ConnBytes{
			{PID: 10, Sock: 1, BytesReceived: 5, BytesSent: 7},
			{PID: 99, Sock: 2, BytesReceived: 1, BytesSent: 1}, // not its owner: ignored
			{PID: 10, Sock: 3, Local: c, Remote: d, BytesReceived: 11, BytesSent: 13},
		}, nil
	})
	got := map[string]Conn{}
	for _, c := range tbl.Snapshot() {
		got[c.Local+">"+c.Remote] = c
	}
	tbl.Snapshot() // within liveInterval: no second read
	if reads != 1 {
		t.Errorf("%d reads of the byte counts, want 1", reads)
	}
	if x := got[a.String()+">"+b.String()]; x.BytesReceived != 5 || x.BytesSent != 7 || x.PeerPID != 20 || x.Role != "client" {
		t.Errorf("client connection: %+v", x)
	}
	if x := got[b.String()+">"+a.String()]; x.BytesReceived != 0 || x.PeerService != "app" || x.Role != "server" {
		t.Errorf("server connection: %+v", x)
	}
	if x := got[c.String()+">"+d.String()]; !x.OpenedBefore || x.BytesReceived != 11 || x.Closed != nil {
		t.Errorf("connection from before the agent: %+v", x)
	}

	// Its close comes with a socket the table never saw.
	tbl.add(&ConnEvent{PID: 10, Sock: 77, Time: at.Add(time.Second), Local: c, Remote: d, BytesReceived: 20, BytesSent: 30}, p)
	tbl.add(&ConnEvent{PID: 10, Sock: 1, Time: at.Add(time.Second), BytesReceived: 6, BytesSent: 8}, p)
	if len(tbl.adopted) != 0 || len(tbl.open) != 1 || len(tbl.closed) != 2 {
		t.Fatalf("after the closes: %d adopted, %d open, %d closed", len(tbl.adopted), len(tbl.open), len(tbl.closed))
	}
	for _, x := range tbl.closed {
		if x.Closed == nil || x.BytesReceived == 0 {
			t.Errorf("closed connection: %+v", x)
		}
	}
}
