package offsets

// The fields the probes read from a traced process. This file is the single
// list: the generator records every field in All, and probes pass these
// variables to Resolve. To track a new field, declare it here, add it to All
// and regenerate the table (see README.md).
var (
	// GoroutineID is runtime.g.goid, read through the g pointer in R14 to key
	// per-goroutine state.
	GoroutineID = Field{Struct: "runtime.g", Name: "goid"}
	// GoroutineParentID is runtime.g.parentGoid, the goid of the goroutine
	// that started this one (Go 1.21+): how a client call made in a
	// goroutine started by a handler finds the handler's span.
	GoroutineParentID = Field{Struct: "runtime.g", Name: "parentGoid"}

	// SwissMapDirPtr and SwissMapDirLen are internal/runtime/maps.Map's
	// directory (Go 1.24+ maps): with dirLen 0, dirPtr is the map's only
	// group; otherwise an array of dirLen *table.
	SwissMapDirPtr = Field{Struct: "internal/runtime/maps.Map", Name: "dirPtr"}
	SwissMapDirLen = Field{Struct: "internal/runtime/maps.Map", Name: "dirLen"}
	// SwissTableGroups is internal/runtime/maps.table.groups, a
	// groupsReference.
	SwissTableGroups = Field{Struct: "internal/runtime/maps.table", Name: "groups"}
	// SwissGroupsData and SwissGroupsLengthMask are the groups array of a
	// table and the number of groups minus one.
	SwissGroupsData       = Field{Struct: "internal/runtime/maps.groupsReference", Name: "data"}
	SwissGroupsLengthMask = Field{Struct: "internal/runtime/maps.groupsReference", Name: "lengthMask"}

	// HTTPResponseStatusCode is net/http.Response.StatusCode, what a client
	// received.
	HTTPResponseStatusCode = Field{Struct: "net/http.Response", Name: "StatusCode"}

	// RequestMethod is net/http.Request.Method.
	RequestMethod = Field{Struct: "net/http.Request", Name: "Method"}
	// RequestURL is net/http.Request.URL, a *net/url.URL.
	RequestURL = Field{Struct: "net/http.Request", Name: "URL"}
	// RequestProto is net/http.Request.Proto, e.g. "HTTP/1.1".
	RequestProto = Field{Struct: "net/http.Request", Name: "Proto"}
	// RequestProtoMajor is net/http.Request.ProtoMajor.
	RequestProtoMajor = Field{Struct: "net/http.Request", Name: "ProtoMajor"}
	// RequestProtoMinor is net/http.Request.ProtoMinor.
	RequestProtoMinor = Field{Struct: "net/http.Request", Name: "ProtoMinor"}
	// RequestContentLength is net/http.Request.ContentLength.
	RequestContentLength = Field{Struct: "net/http.Request", Name: "ContentLength"}
	// RequestHost is net/http.Request.Host.
	RequestHost = Field{Struct: "net/http.Request", Name: "Host"}
	// RequestRemoteAddr is net/http.Request.RemoteAddr.
	RequestRemoteAddr = Field{Struct: "net/http.Request", Name: "RemoteAddr"}
	// RequestURI is net/http.Request.RequestURI, the unmodified request
	// target (not to be confused with RequestURL).
	RequestURI = Field{Struct: "net/http.Request", Name: "RequestURI"}
	// RequestPattern is net/http.Request.Pattern, the ServeMux pattern that
	// matched. It exists since Go 1.23, so probes should treat it as
	// optional.
	RequestPattern = Field{Struct: "net/http.Request", Name: "Pattern"}
	// RequestHeader is net/http.Request.Header, a map[string][]string.
	RequestHeader = Field{Struct: "net/http.Request", Name: "Header"}
	// RequestCtx is net/http.Request.ctx, the request's context.Context.
	RequestCtx = Field{Struct: "net/http.Request", Name: "ctx"}

	// URLScheme is net/url.URL.Scheme.
	URLScheme = Field{Struct: "net/url.URL", Name: "Scheme"}
	// URLHost is net/url.URL.Host.
	URLHost = Field{Struct: "net/url.URL", Name: "Host"}
	// URLPath is net/url.URL.Path.
	URLPath = Field{Struct: "net/url.URL", Name: "Path"}
	// URLRawQuery is net/url.URL.RawQuery.
	URLRawQuery = Field{Struct: "net/url.URL", Name: "RawQuery"}

	// ResponseConn is net/http.response.conn, the server connection.
	ResponseConn = Field{Struct: "net/http.response", Name: "conn"}
	// ResponseReq is net/http.response.req, the request being answered.
	ResponseReq = Field{Struct: "net/http.response", Name: "req"}
	// ResponseStatus is net/http.response.status, the status code written.
	ResponseStatus = Field{Struct: "net/http.response", Name: "status"}
	// ResponseWritten is net/http.response.written, body bytes written.
	ResponseWritten = Field{Struct: "net/http.response", Name: "written"}
	// ResponseWroteHeader is net/http.response.wroteHeader.
	ResponseWroteHeader = Field{Struct: "net/http.response", Name: "wroteHeader"}
	// ResponseContentLength is net/http.response.contentLength, the
	// Content-Length the handler declared, or -1.
	ResponseContentLength = Field{Struct: "net/http.response", Name: "contentLength"}

	// HTTPConnRWC is net/http.conn.rwc, the underlying net.Conn.
	HTTPConnRWC = Field{Struct: "net/http.conn", Name: "rwc"}
	// HTTPConnRemoteAddr is net/http.conn.remoteAddr.
	HTTPConnRemoteAddr = Field{Struct: "net/http.conn", Name: "remoteAddr"}
	// HTTPConnTLSState is net/http.conn.tlsState, nil for plain HTTP.
	HTTPConnTLSState = Field{Struct: "net/http.conn", Name: "tlsState"}

	// NetConnFD is net.conn.fd, the *net.netFD behind a TCPConn.
	NetConnFD = Field{Struct: "net.conn", Name: "fd"}
	// NetFDPfd is net.netFD.pfd, the embedded internal/poll.FD.
	NetFDPfd = Field{Struct: "net.netFD", Name: "pfd"}
	// NetFDLaddr is net.netFD.laddr, the local net.Addr.
	NetFDLaddr = Field{Struct: "net.netFD", Name: "laddr"}
	// PersistConnConn is net/http.persistConn.conn, the net.Conn a client
	// request is written to.
	PersistConnConn = Field{Struct: "net/http.persistConn", Name: "conn"}
	// NetFDRaddr is net.netFD.raddr, the remote net.Addr.
	NetFDRaddr = Field{Struct: "net.netFD", Name: "raddr"}
	// PollFDSysfd is internal/poll.FD.Sysfd, the file descriptor number.
	PollFDSysfd = Field{Struct: "internal/poll.FD", Name: "Sysfd"}

	// TCPAddrIP is net.TCPAddr.IP.
	TCPAddrIP = Field{Struct: "net.TCPAddr", Name: "IP"}
	// TCPAddrPort is net.TCPAddr.Port.
	TCPAddrPort = Field{Struct: "net.TCPAddr", Name: "Port"}

	// BufioWriterBuf is bufio.Writer.buf, the buffered bytes' slice.
	BufioWriterBuf = Field{Struct: "bufio.Writer", Name: "buf"}
	// BufioWriterN is bufio.Writer.n, how many bytes of buf are in use.
	BufioWriterN = Field{Struct: "bufio.Writer", Name: "n"}

	// SQLDBConnector is database/sql.DB.connector, the driver.Connector.
	SQLDBConnector = Field{Struct: "database/sql.DB", Name: "connector"}
	// SQLStmtDB is database/sql.Stmt.db.
	SQLStmtDB = Field{Struct: "database/sql.Stmt", Name: "db"}
	// SQLStmtQuery is database/sql.Stmt.query, the prepared text.
	SQLStmtQuery = Field{Struct: "database/sql.Stmt", Name: "query"}
	// SQLDSNConnectorDSN is database/sql.dsnConnector.dsn, the data
	// source name given to sql.Open.
	SQLDSNConnectorDSN = Field{Struct: "database/sql.dsnConnector", Name: "dsn"}
	// SQLDSNConnectorDriver is database/sql.dsnConnector.driver.
	SQLDSNConnectorDriver = Field{Struct: "database/sql.dsnConnector", Name: "driver"}
	// SQLDriverResultResi is database/sql.driverResult.resi, the driver's
	// own Result that an exec's Result wraps.
	SQLDriverResultResi = Field{Struct: "database/sql.driverResult", Name: "resi"}
)

// All returns every field the bundled table records, in a fixed order. It
// returns a new slice on each call so callers may modify it.
func All() []Field {
	return []Field{
		GoroutineID,
		GoroutineParentID,
		HTTPResponseStatusCode,
		RequestHeader,
		SwissMapDirPtr,
		SwissMapDirLen,
		SwissTableGroups,
		SwissGroupsData,
		SwissGroupsLengthMask,

		RequestMethod,
		RequestURL,
		RequestProto,
		RequestProtoMajor,
		RequestProtoMinor,
		RequestContentLength,
		RequestHost,
		RequestRemoteAddr,
		RequestURI,
		RequestPattern,
		RequestCtx,

		URLScheme,
		URLHost,
		URLPath,
		URLRawQuery,

		ResponseConn,
		ResponseReq,
		ResponseStatus,
		ResponseWritten,
		ResponseWroteHeader,
		ResponseContentLength,

		HTTPConnRWC,
		HTTPConnRemoteAddr,
		HTTPConnTLSState,

		NetConnFD,
		NetFDPfd,
		NetFDLaddr,
		PersistConnConn,
		NetFDRaddr,
		PollFDSysfd,

		TCPAddrIP,
		TCPAddrPort,

		BufioWriterBuf,
		BufioWriterN,

		SQLDBConnector,
		SQLStmtDB,
		SQLStmtQuery,
		SQLDSNConnectorDSN,
		SQLDSNConnectorDriver,
		SQLDriverResultResi,
	}
}
