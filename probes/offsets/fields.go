package offsets

// The fields the probes read from a traced process. This file is the single
// list: the generator records every field in All, and probes pass these
// variables to Resolve. To track a new field, declare it here, add it to All
// and regenerate the table (see README.md).
var (
	// GoroutineID is runtime.g.goid, read through the g pointer in R14 to key
	// per-goroutine state.
	GoroutineID = Field{"runtime.g", "goid"}
	// GoroutineParentID is runtime.g.parentGoid, the goid of the goroutine
	// that started this one (Go 1.21+): how a client call made in a
	// goroutine started by a handler finds the handler's span.
	GoroutineParentID = Field{"runtime.g", "parentGoid"}

	// SwissMapDirPtr and SwissMapDirLen are internal/runtime/maps.Map's
	// directory (Go 1.24+ maps): with dirLen 0, dirPtr is the map's only
	// group; otherwise an array of dirLen *table.
	SwissMapDirPtr = Field{"internal/runtime/maps.Map", "dirPtr"}
	SwissMapDirLen = Field{"internal/runtime/maps.Map", "dirLen"}
	// SwissTableGroups is internal/runtime/maps.table.groups, a
	// groupsReference.
	SwissTableGroups = Field{"internal/runtime/maps.table", "groups"}
	// SwissGroupsData and SwissGroupsLengthMask are the groups array of a
	// table and the number of groups minus one.
	SwissGroupsData       = Field{"internal/runtime/maps.groupsReference", "data"}
	SwissGroupsLengthMask = Field{"internal/runtime/maps.groupsReference", "lengthMask"}

	// HTTPResponseStatusCode is net/http.Response.StatusCode, what a client
	// received.
	HTTPResponseStatusCode = Field{"net/http.Response", "StatusCode"}

	// RequestMethod is net/http.Request.Method.
	RequestMethod = Field{"net/http.Request", "Method"}
	// RequestURL is net/http.Request.URL, a *net/url.URL.
	RequestURL = Field{"net/http.Request", "URL"}
	// RequestProto is net/http.Request.Proto, e.g. "HTTP/1.1".
	RequestProto = Field{"net/http.Request", "Proto"}
	// RequestProtoMajor is net/http.Request.ProtoMajor.
	RequestProtoMajor = Field{"net/http.Request", "ProtoMajor"}
	// RequestProtoMinor is net/http.Request.ProtoMinor.
	RequestProtoMinor = Field{"net/http.Request", "ProtoMinor"}
	// RequestContentLength is net/http.Request.ContentLength.
	RequestContentLength = Field{"net/http.Request", "ContentLength"}
	// RequestHost is net/http.Request.Host.
	RequestHost = Field{"net/http.Request", "Host"}
	// RequestRemoteAddr is net/http.Request.RemoteAddr.
	RequestRemoteAddr = Field{"net/http.Request", "RemoteAddr"}
	// RequestURI is net/http.Request.RequestURI, the unmodified request
	// target (not to be confused with RequestURL).
	RequestURI = Field{"net/http.Request", "RequestURI"}
	// RequestPattern is net/http.Request.Pattern, the ServeMux pattern that
	// matched. It exists since Go 1.23, so probes should treat it as
	// optional.
	RequestPattern = Field{"net/http.Request", "Pattern"}
	// RequestHeader is net/http.Request.Header, a map[string][]string.
	RequestHeader = Field{"net/http.Request", "Header"}
	// RequestCtx is net/http.Request.ctx, the request's context.Context.
	RequestCtx = Field{"net/http.Request", "ctx"}

	// URLScheme is net/url.URL.Scheme.
	URLScheme = Field{"net/url.URL", "Scheme"}
	// URLHost is net/url.URL.Host.
	URLHost = Field{"net/url.URL", "Host"}
	// URLPath is net/url.URL.Path.
	URLPath = Field{"net/url.URL", "Path"}
	// URLRawQuery is net/url.URL.RawQuery.
	URLRawQuery = Field{"net/url.URL", "RawQuery"}

	// ResponseConn is net/http.response.conn, the server connection.
	ResponseConn = Field{"net/http.response", "conn"}
	// ResponseReq is net/http.response.req, the request being answered.
	ResponseReq = Field{"net/http.response", "req"}
	// ResponseStatus is net/http.response.status, the status code written.
	ResponseStatus = Field{"net/http.response", "status"}
	// ResponseWritten is net/http.response.written, body bytes written.
	ResponseWritten = Field{"net/http.response", "written"}
	// ResponseWroteHeader is net/http.response.wroteHeader.
	ResponseWroteHeader = Field{"net/http.response", "wroteHeader"}
	// ResponseContentLength is net/http.response.contentLength, the
	// Content-Length the handler declared, or -1.
	ResponseContentLength = Field{"net/http.response", "contentLength"}

	// HTTPConnRWC is net/http.conn.rwc, the underlying net.Conn.
	HTTPConnRWC = Field{"net/http.conn", "rwc"}
	// HTTPConnRemoteAddr is net/http.conn.remoteAddr.
	HTTPConnRemoteAddr = Field{"net/http.conn", "remoteAddr"}
	// HTTPConnTLSState is net/http.conn.tlsState, nil for plain HTTP.
	HTTPConnTLSState = Field{"net/http.conn", "tlsState"}

	// NetConnFD is net.conn.fd, the *net.netFD behind a TCPConn.
	NetConnFD = Field{"net.conn", "fd"}
	// NetFDPfd is net.netFD.pfd, the embedded internal/poll.FD.
	NetFDPfd = Field{"net.netFD", "pfd"}
	// NetFDLaddr is net.netFD.laddr, the local net.Addr.
	NetFDLaddr = Field{"net.netFD", "laddr"}
	// PersistConnConn is net/http.persistConn.conn, the net.Conn a client
	// request is written to.
	PersistConnConn = Field{"net/http.persistConn", "conn"}
	// NetFDRaddr is net.netFD.raddr, the remote net.Addr.
	NetFDRaddr = Field{"net.netFD", "raddr"}
	// PollFDSysfd is internal/poll.FD.Sysfd, the file descriptor number.
	PollFDSysfd = Field{"internal/poll.FD", "Sysfd"}

	// TCPAddrIP is net.TCPAddr.IP.
	TCPAddrIP = Field{"net.TCPAddr", "IP"}
	// TCPAddrPort is net.TCPAddr.Port.
	TCPAddrPort = Field{"net.TCPAddr", "Port"}

	// BufioWriterBuf is bufio.Writer.buf, the buffered bytes' slice.
	BufioWriterBuf = Field{"bufio.Writer", "buf"}
	// BufioWriterN is bufio.Writer.n, how many bytes of buf are in use.
	BufioWriterN = Field{"bufio.Writer", "n"}

	// SQLDBConnector is database/sql.DB.connector, the driver.Connector.
	SQLDBConnector = Field{"database/sql.DB", "connector"}
	// SQLStmtDB is database/sql.Stmt.db.
	SQLStmtDB = Field{"database/sql.Stmt", "db"}
	// SQLStmtQuery is database/sql.Stmt.query, the prepared text.
	SQLStmtQuery = Field{"database/sql.Stmt", "query"}
	// SQLDSNConnectorDSN is database/sql.dsnConnector.dsn, the data
	// source name given to sql.Open.
	SQLDSNConnectorDSN = Field{"database/sql.dsnConnector", "dsn"}
	// SQLDSNConnectorDriver is database/sql.dsnConnector.driver.
	SQLDSNConnectorDriver = Field{"database/sql.dsnConnector", "driver"}
	// SQLDriverResultResi is database/sql.driverResult.resi, the driver's
	// own Result that an exec's Result wraps.
	SQLDriverResultResi = Field{"database/sql.driverResult", "resi"}
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
