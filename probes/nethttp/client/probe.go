// Package client instruments the client side of Go's net/http: one CLIENT
// span per round trip, child of the span active on the calling goroutine.
package client

import (
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/arch/x86/x86asm"

	"github.com/zerotrace/zerotrace/correlate/protocols/genai"
	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Symbol is the probed function: every request an http.Client sends,
// redirects included, goes through it once.
const Symbol = "net/http.(*Transport).roundTrip"

// EndSymbol is the closure Symbol defers once it has validated the
// request: every later return calls it, on the caller's goroutine, with
// err through the closure and the *Response in Symbol's frame.
const EndSymbol = "net/http.(*Transport).roundTrip.func1"

// AltSymbols are the alternate round trippers through which Symbol sends an
// HTTPS request that HTTP/2 serves on a connection it already has, before
// it defers EndSymbol: their RETs end those round trips. Go 1.26 bundles
// HTTP/2 as http2noDialH2RoundTripper, Go 1.27 as http2RoundTripper;
// golang.org/x/net/http2.ConfigureTransport registers its own.
var AltSymbols = []string{
	"net/http.http2noDialH2RoundTripper.RoundTrip",
	"net/http.http2RoundTripper.RoundTrip",
	"golang.org/x/net/http2.noDialH2RoundTripper.RoundTrip",
}

// errorStringError is fun[0] of the itab of an error made by errors.New,
// such as net/http.ErrSkipAltProtocol.
const errorStringError = "errors.(*errorString).Error"

// ConnSymbol is called by Symbol once an HTTP/1.x request has its
// connection, before the request is written: where the span learns its
// peer address and hands its context to a traced server on this host.
const ConnSymbol = "net/http.(*persistConn).roundTrip"

// WriteSubsetSymbol writes a request's own headers into the connection's
// *bufio.Writer, on the connection's write loop goroutine: where the
// write-user injection adds the traceparent line.
const WriteSubsetSymbol = "net/http.Header.writeSubset"

// bufioWriterWrite is the method by which the injection recognises the
// writer it can extend: the only method of an io.Writer's itab, so equal to
// this exactly when the writer is a *bufio.Writer. Found in stripped
// binaries too (pclntab), unlike the itab's own symbol.
const bufioWriterWrite = "bufio.(*Writer).Write"

// WriteSymbol takes every byte an HTTP/1.x client connection writes
// (request heads and bodies, as bufio.Writer flushes them): its entry
// copies a model call's request.
const WriteSymbol = "net/http.persistConnWriter.Write"

// ReadSymbol reads every byte an HTTP/1.x client connection receives
// (bufio.Reader fills): on the conditional jump right after its call
// pc.conn.Read(p), a model call's response bytes are copied, n in RAX.
const ReadSymbol = "net/http.(*persistConn).Read"

// CloseSymbol closes an HTTP/1.x client connection: a model call whose
// response was not read to its end (the body closed early, the context
// cancelled) ends there.
const CloseSymbol = "net/http.(*persistConn).closeLocked"

// CopyWriteSymbols write what io.Copy copies into a *net.TCPConn through
// its generic ReadFrom: where a request body longer than net/http's write
// buffer goes (persistConnWriter.ReadFrom), bypassing WriteSymbol. The
// copies' tail holds what the Go SDKs write last ("model", "stream").
var CopyWriteSymbols = []string{"net.tcpConnWithoutReadFrom.Write"}

// TLSWriteSymbol takes the plaintext of every write of a TLS connection:
// where the bytes of a model call over HTTP/1.1 over TLS are copied (its
// body bypasses WriteSymbol when io.Copy writes it). tlsConnClose
// recognises a *tls.Conn behind a net.Conn.
const (
	TLSWriteSymbol = "crypto/tls.(*Conn).Write"
	tlsConnClose   = "crypto/tls.(*Conn).Close"
)

// H2HeadersSymbols write the headers of a request HTTP/2 sends, on a
// stream that has its ID (Go 1.26 bundles HTTP/2 into net/http, Go 1.27
// moved it to net/http/internal/http2): their entry ties a model call's
// round trip (by its request's URL) to its stream and its *tls.Conn.
var H2HeadersSymbols = []string{
	"net/http.(*http2clientStream).encodeAndWriteHeaders",
	"net/http/internal/http2.(*clientStream).encodeAndWriteHeaders",
}

// TLSReadSymbol hands the plaintext of every read of a TLS connection to
// its caller: at the copy it inlines (gobin.CopySite), the bytes a model
// call's HTTP/2 connection receives are copied.
const TLSReadSymbol = "crypto/tls.(*Conn).Read"

// copySite finds TLSReadSymbol's copy into the caller's buffer, as a
// uprobe site whose one slot is the receiver's.
func copySite(b *gobin.Binary, f gobin.Func) (gobin.CallResult, error) {
	site, err := b.CopySite(f)
	if err != nil {
		return gobin.CallResult{}, err
	}
	return gobin.CallResult{Offset: site.Offset, Slots: []int64{site.ReceiverSlot}}, nil
}

// readSite finds ReadSymbol's jump after pc.conn.Read(p), and the spill
// slots of p's pointer (RBX at entry) and pc (RAX).
func readSite(b *gobin.Binary, f gobin.Func) (gobin.CallResult, error) {
	return b.CallResultSite(f, x86asm.RBX, x86asm.RAX)
}

// The fields only this probe reads.
var (
	// HTTPResponseStatusCode is net/http.Response.StatusCode, what a client
	// received.
	HTTPResponseStatusCode = offsets.Field{Struct: "net/http.Response", Name: "StatusCode"}
	// HTTPResponseRequest is net/http.Response.Request, the request it
	// answers: a response read from a stack slot is checked against it.
	HTTPResponseRequest = offsets.Field{Struct: "net/http.Response", Name: "Request"}
	// PersistConnConn is net/http.persistConn.conn, the net.Conn a client
	// request is written to.
	PersistConnConn = offsets.Field{Struct: "net/http.persistConn", Name: "conn"}
	// BufioWriterBuf is bufio.Writer.buf, the buffered bytes' slice.
	BufioWriterBuf = offsets.Field{Struct: "bufio.Writer", Name: "buf"}
	// BufioWriterN is bufio.Writer.n, how many bytes of buf are in use.
	BufioWriterN = offsets.Field{Struct: "bufio.Writer", Name: "n"}

	// H2ClientRequestURL is the URL of the request HTTP/2 writes since Go
	// 1.27 (a *ClientRequest, sharing the *Request's URL); before, that
	// request is a *net/http.Request (offsets.RequestURL).
	H2ClientRequestURL = offsets.Field{Struct: "net/http/internal/http2.ClientRequest", Name: "URL"}
	// H2ClientStreamID is the HTTP/2 client stream's ID, and
	// H2ClientStreamConn its *ClientConn (Go 1.26 names; Alt: 1.27's).
	H2ClientStreamID   = offsets.Field{Struct: "net/http.http2clientStream", Name: "ID"}
	H2ClientStreamConn = offsets.Field{Struct: "net/http.http2clientStream", Name: "cc"}
	// H2ClientConnTConn is the HTTP/2 client connection's net.Conn (a
	// *tls.Conn for HTTPS).
	H2ClientConnTConn = offsets.Field{Struct: "net/http.http2ClientConn", Name: "tconn"}

	h2ClientStreamID   = offsets.Field{Struct: "net/http/internal/http2.clientStream", Name: "ID"}
	h2ClientStreamConn = offsets.Field{Struct: "net/http/internal/http2.clientStream", Name: "cc"}
	h2ClientConnTConn  = offsets.Field{Struct: "net/http/internal/http2.ClientConn", Name: "tconn"}
)

// Probe is the net/http client instrumentation.
var Probe = probes.Declare("net/http client", load, declare, record, bodyRecord, h2StreamRecord)

// load is the object with genai_suffixes filled from the path endings
// correlate/protocols/genai recognises, so that BPF copies the bytes of the
// calls user space will read.
func load() (*ebpf.CollectionSpec, error) {
	spec, err := loadClient()
	if err != nil {
		return nil, err
	}
	m, lens := spec.Maps["genai_suffixes"], spec.Maps["genai_suffix_lens"]
	if m == nil || lens == nil {
		return nil, fmt.Errorf("net/http client: no genai_suffixes map")
	}
	var mask uint32
	for _, d := range genai.DefaultSuffixes {
		var k clientGenaiSuffix
		if len(d.Suffix) >= len(k.S) {
			return nil, fmt.Errorf("net/http client: model API path ending %q longer than %d bytes", d.Suffix, len(k.S)-1)
		}
		for i := 0; i < len(d.Suffix); i++ {
			k.S[i] = int8(d.Suffix[i])
		}
		m.Contents = append(m.Contents, ebpf.MapKV{Key: k, Value: uint8(d.API)})
		mask |= 1 << len(d.Suffix)
	}
	lens.Contents = []ebpf.MapKV{{Key: uint32(0), Value: mask}}
	return spec, nil
}

func declare(s *clientSpecs) probes.Declaration {
	var buf clientScratch
	req := &probes.Copy{Struct: "net/http.Request", Size: s.ReqReadSize, Max: uint64(len(buf.Req))}
	url := &probes.Copy{Struct: "net/url.URL", Size: s.UrlReadSize, Max: uint64(len(buf.Url))}
	resp := &probes.Copy{Struct: "net/http.Response", Size: s.RespReadSize, Max: uint64(len(buf.Resp))}

	// Where round trips end: at the entry of the closure roundTrip defers
	// (emulated), reading its frame, and on the RETs of the alternate
	// round tripper; or, when the frame is not recognised, on roundTrip's
	// own RETs (single-stepped), as a fallback.
	deferred := &probes.Part{Gives: "at the entry of the closure it defers (emulated)"}
	rets := &probes.Part{Gives: "round trips end on the RET instructions of " + Symbol + " (single-stepped)", Instead: deferred}

	// What ConnSymbol's probe does. Without it the spans lose their peer
	// address and same-host matching, nothing else.
	peer := &probes.Part{Gives: "network.peer.*, and the same-host context of the server called"}
	// The write-user injection, when chosen: it reads the request's header
	// map (to find a traceparent already there) and the writer's buffer.
	// Its program is loaded only then: kernels in lockdown refuse any
	// program that calls bpf_probe_write_user.
	writeUser := &probes.Part{
		Gives:    "traceparent injection with bpf_probe_write_user at " + WriteSubsetSymbol,
		Flag:     s.InjectWriteUser,
		Option:   probes.Options.WriteUser,
		Requires: []*probes.Part{peer},
	}

	// Model calls' bodies: the bytes of the request and response of a call
	// to a model API, read where net/http writes and reads an HTTP/1.x
	// connection. The read site is found in each binary's code; where it
	// is not, spans of model calls are plain HTTP client spans.
	bodies := &probes.Part{
		Gives:    "GenAI attributes of model calls over HTTP/1.x (request and response bodies), and their end at the response body's",
		Flag:     s.CaptureBodies,
		Requires: []*probes.Part{peer},
	}
	// The same over HTTP/2 (Go's HTTPS default): the stream a model call
	// gets, and the plaintext of its connection's every write and read.
	// Where the binary's code or fields do not allow it, spans of model
	// calls over HTTP/2 are plain HTTP client spans.
	h2 := &probes.Part{
		Gives:    "GenAI attributes of model calls over HTTP/2 (their streams' frames in the TLS plaintext), and their end at the response stream's",
		Flag:     s.CaptureH2,
		Requires: []*probes.Part{bodies},
	}

	return probes.Declaration{
		Uprobes: append(append([]probes.Uprobe{
			// The ends before the start (see probes.Uprobe).
			{Symbol: EndSymbol, Entry: s.RoundTripEnd, Part: deferred},
			{Symbol: Symbol, Return: s.RoundTripReturn, Part: rets},
		}, alt(AltSymbols, s, deferred)...),
			// The copies before the watch that arms them (in ConnSymbol's
			// program).
			probes.Uprobe{Symbol: ReadSymbol, Entry: s.PconnRead, Part: bodies,
				At: readSite, Slots: []*ebpf.VariableSpec{s.OffPconnReadP, s.OffPconnReadPc}},
			probes.Uprobe{Symbol: WriteSymbol, Entry: s.PconnWrite, Part: bodies},
			probes.Uprobe{Symbol: CloseSymbol, Entry: s.PconnClose, Part: bodies, Optional: true},
			probes.Uprobe{Symbol: CopyWriteSymbols[0], Entry: s.TcpCopyWrite, Part: bodies, Optional: true},
			probes.Uprobe{Symbol: TLSWriteSymbol, Entry: s.TlsConnWrite, Part: bodies, Optional: true},
			probes.Uprobe{Symbol: TLSReadSymbol, Entry: s.TlsConnReadCopy, Part: h2, Optional: true,
				At: copySite, Slots: []*ebpf.VariableSpec{s.OffTlsReadConn}},
			probes.Uprobe{Symbol: H2HeadersSymbols[0], Entry: s.H2WriteHeaders, Part: h2, Optional: true},
			probes.Uprobe{Symbol: H2HeadersSymbols[1], Entry: s.H2WriteHeaders, Part: h2, Optional: true},
			probes.Uprobe{Symbol: Symbol, Entry: s.RoundTripEnter},
			probes.Uprobe{Symbol: ConnSymbol, Entry: s.PersistConnRoundTripEnter, Part: peer},
			probes.Uprobe{Symbol: WriteSubsetSymbol, Entry: s.WriteSubsetEnter, Part: writeUser},
		),
		Frames: []probes.Frame{{
			Symbol:       Symbol,
			Results:      []*ebpf.VariableSpec{s.OffRtResp, s.OffRtErr},
			Deferred:     EndSymbol,
			Captured:     s.RtClosureErr,
			CapturedWord: 1,
			Part:         deferred,
		}},
		Reads: []probes.Read{
			{Field: offsets.GoroutineID, Offset: s.OffG_goid, Size: probes.Word},
			{Field: offsets.GoroutineParentID, Offset: s.OffG_parentGoid, Size: probes.Word},
			{Field: offsets.RequestMethod, Offset: s.OffReqMethod, Size: probes.String, In: req},
			{Field: offsets.RequestURL, Offset: s.OffReqUrl, Size: probes.Word, In: req},
			{Field: offsets.RequestContentLength, Offset: s.OffReqContentLength, Size: probes.Word, In: req},
			{Field: offsets.URLScheme, Offset: s.OffUrlScheme, Size: probes.String, In: url},
			{Field: offsets.URLHost, Offset: s.OffUrlHost, Size: probes.String, In: url},
			{Field: offsets.URLPath, Offset: s.OffUrlPath, Size: probes.String, In: url},
			{Field: offsets.URLRawQuery, Offset: s.OffUrlRawQuery, Size: probes.String, In: url},
			{Field: HTTPResponseStatusCode, Offset: s.OffRespStatusCode, Size: probes.Word, In: resp},
			{Field: HTTPResponseRequest, Offset: s.OffRespRequest, Size: probes.Word, In: resp},

			{Field: PersistConnConn, Offset: s.OffPconnConn, Size: probes.Iface, Part: peer},
			{Field: offsets.NetConnFD, Offset: s.OffNetconnFd, Size: probes.Word, Part: peer},
			{Field: offsets.NetFDLaddr, Offset: s.OffNetfdLaddr, Size: probes.Iface, Part: peer},
			{Field: offsets.NetFDRaddr, Offset: s.OffNetfdRaddr, Size: probes.Iface, Part: peer},
			{Field: offsets.TCPAddrIP, Offset: s.OffTcpaddrIp, Size: probes.Slice, Part: peer},
			{Field: offsets.TCPAddrPort, Offset: s.OffTcpaddrPort, Size: probes.Word, Part: peer},

			{Field: H2ClientRequestURL, Alt: []offsets.Field{offsets.RequestURL}, Offset: s.OffH2reqUrl, Size: probes.Word, Part: h2},
			{Field: H2ClientStreamID, Alt: []offsets.Field{h2ClientStreamID}, Offset: s.OffCsId, Size: 4, Part: h2},
			{Field: H2ClientStreamConn, Alt: []offsets.Field{h2ClientStreamConn}, Offset: s.OffCsCc, Size: probes.Word, Part: h2},
			{Field: H2ClientConnTConn, Alt: []offsets.Field{h2ClientConnTConn}, Offset: s.OffCcTconn, Size: probes.Iface, Part: h2},

			{Field: offsets.RequestHeader, Offset: s.OffReqHeader, Size: probes.Word, Part: writeUser},
			{Field: offsets.SwissMapDirPtr, Offset: s.OffMapDirPtr, Size: probes.Word, Part: writeUser},
			{Field: offsets.SwissMapDirLen, Offset: s.OffMapDirLen, Size: probes.Word, Part: writeUser},
			{Field: offsets.SwissTableGroups, Offset: s.OffTableGroups, Size: probes.Word, Part: writeUser},
			{Field: offsets.SwissGroupsData, Offset: s.OffGroupsData, Size: probes.Word, Part: writeUser},
			{Field: offsets.SwissGroupsLengthMask, Offset: s.OffGroupsLengthMask, Size: probes.Word, Part: writeUser},
			{Field: BufioWriterBuf, Offset: s.OffBufioBuf, Size: probes.Slice, Part: writeUser},
			{Field: BufioWriterN, Offset: s.OffBufioN, Size: probes.Word, Part: writeUser},
		},
		Funcs: []probes.Func{
			{Symbol: errorStringError, Addr: s.ErrorstringErrorFn, Part: deferred, Optional: true},
			{Symbol: probes.TCPConnClose, Addr: s.TcpconnCloseFn, Part: peer},
			{Symbol: bufioWriterWrite, Addr: s.BufioWriterWriteFn, Part: writeUser},
			{Symbol: tlsConnClose, Addr: s.TlsconnCloseFn, Part: bodies, Optional: true},
		},
	}
}

// alt places the end program of HTTP/2 round trips that skip the deferred
// closure on the RETs of each alternate round tripper the binary has.
func alt(symbols []string, s *clientSpecs, part *probes.Part) []probes.Uprobe {
	var ups []probes.Uprobe
	for _, sym := range symbols {
		ups = append(ups, probes.Uprobe{Symbol: sym, Return: s.RoundTripAltReturn, Optional: true, Part: part})
	}
	return ups
}
