package semconv

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// appendCode names an INTERNAL span of one of the program's functions.
// code.function.name is the stable attribute (semantic conventions 1.33):
// it holds the fully qualified name, code.namespace and code.function
// being deprecated. Goroutines have no convention: zerotrace.goroutine.id.
func appendCode(attrs []attribute.KeyValue, s *model.Span) []attribute.KeyValue {
	c := s.Code
	s.Name = c.Name
	attrs = append(attrs,
		attribute.String("code.function.name", c.Function),
		attribute.Int64("zerotrace.goroutine.id", int64(c.Goroutine)))
	if c.Overflow {
		attrs = append(attrs, attribute.Bool("zerotrace.phase.overflow", true))
	}
	if c.Ended != model.CodeReturned {
		// The function did not return: its end is when that was seen.
		attrs = append(attrs, attribute.String("zerotrace.phase.ended", c.Ended.String()))
		s.Status, s.StatusMsg = codes.Error, "the function did not return ("+c.Ended.String()+")"
	}
	return attrs
}
