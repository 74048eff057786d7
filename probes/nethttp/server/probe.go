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

// Methods whose addresses identify concrete types behind interfaces: the
// first method, by name, of the interface's itab (see probe.c).
const (
	responseHeader = "net/http.(*response).Header"
	tcpConnClose   = "net.(*TCPConn).Close"
)

func field(s, n string) offsets.Field { return offsets.Field{Struct: s, Name: n} }

var (
	gGoid              = field("runtime.g", "goid")
	reqMethod          = field("net/http.Request", "Method")
	reqURL             = field("net/http.Request", "URL")
	reqProtoMajor      = field("net/http.Request", "ProtoMajor")
	reqProtoMinor      = field("net/http.Request", "ProtoMinor")
	reqContentLength   = field("net/http.Request", "ContentLength")
	reqHost            = field("net/http.Request", "Host")
	reqRemoteAddr      = field("net/http.Request", "RemoteAddr")
	reqPattern         = field("net/http.Request", "Pattern")
	urlPath            = field("net/url.URL", "Path")
	urlRawQuery        = field("net/url.URL", "RawQuery")
	respConn           = field("net/http.response", "conn")
	respStatus         = field("net/http.response", "status")
	respWritten        = field("net/http.response", "written")
	connRwc            = field("net/http.conn", "rwc")
	connTLSState       = field("net/http.conn", "tlsState")
	netConnFd          = field("net.conn", "fd")
	netFDLaddr         = field("net.netFD", "laddr")
	tcpAddrIP          = field("net.TCPAddr", "IP")
	tcpAddrPort        = field("net.TCPAddr", "Port")
	requiredFieldsList = []offsets.Field{
		gGoid, reqMethod, reqURL, reqProtoMajor, reqProtoMinor, reqContentLength, reqHost,
		reqRemoteAddr, urlPath, urlRawQuery, respConn, respStatus, respWritten, connRwc,
		connTLSState, netConnFd, netFDLaddr, tcpAddrIP, tcpAddrPort,
	}
)

// Instrumentation is the net/http server instrumentation.
type Instrumentation struct{}

// Name implements probes.Instrumentation.
func (Instrumentation) Name() string { return "net/http server" }

// Fields implements probes.Instrumentation. Request.Pattern exists since Go 1.23.
func (Instrumentation) Fields() (required, optional []offsets.Field) {
	return requiredFieldsList, []offsets.Field{reqPattern}
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
	pattern, hasPattern := t.Offsets.Get(reqPattern)
	var flag uint8
	if hasPattern {
		flag = 1
	}
	// An address of zero disables the reads that depend on it.
	var respHeader, connClose uint64
	if fn, err := t.Bin.Func(responseHeader); err == nil {
		respHeader = t.RuntimeAddr(fn.Addr)
	}
	if fn, err := t.Bin.Func(tcpConnClose); err == nil {
		connClose = t.RuntimeAddr(fn.Addr)
	}

	sets := []struct {
		v   *ebpf.VariableSpec
		val any
	}{
		{v.OffG_goid, off(gGoid)},
		{v.OffReqMethod, off(reqMethod)},
		{v.OffReqUrl, off(reqURL)},
		{v.OffReqProtoMajor, off(reqProtoMajor)},
		{v.OffReqProtoMinor, off(reqProtoMinor)},
		{v.OffReqContentLength, off(reqContentLength)},
		{v.OffReqHost, off(reqHost)},
		{v.OffReqRemoteAddr, off(reqRemoteAddr)},
		{v.OffReqPattern, pattern},
		{v.HasPattern, flag},
		{v.OffUrlPath, off(urlPath)},
		{v.OffUrlRawQuery, off(urlRawQuery)},
		{v.OffRespConn, off(respConn)},
		{v.OffRespStatus, off(respStatus)},
		{v.OffRespWritten, off(respWritten)},
		{v.OffConnRwc, off(connRwc)},
		{v.OffConnTlsState, off(connTLSState)},
		{v.OffNetconnFd, off(netConnFd)},
		{v.OffNetfdLaddr, off(netFDLaddr)},
		{v.OffTcpaddrIp, off(tcpAddrIP)},
		{v.OffTcpaddrPort, off(tcpAddrPort)},
		{v.ResponseHeaderFn, respHeader},
		{v.TcpconnCloseFn, connClose},
		{v.WakeupThreshold, shared.WakeupThreshold()},
	}
	for _, s := range sets {
		if err := s.v.Set(s.val); err != nil {
			return fmt.Errorf("setting %s: %w", s.v.Name, err)
		}
	}
	return nil
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
