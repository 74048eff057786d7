package events

import (
	"fmt"
	"slices"
	"unsafe"

	"github.com/zerotrace/zerotrace/correlate"
)

// Record is one kind of ring-buffer record: a probe declares the records its
// programs send, and the reader dispatches each record it reads by the type
// number in its header (struct event_header) to the Record of that type.
type Record struct {
	// Type is the number in the header's type field. Each record type
	// defines its own in its C header; the registry's tests check that no
	// two are the same.
	Type uint8
	// Name names the record in messages ("http_server_event").
	Name string
	// MinSize is the smallest record of the type: shorter ones are
	// rejected before Decode sees them.
	MinSize int
	// Decode turns a record into an event. The record's memory is not
	// retained: every string must be copied.
	Decode func(raw []byte, d *Decoder) (correlate.Event, error)
}

// Decoder is what decoders need besides the record.
type Decoder struct {
	// Clock converts the kernel's monotonic times to wall-clock times.
	Clock *Clock
	// Namer names the dynamic type behind an itab address; nil when
	// unknown.
	Namer ErrTypeNamer
}

// Name returns the dynamic type's name behind itab in process pid, or ""
// when it cannot.
func (d *Decoder) Name(pid uint32, itab uint64) string {
	if d.Namer == nil || itab == 0 {
		return ""
	}
	return d.Namer(pid, itab)
}

// ErrTypeNamer names the dynamic type behind an itab address found in a
// traced process, or returns "" when it cannot.
type ErrTypeNamer func(pid uint32, itab uint64) string

// Records is the reader's dispatch table: one Record per type number.
type Records struct {
	byType [256]*Record
}

// NewRecords builds the table. Two records of the same type are an error.
func NewRecords(recs ...Record) (*Records, error) {
	t := &Records{}
	for i := range recs {
		r := &recs[i]
		if r.Decode == nil || r.MinSize < headerSize {
			return nil, fmt.Errorf("record %s (type %d): no decoder, or smaller than its header", r.Name, r.Type)
		}
		if old := t.byType[r.Type]; old != nil {
			return nil, fmt.Errorf("record type %d is both %s and %s", r.Type, old.Name, r.Name)
		}
		t.byType[r.Type] = r
	}
	return t, nil
}

// Types lists the record types in the table, in increasing order.
func (t *Records) Types() []uint8 {
	var ts []uint8
	for i, r := range t.byType {
		if r != nil {
			ts = append(ts, uint8(i))
		}
	}
	return slices.Clip(ts)
}

// DecodeError says why a record could not be decoded.
type DecodeError struct {
	Kind string // "short", "unknown_type", "size"
	Type uint8
	Size int
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decoding ring buffer record (type %d, %d bytes): %s", e.Type, e.Size, e.Kind)
}

var headerSize = int(unsafe.Sizeof(commonEventHeader{}))

// Decode turns one ring buffer record into an event, through the Record of
// its type.
func (t *Records) Decode(raw []byte, d *Decoder) (correlate.Event, error) {
	if len(raw) < headerSize {
		return nil, &DecodeError{Kind: "short", Size: len(raw)}
	}
	hdr := (*commonEventHeader)(unsafe.Pointer(&raw[0]))
	r := t.byType[hdr.Type]
	if r == nil {
		return nil, &DecodeError{Kind: "unknown_type", Type: hdr.Type, Size: len(raw)}
	}
	if len(raw) < r.MinSize {
		return nil, &DecodeError{Kind: "size", Type: hdr.Type, Size: len(raw)}
	}
	return r.Decode(raw, d)
}

// Header is the common header every record starts with (struct
// event_header in bpf/common/event.h).
type Header = commonEventHeader

// HeaderOf returns the header of a record at least headerSize long.
func HeaderOf(raw []byte) *Header {
	return (*Header)(unsafe.Pointer(&raw[0]))
}
