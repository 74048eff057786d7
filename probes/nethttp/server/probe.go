// Package server instruments the server side of Go's net/http: one SERVER
// span per request handled, HTTP/1.x and HTTP/2.
package server

import (
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Symbol is where a request's span starts: it runs once per request, every
// protocol, after the request was read and before its handler is called.
const Symbol = "net/http.serverHandler.ServeHTTP"

// Where HTTP/1.x requests end (see bpf/nethttp/server/probe.c).
const (
	// EndSymbol runs right after finishRequest flushed the response (and
	// after a handler panicked).
	EndSymbol = "net/http.(*connReader).abortPendingRead"
	// WriteSymbol flushes an HTTP/1.x connection's buffered writer to the
	// socket: the span ends when the last one began.
	WriteSymbol = "net/http.checkConnErrorWriter.Write"
	// HijackSymbol runs when a handler hijacks the connection; the
	// linker drops it from programs that never hijack.
	HijackSymbol = "net/http.(*conn).hijackLocked"
	// HijackedEndSymbol runs once ServeHTTP returned on a hijacked
	// connection.
	HijackedEndSymbol = "net/http.(*connReader).releaseConn"
)

// Where HTTP/2 requests end: the response writer's handlerDone, once the
// handler returned.
var (
	// H2EndSymbols are the standard library's, bundled into net/http up to
	// Go 1.26 and in net/http/internal/http2 since Go 1.27.
	H2EndSymbols = []string{
		"net/http.(*http2responseWriter).handlerDone",
		"net/http/internal/http2.(*responseWriter).handlerDone",
	}
	// XH2EndSymbol is golang.org/x/net/http2's (http2.ConfigureServer,
	// h2c).
	XH2EndSymbol = "golang.org/x/net/http2.(*responseWriter).handlerDone"
)

// responseHeader identifies a *response behind an http.ResponseWriter: it
// is the first method, by name, of the interface's itab (see probe.c).
const responseHeader = "net/http.(*response).Header"

// tlsConnClose identifies a *crypto/tls.Conn behind a net.Conn.
const tlsConnClose = "crypto/tls.(*Conn).Close"

// xnet is the module of golang.org/x/net/http2, whose fields the x/net
// version decides.
const xnet = "golang.org/x/net"

// The fields only this probe reads.
var (
	// RequestTLS is net/http.Request.TLS, non-nil for a request that came
	// over TLS, whatever the protocol.
	RequestTLS = offsets.Field{Struct: "net/http.Request", Name: "TLS"}
	// ResponseConn is net/http.response.conn, the server connection.
	ResponseConn = offsets.Field{Struct: "net/http.response", Name: "conn"}
	// ResponseStatus is net/http.response.status, the status code written.
	ResponseStatus = offsets.Field{Struct: "net/http.response", Name: "status"}
	// ResponseWritten is net/http.response.written, body bytes written.
	ResponseWritten = offsets.Field{Struct: "net/http.response", Name: "written"}
	// ResponseHandlerDone is net/http.response.handlerDone (an
	// atomic.Bool), set once the handler returned.
	ResponseHandlerDone = offsets.Field{Struct: "net/http.response", Name: "handlerDone"}
	// HTTPConnRWC is net/http.conn.rwc, the underlying net.Conn.
	HTTPConnRWC = offsets.Field{Struct: "net/http.conn", Name: "rwc"}
	// TLSConnConn is crypto/tls.Conn.conn, the connection under TLS.
	TLSConnConn = offsets.Field{Struct: "crypto/tls.Conn", Name: "conn"}
)

// h2Fields are the fields of an HTTP/2 server's response writer, under
// the names of the package (and module) that defines them.
type h2Fields struct {
	rws, status, wrote, conn, scConn offsets.Field
}

func h2FieldsOf(module, pkg, prefix string) h2Fields {
	f := func(typ, name string) offsets.Field {
		return offsets.Field{Module: module, Struct: pkg + "." + prefix + typ, Name: name}
	}
	return h2Fields{
		rws:    f("responseWriter", "rws"),
		status: f("responseWriterState", "status"),
		wrote:  f("responseWriterState", "wroteBytes"),
		conn:   f("responseWriterState", "conn"),
		scConn: f("serverConn", "conn"),
	}
}

var (
	// H2Bundled and H2Internal are the standard library's HTTP/2 server
	// fields, before and since Go 1.27; XH2 golang.org/x/net/http2's.
	H2Bundled  = h2FieldsOf(offsets.Std, "net/http", "http2")
	H2Internal = h2FieldsOf(offsets.Std, "net/http/internal/http2", "")
	XH2        = h2FieldsOf(xnet, "golang.org/x/net/http2", "")
)

// Probe is the net/http server instrumentation.
var Probe = probes.Declare("net/http server", loadServer, declare, record)

func declare(s *serverSpecs) probes.Declaration {
	// The end programs copy the start of each struct into a per-CPU
	// buffer (struct scratch in probe.c) in one read.
	var buf serverScratch
	req := &probes.Copy{Struct: "net/http.Request", Size: s.ReqReadSize, Max: uint64(len(buf.Req))}
	url := &probes.Copy{Struct: "net/url.URL", Size: s.UrlReadSize, Max: uint64(len(buf.Url))}
	resp := &probes.Copy{Struct: "net/http.response", Size: s.RespReadSize, Max: uint64(len(buf.Resp))}
	rws := &probes.Copy{Struct: "the HTTP/2 responseWriterState", Size: s.H2ReadSize, Max: uint64(len(buf.Resp))}
	xrws := &probes.Copy{Struct: "golang.org/x/net/http2.responseWriterState", Size: s.Xh2ReadSize, Max: uint64(len(buf.Resp))}

	// Request.Pattern exists since Go 1.23.
	route := &probes.Part{Gives: "http.route", Flag: s.HasPattern}
	// Read only when the ResponseWriter is net/http's HTTP/1.x *response,
	// recognised by its Header method.
	response := &probes.Part{Gives: "http.response.status_code and the response body size of HTTP/1.x requests"}
	// The connection behind the response: its addresses (a traced client
	// on this host hands its context over by them).
	connection := &probes.Part{
		Gives:    "network.local.*, and the same-host parent",
		Requires: []*probes.Part{response},
	}
	// The hop from a TLS connection to the TCP connection under it; a
	// program without crypto/tls has nothing to hop over.
	tls := &probes.Part{Gives: "network.local.* of requests over TLS", Requires: []*probes.Part{connection}}
	// HTTP/2: where its requests end, which a program without that
	// server lacks, and what is read there.
	h2End := &probes.Part{Gives: "the end of HTTP/2 requests"}
	h2 := &probes.Part{
		Gives:    "http.response.status_code, the response body size and network.local.* of HTTP/2 requests",
		Flag:     s.HasH2,
		Requires: []*probes.Part{h2End},
	}
	xh2End := &probes.Part{Gives: "the end of golang.org/x/net/http2 requests"}
	xh2 := &probes.Part{
		Gives:    "http.response.status_code, the response body size and network.local.* of golang.org/x/net/http2 requests",
		Flag:     s.HasXh2,
		Requires: []*probes.Part{xh2End},
	}

	ups := []probes.Uprobe{
		// The ends before the start (see probes.Uprobe).
		{Symbol: EndSymbol, Entry: s.ServeHttpEnd},
		// Optional: without it a span ends at EndSymbol, a little later.
		{Symbol: WriteSymbol, Entry: s.ServeHttpWrite, Optional: true},
		{Symbol: HijackSymbol, Entry: s.ServeHttpHijack, Optional: true},
		{Symbol: HijackedEndSymbol, Entry: s.ServeHttpEndHijacked, Optional: true},
	}
	for _, sym := range H2EndSymbols {
		ups = append(ups, probes.Uprobe{Symbol: sym, Entry: s.ServeH2End, Optional: true, Part: h2End})
	}
	ups = append(ups,
		probes.Uprobe{Symbol: XH2EndSymbol, Entry: s.ServeXh2End, Optional: true, Part: xh2End},
		probes.Uprobe{Symbol: Symbol, Entry: s.ServeHttpEnter},
	)

	return probes.Declaration{
		Uprobes: ups,
		Reads: []probes.Read{
			{Field: offsets.GoroutineID, Offset: s.OffG_goid, Size: probes.Word},
			{Field: offsets.RequestMethod, Offset: s.OffReqMethod, Size: probes.String, In: req},
			{Field: offsets.RequestURL, Offset: s.OffReqUrl, Size: probes.Word, In: req},
			{Field: offsets.RequestProtoMajor, Offset: s.OffReqProtoMajor, Size: probes.Word, In: req},
			{Field: offsets.RequestProtoMinor, Offset: s.OffReqProtoMinor, Size: probes.Word, In: req},
			{Field: offsets.RequestContentLength, Offset: s.OffReqContentLength, Size: probes.Word, In: req},
			{Field: offsets.RequestHost, Offset: s.OffReqHost, Size: probes.String, In: req},
			{Field: offsets.RequestRemoteAddr, Offset: s.OffReqRemoteAddr, Size: probes.String, In: req},
			{Field: RequestTLS, Offset: s.OffReqTls, Size: probes.Word, In: req},
			{Field: offsets.RequestPattern, Offset: s.OffReqPattern, Size: probes.String, In: req, Part: route},
			{Field: offsets.URLPath, Offset: s.OffUrlPath, Size: probes.String, In: url},
			{Field: offsets.URLRawQuery, Offset: s.OffUrlRawQuery, Size: probes.String, In: url},
			// The incoming trace context, from Request.Header, a Swiss-table
			// map (Go 1.24+), at the start.
			{Field: offsets.RequestHeader, Offset: s.OffReqHeader, Size: probes.Word},
			{Field: offsets.SwissMapDirPtr, Offset: s.OffMapDirPtr, Size: probes.Word},
			{Field: offsets.SwissMapDirLen, Offset: s.OffMapDirLen, Size: probes.Word},
			{Field: offsets.SwissTableGroups, Offset: s.OffTableGroups, Size: probes.Word},
			{Field: offsets.SwissGroupsData, Offset: s.OffGroupsData, Size: probes.Word},
			{Field: offsets.SwissGroupsLengthMask, Offset: s.OffGroupsLengthMask, Size: probes.Word},

			{Field: ResponseConn, Offset: s.OffRespConn, Size: probes.Word, In: resp, Part: response},
			{Field: ResponseStatus, Offset: s.OffRespStatus, Size: probes.Word, In: resp, Part: response},
			{Field: ResponseWritten, Offset: s.OffRespWritten, Size: probes.Word, In: resp, Part: response},
			// An atomic.Bool: its uint32 at the field's start, of which the
			// program reads the low byte.
			{Field: ResponseHandlerDone, Offset: s.OffRespHandlerDone, Size: 1, In: resp, Part: response},

			{Field: HTTPConnRWC, Offset: s.OffConnRwc, Size: probes.Iface, Part: connection},
			{Field: offsets.NetConnFD, Offset: s.OffNetconnFd, Size: probes.Word, Part: connection},
			{Field: offsets.NetFDLaddr, Offset: s.OffNetfdLaddr, Size: probes.Iface, Part: connection},
			{Field: offsets.NetFDRaddr, Offset: s.OffNetfdRaddr, Size: probes.Iface, Part: connection},
			{Field: offsets.TCPAddrIP, Offset: s.OffTcpaddrIp, Size: probes.Slice, Part: connection},
			{Field: offsets.TCPAddrPort, Offset: s.OffTcpaddrPort, Size: probes.Word, Part: connection},
			{Field: TLSConnConn, Offset: s.OffTlsconnConn, Size: probes.Iface, Part: tls},

			{Field: H2Bundled.rws, Alt: []offsets.Field{H2Internal.rws}, Offset: s.OffH2Rws, Size: probes.Word, Part: h2},
			{Field: H2Bundled.status, Alt: []offsets.Field{H2Internal.status}, Offset: s.OffH2Status, Size: probes.Word, In: rws, Part: h2},
			{Field: H2Bundled.wrote, Alt: []offsets.Field{H2Internal.wrote}, Offset: s.OffH2Wrote, Size: probes.Word, In: rws, Part: h2},
			{Field: H2Bundled.conn, Alt: []offsets.Field{H2Internal.conn}, Offset: s.OffH2Conn, Size: probes.Word, In: rws, Part: h2},
			{Field: H2Bundled.scConn, Alt: []offsets.Field{H2Internal.scConn}, Offset: s.OffH2ScConn, Size: probes.Iface, Part: h2},

			{Field: XH2.rws, Offset: s.OffXh2Rws, Size: probes.Word, Part: xh2},
			{Field: XH2.status, Offset: s.OffXh2Status, Size: probes.Word, In: xrws, Part: xh2},
			{Field: XH2.wrote, Offset: s.OffXh2Wrote, Size: probes.Word, In: xrws, Part: xh2},
			{Field: XH2.conn, Offset: s.OffXh2Conn, Size: probes.Word, In: xrws, Part: xh2},
			{Field: XH2.scConn, Offset: s.OffXh2ScConn, Size: probes.Iface, Part: xh2},
		},
		Funcs: []probes.Func{
			{Symbol: responseHeader, Addr: s.ResponseHeaderFn, Part: response},
			{Symbol: probes.TCPConnClose, Addr: s.TcpconnCloseFn, Part: connection},
			{Symbol: tlsConnClose, Addr: s.TlsconnCloseFn, Part: tls, Optional: true},
		},
	}
}
