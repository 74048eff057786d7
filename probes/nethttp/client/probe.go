// Package client instruments the client side of Go's net/http: one CLIENT
// span per round trip, child of the span active on the calling goroutine.
package client

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Symbol is the probed function: every request an http.Client sends,
// redirects included, goes through it once.
const Symbol = "net/http.(*Transport).roundTrip"

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

// Capacities of the per-CPU copies in probe.c (struct scratch).
const (
	scratchReq   = 512
	scratchSmall = 256
)

var requiredFields = []offsets.Field{
	offsets.GoroutineID, offsets.GoroutineParentID,
	offsets.RequestMethod, offsets.RequestURL, offsets.RequestContentLength,
	offsets.URLScheme, offsets.URLHost, offsets.URLPath, offsets.URLRawQuery,
	offsets.HTTPResponseStatusCode,
}

// connFields are what ConnSymbol's probe reads. Without any of them the
// spans lose their peer address and same-host matching, nothing else.
var connFields = []offsets.Field{
	offsets.PersistConnConn, offsets.NetConnFD, offsets.NetFDLaddr, offsets.NetFDRaddr,
	offsets.TCPAddrIP, offsets.TCPAddrPort,
}

// writeUserFields are what the write-user injection reads: the request's
// header map (to find a traceparent already there) and the writer's buffer.
var writeUserFields = []offsets.Field{
	offsets.RequestHeader, offsets.SwissMapDirPtr, offsets.SwissMapDirLen,
	offsets.SwissTableGroups, offsets.SwissGroupsData, offsets.SwissGroupsLengthMask,
	offsets.BufioWriterBuf, offsets.BufioWriterN,
}

// Instrumentation is the net/http client instrumentation.
type Instrumentation struct {
	// InjectWriteUser adds the traceparent header to outgoing requests
	// with bpf_probe_write_user (see probes/inject), on kernels that
	// allow it.
	InjectWriteUser bool
}

// Name implements probes.Instrumentation.
func (Instrumentation) Name() string { return "net/http client" }

// Fields implements probes.Instrumentation.
func (in Instrumentation) Fields() (required, optional []offsets.Field) {
	if in.InjectWriteUser {
		return requiredFields, append(append([]offsets.Field{}, connFields...), writeUserFields...)
	}
	return requiredFields, connFields
}

// Applies implements probes.Instrumentation.
func (Instrumentation) Applies(t *probes.Target) bool {
	_, err := t.Bin.Func(Symbol)
	return err == nil
}

// Spec implements probes.Instrumentation.
func (in Instrumentation) Spec(t *probes.Target, shared *events.Shared) (*ebpf.CollectionSpec, error) {
	spec, err := loadClient()
	if err != nil {
		return nil, fmt.Errorf("net/http client: %w", err)
	}
	var specs clientSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("net/http client: %w", err)
	}
	const ptr, str = 8, 16
	reqSize, err := t.PrefixEnd(scratchReq, map[offsets.Field]uint64{
		offsets.RequestMethod: str, offsets.RequestURL: ptr, offsets.RequestContentLength: 8,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: net/http client: net/http.Request: %w", t, err)
	}
	urlSize, err := t.PrefixEnd(scratchSmall, map[offsets.Field]uint64{
		offsets.URLScheme: str, offsets.URLHost: str, offsets.URLPath: str, offsets.URLRawQuery: str,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: net/http client: net/url.URL: %w", t, err)
	}
	off := func(f offsets.Field) uint64 {
		o, _ := t.Offsets.Get(f)
		return o
	}
	var write uint64
	if in.InjectWriteUser {
		if write, err = WriteUserReady(t); err != nil {
			return nil, fmt.Errorf("%s: net/http client: --inject write-user: %w", t, err)
		}
	}
	v := &specs.clientVariableSpecs
	sets := []struct {
		v   *ebpf.VariableSpec
		val any
	}{
		{v.OffG_goid, off(offsets.GoroutineID)},
		{v.OffG_parentGoid, off(offsets.GoroutineParentID)},
		{v.OffReqMethod, off(offsets.RequestMethod)},
		{v.OffReqUrl, off(offsets.RequestURL)},
		{v.OffReqContentLength, off(offsets.RequestContentLength)},
		{v.OffUrlScheme, off(offsets.URLScheme)},
		{v.OffUrlHost, off(offsets.URLHost)},
		{v.OffUrlPath, off(offsets.URLPath)},
		{v.OffUrlRawQuery, off(offsets.URLRawQuery)},
		{v.OffRespStatusCode, off(offsets.HTTPResponseStatusCode)},
		{v.OffPconnConn, off(offsets.PersistConnConn)},
		{v.OffNetconnFd, off(offsets.NetConnFD)},
		{v.OffNetfdLaddr, off(offsets.NetFDLaddr)},
		{v.OffNetfdRaddr, off(offsets.NetFDRaddr)},
		{v.OffTcpaddrIp, off(offsets.TCPAddrIP)},
		{v.OffTcpaddrPort, off(offsets.TCPAddrPort)},
		{v.TcpconnCloseFn, connClose(t)},
		{v.ReqReadSize, reqSize},
		{v.UrlReadSize, urlSize},
		{v.WakeupThreshold, shared.WakeupThreshold()},
		{v.InjectWriteUser, in.InjectWriteUser},
		{v.BufioWriterWriteFn, write},
		{v.OffBufioBuf, off(offsets.BufioWriterBuf)},
		{v.OffBufioN, off(offsets.BufioWriterN)},
		{v.OffReqHeader, off(offsets.RequestHeader)},
		{v.OffMapDirPtr, off(offsets.SwissMapDirPtr)},
		{v.OffMapDirLen, off(offsets.SwissMapDirLen)},
		{v.OffTableGroups, off(offsets.SwissTableGroups)},
		{v.OffGroupsData, off(offsets.SwissGroupsData)},
		{v.OffGroupsLengthMask, off(offsets.SwissGroupsLengthMask)},
	}
	for _, s := range sets {
		if err := s.v.Set(s.val); err != nil {
			return nil, fmt.Errorf("%s: net/http client: setting %s: %w", t, s.v.Name, err)
		}
	}
	return spec, nil
}

// WriteUserReady checks that t has what the write-user injection needs and
// returns the run-time address of bufio.(*Writer).Write.
func WriteUserReady(t *probes.Target) (uint64, error) {
	if connClose(t) == 0 {
		return 0, fmt.Errorf("the binary lacks %s or the offsets to read its connections", ConnSymbol)
	}
	for _, f := range writeUserFields {
		if _, ok := t.Offsets.Get(f); !ok {
			return 0, fmt.Errorf("no offset known for %s", f)
		}
	}
	if _, err := t.Bin.Func(WriteSubsetSymbol); err != nil {
		return 0, err
	}
	addr := t.FuncAddr(bufioWriterWrite)
	if addr == 0 {
		return 0, fmt.Errorf("the binary has no %s", bufioWriterWrite)
	}
	return addr, nil
}

// connClose is the run-time address of net.(*TCPConn).Close, by which the
// probe recognises a plain TCP connection; 0 when the binary lacks it,
// ConnSymbol or an offset that probe needs. 0 turns the connection probe's
// work off, and it is then not attached.
func connClose(t *probes.Target) uint64 {
	for _, f := range connFields {
		if _, ok := t.Offsets.Get(f); !ok {
			return 0
		}
	}
	if _, err := t.Bin.Func(ConnSymbol); err != nil {
		return 0
	}
	return t.FuncAddr(probes.TCPConnClose)
}

// Load implements probes.Instrumentation.
func (in Instrumentation) Load(t *probes.Target, shared *events.Shared) (probes.Loaded, error) {
	spec, err := in.Spec(t, shared)
	if err != nil {
		return nil, err
	}
	// The write-user program is loaded only when asked for: kernels in
	// lockdown refuse any program that calls bpf_probe_write_user.
	l := &loaded{conn: connClose(t) != 0}
	opts := &ebpf.CollectionOptions{MapReplacements: shared.Replacements()}
	var into any = &l.objs.coreObjects
	if in.InjectWriteUser {
		into = &l.objs
	}
	if err := spec.LoadAndAssign(into, opts); err != nil {
		return nil, fmt.Errorf("%s: loading the net/http client programs: %w", t, err)
	}
	return l, nil
}

// objects are the programs and maps loaded: core always, WriteSubsetEnter
// for the write-user injection only.
type objects struct {
	coreObjects
	WriteSubsetEnter *ebpf.Program `ebpf:"write_subset_enter"`
}

type coreObjects struct {
	clientMaps
	RoundTripEnter            *ebpf.Program `ebpf:"round_trip_enter"`
	RoundTripReturn           *ebpf.Program `ebpf:"round_trip_return"`
	PersistConnRoundTripEnter *ebpf.Program `ebpf:"persist_conn_round_trip_enter"`
}

func (o *objects) Close() error {
	var errs []error
	for _, p := range []*ebpf.Program{o.RoundTripEnter, o.RoundTripReturn, o.PersistConnRoundTripEnter, o.WriteSubsetEnter} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	errs = append(errs, o.clientMaps.Close())
	return errors.Join(errs...)
}

type loaded struct {
	objs objects
	conn bool // ConnSymbol is probed
}

func (l *loaded) Uprobes() []probes.Uprobe {
	ups := []probes.Uprobe{{
		Symbol: Symbol,
		Entry:  l.objs.RoundTripEnter,
		Return: l.objs.RoundTripReturn,
	}}
	if l.conn {
		ups = append(ups, probes.Uprobe{Symbol: ConnSymbol, Entry: l.objs.PersistConnRoundTripEnter})
	}
	if l.objs.WriteSubsetEnter != nil {
		ups = append(ups, probes.Uprobe{Symbol: WriteSubsetSymbol, Entry: l.objs.WriteSubsetEnter})
	}
	return ups
}

func (l *loaded) Close() error { return l.objs.Close() }
