// Package server instruments the server side of Go's net/http: one SERVER
// span per request handled.
package server

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// Symbol is the probed function: it runs once per request, after the
// request was read and before the response is flushed.
const Symbol = "net/http.serverHandler.ServeHTTP"

// responseHeader identifies a *response behind an http.ResponseWriter: it
// is the first method, by name, of the interface's itab (see probe.c).
const responseHeader = "net/http.(*response).Header"

// requiredFields are the struct fields the programs read.
var requiredFields = []offsets.Field{
	offsets.GoroutineID,
	offsets.RequestMethod, offsets.RequestURL, offsets.RequestProtoMajor, offsets.RequestProtoMinor,
	offsets.RequestContentLength, offsets.RequestHost, offsets.RequestRemoteAddr,
	offsets.URLPath, offsets.URLRawQuery,
	offsets.ResponseConn, offsets.ResponseStatus, offsets.ResponseWritten,
	offsets.HTTPConnRWC, offsets.HTTPConnTLSState,
	offsets.NetConnFD, offsets.NetFDLaddr, offsets.NetFDRaddr, offsets.TCPAddrIP, offsets.TCPAddrPort,
	// The incoming trace context is read from Request.Header, a Swiss-table
	// map (Go 1.24+).
	offsets.RequestHeader, offsets.SwissMapDirPtr, offsets.SwissMapDirLen,
	offsets.SwissTableGroups, offsets.SwissGroupsData, offsets.SwissGroupsLengthMask,
}

// Instrumentation is the net/http server instrumentation.
type Instrumentation struct{}

// Name implements probes.Instrumentation.
func (Instrumentation) Name() string { return "net/http server" }

// Fields implements probes.Instrumentation. Request.Pattern exists since Go 1.23.
func (Instrumentation) Fields() (required, optional []offsets.Field) {
	return requiredFields, []offsets.Field{offsets.RequestPattern}
}

// Applies implements probes.Instrumentation.
func (Instrumentation) Applies(t *probes.Target) bool {
	_, err := t.Bin.Func(Symbol)
	return err == nil
}

// Spec implements probes.Instrumentation.
func (Instrumentation) Spec(t *probes.Target, shared *events.Shared) (*ebpf.CollectionSpec, error) {
	spec, err := loadServer()
	if err != nil {
		return nil, fmt.Errorf("net/http server: %w", err)
	}
	var specs serverSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("net/http server: %w", err)
	}
	if err := setConstants(&specs.serverVariableSpecs, t, shared); err != nil {
		return nil, fmt.Errorf("%s: net/http server: %w", t, err)
	}
	return spec, nil
}

// Load implements probes.Instrumentation.
func (in Instrumentation) Load(t *probes.Target, shared *events.Shared) (probes.Loaded, error) {
	spec, err := in.Spec(t, shared)
	if err != nil {
		return nil, err
	}
	var objs serverObjects
	opts := &ebpf.CollectionOptions{MapReplacements: shared.Replacements()}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		return nil, fmt.Errorf("%s: loading the net/http server programs: %w", t, err)
	}
	return &loaded{objs: objs}, nil
}

func setConstants(v *serverVariableSpecs, t *probes.Target, shared *events.Shared) error {
	off := func(f offsets.Field) uint64 {
		o, _ := t.Offsets.Get(f)
		return o
	}
	pattern, hasPattern := t.Offsets.Get(offsets.RequestPattern)
	var flag uint8
	if hasPattern {
		flag = 1
	}
	sizes, err := readSizes(t)
	if err != nil {
		return err
	}
	// An address of zero disables the reads that depend on it.
	respHeader, connClose := t.FuncAddr(responseHeader), t.FuncAddr(probes.TCPConnClose)

	sets := []struct {
		v   *ebpf.VariableSpec
		val any
	}{
		{v.OffG_goid, off(offsets.GoroutineID)},
		{v.OffReqMethod, off(offsets.RequestMethod)},
		{v.OffReqUrl, off(offsets.RequestURL)},
		{v.OffReqProtoMajor, off(offsets.RequestProtoMajor)},
		{v.OffReqProtoMinor, off(offsets.RequestProtoMinor)},
		{v.OffReqContentLength, off(offsets.RequestContentLength)},
		{v.OffReqHost, off(offsets.RequestHost)},
		{v.OffReqRemoteAddr, off(offsets.RequestRemoteAddr)},
		{v.OffReqPattern, pattern},
		{v.HasPattern, flag},
		{v.OffUrlPath, off(offsets.URLPath)},
		{v.OffUrlRawQuery, off(offsets.URLRawQuery)},
		{v.OffRespConn, off(offsets.ResponseConn)},
		{v.OffRespStatus, off(offsets.ResponseStatus)},
		{v.OffRespWritten, off(offsets.ResponseWritten)},
		{v.OffConnRwc, off(offsets.HTTPConnRWC)},
		{v.OffConnTlsState, off(offsets.HTTPConnTLSState)},
		{v.OffNetconnFd, off(offsets.NetConnFD)},
		{v.OffNetfdLaddr, off(offsets.NetFDLaddr)},
		{v.OffNetfdRaddr, off(offsets.NetFDRaddr)},
		{v.OffTcpaddrIp, off(offsets.TCPAddrIP)},
		{v.OffTcpaddrPort, off(offsets.TCPAddrPort)},
		{v.ResponseHeaderFn, respHeader},
		{v.TcpconnCloseFn, connClose},
		{v.WakeupThreshold, shared.WakeupThreshold()},
		{v.OffReqHeader, off(offsets.RequestHeader)},
		{v.OffMapDirPtr, off(offsets.SwissMapDirPtr)},
		{v.OffMapDirLen, off(offsets.SwissMapDirLen)},
		{v.OffTableGroups, off(offsets.SwissTableGroups)},
		{v.OffGroupsData, off(offsets.SwissGroupsData)},
		{v.OffGroupsLengthMask, off(offsets.SwissGroupsLengthMask)},
		{v.ReqReadSize, sizes.req},
		{v.UrlReadSize, sizes.url},
		{v.RespReadSize, sizes.resp},
		{v.ConnReadSize, sizes.conn},
	}
	for _, s := range sets {
		if err := s.v.Set(s.val); err != nil {
			return fmt.Errorf("setting %s: %w", s.v.Name, err)
		}
	}
	return nil
}

// prefixSizes are how many leading bytes of each struct the return program
// copies in one read: up to the end of the last field it uses.
type prefixSizes struct{ req, url, resp, conn uint64 }

// Capacities of the per-CPU copies in probe.c (struct scratch).
const (
	scratchReq   = 512
	scratchSmall = 256
)

func readSizes(t *probes.Target) (prefixSizes, error) {
	const ptr, str, iface = 8, 16, 16
	var s prefixSizes
	var err error
	if s.req, err = t.PrefixEnd(scratchReq, map[offsets.Field]uint64{
		offsets.RequestMethod: str, offsets.RequestURL: ptr, offsets.RequestProtoMajor: 8,
		offsets.RequestProtoMinor: 8, offsets.RequestContentLength: 8, offsets.RequestHost: str,
		offsets.RequestRemoteAddr: str, offsets.RequestPattern: str,
	}); err != nil {
		return s, fmt.Errorf("net/http.Request: %w", err)
	}
	if s.url, err = t.PrefixEnd(scratchSmall, map[offsets.Field]uint64{offsets.URLPath: str, offsets.URLRawQuery: str}); err != nil {
		return s, fmt.Errorf("net/url.URL: %w", err)
	}
	if s.resp, err = t.PrefixEnd(scratchSmall, map[offsets.Field]uint64{
		offsets.ResponseConn: ptr, offsets.ResponseStatus: 8, offsets.ResponseWritten: 8,
	}); err != nil {
		return s, fmt.Errorf("net/http.response: %w", err)
	}
	if s.conn, err = t.PrefixEnd(scratchSmall, map[offsets.Field]uint64{offsets.HTTPConnRWC: iface, offsets.HTTPConnTLSState: ptr}); err != nil {
		return s, fmt.Errorf("net/http.conn: %w", err)
	}
	return s, nil
}

type loaded struct{ objs serverObjects }

func (l *loaded) Uprobes() []probes.Uprobe {
	return []probes.Uprobe{{
		Symbol: Symbol,
		Entry:  l.objs.ServeHttpEnter,
		Return: l.objs.ServeHttpReturn,
	}}
}

func (l *loaded) Close() error { return l.objs.Close() }
