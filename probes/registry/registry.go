// Package registry lists what zerotrace can attach: every Go library
// instrumentation, and every ring-buffer record the reader decodes. Adding
// a Go library probe is its folder pair (probes/<lib>/, bpf/<lib>/) and one
// line in Probes.
package registry

import (
	"cmp"
	"slices"
	"strings"

	"github.com/zerotrace/zerotrace/probes"
	"github.com/zerotrace/zerotrace/probes/dbsql"
	"github.com/zerotrace/zerotrace/probes/events"
	"github.com/zerotrace/zerotrace/probes/nethttp/client"
	"github.com/zerotrace/zerotrace/probes/nethttp/server"
	"github.com/zerotrace/zerotrace/probes/offsets"
	"github.com/zerotrace/zerotrace/probes/openssl"
	"github.com/zerotrace/zerotrace/probes/phases"
	"github.com/zerotrace/zerotrace/probes/runtime/goroutines"
	"github.com/zerotrace/zerotrace/probes/syscalls"
)

// Probes lists every Go library instrumentation, in attach order.
func Probes() []*probes.Probe {
	return []*probes.Probe{
		server.Probe,
		client.Probe,
		goroutines.Probe,
		dbsql.Probe,
	}
}

// Fields lists every struct field the registered probes read, all their
// parts included, each once, in a fixed order: what the offsets table must
// record (scripts/gen-offsets).
func Fields() ([]offsets.Field, error) {
	seen := map[offsets.Field]bool{}
	var out []offsets.Field
	for _, p := range Probes() {
		_, decl, err := p.Spec()
		if err != nil {
			return nil, err
		}
		for _, r := range decl.Reads {
			for _, f := range r.Fields() {
				if !seen[f] {
					seen[f] = true
					out = append(out, f)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b offsets.Field) int {
		return cmp.Or(strings.Compare(a.Module, b.Module), strings.Compare(a.String(), b.String()))
	})
	return out, nil
}

// Renamed lists the fields the registered probes read under several names
// (probes.Read.Alt): a Go version has one of them, and the others' types
// are not in it.
func Renamed() (map[offsets.Field]bool, error) {
	out := map[offsets.Field]bool{}
	for _, p := range Probes() {
		_, decl, err := p.Spec()
		if err != nil {
			return nil, err
		}
		for _, r := range decl.Reads {
			if len(r.Alt) > 0 {
				for _, f := range r.Fields() {
					out[f] = true
				}
			}
		}
	}
	return out, nil
}

// RequestEnds are the functions, among those the registered probes place
// their ends on, that end a request on the goroutine that served it: where
// the configuration's phases (probes/phases) still open on that goroutine
// end too.
func RequestEnds() phases.RequestEnds {
	return phases.RequestEnds{
		Symbols: append([]string{server.EndSymbol, server.HijackedEndSymbol, server.XH2EndSymbol}, server.H2EndSymbols...),
		// A hijack calls abortPendingRead while the handler runs; the
		// request ends at releaseConn then.
		NotFrom: server.HijackSymbol,
	}
}

// Records builds the reader's dispatch table: the records of every
// registered probe, and those of the kernel-level tracing (probes/syscalls)
// and its TLS plaintext (probes/openssl).
// Two records with one type number are an error.
func Records() (*events.Records, error) {
	var recs []events.Record
	for _, p := range Probes() {
		recs = append(recs, p.Records()...)
	}
	recs = append(recs, syscalls.Records()...)
	// Phases are attached from the configuration, not declared (see
	// probes/phases), but their record is read like the others.
	recs = append(recs, phases.Record)
	recs = append(recs, openssl.Records()...)
	return events.NewRecords(recs...)
}
