package prototest

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
)

// Cat joins byte strings.
func Cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func be16(n int) []byte  { return binary.BigEndian.AppendUint16(nil, uint16(n)) }
func be32(n int) []byte  { return binary.BigEndian.AppendUint32(nil, uint32(n)) }
func cz(s string) []byte { return append([]byte(s), 0) }

// --- PostgreSQL v3 wire messages -------------------------------------

// PGMsg is a typed message: its type byte, then a length that counts
// itself and the body but not the type.
func PGMsg(typ byte, body ...[]byte) []byte {
	b := Cat(body...)
	return Cat([]byte{typ}, be32(4+len(b)), b)
}

// PGStartup is a StartupMessage: no type byte, the length, protocol 3.0
// (196608), then name/value pairs ended by an empty name.
func PGStartup(params ...string) []byte {
	body := be32(196608)
	for _, p := range params {
		body = append(body, cz(p)...)
	}
	body = append(body, 0)
	return Cat(be32(4+len(body)), body)
}

// Frontend messages.
func PGSSLRequest() []byte          { return Cat(be32(8), be32(80877103)) }
func PGQuery(q string) []byte       { return PGMsg('Q', cz(q)) }
func PGParse(name, q string) []byte { return PGMsg('P', cz(name), cz(q), be16(0)) }

// PGBind binds stmt to portal with the given text parameters.
func PGBind(portal, stmt string, params ...string) []byte {
	body := Cat(cz(portal), cz(stmt), be16(0), be16(len(params)))
	for _, p := range params {
		body = Cat(body, be32(len(p)), []byte(p))
	}
	return PGMsg('B', body, be16(0))
}

func PGDescribe(kind byte, name string) []byte { return PGMsg('D', []byte{kind}, cz(name)) }
func PGExecute(portal string) []byte           { return PGMsg('E', cz(portal), be32(0)) }
func PGSync() []byte                           { return PGMsg('S') }

// Backend messages.
func PGAuthOK() []byte                 { return PGMsg('R', be32(0)) }
func PGParamStatus(k, v string) []byte { return PGMsg('S', cz(k), cz(v)) }
func PGKeyData() []byte                { return PGMsg('K', be32(4242), be32(99)) }
func PGReady() []byte                  { return PGMsg('Z', []byte{'I'}) }
func PGParseComplete() []byte          { return PGMsg('1') }
func PGBindComplete() []byte           { return PGMsg('2') }
func PGComplete(tag string) []byte     { return PGMsg('C', cz(tag)) }

// PGServerHello is what a server answers a StartupMessage with when it
// trusts the client: it ends with a ReadyForQuery that no query awaits.
func PGServerHello() []byte {
	return Cat(PGAuthOK(), PGParamStatus("server_version", "16.2"), PGKeyData(), PGReady())
}

// PGRowDesc describes text columns.
func PGRowDesc(cols ...string) []byte {
	body := be16(len(cols))
	for _, c := range cols {
		body = Cat(body, cz(c), be32(0), be16(0), be32(25), be16(-1), be32(-1), be16(0))
	}
	return PGMsg('T', body)
}

// PGDataRow is a row of text values.
func PGDataRow(vals ...string) []byte {
	body := be16(len(vals))
	for _, v := range vals {
		body = Cat(body, be32(len(v)), []byte(v))
	}
	return PGMsg('D', body)
}

// PGErrorResp is an ErrorResponse with a SQLSTATE and a message.
func PGErrorResp(code, msg string) []byte {
	return PGMsg('E', []byte{'S'}, cz("ERROR"), []byte{'V'}, cz("ERROR"), []byte{'C'}, cz(code), []byte{'M'}, cz(msg), []byte{0})
}

// PGRows is a whole answer to a SELECT of n one-column rows of value v.
func PGRows(n int, v string) []byte {
	b := PGRowDesc("v")
	for range n {
		b = append(b, PGDataRow(v)...)
	}
	return Cat(b, PGComplete("SELECT "+strconv.Itoa(n)), PGReady())
}

// PGEndsWithReady says whether b's last six bytes are a ReadyForQuery,
// which is the test the probe makes on a read's user buffer.
func PGEndsWithReady(b []byte) bool {
	n := len(b)
	return n >= 6 && b[n-6] == 'Z' && bytes.Equal(b[n-5:n-1], []byte{0, 0, 0, 5})
}

// --- RESP ---------------------------------------------------------------

// RESPCommand is a command as clients send it: an array of bulk strings.
func RESPCommand(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}

// RESPBulk is a bulk string reply.
func RESPBulk(s string) []byte { return []byte("$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n") }

// --- MySQL ----------------------------------------------------------------

// MySQL command bytes and capability flags.
const (
	MyComQuery       = 0x03
	MyComStmtPrepare = 0x16
	MyComStmtExecute = 0x17
	MyConnectWithDB  = 1 << 3
	MySSL            = 1 << 11
	MySecureConn     = 1 << 15
)

// MyPacket is a packet as a server or client sends it: a 3-byte
// little-endian length, a sequence number, the payload.
func MyPacket(seq byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// MyQuery is a COM_QUERY's payload.
func MyQuery(q string) []byte { return append([]byte{MyComQuery}, q...) }

// MyOK is an OK packet's payload.
func MyOK(affected, status int) []byte {
	return []byte{0x00, byte(affected), 0, byte(status), byte(status >> 8), 0, 0}
}

// MyEOF is an EOF packet's payload.
func MyEOF(status int) []byte { return []byte{0xfe, 0, 0, byte(status), byte(status >> 8)} }

// MyEndOK is the OK packet with the 0xfe header that ends a result set
// when the client asked for no EOF packets.
func MyEndOK(status int) []byte { return []byte{0xfe, 0, 0, byte(status), byte(status >> 8), 0, 0} }

// MyErr is an ERR packet's payload.
func MyErr(code int, state, msg string) []byte {
	b := []byte{0xff, byte(code), byte(code >> 8), '#'}
	return append(append(b, state...), msg...)
}

// MyColumn is a column definition's payload.
func MyColumn() []byte { return append([]byte{3}, "def"+strings.Repeat("\x00", 20)...) }

// MyRow is a one-column text row's payload.
func MyRow(v string) []byte { return append([]byte{byte(len(v))}, v...) }

// MyGreeting is a server's greeting naming its version.
func MyGreeting(version string) []byte {
	b := append([]byte{0x0a}, version...)
	return append(b, make([]byte, 40)...)
}

// MyHandshake is a HandshakeResponse41 with a database.
func MyHandshake(user, db string) []byte {
	b := make([]byte, 32)
	binary.LittleEndian.PutUint32(b, MyConnectWithDB|MySecureConn)
	b = append(append(b, user...), 0)
	b = append(b, 2, 'p', 'w') // auth response, length-prefixed
	return append(append(b, db...), 0)
}
