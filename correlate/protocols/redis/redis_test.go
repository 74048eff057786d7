package redis

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/zerotrace/zerotrace/correlate/protocols/prototest"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// newWire returns a connection of process p to a Redis server.
func newWire(p *prototest.Process, clock *int) *prototest.Wire {
	return prototest.NewWire(p, New, clock)
}

var attr = prototest.Attr

func TestCommands(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.RESPCommand("SET", "user:1", "ann"))
	start := w.Last
	spans := w.Read([]byte("+OK\r\n"))
	prototest.WantNames(t, spans, "SET")
	s := spans[0]
	if s.Kind != trace.SpanKindClient || !s.Start.Equal(start) || !s.End.Equal(w.Last) || s.Status != codes.Unset {
		t.Errorf("kind %v start %v end %v status %v", s.Kind, s.Start, s.End, s.Status)
	}
	prototest.WantAttrs(t, s, map[string]string{
		"db.system.name":    "redis",
		"db.operation.name": "SET",
		"db.query.text":     "SET ? ?",
		"db.namespace":      "",
		"zerotrace.source":  "kernel",
		"server.address":    "10.0.0.5",
	})
	w.Write(prototest.RESPCommand("get", "user:1"))
	spans = w.Read(prototest.RESPBulk("ann"))
	prototest.WantNames(t, spans, "GET") // the name is upper-cased
	prototest.WantAttrs(t, spans[0], map[string]string{"db.query.text": "GET ?"})
	w.Write(prototest.RESPCommand("INCR", "hits"))
	prototest.WantNames(t, w.Read([]byte(":5\r\n")), "INCR")
	w.Write(prototest.RESPCommand("PING"))
	spans = w.Read([]byte("+PONG\r\n"))
	prototest.WantNames(t, spans, "PING")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.query.text": "PING"})
}

func TestPipelined(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.Cat(prototest.RESPCommand("SET", "a", "1"), prototest.RESPCommand("GET", "a"), prototest.RESPCommand("INCR", "n"), prototest.RESPCommand("DEL", "a"), prototest.RESPCommand("GET", "a")))
	spans := w.Read([]byte("+OK\r\n$1\r\n1\r\n:1\r\n:1\r\n$-1\r\n"))
	prototest.WantNames(t, spans, "SET", "GET", "INCR", "DEL", "GET")
	for _, s := range spans {
		if !s.End.Equal(w.Last) {
			t.Errorf("%s ended at %v, want %v", s.Name, s.End, w.Last)
		}
	}
	// A bulk's header in one read and its data in the next pair the same
	// way.
	w.Write(prototest.Cat(prototest.RESPCommand("SET", "a", "1"), prototest.RESPCommand("GET", "a"), prototest.RESPCommand("INCR", "n")))
	spans = w.Read([]byte("+OK\r\n$1\r\n"))
	spans = append(spans, w.Read([]byte("1\r\n:2\r\n"))...)
	prototest.WantNames(t, spans, "SET", "GET", "INCR")
}

func TestErrors(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	const wrongType = "WRONGTYPE Operation against a key holding the wrong kind of value"
	w.Write(prototest.RESPCommand("LPUSH", "greeting", "hi"))
	spans := w.Read([]byte("-" + wrongType + "\r\n"))
	prototest.WantNames(t, spans, "LPUSH")
	if spans[0].Status != codes.Error || spans[0].StatusMsg != wrongType {
		t.Errorf("status %v %q", spans[0].Status, spans[0].StatusMsg)
	}
	prototest.WantAttrs(t, spans[0], map[string]string{"error.type": "WRONGTYPE"})

	// RESP3's blob error carries its message in a bulk.
	w.Write(prototest.RESPCommand("FOO"))
	spans = w.Read([]byte("!21\r\nSYNTAX invalid syntax\r\n"))
	prototest.WantNames(t, spans, "FOO")
	prototest.WantAttrs(t, spans[0], map[string]string{"error.type": "SYNTAX"})

	// The error of one command is not the next one's.
	w.Write(prototest.RESPCommand("GET", "greeting"))
	spans = w.Read(prototest.RESPBulk("hi"))
	if spans[0].Status != codes.Unset || attr(spans[0], "error.type") != "" {
		t.Errorf("error leaked: %v %q", spans[0].Status, attr(spans[0], "error.type"))
	}
	// An error inside an array (EXEC's answers) does not fail the command.
	w.Write(prototest.RESPCommand("EXEC"))
	spans = w.Read([]byte("*2\r\n+OK\r\n-ERR value is not an integer\r\n"))
	prototest.WantNames(t, spans, "EXEC")
	if spans[0].Status != codes.Unset {
		t.Errorf("EXEC with one failed command is %v", spans[0].Status)
	}
}

func TestNullAndNested(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	for _, c := range []struct{ cmd, reply string }{
		{"GET", "$-1\r\n"},
		{"BLPOP", "*-1\r\n"},
		{"LRANGE", "*0\r\n"},
		{"XRANGE", "*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$3\r\n2-0\r\n*0\r\n"},
		{"HGETALL", "%2\r\n+f1\r\n$2\r\nv1\r\n+f2\r\n*1\r\n:1\r\n"},
		{"SMEMBERS", "~2\r\n+a\r\n+b\r\n"},
		{"GET", "_\r\n"},
		{"INCRBYFLOAT", ",3.5\r\n"},
		{"HELLO", "%1\r\n+server\r\n+redis\r\n"},
	} {
		w.Write(prototest.RESPCommand(c.cmd, "k"))
		spans := w.Read([]byte(c.reply))
		prototest.WantNames(t, spans, c.cmd)
		if p := w.Parser.Pending(); p != 0 {
			t.Fatalf("%s: %d left pending after %q", c.cmd, p, c.reply)
		}
	}
	// A nested reply cut between reads at every possible point, followed
	// by a second reply in the last read. Each cut gets a fresh tracer.
	reply := "*3\r\n*2\r\n:1\r\n$5\r\nhello\r\n*1\r\n*1\r\n+deep\r\n$2\r\nok\r\n"
	for cut := 1; cut < len(reply); cut++ {
		k := prototest.NewProcess()
		w := newWire(k, &clock)
		w.Write(prototest.Cat(prototest.RESPCommand("EVAL", "s", "0"), prototest.RESPCommand("PING")))
		first := w.Read([]byte(reply[:cut]))
		rest := w.Read([]byte(reply[cut:] + "+PONG\r\n"))
		lastRead := w.Last
		if len(first) != 0 {
			t.Fatalf("cut %d: early spans %v", cut, first)
		}
		if strings.HasSuffix(reply[:cut], "\r\n") || isBulkCut(reply, cut) {
			// Cut between lines, or inside a bulk's data, which is skipped
			// by count: the reader keeps its place.
			prototest.WantNames(t, rest, "EVAL", "PING")
			continue
		}
		// A line cut in two: the reader is lost, and the next command
		// written ends, at the last read, both commands written before
		// the loss (their replies were in what could not be followed).
		if len(rest) != 0 {
			t.Fatalf("cut %d: spans from a lost reader %v", cut, rest)
		}
		settled := w.Write(prototest.RESPCommand("PING"))
		prototest.WantNames(t, settled, "EVAL", "PING")
		if !settled[0].End.Equal(lastRead) {
			t.Errorf("cut %d: EVAL ended at %v, want %v", cut, settled[0].End, lastRead)
		}
	}
}

// isBulkCut says whether cut falls inside the data of a bulk string of
// reply, which the reader skips by count rather than by line.
func isBulkCut(reply string, cut int) bool {
	for i := 0; i < len(reply); {
		j := strings.Index(reply[i:], "\r\n") + i
		if reply[i] == '$' {
			n, _ := strconv.Atoi(reply[i+1 : j])
			start, end := j+2, j+2+n+2
			if cut > start && cut < end {
				return true
			}
			i = end
			continue
		}
		i = j + 2
	}
	return false
}

func TestBigBulkAcrossReads(t *testing.T) {
	const read = 65536
	for _, c := range []struct {
		name string
		size int
	}{
		{"200000 bytes", 200000},
		// "$196597\r\n" + data + "\r\n" is exactly three reads.
		{"ends at a read's end", 3*read - len("$196597\r\n") - 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := prototest.NewProcess()
			var clock int
			w := newWire(k, &clock)
			w.Write(prototest.RESPCommand("GET", "blob"))
			reply := prototest.RESPBulk(strings.Repeat("v", c.size))
			spans, at, times := w.ReadChunks(reply, read)
			prototest.WantNames(t, spans, "GET")
			if last := len(times) - 1; at[0] != last || !spans[0].End.Equal(times[last]) {
				t.Errorf("ended at read %d of %d", at[0], len(times))
			}
			// The next reply, in a read of its own, is read from its start.
			w.Write(prototest.RESPCommand("GET", "small"))
			prototest.WantNames(t, w.Read(prototest.RESPBulk("s")), "GET")

			// Pipelined behind the big one, its reply in the last read. When
			// the bulk ends at a read's end, that reply has a read of its own
			// and is read there; otherwise it sits past the 512 bytes the
			// probe copied, the reader is lost, and the next command written
			// ends it at that same last read.
			// The same goes for a big bulk inside an array, with the array's
			// next element after it.
			for _, p := range []struct {
				cmds  []byte
				reply []byte
				names []string
			}{
				{prototest.Cat(prototest.RESPCommand("GET", "blob"), prototest.RESPCommand("TTL", "blob")), prototest.Cat(reply, []byte(":-1\r\n")), []string{"GET", "TTL"}},
				{prototest.RESPCommand("MGET", "blob", "k"), prototest.Cat([]byte("*2\r\n"), reply, prototest.RESPBulk("k")), []string{"MGET"}},
			} {
				w.Write(p.cmds)
				spans, _, times = w.ReadChunks(p.reply, read)
				spans = append(spans, w.Write(prototest.RESPCommand("PING"))...)
				prototest.WantNames(t, spans, p.names...)
				if last := spans[len(spans)-1]; !last.End.Equal(times[len(times)-1]) {
					t.Errorf("%s ended at %v, want the last read %v", last.Name, last.End, times[len(times)-1])
				}
				if bulkEnd := times[(len(reply)-1)/read]; spans[0].Name == "GET" && !spans[0].End.Equal(bulkEnd) {
					t.Errorf("GET ended at %v, want the read with the bulk's end %v", spans[0].End, bulkEnd)
				}
				prototest.WantNames(t, w.Read([]byte("+PONG\r\n")), "PING")
			}
			if p := w.Parser.Pending(); p != 0 {
				t.Errorf("%d pending", p)
			}
		})
	}
}

func TestReplyLostPastCapture(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	// A hundred short elements: lines run past the first 512 bytes, so the
	// reader loses the reply's shape and cannot tell when it ends.
	var big []byte
	big = append(big, "*100\r\n"...)
	for range 100 {
		big = append(big, prototest.RESPBulk("0123456789")...)
	}
	w.Write(prototest.RESPCommand("LRANGE", "list", "0", "-1"))
	if s := w.Read(big[:1000]); len(s) != 0 {
		t.Fatalf("early span %v", s)
	}
	if s := w.Read(big[1000:]); len(s) != 0 {
		t.Fatalf("early span %v", s)
	}
	lastRead := w.Last
	// The next command settles it: the lost one ends at the last read
	// before it was written.
	spans := w.Write(prototest.RESPCommand("GET", "k"))
	prototest.WantNames(t, spans, "LRANGE")
	if !spans[0].End.Equal(lastRead) {
		t.Errorf("LRANGE ended at %v, want the last read %v", spans[0].End, lastRead)
	}
	// And the reader starts afresh.
	prototest.WantNames(t, w.Read(prototest.RESPBulk("v")), "GET")

	// A line longer than the capture, then a close: the close settles it.
	w.Write(prototest.RESPCommand("INFO"))
	w.Read([]byte("+" + strings.Repeat("i", 1000) + "\r\n"))
	lastRead = w.Last
	spans = w.Close()
	prototest.WantNames(t, spans, "INFO")
	if !spans[0].End.Equal(lastRead) {
		t.Errorf("INFO ended at %v, want %v", spans[0].End, lastRead)
	}
}

func TestPipelinedReplyLost(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	var big []byte
	big = append(big, "*100\r\n"...)
	for range 100 {
		big = append(big, prototest.RESPBulk("0123456789")...)
	}
	w.Write(prototest.Cat(prototest.RESPCommand("LRANGE", "list", "0", "-1"), prototest.RESPCommand("GET", "k")))
	w.Read(prototest.Cat(big, prototest.RESPBulk("v")))
	// Both replies were in the read the reader lost; SET's reply must
	// not be taken for GET's.
	w.Write(prototest.RESPCommand("SET", "a", "b"))
	spans := w.Read([]byte("+OK\r\n"))
	prototest.WantNames(t, spans, "SET")
}

func TestSelect(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.RESPCommand("SELECT", "2"))
	spans := w.Read([]byte("+OK\r\n"))
	prototest.WantNames(t, spans, "SELECT")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.namespace": "2"})
	w.Write(prototest.RESPCommand("GET", "k"))
	prototest.WantAttrs(t, w.Read([]byte("$-1\r\n"))[0], map[string]string{"db.namespace": "2"})
	// SELECT with something that is not an index changes nothing.
	w.Write(prototest.RESPCommand("SELECT", "x"))
	w.Read([]byte("-ERR invalid DB index\r\n"))
	w.Write(prototest.RESPCommand("GET", "k"))
	prototest.WantAttrs(t, w.Read([]byte("$-1\r\n"))[0], map[string]string{"db.namespace": "2"})
}

func TestMalformed(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	for _, b := range []string{
		"*x\r\n$3\r\nGET\r\n",   // no count
		"*0\r\n$3\r\nGET\r\n",   // an empty command
		"*1\r\n:3\r\n",          // an element that is not a bulk
		"*1\r\n$-3\r\nGET\r\n",  // a negative size
		"*1\r\n$5\r\nGE T!\r\n", // not a command name
		"*1\r\n$40\r\n" + strings.Repeat("A", 40) + "\r\n", // a name too long
	} {
		if s := w.Write([]byte(b)); len(s) != 0 {
			t.Errorf("%q: spans %v", b, s)
		}
	}
	if n := k.Malformed; n != 6 {
		t.Errorf("malformed = %d, want 6", n)
	}
	if p := w.Parser.Pending(); p != 0 {
		t.Errorf("%d malformed commands queued", p)
	}
	// Nothing awaits a reply, so a reply makes nothing.
	if s := w.Read([]byte("+OK\r\n")); len(s) != 0 {
		t.Errorf("spans %v", s)
	}
	// The descriptor still works.
	w.Write(prototest.RESPCommand("GET", "k"))
	prototest.WantNames(t, w.Read([]byte("$-1\r\n")), "GET")
}

func TestPipelineCutByCapture(t *testing.T) {
	cmd := prototest.RESPCommand("SET", "key", "val")
	// Every position of the capture's end within the fifth command.
	tried := 0
	for cut := 1; cut < len(cmd); cut++ {
		k := prototest.NewProcess()
		var clock int
		w := newWire(k, &clock)
		// A first command padded so that byte 512 is cut bytes into the
		// fifth command.
		var first []byte
		for pad := 0; len(first) < prototest.Capture-cut-4*len(cmd); pad++ {
			first = prototest.RESPCommand("SET", "k", strings.Repeat("v", pad))
		}
		if len(first)+4*len(cmd)+cut != prototest.Capture {
			continue // no padding lands exactly there
		}
		tried++
		pipeline := first
		for range 10 {
			pipeline = append(pipeline, cmd...)
		}
		w.Write(pipeline)
		if n := k.Malformed; n != 0 {
			t.Errorf("capture ending %d bytes into a command: malformed = %d", cut, n)
		}
		// The commands wholly seen are answered in order.
		spans := w.Read(bytes.Repeat([]byte("+OK\r\n"), 11))
		if len(spans) < 5 {
			t.Errorf("capture ending %d bytes into a command: %d spans", cut, len(spans))
		}
	}
	if tried < len(cmd)-3 {
		t.Errorf("only %d of %d cut positions tried", tried, len(cmd)-1)
	}
}

func TestArgsNeverInSpan(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.RESPCommand("SET", "secret-key", "secret-value"))
	spans := w.Read([]byte("+OK\r\n"))
	w.Write(prototest.RESPCommand("AUTH", "admin", "secret-password"))
	spans = append(spans, w.Read([]byte("+OK\r\n"))...)
	many := []string{"HSET", "h"}
	for i := range 100 {
		many = append(many, "secret"+strconv.Itoa(i))
	}
	w.Write(prototest.RESPCommand(many...))
	spans = append(spans, w.Read([]byte(":50\r\n"))...)
	prototest.WantNames(t, spans, "SET", "AUTH", "HSET")
	prototest.WantAttrs(t, spans[0], map[string]string{"db.query.text": "SET ? ?"})
	prototest.WantAttrs(t, spans[1], map[string]string{"db.query.text": "AUTH ? ?"})
	// At most 64 placeholders, however many arguments.
	prototest.WantAttrs(t, spans[2], map[string]string{"db.query.text": "HSET" + strings.Repeat(" ?", 64)})
	for _, s := range spans {
		if strings.Contains(s.Name+s.StatusMsg, "secret") {
			t.Errorf("argument in %q %q", s.Name, s.StatusMsg)
		}
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.Emit(), "secret") {
				t.Errorf("argument in %s = %q", kv.Key, kv.Value.Emit())
			}
		}
	}
}

func TestReplyEmptyLine(t *testing.T) {
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	w.Write(prototest.RESPCommand("GET", "k"))
	// Attached mid-reply: the first read starts with the end of a bulk.
	prototest.NoPanic(t, "read", func() { w.Read([]byte("\r\n+OK\r\n")) })
}

func TestHugeBulkSize(t *testing.T) {
	huge := strconv.FormatInt(math.MaxInt64, 10)
	k := prototest.NewProcess()
	var clock int
	w := newWire(k, &clock)
	prototest.NoPanic(t, "write", func() { w.Write([]byte("*1\r\n$" + huge + "\r\nGET\r\n")) })
	w = newWire(k, &clock)
	w.Write(prototest.RESPCommand("GET", "k"))
	prototest.NoPanic(t, "read", func() { w.Read([]byte("$" + huge + "\r\nabc\r\n")) })
	w.Write(prototest.RESPCommand("GET", "k"))
	prototest.NoPanic(t, "read !", func() { w.Read([]byte("!" + huge + "\r\nabc\r\n")) })
}

// FuzzRedis: whatever a client writes and its server answers, no panic, and
// a span shows the command's name and a '?' per argument, never an
// argument.
func FuzzRedis(f *testing.F) {
	f.Add(prototest.Cat(prototest.RESPCommand("SET", "k", "v"), prototest.RESPCommand("GET", "k")), []byte("+OK\r\n$1\r\nv\r\n"), false, uint32(0), uint32(0), uint16(7))
	f.Add(prototest.RESPCommand("LRANGE", "l", "0", "-1"), []byte("*2\r\n*1\r\n:1\r\n$70000\r\nab"), false, uint32(0), uint32(70000), uint16(5))
	f.Add(prototest.RESPCommand("HGETALL", "h"), []byte("%1\r\n+f\r\n-WRONGTYPE x\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.RESPCommand("SELECT", "3"), []byte("+OK\r\n"), false, uint32(0), uint32(0), uint16(1))
	// Inputs that once made the parser panic.
	f.Add(prototest.RESPCommand("GET", "k"), []byte("\r\n+OK\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add([]byte("*1\r\n$9223372036854775807\r\nGET\r\n"), []byte("+OK\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Add(prototest.RESPCommand("GET", "k"), []byte("$9223372036854775800\r\nabc\r\n"), false, uint32(0), uint32(0), uint16(0))
	f.Fuzz(func(t *testing.T, w, r []byte, ready bool, wExtra, rExtra uint32, split uint16) {
		for _, s := range prototest.Exchanges(t, New, w, r, ready, wExtra, rExtra, split) {
			if s.DB.System != "redis" || strings.Trim(strings.TrimPrefix(attr(s, "db.query.text"), s.Name), " ?") != "" {
				t.Fatalf("redis span %q with text %q", s.Name, attr(s, "db.query.text"))
			}
		}
	})
}
