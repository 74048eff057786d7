package syscalls

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/probes/events"
)

// Records are the ring-buffer records of the kernel-level tracing
// (bpf/syscalls/records.h), for the reader's table (probes/registry).
func Records() []events.Record {
	return []events.Record{
		{
			Type: uint8(httpsysSyscallsRecordEVENT_SOCK_DATA),
			Name: "sock_data_event",
			// A close or body record stops before the data.
			MinSize: sockDataMin,
			Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
				return decodeSockData(raw, d.Clock)
			},
		},
		{
			Type:    uint8(httpsysSyscallsRecordEVENT_CONN),
			Name:    "conn_event",
			MinSize: int(unsafe.Sizeof(httpsysConnEvent{})),
			Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
				return decodeConn((*httpsysConnEvent)(unsafe.Pointer(&raw[0])), d.Clock), nil
			},
		},
		{
			Type:    uint8(httpsysSyscallsRecordEVENT_TASK),
			Name:    "task_event",
			MinSize: int(unsafe.Sizeof(httpsysTaskEvent{})),
			Decode: func(raw []byte, d *events.Decoder) (correlate.Event, error) {
				e := (*httpsysTaskEvent)(unsafe.Pointer(&raw[0]))
				return &correlate.TaskEvent{PID: e.Hdr.Pid, Parent: e.Parent, Exit: e.Kind == uint8(httpsysTaskKindTASK_EXIT)}, nil
			},
		},
	}
}

// sockDataMin is where a sock_data_event's data starts: a close record
// stops there.
var sockDataMin = int(unsafe.Offsetof(httpsysSockDataEvent{}.Data))

func decodeConn(e *httpsysConnEvent, clock *events.Clock) *correlate.ConnEvent {
	n := uint8(16)
	if e.Family == unix.AF_INET {
		n = 4
	}
	return &correlate.ConnEvent{
		PID:           e.Hdr.Pid,
		Sock:          e.Sock,
		Time:          clock.Wall(e.Hdr.TsNs),
		Open:          e.Kind == uint8(httpsysConnKindCONN_OPEN),
		Server:        e.Role == uint8(httpsysConnRoleCONN_SERVER),
		Local:         events.AddrPort(e.LocalIp, n, e.LocalPort),
		Remote:        events.AddrPort(e.RemoteIp, n, e.RemotePort),
		BytesReceived: e.BytesReceived,
		BytesSent:     e.BytesAcked,
	}
}

func decodeSockData(raw []byte, clock *events.Clock) (*correlate.SockData, error) {
	// Copy the fixed part: a close record is shorter than the struct.
	var e httpsysSockDataEvent
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), sockDataMin), raw)
	d := &correlate.SockData{
		PID:     e.Hdr.Pid,
		TID:     e.Tid,
		FD:      e.Fd,
		Time:    clock.Wall(e.Hdr.TsNs),
		Sock:    e.Sock,
		Dir:     correlate.SockDir(e.Dir),
		Proto:   correlate.SockProto(e.Proto),
		Ready:   e.Flags&uint8(httpsysSockDataFlagsSOCK_FLAG_READY) != 0,
		Partial: e.Flags&uint8(httpsysSockDataFlagsSOCK_FLAG_PARTIAL) != 0,
		Len:     e.Len,
	}
	switch e.Family {
	case unix.AF_INET, unix.AF_INET6:
		n := uint8(16)
		if e.Family == unix.AF_INET {
			n = 4
		}
		d.Local = events.AddrPort(e.LocalIp, n, e.LocalPort)
		d.Remote = events.AddrPort(e.RemoteIp, n, e.RemotePort)
	case unix.AF_UNIX:
		d.Unix = true
	}
	if d.Dir == correlate.SockClose {
		return d, nil
	}
	n := int(e.Cap)
	if n > len(e.Data) || sockDataMin+n > len(raw) {
		return nil, &events.DecodeError{Kind: "size", Type: e.Hdr.Type, Size: len(raw)}
	}
	// Data and tail in one allocation: one per record.
	tn := min(int(e.TailLen), len(e.Tail))
	if n+tn == 0 {
		return d, nil
	}
	buf := make([]byte, n+tn)
	copy(buf, raw[sockDataMin:sockDataMin+n])
	for i := range tn {
		buf[n+i] = byte(e.Tail[i])
	}
	d.Data, d.Tail = buf[:n:n], buf[n:]
	return d, nil
}

// DecodeSockData decodes a struct sock_data_event whatever its record type:
// the TLS plaintext probes (probes/openssl) send the same record under
// their own.
func DecodeSockData(raw []byte, d *events.Decoder) (*correlate.SockData, error) {
	return decodeSockData(raw, d.Clock)
}

// SockDataSize is the size of a struct sock_data_event, and SockDataMin
// where its data starts (a record without data stops there).
var SockDataSize, SockDataMin = int(unsafe.Sizeof(httpsysSockDataEvent{})), sockDataMin
