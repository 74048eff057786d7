// Package server instruments the server side of Go's net/http: one SERVER
// span per request handled.
package server

import (
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Symbol is the probed function: it runs once per request, after the
// request was read and before the response is flushed.
const Symbol = "net/http.serverHandler.ServeHTTP"

// responseHeader identifies a *response behind an http.ResponseWriter: it
// is the first method, by name, of the interface's itab (see probe.c).
const responseHeader = "net/http.(*response).Header"

// The fields of net/http's HTTP/1.x response and connection that only this
// probe reads.
var (
	// ResponseConn is net/http.response.conn, the server connection.
	ResponseConn = offsets.Field{Struct: "net/http.response", Name: "conn"}
	// ResponseStatus is net/http.response.status, the status code written.
	ResponseStatus = offsets.Field{Struct: "net/http.response", Name: "status"}
	// ResponseWritten is net/http.response.written, body bytes written.
	ResponseWritten = offsets.Field{Struct: "net/http.response", Name: "written"}
	// HTTPConnRWC is net/http.conn.rwc, the underlying net.Conn.
	HTTPConnRWC = offsets.Field{Struct: "net/http.conn", Name: "rwc"}
	// HTTPConnTLSState is net/http.conn.tlsState, nil for plain HTTP.
	HTTPConnTLSState = offsets.Field{Struct: "net/http.conn", Name: "tlsState"}
)

// Probe is the net/http server instrumentation.
var Probe = probes.Declare("net/http server", loadServer, declare, record)

func declare(s *serverSpecs) probes.Declaration {
	// The return program copies the start of each struct into a per-CPU
	// buffer (struct scratch in probe.c) in one read.
	var buf serverScratch
	req := &probes.Copy{Struct: "net/http.Request", Size: s.ReqReadSize, Max: uint64(len(buf.Req))}
	url := &probes.Copy{Struct: "net/url.URL", Size: s.UrlReadSize, Max: uint64(len(buf.Url))}
	resp := &probes.Copy{Struct: "net/http.response", Size: s.RespReadSize, Max: uint64(len(buf.Resp))}
	conn := &probes.Copy{Struct: "net/http.conn", Size: s.ConnReadSize, Max: uint64(len(buf.Conn))}

	// Request.Pattern exists since Go 1.23.
	route := &probes.Part{Gives: "http.route", Flag: s.HasPattern}
	// Read only when the ResponseWriter is net/http's HTTP/1.x *response,
	// recognised by its Header method.
	response := &probes.Part{Gives: "http.response.status_code and the response body size"}
	// The connection behind the response: its addresses (a traced client
	// on this host hands its context over by them) and TLS.
	connection := &probes.Part{
		Gives:    "network.local.*, url.scheme https, and the same-host parent",
		Requires: []*probes.Part{response},
	}

	return probes.Declaration{
		Uprobes: []probes.Uprobe{{Symbol: Symbol, Entry: s.ServeHttpEnter, Return: s.ServeHttpReturn}},
		Reads: []probes.Read{
			{Field: offsets.GoroutineID, Offset: s.OffG_goid, Size: probes.Word},
			{Field: offsets.RequestMethod, Offset: s.OffReqMethod, Size: probes.String, In: req},
			{Field: offsets.RequestURL, Offset: s.OffReqUrl, Size: probes.Word, In: req},
			{Field: offsets.RequestProtoMajor, Offset: s.OffReqProtoMajor, Size: probes.Word, In: req},
			{Field: offsets.RequestProtoMinor, Offset: s.OffReqProtoMinor, Size: probes.Word, In: req},
			{Field: offsets.RequestContentLength, Offset: s.OffReqContentLength, Size: probes.Word, In: req},
			{Field: offsets.RequestHost, Offset: s.OffReqHost, Size: probes.String, In: req},
			{Field: offsets.RequestRemoteAddr, Offset: s.OffReqRemoteAddr, Size: probes.String, In: req},
			{Field: offsets.RequestPattern, Offset: s.OffReqPattern, Size: probes.String, In: req, Part: route},
			{Field: offsets.URLPath, Offset: s.OffUrlPath, Size: probes.String, In: url},
			{Field: offsets.URLRawQuery, Offset: s.OffUrlRawQuery, Size: probes.String, In: url},
			// The incoming trace context, from Request.Header, a Swiss-table
			// map (Go 1.24+), at the entry.
			{Field: offsets.RequestHeader, Offset: s.OffReqHeader, Size: probes.Word},
			{Field: offsets.SwissMapDirPtr, Offset: s.OffMapDirPtr, Size: probes.Word},
			{Field: offsets.SwissMapDirLen, Offset: s.OffMapDirLen, Size: probes.Word},
			{Field: offsets.SwissTableGroups, Offset: s.OffTableGroups, Size: probes.Word},
			{Field: offsets.SwissGroupsData, Offset: s.OffGroupsData, Size: probes.Word},
			{Field: offsets.SwissGroupsLengthMask, Offset: s.OffGroupsLengthMask, Size: probes.Word},

			{Field: ResponseConn, Offset: s.OffRespConn, Size: probes.Word, In: resp, Part: response},
			{Field: ResponseStatus, Offset: s.OffRespStatus, Size: probes.Word, In: resp, Part: response},
			{Field: ResponseWritten, Offset: s.OffRespWritten, Size: probes.Word, In: resp, Part: response},

			{Field: HTTPConnRWC, Offset: s.OffConnRwc, Size: probes.Iface, In: conn, Part: connection},
			{Field: HTTPConnTLSState, Offset: s.OffConnTlsState, Size: probes.Word, In: conn, Part: connection},
			{Field: offsets.NetConnFD, Offset: s.OffNetconnFd, Size: probes.Word, Part: connection},
			{Field: offsets.NetFDLaddr, Offset: s.OffNetfdLaddr, Size: probes.Iface, Part: connection},
			{Field: offsets.NetFDRaddr, Offset: s.OffNetfdRaddr, Size: probes.Iface, Part: connection},
			{Field: offsets.TCPAddrIP, Offset: s.OffTcpaddrIp, Size: probes.Slice, Part: connection},
			{Field: offsets.TCPAddrPort, Offset: s.OffTcpaddrPort, Size: probes.Word, Part: connection},
		},
		Funcs: []probes.Func{
			{Symbol: responseHeader, Addr: s.ResponseHeaderFn, Part: response},
			{Symbol: probes.TCPConnClose, Addr: s.TcpconnCloseFn, Part: connection},
		},
	}
}
