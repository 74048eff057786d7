package correlate

import (
	"net/netip"
	"time"
)

// SockDir is what a SockData record reports.
type SockDir uint8

// Directions (enum sock_dir in bpf/syscalls/records.h; probes/syscalls checks
// that these equal the C values).
const (
	SockRead  SockDir = 1
	SockWrite SockDir = 2
	SockClose SockDir = 3
	// SockReadMore is the read after one that started a request, whatever
	// it holds: the rest of a head that arrived in pieces, or a body
	// (every read of a model call's request body).
	SockReadMore SockDir = 4
	// SockWriteBody is a write (or sendfile) after a response head was
	// written: more of its body. Time is when it returned, Len the bytes
	// it sent, Tail its last bytes when it sent all it asked; no Data,
	// except for the answer to a model call: its first bytes.
	SockWriteBody SockDir = 5
	// SockReadTail is the last bytes of a read of a model call's body (a
	// request's, served, or a response's, called) longer than the read's
	// own record holds, just before that record (Len is the read's).
	SockReadTail SockDir = 6
	// SockWriteMore is a write of a model call's request body after its
	// head, by the process making the call: its first bytes while the
	// copy budget lasts.
	SockWriteMore SockDir = 7
	// SockWriteTail is the last bytes of a write of a model call's body
	// longer than the write's own record holds, just before that record
	// (Len is the write's).
	SockWriteTail SockDir = 8
	// SockReadBody is a read of a model call's response body by the
	// process making the call: its first bytes while the copy budget
	// lasts, and its Tail.
	SockReadBody SockDir = 9
)

// SockProto is the protocol the kernel recognised on a descriptor.
type SockProto uint8

// Protocols (enum sock_proto in bpf/syscalls/records.h; probes/syscalls checks
// that these equal the C values).
const (
	ProtoHTTP     SockProto = 1
	ProtoPostgres SockProto = 2 // client side
	ProtoRedis    SockProto = 3 // client side
	ProtoTLS      SockProto = 4 // a ClientHello, the one record seen of the connection
	ProtoMySQL    SockProto = 5 // MySQL/MariaDB, client side
)

// String names the protocol as connections and the map show it: "tcp"
// for none.
func (p SockProto) String() string {
	if p == ProtoTLS {
		return "tls"
	}
	if w, ok := wireProtocols[p]; ok {
		return w.name
	}
	return "tcp"
}

// SockData is the start of a read or write that looks like HTTP/1.x, or a
// read or write of a descriptor that carries a database protocol, made by a
// process traced from the kernel (syscall tracepoints), or the close of a
// descriptor that carried either.
type SockData struct {
	PID, TID uint32
	FD       int32
	// Sock identifies the socket behind FD (0 when FD is not one): the
	// same for every descriptor of it, dup'd or inherited.
	Sock  uint64
	Time  time.Time
	Dir   SockDir
	Proto SockProto
	// Ready: a PostgreSQL read that ends with ReadyForQuery, or a MySQL
	// read that ends with the end of a response.
	Ready bool
	// Partial: Len and Tail cover only part of a vectored write.
	Partial bool
	Len     uint32 // bytes read, or bytes the write asked to send
	Data    []byte // the first bytes, at most 512
	// Tail is the last bytes (at most 8) of an HTTP write (of its last
	// buffer, for writev and sendmsg) or of a read of a model call's.
	Tail []byte
	// The descriptor's TCP endpoints, when it is a TCP socket; Unix when
	// it is a Unix-domain socket.
	Local, Remote netip.AddrPort
	Unix          bool
	// TLS: the bytes are the plaintext of a TLS connection, read at the
	// TLS library (probes/openssl) rather than at the socket, and fed into
	// the same socket's stream.
	TLS bool
}

// ProcessID implements Event.
func (d *SockData) ProcessID() uint32 { return d.PID }
