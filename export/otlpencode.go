package export

import (
	"encoding/binary"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zerotrace/zerotrace/correlate/model"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// otlpBatch is the spans waiting for upload, grouped by process (resource)
// as OTLP wants them, and the buffers kept from earlier batches for reuse:
// after the first batches, filling one allocates nothing.
//
// Spans are encoded one of two ways. For OTLP/protobuf (the default), each
// span is written straight into protobuf wire format and the bytes ride in
// their ScopeSpans message as its unknown fields, which the protobuf
// encoder copies out as they are: the wire format lets a repeated field's
// elements come from anywhere in a message, and a receiver reads them as
// the ScopeSpans' spans. Marshalling span messages instead would cost
// several microseconds per span (the protobuf runtime finds each
// attribute value's oneof case by reflection). For OTLP/JSON, whose
// encoder ignores unknown fields, spans are tracepb.Span messages,
// recycled with their attributes, values and oneof wrappers. A test checks
// that both say the same.
type otlpBatch struct {
	scope *commonpb.InstrumentationScope
	// json selects span messages over wire-format bytes.
	json bool
	// resources holds each live process's resource message.
	resources processCache[*resourcepb.Resource]

	n      int                               // spans in the batch
	out    []*tracepb.ResourceSpans          // what is uploaded
	groups map[*model.Process]*resourceGroup // this batch's, by process
	rs     []*resourceGroup                  // for reuse; the first len(out) are in use
	spans  []*spanSlot                       // for reuse; the first n are in use (JSON)

	// last is the group of lastProcess, the process of the last span.
	last        *resourceGroup
	lastProcess *model.Process

	// The last tracestate seen and its normal form ("" when invalid):
	// a trace's spans carry the same one, and parsing allocates.
	traceStateIn, traceStateOut string
}

// resourceGroup is one process's spans in a batch.
type resourceGroup struct {
	rs    tracepb.ResourceSpans
	ss    tracepb.ScopeSpans
	ssPtr [1]*tracepb.ScopeSpans
	// wire holds the spans in wire format, each as field 2 (spans) of
	// ScopeSpans.
	wire []byte
}

// maxKeptWire is the largest span buffer a group keeps between batches.
const maxKeptWire = 1 << 20

// spanSlot is a span message with what it points to.
type spanSlot struct {
	span   tracepb.Span
	status tracepb.Status
	ids    [32]byte // trace, span and parent IDs
	kvs    []*kvSlot
}

// kvSlot is an attribute message with its value and every oneof wrapper
// a value can take, so that setting one allocates nothing.
type kvSlot struct {
	kv  commonpb.KeyValue
	val commonpb.AnyValue
	str commonpb.AnyValue_StringValue
	i   commonpb.AnyValue_IntValue
	b   commonpb.AnyValue_BoolValue
	d   commonpb.AnyValue_DoubleValue
}

// W3C trace flags and the OTLP flags that say whether the parent is
// remote, as the SDK set them for a span started under a remote parent.
const (
	spanFlagsLocal  = uint32(trace.FlagsSampled) | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK)
	spanFlagsRemote = spanFlagsLocal | uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
)

func (b *otlpBatch) add(s *model.Span) {
	// Batches mostly hold runs of one process's spans.
	g := b.last
	if s.Process != b.lastProcess || g == nil {
		if g = b.groups[s.Process]; g == nil {
			g = b.group(s.Process)
		}
		b.last, b.lastProcess = g, s.Process
	}
	b.n++
	if !b.json {
		g.wire = b.appendSpanField(g.wire, s)
		return
	}
	if b.n > len(b.spans) {
		b.spans = append(b.spans, &spanSlot{})
	}
	sl := b.spans[b.n-1]
	b.fill(sl, s)
	g.ss.Spans = append(g.ss.Spans, &sl.span)
}

// group starts p's group in the batch.
func (b *otlpBatch) group(p *model.Process) *resourceGroup {
	if len(b.out) == len(b.rs) {
		g := &resourceGroup{}
		g.ssPtr[0] = &g.ss
		b.rs = append(b.rs, g)
	}
	g := b.rs[len(b.out)]
	g.rs.Resource = b.resource(p)
	g.rs.ScopeSpans = g.ssPtr[:]
	g.ss.Scope = b.scope
	g.ss.Spans = g.ss.Spans[:0]
	g.wire = g.wire[:0]
	b.out = append(b.out, &g.rs)
	if b.groups == nil {
		b.groups = make(map[*model.Process]*resourceGroup)
	}
	b.groups[p] = g
	return g
}

// seal makes the batch ready to marshal: each group's wire-format spans
// become its ScopeSpans' unknown fields.
func (b *otlpBatch) seal() {
	if b.json {
		return
	}
	for _, g := range b.rs[:len(b.out)] {
		g.ss.ProtoReflect().SetUnknown(protoreflect.RawFields(g.wire))
	}
}

// reset empties the batch after an upload and forgets the processes that
// are gone.
func (b *otlpBatch) reset() {
	for _, g := range b.rs[:len(b.out)] {
		g.rs.Resource = nil
		g.ss.ProtoReflect().SetUnknown(nil)
		if cap(g.wire) > maxKeptWire {
			g.wire = nil
		}
	}
	b.resources.sweep(b.n, nil)
	clear(b.groups)
	b.last, b.lastProcess = nil, nil
	b.out = b.out[:0]
	b.n = 0
}

// resource returns p's resource message, made once per process.
func (b *otlpBatch) resource(p *model.Process) *resourcepb.Resource {
	if r, ok := b.resources.get(p); ok {
		return r
	}
	kvs := p.Resource()
	r := &resourcepb.Resource{Attributes: make([]*commonpb.KeyValue, 0, len(kvs))}
	for _, kv := range kvs {
		if kv.Valid() {
			sl := &kvSlot{}
			sl.set(kv)
			r.Attributes = append(r.Attributes, &sl.kv)
		}
	}
	b.resources.put(p, r)
	return r
}

// statusOf is the span's OTLP status. As the SDK does, a description only
// goes with an error.
func statusOf(s *model.Span) (tracepb.Status_StatusCode, string) {
	switch s.Status {
	case codes.Error:
		return tracepb.Status_STATUS_CODE_ERROR, validUTF8(s.StatusMsg)
	case codes.Ok:
		return tracepb.Status_STATUS_CODE_OK, ""
	}
	return tracepb.Status_STATUS_CODE_UNSET, ""
}

// Wire-format tags of the fields written here: (number << 3) | type, one
// byte for numbers below 16.
const (
	tagBytes   = byte(protowire.BytesType)
	tagVarint  = byte(protowire.VarintType)
	tagFixed64 = byte(protowire.Fixed64Type)

	tagScopeSpansSpans  = 2<<3 | tagBytes
	tagSpanTraceID      = 1<<3 | tagBytes
	tagSpanSpanID       = 2<<3 | tagBytes
	tagSpanTraceState   = 3<<3 | tagBytes
	tagSpanParentSpanID = 4<<3 | tagBytes
	tagSpanName         = 5<<3 | tagBytes
	tagSpanKind         = 6<<3 | tagVarint
	tagSpanStart        = 7<<3 | tagFixed64
	tagSpanEnd          = 8<<3 | tagFixed64
	tagSpanAttributes   = 9<<3 | tagBytes
	tagSpanDroppedAttrs = 10<<3 | tagVarint
	tagSpanStatus       = 15<<3 | tagBytes
	tagStatusMessage    = 2<<3 | tagBytes
	tagStatusCode       = 3<<3 | tagVarint
	tagKeyValueKey      = 1<<3 | tagBytes
	tagKeyValueValue    = 2<<3 | tagBytes
	tagAnyValueString   = 1<<3 | tagBytes
	tagAnyValueBool     = 2<<3 | tagVarint
	tagAnyValueInt      = 3<<3 | tagVarint
	tagAnyValueDouble   = 4<<3 | tagFixed64
	tagAnyValueArray    = 5<<3 | tagBytes
	tagArrayValueValues = 1<<3 | tagBytes
	spanLengthReserve   = 2 // bytes kept for a span's length: up to 16 KiB
	maxReservedSpanLen  = 1<<14 - 1
	minReservedSpanLen  = 1 << 7
)

// tagSpanFlags is field 16 (flags, fixed32): two bytes.
var tagSpanFlags = protowire.AppendTag(nil, 16, protowire.Fixed32Type)

// appendVarint is protowire.AppendVarint with the short cases inline:
// lengths and small numbers are most of what is written.
func appendVarint(e []byte, v uint64) []byte {
	if v < 1<<7 {
		return append(e, byte(v))
	}
	if v < 1<<14 {
		return append(e, byte(v)|0x80, byte(v>>7))
	}
	return protowire.AppendVarint(e, v)
}

// appendString appends a length-delimited field.
func appendStringField(e []byte, tag byte, s string) []byte {
	e = appendVarint(append(e, tag), uint64(len(s)))
	return append(e, s...)
}

// appendSpanField appends s in wire format as field 2 (spans) of a
// ScopeSpans. Its length is written in front of it once known: two bytes
// are kept for it, enough for all but the largest spans, which are moved.
func (b *otlpBatch) appendSpanField(e []byte, s *model.Span) []byte {
	e = append(e, tagScopeSpansSpans)
	at := len(e)
	e = append(e, 0, 0)
	e = b.appendSpan(e, s)
	n := len(e) - at - spanLengthReserve
	switch {
	case n >= minReservedSpanLen && n <= maxReservedSpanLen:
		e[at], e[at+1] = byte(n)|0x80, byte(n>>7)
	default:
		// Rare: move the span to fit its length's true size.
		size := protowire.SizeVarint(uint64(n))
		if size > spanLengthReserve {
			e = append(e, make([]byte, size-spanLengthReserve)...)
		}
		copy(e[at+size:], e[at+spanLengthReserve:at+spanLengthReserve+n])
		protowire.AppendVarint(e[at:at], uint64(n))
		e = e[:at+size+n]
	}
	return e
}

// appendSpan appends the wire format of s as a tracepb.Span.
func (b *otlpBatch) appendSpan(e []byte, s *model.Span) []byte {
	e = append(e, tagSpanTraceID, 16)
	e = append(e, s.TraceID[:]...)
	e = append(e, tagSpanSpanID, 8)
	e = append(e, s.SpanID[:]...)
	flags := spanFlagsLocal
	if s.ParentSpanID.IsValid() {
		if ts := b.traceState(s.TraceState); ts != "" {
			e = appendStringField(e, tagSpanTraceState, ts)
		}
		e = append(e, tagSpanParentSpanID, 8)
		e = append(e, s.ParentSpanID[:]...)
		flags = spanFlagsRemote
	}
	if s.Name != "" {
		e = appendStringField(e, tagSpanName, validUTF8(s.Name))
	}
	e = append(e, tagSpanKind, byte(spanKind(s.Kind)))
	e = append(e, tagSpanStart)
	e = binary.LittleEndian.AppendUint64(e, unixNano(s.Start))
	e = append(e, tagSpanEnd)
	e = binary.LittleEndian.AppendUint64(e, unixNano(s.End))
	var n, dropped uint64
	for i := range s.Attributes {
		kv := &s.Attributes[i]
		if !kv.Valid() {
			continue
		}
		if n == maxAttributes {
			dropped++
			continue
		}
		n++
		e = appendKeyValue(e, tagSpanAttributes, kv)
	}
	if dropped > 0 {
		e = appendVarint(append(e, tagSpanDroppedAttrs), dropped)
	}
	code, msg := statusOf(s)
	size := 0
	if msg != "" {
		size += 1 + protowire.SizeBytes(len(msg))
	}
	if code != 0 {
		size += 2 // codes are below 128
	}
	e = appendVarint(append(e, tagSpanStatus), uint64(size))
	if msg != "" {
		e = appendStringField(e, tagStatusMessage, msg)
	}
	if code != 0 {
		e = append(e, tagStatusCode, byte(code))
	}
	e = append(e, tagSpanFlags...)
	return binary.LittleEndian.AppendUint32(e, flags)
}

// sizeBytes is the size of a length-delimited field's length and body.
func sizeBytes(n int) int {
	switch {
	case n < 1<<7:
		return 1 + n
	case n < 1<<14:
		return 2 + n
	}
	return protowire.SizeBytes(n)
}

// appendKeyValue appends kv as a commonpb.KeyValue, with the given tag.
// Its length is worked out before it is written, so nothing is moved.
func appendKeyValue(e []byte, tag byte, kv *attribute.KeyValue) []byte {
	// Keys are the semantic conventions' names, written by the agent:
	// only values can carry what a traced process sent.
	key := string(kv.Key)
	switch v := kv.Value; v.Type() {
	case attribute.STRING:
		str := validUTF8(v.AsString())
		e = appendKeyValueHead(e, tag, key, 1+sizeBytes(len(str)))
		return appendStringField(e, tagAnyValueString, str)
	case attribute.INT64:
		n := uint64(v.AsInt64())
		e = appendKeyValueHead(e, tag, key, 1+protowire.SizeVarint(n))
		return appendVarint(append(e, tagAnyValueInt), n)
	case attribute.BOOL:
		e = appendKeyValueHead(e, tag, key, 2)
		return append(e, tagAnyValueBool, byte(protowire.EncodeBool(v.AsBool())))
	case attribute.FLOAT64:
		e = appendKeyValueHead(e, tag, key, 1+8)
		return binary.LittleEndian.AppendUint64(append(e, tagAnyValueDouble), math.Float64bits(v.AsFloat64()))
	default:
		// Slices are rare: they allocate.
		array := appendArrayValue(nil, v)
		e = appendKeyValueHead(e, tag, key, 1+sizeBytes(len(array)))
		e = appendVarint(append(e, tagAnyValueArray), uint64(len(array)))
		return append(e, array...)
	}
}

// appendKeyValueHead appends a KeyValue's tag and length, its key, and the
// head of its value, an AnyValue of the given size.
func appendKeyValueHead(e []byte, tag byte, key string, size int) []byte {
	if n := 1 + 1 + len(key) + 1 + 1 + size; len(key) < 1<<7 && size < 1<<7 && n < 1<<7 {
		// The usual case: every length fits in one byte.
		e = append(e, tag, byte(n), tagKeyValueKey, byte(len(key)))
		e = append(e, key...)
		return append(e, tagKeyValueValue, byte(size))
	}
	e = appendVarint(append(e, tag), uint64(1+sizeBytes(len(key))+1+sizeBytes(size)))
	e = appendStringField(e, tagKeyValueKey, key)
	return appendVarint(append(e, tagKeyValueValue), uint64(size))
}

// appendArrayValue appends the body of a commonpb.ArrayValue.
func appendArrayValue(e []byte, v attribute.Value) []byte {
	value := func(tag byte, body []byte) {
		e = appendVarint(append(e, tagArrayValueValues), uint64(1+len(body)))
		e = append(append(e, tag), body...)
	}
	var tmp []byte
	switch v.Type() {
	case attribute.BOOLSLICE:
		for _, x := range v.AsBoolSlice() {
			value(tagAnyValueBool, protowire.AppendVarint(tmp[:0], protowire.EncodeBool(x)))
		}
	case attribute.INT64SLICE:
		for _, x := range v.AsInt64Slice() {
			value(tagAnyValueInt, protowire.AppendVarint(tmp[:0], uint64(x)))
		}
	case attribute.FLOAT64SLICE:
		for _, x := range v.AsFloat64Slice() {
			value(tagAnyValueDouble, protowire.AppendFixed64(tmp[:0], math.Float64bits(x)))
		}
	case attribute.STRINGSLICE:
		for _, x := range v.AsStringSlice() {
			value(tagAnyValueString, protowire.AppendString(tmp[:0], validUTF8(x)))
		}
	}
	return e
}

// fill makes sl the message form of s.
func (b *otlpBatch) fill(sl *spanSlot, s *model.Span) {
	sp := &sl.span
	copy(sl.ids[:16], s.TraceID[:])
	copy(sl.ids[16:24], s.SpanID[:])
	sp.TraceId = sl.ids[:16:16]
	sp.SpanId = sl.ids[16:24:24]
	sp.ParentSpanId, sp.TraceState, sp.Flags = nil, "", spanFlagsLocal
	if s.ParentSpanID.IsValid() {
		copy(sl.ids[24:], s.ParentSpanID[:])
		sp.ParentSpanId = sl.ids[24:32:32]
		sp.TraceState = b.traceState(s.TraceState)
		sp.Flags = spanFlagsRemote
	}
	sp.Name = validUTF8(s.Name)
	sp.Kind = spanKind(s.Kind)
	sp.StartTimeUnixNano = unixNano(s.Start)
	sp.EndTimeUnixNano = unixNano(s.End)
	sl.status.Code, sl.status.Message = statusOf(s)
	sp.Status = &sl.status

	attrs := sp.Attributes[:0]
	var dropped uint32
	for _, kv := range s.Attributes {
		if !kv.Valid() {
			continue
		}
		if len(attrs) == maxAttributes {
			dropped++
			continue
		}
		if len(attrs) == len(sl.kvs) {
			sl.grow()
		}
		k := sl.kvs[len(attrs)]
		k.set(kv)
		attrs = append(attrs, &k.kv)
	}
	sp.Attributes = attrs
	sp.DroppedAttributesCount = dropped
}

// grow adds attribute slots, in one allocation.
func (sl *spanSlot) grow() {
	more := make([]kvSlot, max(8, len(sl.kvs)))
	for i := range more {
		sl.kvs = append(sl.kvs, &more[i])
	}
}

// set makes k the message form of kv.
func (k *kvSlot) set(kv attribute.KeyValue) {
	k.kv.Key = string(kv.Key)
	k.kv.Value = &k.val
	v := kv.Value
	switch v.Type() {
	case attribute.STRING:
		k.str.StringValue = validUTF8(v.AsString())
		k.val.Value = &k.str
	case attribute.INT64:
		k.i.IntValue = v.AsInt64()
		k.val.Value = &k.i
	case attribute.BOOL:
		k.b.BoolValue = v.AsBool()
		k.val.Value = &k.b
	case attribute.FLOAT64:
		k.d.DoubleValue = v.AsFloat64()
		k.val.Value = &k.d
	default:
		// Slices are rare: they allocate.
		k.val.Value = &commonpb.AnyValue_ArrayValue{ArrayValue: arrayValue(v)}
	}
}

func arrayValue(v attribute.Value) *commonpb.ArrayValue {
	a := &commonpb.ArrayValue{}
	switch v.Type() {
	case attribute.BOOLSLICE:
		for _, x := range v.AsBoolSlice() {
			a.Values = append(a.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: x}})
		}
	case attribute.INT64SLICE:
		for _, x := range v.AsInt64Slice() {
			a.Values = append(a.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: x}})
		}
	case attribute.FLOAT64SLICE:
		for _, x := range v.AsFloat64Slice() {
			a.Values = append(a.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: x}})
		}
	case attribute.STRINGSLICE:
		for _, x := range v.AsStringSlice() {
			a.Values = append(a.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: validUTF8(x)}})
		}
	}
	return a
}

// traceState is the tracestate a child span carries: the incoming one in
// its normal form, or none when it is not valid.
func (b *otlpBatch) traceState(in string) string {
	if in == "" {
		return ""
	}
	if in != b.traceStateIn {
		ts, err := trace.ParseTraceState(in)
		b.traceStateIn, b.traceStateOut = in, ""
		if err == nil {
			b.traceStateOut = ts.String()
		}
	}
	return b.traceStateOut
}

func spanKind(k trace.SpanKind) tracepb.Span_SpanKind {
	switch k {
	case trace.SpanKindServer:
		return tracepb.Span_SPAN_KIND_SERVER
	case trace.SpanKindClient:
		return tracepb.Span_SPAN_KIND_CLIENT
	case trace.SpanKindProducer:
		return tracepb.Span_SPAN_KIND_PRODUCER
	case trace.SpanKindConsumer:
		return tracepb.Span_SPAN_KIND_CONSUMER
	}
	// The SDK makes an unspecified kind internal.
	return tracepb.Span_SPAN_KIND_INTERNAL
}

func unixNano(t time.Time) uint64 { return uint64(max(0, t.UnixNano())) }

// validUTF8 makes s valid UTF-8: the protobuf encoder rejects a whole batch
// otherwise. Decoding already guarantees it; this keeps one bad value from
// costing a batch should another source forget.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
