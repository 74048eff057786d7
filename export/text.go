package export

import (
	"bufio"
	"context"
	"encoding/hex"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Text writes one readable line per span, for a person at a terminal.
type Text struct {
	w   *bufio.Writer
	buf []byte
}

// NewText writes to w.
func NewText(w io.Writer) *Text { return &Text{w: bufio.NewWriter(w)} }

// Name implements Sink.
func (*Text) Name() string { return "text" }

// Export implements Sink.
func (t *Text) Export(_ context.Context, spans []*model.Span) error {
	for _, s := range spans {
		t.buf = AppendText(t.buf[:0], s)
		t.buf = append(t.buf, '\n')
		if _, err := t.w.Write(t.buf); err != nil {
			return err
		}
	}
	return t.w.Flush()
}

// Shutdown implements Sink.
func (t *Text) Shutdown(context.Context) error { return t.w.Flush() }

// FormatText renders one span as a line such as
//
//	16:20:01.123 sampleapp[4242] server GET /users/{id} 200 1.234ms url.path=/users/7 peer=127.0.0.1:51234 trace=4bf9… span=00f0…
func FormatText(s *model.Span) string { return string(AppendText(nil, s)) }

// AppendText appends the line FormatText returns to b. It reads the span's
// exchange, redacted by semconv as the exporters see it, and allocates
// nothing when b has room.
func AppendText(b []byte, s *model.Span) []byte {
	b = s.Start.Local().AppendFormat(b, "15:04:05.000")
	b = append(b, ' ')
	if p := s.Process; p != nil {
		b = append(b, p.ExecutableName...)
		b = append(b, '[')
		b = strconv.AppendUint(b, uint64(p.PID), 10)
		b = append(b, ']')
	} else {
		b = append(b, '?')
	}
	b = append(b, ' ')
	b = append(b, KindName(s.Kind)...)
	b = append(b, ' ')
	b = append(b, s.Name...)
	b = append(b, ' ')
	if s.HTTP != nil && s.HTTP.Status != 0 {
		b = strconv.AppendInt(b, int64(s.HTTP.Status), 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, float64(s.End.Sub(s.Start))/float64(time.Millisecond), 'f', 3, 64)
	b = append(b, "ms"...)
	var peer netip.AddrPort
	switch {
	case s.HTTP != nil:
		// url.path is a server span's; a client span's URL is url.full.
		if s.Kind == trace.SpanKindServer && s.HTTP.Path != "" {
			b = append(b, " url.path="...)
			b = append(b, s.HTTP.Path...)
		}
		peer = s.HTTP.Peer
	case s.DB != nil:
		peer = s.DB.Peer
	}
	if peer.IsValid() {
		b = append(b, " peer="...)
		b = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()).AppendTo(b)
	}
	if s.Status == codes.Error {
		b = append(b, " ERROR"...)
	}
	b = append(b, " trace="...)
	b = hex.AppendEncode(b, s.TraceID[:])
	b = append(b, " span="...)
	return hex.AppendEncode(b, s.SpanID[:])
}
