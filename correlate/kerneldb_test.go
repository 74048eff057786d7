package correlate

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"
	"github.com/zerotrace/zerotrace/correlate/protocols/prototest"
)

// wire plays one descriptor of a traced process: each call makes the
// record the kernel would send for one read, write or close, one
// millisecond after the previous one, and hands it to the tracer.
type wire struct {
	k     *kernelTracer
	pid   uint32
	tid   uint32
	fd    int32
	proto SockProto
	clock *int      // shared by the wires of one test, so times are ordered across them
	last  time.Time // when the latest record was made
}

var (
	dbServer = prototest.Server
	dbClient = prototest.Client
)

func newWire(k *kernelTracer, proto SockProto, fd int32, clock *int) *wire {
	return &wire{k: k, pid: 7, tid: 100, fd: fd, proto: proto, clock: clock}
}

// record builds what the probe emits for a read or write of full: Data
// is at most the first prototest.Capture bytes, Len the whole size, and a PostgreSQL
// read is flagged Ready exactly when its last six bytes are a
// ReadyForQuery, which is the test the probe makes on the user buffer.
func (w *wire) record(dir SockDir, full []byte) *SockData {
	*w.clock++
	w.last = time.Unix(2000, 0).Add(time.Duration(*w.clock) * time.Millisecond)
	d := &SockData{
		PID: w.pid, TID: w.tid, FD: w.fd, Time: w.last, Dir: dir, Proto: w.proto,
		Len:   uint32(len(full)),
		Data:  bytes.Clone(full[:min(len(full), prototest.Capture)]),
		Local: dbClient, Remote: dbServer,
	}
	if dir == SockRead && w.proto == ProtoPostgres {
		d.Ready = prototest.PGEndsWithReady(full)
	}
	return d
}

// send hands d to the tracer and copies what it returns: the tracer
// reuses its result slice on the next call.
func (w *wire) send(d *SockData) []*model.Span { return conv(slices.Clone(w.k.handle(d))) }

func (w *wire) write(b []byte) []*model.Span { return w.send(w.record(SockWrite, b)) }
func (w *wire) read(b []byte) []*model.Span  { return w.send(w.record(SockRead, b)) }
func (w *wire) close() []*model.Span {
	*w.clock++
	w.last = time.Unix(2000, 0).Add(time.Duration(*w.clock) * time.Millisecond)
	return w.send(&SockData{PID: w.pid, TID: w.tid, FD: w.fd, Time: w.last, Dir: SockClose})
}

// readChunks delivers b as a series of reads of at most size bytes, the
// way a client with a buffer of that size would receive it. It returns
// every span, the index of the read that completed each, and the time
// of each read.
func (w *wire) readChunks(b []byte, size int) (spans []*model.Span, at []int, times []time.Time) {
	for i := 0; len(b) > 0; i++ {
		n := min(size, len(b))
		for _, s := range w.read(b[:n]) {
			spans, at = append(spans, s), append(at, i)
		}
		times = append(times, w.last)
		b = b[n:]
	}
	return spans, at, times
}

// stream is what the tracer holds for the descriptor. The records carry
// no socket identity, so the descriptor alone names it.
func (w *wire) stream() *sockStream { return w.k.streams[sockKey{pid: w.pid, fd: w.fd}] }

func TestKernelPGCloseAndBounds(t *testing.T) {
	stats := &Stats{}
	k := newKernelTracer(stats, &seqIDs{})
	var clock int

	// A query never answered before the close is counted, not a span.
	w := newWire(k, ProtoPostgres, 4, &clock)
	w.write(prototest.PGQuery("SELECT pg_sleep(100)"))
	if s := w.close(); len(s) != 0 {
		t.Fatalf("close made spans: %v", s)
	}
	if n := stats.KernelUnanswered.Load(); n != 1 {
		t.Errorf("unanswered = %d, want 1", n)
	}
	if len(k.streams) != 0 {
		t.Errorf("streams left after close: %d", len(k.streams))
	}

	// A close while an answer is being read past the capture ends the
	// query at its last read.
	w = newWire(k, ProtoPostgres, 5, &clock)
	w.write(prototest.PGQuery("SELECT * FROM big"))
	w.read(prototest.PGRows(100, strings.Repeat("x", 30))[:2000])
	last := w.last
	spans := w.close()
	prototest.WantNames(t, spans, "SELECT big")
	if !spans[0].End.Equal(last) {
		t.Errorf("ended at %v, want the last read %v", spans[0].End, last)
	}
	if n := stats.KernelUnanswered.Load(); n != 1 {
		t.Errorf("unanswered = %d, want still 1", n)
	}

	// A server that never answers: the queue stops at maxPending, the
	// oldest dropped and counted; the next answer goes to the oldest
	// query kept.
	stats.KernelUnanswered.Store(0)
	w = newWire(k, ProtoPostgres, 6, &clock)
	for i := range maxPending + 6 {
		w.write(prototest.PGQuery(fmt.Sprintf("SELECT * FROM t%d", i)))
	}
	if n := w.stream().pending(); n != maxPending {
		t.Errorf("%d queries held, want %d", n, maxPending)
	}
	if n := stats.KernelUnanswered.Load(); n != 6 {
		t.Errorf("unanswered = %d, want 6", n)
	}
	prototest.WantNames(t, w.read(prototest.Cat(prototest.PGComplete("SELECT 0"), prototest.PGReady())), "SELECT t6")
	w.close()
	if n := stats.KernelUnanswered.Load(); n != 6+maxPending-1 {
		t.Errorf("unanswered = %d, want %d", n, 6+maxPending-1)
	}
}

func TestKernelRedisCloseAndBounds(t *testing.T) {
	stats := &Stats{}
	k := newKernelTracer(stats, &seqIDs{})
	var clock int
	w := newWire(k, ProtoRedis, 4, &clock)
	// A server that never answers: the queue stops at maxPending, the
	// oldest dropped and counted, and the next reply goes to the oldest
	// command kept.
	for i := range maxPending + 3 {
		w.write(prototest.RESPCommand("GET", "k"+strconv.Itoa(i)))
	}
	if n := w.stream().pending(); n != maxPending {
		t.Errorf("%d commands held, want %d", n, maxPending)
	}
	if n := stats.KernelUnanswered.Load(); n != 3 {
		t.Errorf("unanswered = %d, want 3", n)
	}
	spans := w.read([]byte("$-1\r\n"))
	prototest.WantNames(t, spans, "GET")
	if !spans[0].Start.Equal(time.Unix(2000, 0).Add(4 * time.Millisecond)) {
		t.Errorf("the reply went to the command written at %v, want the fourth", spans[0].Start)
	}
	// The rest are counted at the close, which leaves nothing behind.
	if s := w.close(); len(s) != 0 {
		t.Errorf("close made spans %v", s)
	}
	if n := stats.KernelUnanswered.Load(); n != 3+maxPending-1 {
		t.Errorf("unanswered = %d, want %d", n, 3+maxPending-1)
	}
	if len(k.streams) != 0 {
		t.Errorf("%d streams left", len(k.streams))
	}
}

// ===== Parent and child ==================================================

func TestKernelDBChildOfServedRequest(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	// A thread-per-request server: thread 100 reads a request on fd 20,
	// queries PostgreSQL on fd 21 and Redis on fd 22, then answers.
	req := sock(SockRead, 20, 0, "GET /orders HTTP/1.1\r\nHost: shop\r\n\r\n")
	req.TID = 100
	k.handle(req)
	pg := newWire(k, ProtoPostgres, 21, &clock)
	rd := newWire(k, ProtoRedis, 22, &clock)
	pg.write(prototest.PGQuery("SELECT * FROM orders"))
	rd.write(prototest.RESPCommand("GET", "cache"))
	other := newWire(k, ProtoPostgres, 23, &clock)
	other.tid = 101 // another thread, serving nothing
	other.write(prototest.PGQuery("SELECT 1"))
	q := pg.read(prototest.PGRows(1, "o"))
	c := rd.read([]byte("$-1\r\n"))
	o := other.read(prototest.PGRows(1, "1"))
	resp := sock(SockWrite, 20, 50, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	resp.TID = 100
	server := conv(slices.Clone(k.handle(resp)))
	if len(q) != 1 || len(c) != 1 || len(o) != 1 || len(server) != 1 {
		t.Fatalf("spans: %d %d %d %d", len(q), len(c), len(o), len(server))
	}
	srv := server[0]
	for _, s := range []*model.Span{q[0], c[0]} {
		if s.ParentSpanID != srv.SpanID || s.TraceID != srv.TraceID {
			t.Errorf("%s: trace %s parent %s, want trace %s parent %s", s.Name, s.TraceID, s.ParentSpanID, srv.TraceID, srv.SpanID)
		}
	}
	if o[0].ParentSpanID.IsValid() || o[0].TraceID == srv.TraceID {
		t.Errorf("another thread's query joined the request: trace %s parent %s", o[0].TraceID, o[0].ParentSpanID)
	}
	// The request is answered: the thread's next query starts a trace.
	pg.write(prototest.PGQuery("SELECT * FROM audit"))
	after := pg.read(prototest.PGRows(0, ""))
	if len(after) != 1 || after[0].ParentSpanID.IsValid() || after[0].TraceID == srv.TraceID {
		t.Errorf("a query after the response still has the request as parent: %+v", after)
	}
	if len(k.serving) != 0 {
		t.Errorf("serving left: %v", k.serving)
	}

	// A request that continues a caller's trace: the query is in that
	// trace too, under the server span.
	req = sock(SockRead, 20, 60, "GET /orders HTTP/1.1\r\n"+
		"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n")
	req.TID = 100
	k.handle(req)
	rd.write(prototest.RESPCommand("GET", "cache"))
	c = rd.read([]byte("$-1\r\n"))
	resp.Time = rd.last.Add(time.Millisecond)
	server = conv(slices.Clone(k.handle(resp)))
	if len(c) != 1 || len(server) != 1 || c[0].TraceID.String() != "0af7651916cd43dd8448eb211c80319c" ||
		c[0].TraceID != server[0].TraceID || c[0].ParentSpanID != server[0].SpanID {
		t.Errorf("query %+v under continued request %+v", c, server)
	}
}

func TestKernelDBEventLoopNoParent(t *testing.T) {
	k := newKernelTracer(&Stats{}, &seqIDs{})
	var clock int
	// One thread reads two requests before answering either: a query it
	// makes could belong to either, so it belongs to neither.
	for _, fd := range []int32{30, 31} {
		req := sock(SockRead, fd, 0, "GET /x HTTP/1.1\r\n\r\n")
		req.TID = 200
		k.handle(req)
	}
	pg := newWire(k, ProtoPostgres, 32, &clock)
	pg.tid = 200
	pg.write(prototest.PGQuery("SELECT * FROM a"))
	spans := pg.read(prototest.PGRows(1, "a"))
	prototest.WantNames(t, spans, "SELECT a")
	if spans[0].ParentSpanID.IsValid() {
		t.Errorf("parent %s chosen among two requests", spans[0].ParentSpanID)
	}
	resp := sock(SockWrite, 30, 1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	resp.TID = 200
	first := conv(slices.Clone(k.handle(resp)))
	if len(first) != 1 || spans[0].TraceID == first[0].TraceID {
		t.Fatalf("query in the trace of request 1: %v", first)
	}
	// One request left in flight: the thread's calls are its children again.
	pg.write(prototest.PGQuery("SELECT * FROM b"))
	spans = pg.read(prototest.PGRows(1, "b"))
	resp = sock(SockWrite, 31, 2, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	resp.TID = 200
	second := conv(slices.Clone(k.handle(resp)))
	if len(second) != 1 || spans[0].ParentSpanID != second[0].SpanID || spans[0].TraceID != second[0].TraceID {
		t.Errorf("query %s/%s, remaining request %v", spans[0].TraceID, spans[0].ParentSpanID, second)
	}
}

// ===== Fuzz ================================================================

func FuzzKernelDatabase(f *testing.F) {
	answer := prototest.PGRows(3, "row")
	f.Add(prototest.PGStartup("user", "u", "database", "d"), prototest.PGServerHello(), true, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.PGQuery("SELECT * FROM t WHERE a = 'x'"), answer, true, uint32(0), uint32(0), uint16(20))
	f.Add(prototest.PGSSLRequest(), []byte("N"), false, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.Cat(prototest.PGParse("", "SELECT $1"), prototest.PGBind("", "", "1"), prototest.PGDescribe('P', ""), prototest.PGExecute(""), prototest.PGSync()),
		prototest.Cat(prototest.PGParseComplete(), prototest.PGBindComplete(), answer), true, uint32(3000), uint32(0), uint16(9))
	f.Add(prototest.PGQuery("SELECT 1"), prototest.Cat(prototest.PGErrorResp("42601", "syntax"), prototest.PGReady()), true, uint32(0), uint32(9000), uint16(3))
	f.Add(prototest.Cat(prototest.RESPCommand("SET", "k", "v"), prototest.RESPCommand("GET", "k")), []byte("+OK\r\n$1\r\nv\r\n"), false, uint32(0), uint32(0), uint16(7))
	f.Add(prototest.RESPCommand("LRANGE", "l", "0", "-1"), []byte("*2\r\n*1\r\n:1\r\n$70000\r\nab"), false, uint32(0), uint32(70000), uint16(5))
	f.Add(prototest.RESPCommand("HGETALL", "h"), []byte("%1\r\n+f\r\n-WRONGTYPE x\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.RESPCommand("SELECT", "3"), []byte("+OK\r\n"), false, uint32(0), uint32(0), uint16(1))
	f.Add(prototest.MyPacket(0, prototest.MyQuery("SELECT * FROM t WHERE a = 'x'")), prototest.Cat(prototest.MyPacket(1, []byte{1}), prototest.MyPacket(2, prototest.MyColumn()), prototest.MyPacket(3, prototest.MyEOF(0)),
		prototest.MyPacket(4, prototest.MyRow("a")), prototest.MyPacket(5, prototest.MyEOF(0))), true, uint32(0), uint32(0), uint16(11))
	f.Add(prototest.MyPacket(0, prototest.MyQuery("INSERT INTO t VALUES (1)")), prototest.MyPacket(1, prototest.MyOK(1, 0)), false, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.MyPacket(0, []byte{0x17, 1, 0, 0, 0}), prototest.MyPacket(1, prototest.MyErr(1146, "42S02", "no such table")), false, uint32(0), uint32(0), uint16(4))
	// Inputs that once made the parsers panic.
	f.Add(prototest.RESPCommand("GET", "k"), []byte("\r\n+OK\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add([]byte("*1\r\n$9223372036854775807\r\nGET\r\n"), []byte("+OK\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.RESPCommand("GET", "k"), []byte("$9223372036854775800\r\nabc\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.PGSSLRequest(), []byte{}, false, uint32(0), uint32(5), uint16(0))
	f.Fuzz(func(t *testing.T, w, r []byte, ready bool, wExtra, rExtra uint32, split uint16) {
		k := newKernelTracer(&Stats{}, &seqIDs{})
		at := 0
		// rec builds a record the way the probe does: the first 512 bytes,
		// and a Len of at least that, which may claim more than was given.
		rec := func(fd int32, proto SockProto, dir SockDir, b []byte, extra uint32, ready bool) *SockData {
			at++
			n := uint64(len(b)) + uint64(extra)
			return &SockData{PID: 1, TID: 9, FD: fd, Proto: proto, Dir: dir, Ready: ready,
				Time: time.Unix(3000, int64(at)*int64(time.Millisecond)),
				Len:  uint32(min(n, math.MaxUint32)), Data: b[:min(len(b), prototest.Capture)]}
		}
		check := func(spans []*model.Span) {
			conv(spans)
			for _, s := range spans {
				if s.Name == "" || attr(s, "db.system.name") == "" {
					t.Fatalf("span name %q system %q", s.Name, attr(s, "db.system.name"))
				}
				// Whatever the bytes, a Redis span shows the command's name
				// and a '?' per argument, never an argument.
				if attr(s, "db.system.name") == "redis" && strings.Trim(strings.TrimPrefix(attr(s, "db.query.text"), s.Name), " ?") != "" {
					t.Fatalf("redis span %q with text %q", s.Name, attr(s, "db.query.text"))
				}
				if s.End.Before(s.Start) {
					t.Fatalf("span %q ends %v before it starts %v", s.Name, s.End, s.Start)
				}
			}
		}
		// A request being served by the same thread: the database calls
		// become its children, and its entry in k.serving must go at the close.
		k.handle(&SockData{PID: 1, TID: 9, FD: 5, Dir: SockRead, Proto: ProtoHTTP, Data: []byte("GET / HTTP/1.1\r\n\r\n"), Len: 18})
		cut := int(split) % (len(r) + 1)
		for i, proto := range []SockProto{ProtoPostgres, ProtoRedis, ProtoMySQL} {
			fd := int32(10 + i)
			// Twice: what the first exchange leaves behind (bytes to skip, a
			// lost reader, unanswered commands) meets the second.
			for range 2 {
				for _, d := range []*SockData{
					rec(fd, proto, SockWrite, w, wExtra, false),
					rec(fd, proto, SockRead, r[:cut], rExtra, ready),
					rec(fd, proto, SockRead, r[cut:], 0, ready),
				} {
					// The probe sends nothing for a read or write of no bytes.
					if d.Len > 0 {
						check(k.handle(d))
					}
				}
			}
			check(k.handle(&SockData{PID: 1, TID: 9, FD: fd, Dir: SockClose, Time: time.Unix(3000, int64(at+1)*int64(time.Millisecond))}))
		}
		k.handle(&SockData{PID: 1, TID: 9, FD: 5, Dir: SockClose})
		if len(k.streams) != 0 || len(k.serving) != 0 {
			t.Fatalf("state left after close: %d streams, %d threads serving", len(k.streams), len(k.serving))
		}
	})
}
