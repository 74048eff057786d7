// Package eventstest holds what the decoder tests of every probe share:
// building a record's bytes as the ring buffer hands them over, a correlator
// that logs nowhere, and a span's attributes by name.
package eventstest

import (
	"io"
	"log/slog"
	"unsafe"

	"github.com/zerotrace/zerotrace/correlate"
	"github.com/zerotrace/zerotrace/correlate/model"
)

// PutString writes s into a record's C char array and returns its length,
// as a program fills an array and its length field.
func PutString(dst []int8, s string) uint16 {
	for i := range len(s) {
		dst[i] = int8(s[i])
	}
	return uint16(len(s))
}

// Raw returns the bytes of the record e, as the reader gets them.
func Raw[T any](e *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(e)), unsafe.Sizeof(*e))
}

// Correlator returns a correlator with the default redactor that logs
// nowhere.
func Correlator() *correlate.Correlator {
	return correlate.New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// Attrs returns s's attributes by name.
func Attrs(s *model.Span) map[string]any {
	m := map[string]any{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}
