package offsets

// The fields of the runtime and standard library that several probes read
// from a traced process. A field only one probe reads is declared in that
// probe's folder; the generator records these (All) and every field a
// registered probe declares (see README.md).
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

	// NetConnFD is net.conn.fd, the *net.netFD behind a TCPConn.
	NetConnFD = Field{Struct: "net.conn", Name: "fd"}
	// NetFDPfd is net.netFD.pfd, the embedded internal/poll.FD.
	NetFDPfd = Field{Struct: "net.netFD", Name: "pfd"}
	// NetFDLaddr is net.netFD.laddr, the local net.Addr.
	NetFDLaddr = Field{Struct: "net.netFD", Name: "laddr"}
	// NetFDRaddr is net.netFD.raddr, the remote net.Addr.
	NetFDRaddr = Field{Struct: "net.netFD", Name: "raddr"}
	// PollFDSysfd is internal/poll.FD.Sysfd, the file descriptor number.
	PollFDSysfd = Field{Struct: "internal/poll.FD", Name: "Sysfd"}

	// TCPAddrIP is net.TCPAddr.IP.
	TCPAddrIP = Field{Struct: "net.TCPAddr", Name: "IP"}
	// TCPAddrPort is net.TCPAddr.Port.
	TCPAddrPort = Field{Struct: "net.TCPAddr", Name: "Port"}
)

// All returns the fields declared here, in a fixed order. It returns a new
// slice on each call so callers may modify it.
func All() []Field {
	return []Field{
		GoroutineID,
		GoroutineParentID,
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

		NetConnFD,
		NetFDPfd,
		NetFDLaddr,
		NetFDRaddr,
		PollFDSysfd,

		TCPAddrIP,
		TCPAddrPort,
	}
}
