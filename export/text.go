package export

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/zerotrace/zerotrace/correlate/model"

	"go.opentelemetry.io/otel/codes"
)

// Text writes one readable line per span, for a person at a terminal.
type Text struct {
	w *bufio.Writer
}

// NewText writes to w.
func NewText(w io.Writer) *Text { return &Text{w: bufio.NewWriter(w)} }

// Name implements Sink.
func (*Text) Name() string { return "text" }

// Export implements Sink.
func (t *Text) Export(_ context.Context, spans []*model.Span) error {
	for _, s := range spans {
		t.w.WriteString(FormatText(s))
		t.w.WriteByte('\n')
	}
	return t.w.Flush()
}

// Shutdown implements Sink.
func (t *Text) Shutdown(context.Context) error { return t.w.Flush() }

// FormatText renders one span as a line such as
//
//	16:20:01.123 sampleapp[4242] server GET /users/{id} 200 1.234ms url.path=/users/7 client=127.0.0.1:51234 trace=4bf9…
func FormatText(s *model.Span) string {
	var a struct {
		status, peerPort int64
		path, peer       string
	}
	for _, kv := range s.Attributes {
		switch kv.Key {
		case "http.response.status_code":
			a.status = kv.Value.AsInt64()
		case "url.path":
			a.path = kv.Value.AsString()
		case "network.peer.address":
			a.peer = kv.Value.AsString()
		case "network.peer.port":
			a.peerPort = kv.Value.AsInt64()
		}
	}
	proc := "?"
	if s.Process != nil {
		proc = s.Process.String()
	}
	status := "-"
	if a.status != 0 {
		status = fmt.Sprint(a.status)
	}
	line := fmt.Sprintf("%s %s %s %s %s %s", s.Start.Local().Format("15:04:05.000"), proc,
		KindName(s.Kind), s.Name, status, formatDuration(s.End.Sub(s.Start)))
	if a.path != "" {
		line += " url.path=" + a.path
	}
	if a.peer != "" {
		line += fmt.Sprintf(" peer=%s:%d", a.peer, a.peerPort)
	}
	if s.Status == codes.Error {
		line += " ERROR"
	}
	return line + " trace=" + s.TraceID.String() + " span=" + s.SpanID.String()
}

func formatDuration(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}
