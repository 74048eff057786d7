package events

import (
	"errors"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
)

func putString(dst []int8, s string) uint16 {
	for i := range len(s) {
		dst[i] = int8(s[i])
	}
	return uint16(len(s))
}

func record(e *commonHttpServerEvent) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e))
}

func TestDecodeHTTPServer(t *testing.T) {
	var e commonHttpServerEvent
	e.Hdr = commonEventHeader{Type: typeHTTPServer, Pid: 77, TsNs: 2_000_000_000}
	e.StartNs = 1_500_000_000
	e.Goid = 9
	e.ContentLength = 12
	e.RespWritten = 34
	e.Status = 404
	e.ProtoMajor, e.ProtoMinor = 1, 1
	e.Info = infoResponseKnown | infoLocalAddr
	e.LocalIpLen = 4
	copy(e.LocalIp[:], []byte{127, 0, 0, 1})
	e.LocalPort = 8080
	e.MethodLen = putString(e.Method[:], "GET")
	e.PathLen = putString(e.Path[:], "/a/\xffb")
	e.QueryLen = putString(e.Query[:], "x=1")
	e.HostLen = putString(e.Host[:], "example.com:8080")
	e.PatternLen = putString(e.Pattern[:], "GET /a/{x}")
	e.RemoteLen = putString(e.Remote[:], "127.0.0.1:5555")
	e.Truncated = 1

	clock := &Clock{}
	clock.offset.Store(1_700_000_000_000_000_000)
	ev, err := Decode(record(&e), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := ev.(*model.Span); !ok || s.HTTP == nil {
		t.Fatalf("decoded %T, want an HTTP span", ev)
	}
	r := decodeHTTPServer(&e, clock)
	want := HTTPServerRequest{
		PID: 77, GoroutineID: 9,
		Start:  time.Unix(0, 1_700_000_001_500_000_000),
		End:    time.Unix(0, 1_700_000_002_000_000_000),
		Method: "GET", Path: "/a/\uFFFDb", RawQuery: "x=1", Host: "example.com:8080",
		Pattern: "GET /a/{x}", RemoteAddr: "127.0.0.1:5555",
		ProtoMajor: 1, ProtoMinor: 1, ContentLength: 12,
		ResponseKnown: true, Status: 404, ResponseBodySize: 34,
		Local:     netip.MustParseAddrPort("127.0.0.1:8080"),
		Truncated: true,
	}
	if *r != want {
		t.Errorf("decoded\n %+v\nwant\n %+v", *r, want)
	}
}

func TestDecodeRejectsBadRecords(t *testing.T) {
	clock := NewClock()
	var e commonHttpServerEvent
	e.Hdr.Type = typeHTTPServer
	full := record(&e)

	var de *DecodeError
	if _, err := Decode(full[:8], clock, nil); !errors.As(err, &de) || de.Kind != "short" {
		t.Errorf("short record: %v", err)
	}
	if _, err := Decode(full[:100], clock, nil); !errors.As(err, &de) || de.Kind != "size" {
		t.Errorf("truncated record: %v", err)
	}
	e.Hdr.Type = 200
	if _, err := Decode(record(&e), clock, nil); !errors.As(err, &de) || de.Kind != "unknown_type" {
		t.Errorf("unknown type: %v", err)
	}
}

// A status net/http could never have written is garbage, not a status.
func TestDecodeDropsImpossibleStatus(t *testing.T) {
	var e commonHttpServerEvent
	e.Hdr.Type = typeHTTPServer
	e.Info = infoResponseKnown
	e.Status = 42
	if _, err := Decode(record(&e), NewClock(), nil); err != nil {
		t.Fatal(err)
	}
	if r := decodeHTTPServer(&e, NewClock()); r.ResponseKnown || r.Status != 0 {
		t.Errorf("status 42 reported: %+v", r)
	}
}

// The string lengths come from the kernel side; a length beyond the array
// must never read past it.
func TestDecodeClampsLengths(t *testing.T) {
	var e commonHttpServerEvent
	e.Hdr.Type = typeHTTPServer
	e.MethodLen = 60000
	putString(e.Method[:], "ABCDEFGHIJKLMNOP")
	if _, err := Decode(record(&e), NewClock(), nil); err != nil {
		t.Fatal(err)
	}
	if got := decodeHTTPServer(&e, NewClock()).Method; got != "ABCDEFGHIJKLMNOP" {
		t.Errorf("method %q", got)
	}
}

func TestClockMatchesWallClock(t *testing.T) {
	c := NewClock()
	now := time.Now()
	mono := monotonicNow()
	got := c.Wall(mono)
	if d := got.Sub(now); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("converted monotonic time is %s off the wall clock", d)
	}
}

// monotonicNow reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// TestDecodeSockDataBody: a body record carries its length, its tail and
// whether it saw all of a vectored write, and no data.
func TestDecodeSockDataBody(t *testing.T) {
	var e commonSockDataEvent
	e.Hdr = commonEventHeader{Type: typeSockData, Pid: 5, TsNs: 1}
	e.Dir = uint8(correlate.SockWriteBody)
	e.Proto = uint8(correlate.ProtoHTTP)
	e.Len = 70000
	e.Flags = sockFlagPartial
	e.TailLen = uint8(putString(e.Tail[:], "0\r\n\r\n"))
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))
	ev, err := Decode(raw, &Clock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := ev.(*correlate.SockData)
	if !ok {
		t.Fatalf("decoded %T", ev)
	}
	if d.Dir != correlate.SockWriteBody || d.Len != 70000 || !d.Partial || string(d.Tail) != "0\r\n\r\n" || len(d.Data) != 0 {
		t.Errorf("decoded %+v", d)
	}
	// A tail length past the field is clamped, not trusted.
	e.TailLen = 200
	if ev, err = Decode(raw, &Clock{}, nil); err != nil || len(ev.(*correlate.SockData).Tail) != len(e.Tail) {
		t.Errorf("tail_len 200: %v %v", ev, err)
	}
}
