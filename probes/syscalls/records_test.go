package syscalls

import (
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/events/eventstest"
)

// records is the table of this package's records alone.
var records = func() *events.Records {
	t, err := events.NewRecords(Records()...)
	if err != nil {
		panic(err)
	}
	return t
}()

// TestDecodeSockDataBody: a body record carries its length, its tail and
// whether it saw all of a vectored write, and no data.
func TestDecodeSockDataBody(t *testing.T) {
	var e httpsysSockDataEvent
	e.Hdr.Type, e.Hdr.Pid, e.Hdr.TsNs = uint8(httpsysSyscallsRecordEVENT_SOCK_DATA), 5, 1
	e.Dir = uint8(correlate.SockWriteBody)
	e.Proto = uint8(correlate.ProtoHTTP)
	e.Len = 70000
	e.Flags = uint8(httpsysSockDataFlagsSOCK_FLAG_PARTIAL)
	e.TailLen = uint8(eventstest.PutString(e.Tail[:], "0\r\n\r\n"))
	raw := eventstest.Raw(&e)
	ev, err := records.Decode(raw, &events.Decoder{Clock: &events.Clock{}})
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
	if ev, err = records.Decode(raw, &events.Decoder{Clock: &events.Clock{}}); err != nil || len(ev.(*correlate.SockData).Tail) != len(e.Tail) {
		t.Errorf("tail_len 200: %v %v", ev, err)
	}
}

// correlate (plain Go, which cannot import probes) keeps its own copies of
// the C enums it reads: each must equal the C value, and every C value must
// have its copy.
func TestCorrelateEnumsMatchC(t *testing.T) {
	spec, err := loadHttpsys()
	if err != nil {
		t.Fatal(err)
	}
	for enum, copies := range map[string]map[string]uint64{
		"sock_dir": {
			"SOCK_DIR_READ":       uint64(correlate.SockRead),
			"SOCK_DIR_WRITE":      uint64(correlate.SockWrite),
			"SOCK_DIR_CLOSE":      uint64(correlate.SockClose),
			"SOCK_DIR_READ_MORE":  uint64(correlate.SockReadMore),
			"SOCK_DIR_READ_TAIL":  uint64(correlate.SockReadTail),
			"SOCK_DIR_WRITE_BODY": uint64(correlate.SockWriteBody),
			"SOCK_DIR_WRITE_MORE": uint64(correlate.SockWriteMore),
			"SOCK_DIR_WRITE_TAIL": uint64(correlate.SockWriteTail),
			"SOCK_DIR_READ_BODY":  uint64(correlate.SockReadBody),
		},
		"sock_proto": {
			"SOCK_PROTO_HTTP":     uint64(correlate.ProtoHTTP),
			"SOCK_PROTO_POSTGRES": uint64(correlate.ProtoPostgres),
			"SOCK_PROTO_REDIS":    uint64(correlate.ProtoRedis),
			"SOCK_PROTO_TLS":      uint64(correlate.ProtoTLS),
			"SOCK_PROTO_MYSQL":    uint64(correlate.ProtoMySQL),
		},
	} {
		var e *btf.Enum
		if err := spec.Types.TypeByName(enum, &e); err != nil {
			t.Fatalf("enum %s: %v", enum, err)
		}
		for _, v := range e.Values {
			got, ok := copies[v.Name]
			if !ok {
				t.Errorf("%s has no copy in correlate", v.Name)
				continue
			}
			if got != v.Value {
				t.Errorf("correlate's %s is %d, the C enum says %d", v.Name, got, v.Value)
			}
			delete(copies, v.Name)
		}
		for name := range copies {
			t.Errorf("correlate has %s, which enum %s lacks", name, enum)
		}
	}
}
